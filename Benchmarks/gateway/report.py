#!/usr/bin/env python3
"""results.jsonl → Markdown: latency at fixed rates (with the added latency over direct), max throughput,
and the CPU time each target's process spent per request (direct: the server's own)."""
import json, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
fixed = [r for r in rows if r["rate"] > 0]
direct = {r["rate"]: r for r in fixed if r["target"] == "direct"}
out = ["| target | rate asked | achieved req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | CPU µs/req | non-2xx | load (1/5/15 min) |",
       "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]


def cpu(r):
    return f'{r["cpu_us_per_request"]:.0f}' if r.get("cpu_us_per_request") is not None else "—"



for r in fixed:
    d = direct.get(r["rate"])
    add50 = add99 = "—"
    if d and r["target"] != "direct" and r["p50_ms"] is not None and d["p50_ms"] is not None:
        add50, add99 = f'{r["p50_ms"] - d["p50_ms"]:+.3f}', f'{r["p99_ms"] - d["p99_ms"]:+.3f}'
    out.append(f'| {r["target"]} | {r["rate"]} | {r["achieved"] or 0:.0f} | {r["p50_ms"] or 0:.3f} | {r["p99_ms"] or 0:.3f} | {add50} | {add99} | '
               f'{cpu(r)} | {r["non2xx"] + r["socket_errors"]} | {r["load"]} |')
out += ["", "| target | connections | max req/s | p50 ms | p99 ms | vs HAProxy | CPU µs/req | server CPU µs/req | wrk CPU µs/req | machine idle | non-2xx | load (1/5/15 min) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
maxes = [r for r in rows if r["rate"] == 0]
haproxy = {r.get("connections"): r["achieved"] for r in maxes if r["target"] == "haproxy"}


def us(r, key):
    return f'{r[key]:.0f}' if r.get(key) is not None else "—"


for r in maxes:
    h = haproxy.get(r.get("connections"))
    ratio = f'{r["achieved"] / h:.2f}x' if h and r["achieved"] else "—"
    idle = f'{100 * r["machine_idle"]:.0f} %' if r.get("machine_idle") is not None else "—"
    out.append(f'| {r["target"]} | {r.get("connections", "—")} | {r["achieved"] or 0:.0f} | {r["p50_ms"] or 0:.3f} | {r["p99_ms"] or 0:.3f} | {ratio} | {cpu(r)} | '
               f'{us(r, "server_cpu_us_per_request")} | {us(r, "wrk_cpu_us_per_request")} | {idle} | {r["non2xx"] + r["socket_errors"]} | {r["load"]} |')
print("\n".join(out))
