#!/usr/bin/env python3
"""A small MCP server that tells the time, built on the official Python MCP SDK (2.x).

Usage: server.py --port PORT [--host 127.0.0.1] [--name time]

Serves streamable HTTP at http://HOST:PORT/mcp. Tools:
  now(timezone="UTC")                      current time, ISO-8601
  convert(time, source_timezone, target_timezone)
                                           an ISO-8601 time re-expressed in another zone

The default zone for `now` can be set with the environment variable TIME_DEFAULT_TIMEZONE.
This file is the artifact whose bytes the catalog signs (see ../time.yaml, spec.supplyChain).
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime, timezone as dt_timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mcp.server.mcpserver import MCPServer


def _zone(name: str) -> ZoneInfo | dt_timezone:
    if name.upper() in ("UTC", "Z"):
        return dt_timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone: {name!r}") from exc


def build(name: str) -> MCPServer:
    server = MCPServer(name, instructions="Tells the current time and converts times between IANA time zones.")
    default_zone = os.environ.get("TIME_DEFAULT_TIMEZONE", "UTC")

    @server.tool()
    def now(timezone: str = "") -> str:
        """Current time as ISO-8601, in UTC unless an IANA time zone (e.g. Europe/Berlin) is given."""
        return datetime.now(_zone(timezone or default_zone)).isoformat(timespec="seconds")

    @server.tool()
    def convert(time: str, source_timezone: str, target_timezone: str) -> str:
        """Converts an ISO-8601 time (without offset: read in source_timezone) to target_timezone."""
        parsed = datetime.fromisoformat(time)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=_zone(source_timezone))
        return parsed.astimezone(_zone(target_timezone)).isoformat(timespec="seconds")

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--name", default="time", help="server name reported in serverInfo")
    args = parser.parse_args()
    build(args.name).run(transport="streamable-http", host=args.host, port=args.port)


if __name__ == "__main__":
    main()
