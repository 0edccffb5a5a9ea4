#!/usr/bin/env python3
"""Reads wrk --latency output on stdin; prints one JSON line: target, rate asked, rate achieved,
p50/p99 in ms, non-2xx count, socket errors, load average at the start, and, from the environment,
CPU microseconds per request of the target process (CPU_SECONDS: its CPU time during the run), of
the MCP server behind it (SERVER_CPU_SECONDS), of wrk itself (the `times` lines after wrk's output),
and the machine's idle share during the run (MACHINE_IDLE, 0–1, all cores)."""
import json, os, re, sys

name, rate, conns, load = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
text = sys.stdin.read()


def ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


pct = {m.group(1): ms(m.group(2), m.group(3)) for m in re.finditer(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)}
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
row = {"target": name, "rate": rate, "connections": conns, "achieved": float(rps.group(1)) if rps else None,
       "p50_ms": pct.get("50"), "p99_ms": pct.get("99"), "non2xx": int(non2xx.group(1)) if non2xx else 0,
       "socket_errors": sum(map(int, errors.groups())) if errors else 0, "load": load}
total = re.search(r"^\s*(\d+) requests in", text, re.M)
requests = int(total.group(1)) if total else 0


def per_request(seconds):
    return round(float(seconds) * 1e6 / requests, 1) if seconds and requests > 0 else None


row["cpu_us_per_request"] = per_request(os.environ.get("CPU_SECONDS"))
row["server_cpu_us_per_request"] = per_request(os.environ.get("SERVER_CPU_SECONDS"))
# bash's `times`: the shell's own line, then its children's ("0m1.234s 0m0.567s").
times = re.findall(r"^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$", text, re.M)
if len(times) >= 2:
    um, us, sm, ss = times[-1]
    row["wrk_cpu_us_per_request"] = per_request(int(um) * 60 + float(us) + int(sm) * 60 + float(ss))
idle = os.environ.get("MACHINE_IDLE")
row["machine_idle"] = round(float(idle), 3) if idle else None
if rps is None:
    row["raw"] = text[-500:]
print(json.dumps(row))
