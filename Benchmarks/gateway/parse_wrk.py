#!/usr/bin/env python3
"""Reads wrk --latency output on stdin; prints one JSON line: target, rate asked, rate achieved,
p50/p99 in ms, non-2xx count, socket errors, load average at the start, and (CPU_SECONDS in the
environment: the CPU time the target process used during the run) CPU microseconds per request."""
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
cpu = os.environ.get("CPU_SECONDS")
if cpu and total and int(total.group(1)) > 0:
    row["cpu_us_per_request"] = round(float(cpu) * 1e6 / int(total.group(1)), 1)
if rps is None:
    row["raw"] = text[-500:]
print(json.dumps(row))
