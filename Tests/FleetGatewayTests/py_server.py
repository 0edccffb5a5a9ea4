#!/usr/bin/env python3
"""A Python MCPServer (official SDK 2.x) for FleetGatewayTests: `echo` answers, `fail` raises (a tool
result with isError: true). --json answers with JSON bodies instead of SSE streams."""
import argparse

from mcp.server.mcpserver import MCPServer

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--json", action="store_true")
a = p.parse_args()
server = MCPServer("gateway-test")


@server.tool()
def echo(text: str = "") -> str:
    """Returns its argument and this server's port."""
    return f"{text}@{a.port}"


@server.tool()
def fail() -> str:
    """Always fails."""
    raise ValueError("failing on purpose")


server.run(transport="streamable-http", host="127.0.0.1", port=a.port, json_response=a.json)
