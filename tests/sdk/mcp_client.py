"""Drives osprey's MCP server with the official Python `mcp` SDK and prints one JSON object:

    {"tools": [{"name": ..., "readOnly": bool, "hasOutputSchema": bool}, ...],
     "results": [{"tool": ..., "isError": bool, "structured": {...} | null, "text": "..."}, ...]}

Usage:
    mcp_client.py stdio OSPREY_BIN DATA_DIR CALLS_JSON
    mcp_client.py stdio-cmd COMMAND ARGS_JSON CALLS_JSON   (a client config's command/args)
    mcp_client.py http URL TOKEN CALLS_JSON

CALLS_JSON is a list of [tool_name, arguments] pairs, called in order in one session after
listing the tools. Exits 1 on a protocol error (a tool's own error is a result, not a failure).
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def drive(read, write, calls):
    async with ClientSession(read, write) as session:
        await session.initialize()
        listed = await session.list_tools()
        tools = []
        for tool in listed.tools:
            # model_dump with aliases gives the wire (camelCase) shape in every SDK version.
            wire = tool.model_dump(by_alias=True, exclude_none=True)
            tools.append(
                {
                    "name": wire["name"],
                    "readOnly": bool(wire.get("annotations", {}).get("readOnlyHint")),
                    "hasOutputSchema": "outputSchema" in wire,
                    "description": wire.get("description", ""),
                }
            )
        results = []
        for name, arguments in calls:
            result = (await session.call_tool(name, arguments)).model_dump(
                by_alias=True, exclude_none=True
            )
            text = "".join(c.get("text", "") for c in result.get("content", []))
            results.append(
                {
                    "tool": name,
                    "isError": bool(result.get("isError")),
                    "structured": result.get("structuredContent"),
                    "text": text,
                }
            )
        return {"tools": tools, "results": results}


async def main():
    mode = sys.argv[1]
    calls = json.loads(sys.argv[4])
    if mode == "stdio":
        params = StdioServerParameters(command=sys.argv[2], args=["mcp", "--data", sys.argv[3]])
        async with stdio_client(params) as (read, write):
            out = await drive(read, write, calls)
    elif mode == "stdio-cmd":
        params = StdioServerParameters(command=sys.argv[2], args=json.loads(sys.argv[3]))
        async with stdio_client(params) as (read, write):
            out = await drive(read, write, calls)
    elif mode == "http":
        headers = {"Authorization": f"Bearer {sys.argv[3]}"}
        async with create_mcp_http_client(headers=headers) as client:
            async with streamable_http_client(sys.argv[2], http_client=client) as streams:
                out = await drive(streams[0], streams[1], calls)
    else:
        print(f"unknown mode {mode!r}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
