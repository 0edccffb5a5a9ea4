#!/usr/bin/env python3
"""Drives the official Python MCP SDK's streamable HTTP client (a real client, not a test double)
through the mcpfleet gateway, for FleetGatewayTests. One JSON object per line on stdout.

    mcp_client.py URL [--token TOKEN] [--calls TOOL:N[:ARGS_JSON] ...] [--loop TOOL:SECONDS[:ARGS_JSON]] [--per-session N]
                      [--sessions N]

--calls: N calls of TOOL on one session. --loop: call TOOL every 50 ms for SECONDS on one session;
when a call fails, the failure is printed and a new session is initialized (what a client does after
HTTP 404), then the loop goes on; with --per-session N the loop opens a new session after every N calls.
--sessions N: N sessions one after another, each calling `echo` once and closing (prints each answer).
"""
import argparse, asyncio, json, sys, time

from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client


def emit(**event):
    print(json.dumps(event), flush=True)


def parse(spec, second):
    parts = spec.split(":", 2)
    args = json.loads(parts[2]) if len(parts) > 2 else {}
    return parts[0], second(parts[1]), args


async def session(url, token, body):
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as s:
                info = await s.initialize()
                emit(event="initialized", server=getattr(info, "server_info", None) and info.server_info.name)
                return await body(s)


def text_of(result):
    return " ".join(getattr(c, "text", "") for c in result.content)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--token")
    p.add_argument("--calls", action="append", default=[])
    p.add_argument("--loop")
    p.add_argument("--per-session", type=int, default=0)
    p.add_argument("--sessions", type=int, default=0)
    a = p.parse_args()

    if a.sessions:
        async def one(s):
            r = await s.call_tool("echo", {"text": "s"})
            emit(event="call", tool="echo", isError=bool(r.is_error), text=text_of(r)[:200])
        failed = 0
        for _ in range(a.sessions):
            try:
                await session(a.url, a.token, one)
            except BaseException as e:
                failed += 1
                emit(event="session-error", error=repr(e)[:500])
        emit(event="done", sessions=a.sessions, failed=failed)
        return 0

    async def calls(s):
        tools = await s.list_tools()
        emit(event="tools", names=sorted(t.name for t in tools.tools))
        for spec in a.calls:
            tool, n, args = parse(spec, int)
            for _ in range(n):
                r = await s.call_tool(tool, args)
                emit(event="call", tool=tool, isError=bool(r.is_error), text=text_of(r)[:200])

    if a.calls:
        try:
            await session(a.url, a.token, calls)
        except BaseException as e:  # the test reads the failure (e.g. 401) from here
            emit(event="failed", error=repr(e)[:500])
            return 1
    if a.loop:
        tool, seconds, args = parse(a.loop, float)
        deadline = time.monotonic() + seconds
        sessions = 0
        while time.monotonic() < deadline:
            sessions += 1

            async def loop(s):
                n = 0
                while time.monotonic() < deadline and (not a.per_session or n < a.per_session):
                    n += 1
                    r = await s.call_tool(tool, args)
                    emit(event="call", tool=tool, isError=bool(r.is_error), text=text_of(r)[:200], session=sessions)
                    await asyncio.sleep(0.05)

            try:
                await session(a.url, a.token, loop)
            except BaseException as e:
                emit(event="session-error", session=sessions, error=repr(e)[:500])
                await asyncio.sleep(0.05)
        emit(event="done", sessions=sessions)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
