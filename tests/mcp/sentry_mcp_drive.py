"""Drives the official Sentry MCP server (npm @sentry/mcp-server) over stdio against a running
osprey, after sending it real events with the Python Sentry SDK, and checks every tool result
for the values that were sent. Used by tests/sentry_mcp_server.rs.

usage: sentry_mcp_drive.py NODE MCP_ENTRY HOST TOKEN DSN
Exits non-zero with a message on the first mismatch.
"""

import asyncio
import json
import os
import re
import sys
import time
import urllib.request

import sentry_sdk
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

NODE, ENTRY, HOST, TOKEN, DSN = sys.argv[1:6]
API = f"http://{HOST}/api/0"


def api(path):
    req = urllib.request.Request(API + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def check(cond, what, detail=""):
    if not cond:
        sys.exit(f"FAILED: {what}\n{detail}")


def send_events():
    sentry_sdk.init(dsn=DSN, release="shop@1.0", environment="production", traces_sample_rate=1.0)

    def pay(amount):
        return 100 / amount

    for _ in range(3):
        try:
            pay(0)
        except ZeroDivisionError:
            sentry_sdk.capture_exception()
    for name, seconds, n in [("/checkout", 0.12, 6), ("/home", 0.02, 4)]:
        for _ in range(n):
            with sentry_sdk.start_transaction(name=name, op="http.server"):
                with sentry_sdk.start_span(op="db", name="SELECT 1"):
                    time.sleep(seconds)
    sentry_sdk.flush(10)


def wait_processed():
    deadline = time.time() + 60
    while time.time() < deadline:
        issues = api("/organizations/default/issues/?query=")
        tx = api("/organizations/default/events/?dataset=transactions&field=count()")
        if issues and issues[0].get("count") == "3" and tx["data"] and tx["data"][0]["count()"] == 10:
            return issues[0]
        time.sleep(0.2)
    sys.exit("FAILED: events were not processed within 60 s")


def text_of(result):
    return "\n".join(c.text for c in result.content if getattr(c, "text", None))


def json_block(text):
    m = re.search(r"```json\n(.*?)\n```", text, re.S)
    check(m is not None, "a JSON block in the search_events answer", text)
    return json.loads(m.group(1))


async def drive(issue):
    short_id = issue["shortId"]
    latest = api(f"/organizations/default/issues/{short_id}/events/latest/")
    event_id = latest["eventID"]
    trace = api("/organizations/default/events/?dataset=transactions&field=trace&query=transaction:/checkout&per_page=1")
    trace_id = trace["data"][0]["trace"]

    params = StdioServerParameters(
        command=NODE,
        args=[ENTRY, f"--host={HOST}", "--insecure-http", f"--access-token={TOKEN}", "--disable-skills=seer"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")},
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()

            async def call(name, args):
                result = await asyncio.wait_for(session.call_tool(name, args), timeout=60)
                text = text_of(result)
                check(not result.is_error, f"{name} succeeds", text)
                return text

            text = await call("find_organizations", {})
            data = json.loads(text)
            check([o["slug"] for o in data["organizations"]] == ["default"], "find_organizations lists default", text)

            text = await call("find_projects", {"organizationSlug": "default"})
            check(json.loads(text)["projects"] == [{"slug": "default"}], "find_projects lists default", text)

            text = await call("search_issues", {"organizationSlug": "default", "query": "is:unresolved level:error", "sort": "freq"})
            check(short_id in text and "ZeroDivisionError: division by zero" in text, "search_issues finds the issue", text)
            check("**Events**: 3" in text, "search_issues shows 3 events", text)
            text = await call("search_issues", {"organizationSlug": "default", "query": "is:resolved"})
            check(short_id not in text, "search_issues is:resolved excludes it", text)

            text = await call("get_sentry_resource", {"resourceType": "issue", "resourceId": short_id, "organizationSlug": "default"})
            check("**Occurrences**: 3" in text and "return 100 / amount" in text, "issue resource with count and stack", text)

            text = await call("get_sentry_resource", {"resourceType": "event", "resourceId": event_id, "organizationSlug": "default"})
            check(event_id in text and "ZeroDivisionError" in text, "event resource", text)

            text = await call("get_sentry_resource", {"resourceType": "trace", "resourceId": trace_id, "organizationSlug": "default"})
            check("/checkout" in text and "SELECT 1" in text and "**Total Spans**: 2" in text, "trace resource", text)

            text = await call("update_issue", {"organizationSlug": "default", "issueId": short_id, "status": "resolved"})
            check("**resolved**" in text, "update_issue resolve", text)
            check(api(f"/organizations/default/issues/{short_id}/")["status"] == "resolved", "issue resolved in the API")

            text = await call("update_issue", {"organizationSlug": "default", "issueId": short_id, "status": "ignored",
                                               "ignoreMode": "untilOccurrenceCount", "ignoreCount": 10})
            check("Until it occurs 10 more times" in text, "update_issue ignore until 10 more", text)
            stored = api(f"/organizations/default/issues/{short_id}/")
            check(stored["status"] == "ignored" and stored["substatus"] == "archived_until_condition_met",
                  "issue ignored in the API", json.dumps(stored))
            check(stored["statusDetails"].get("ignoreCount") == 10, "ignore count kept", json.dumps(stored))

            text = await call("search_events", {"organizationSlug": "default", "dataset": "spans",
                                                "fields": ["transaction", "count()", "p95(span.duration)"],
                                                "query": "is_transaction:true", "sort": "-count()"})
            rows = {r["transaction"]: r for r in json_block(text)}
            check(rows["/checkout"]["count()"] == 6 and rows["/home"]["count()"] == 4, "count() by transaction", text)
            check(120 <= rows["/checkout"]["p95(span.duration)"] < 1000, "p95 of /checkout is at least its 120 ms sleep", text)
            check(20 <= rows["/home"]["p95(span.duration)"] < rows["/checkout"]["p95(span.duration)"], "p95 of /home", text)

            text = await call("search_events", {"organizationSlug": "default", "dataset": "errors",
                                                "fields": ["issue", "title", "count()"], "sort": "-count()"})
            rows = json_block(text)
            check(rows == [{"count()": 3, "issue": short_id, "title": "ZeroDivisionError: division by zero"}],
                  "errors count() by issue", text)


def main():
    send_events()
    issue = wait_processed()
    asyncio.run(drive(issue))
    print("OK: find_organizations, find_projects, search_issues, get_sentry_resource (issue, event, trace), "
          "update_issue (resolve, ignore), search_events (spans, errors)")


main()
