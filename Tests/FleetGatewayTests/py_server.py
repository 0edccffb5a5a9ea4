#!/usr/bin/env python3
"""A Python MCPServer (official SDK 2.x) for FleetGatewayTests: `echo` answers, `fail` raises (a tool
result with isError: true); with --fail-every N every Nth `echo` fails too. --json answers with JSON bodies instead of SSE streams; --stdio serves
standard input/output (the local driver puts its stdio bridge in front)."""
import argparse

from mcp.server.mcpserver import MCPServer

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--json", action="store_true")
p.add_argument("--stdio", action="store_true", help="serve on standard input/output instead (behind mcpfleet's stdio bridge)")
p.add_argument("--fail-every", type=int, default=0, help="every Nth echo call fails on purpose (a canary with a 1/N error rate)")
a = p.parse_args()
server = MCPServer("gateway-test")
calls = 0


@server.tool()
def echo(text: str = "") -> str:
    """Returns its argument and this server's port."""
    global calls
    calls += 1
    if a.fail_every and calls % a.fail_every == 0:
        raise ValueError(f"call {calls} fails on purpose")
    return f"{text}@{a.port}"


@server.tool()
def fail() -> str:
    """Always fails."""
    raise ValueError("failing on purpose")


if a.stdio:
    server.run(transport="stdio")
else:
    server.run(transport="streamable-http", host="127.0.0.1", port=a.port, json_response=a.json)
