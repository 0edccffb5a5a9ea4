#!/usr/bin/env python3
"""Controller reaction-time benchmarks against the real local driver and the Python MCP time server.

  reaction: manifest change -> first runtime change (the first `scale` in the audit log), N times.
  breach:   SLO breach -> the old revision alone (failed revision at 0 replicas), measured from the
            start of the analysis, with a Prometheus-shaped server reporting a failing success rate.
  gateway:  the same with the `gateway` provider (design 0009): a canary whose tool calls fail 10 %
            of the time (the gateway tests' Python server, --fail-every 10), judged on real calls from
            Python SDK clients through the gateway; the failed revision is drained before it stops.

Usage: bench.py [--mcpfleet PATH] [--runs N] [--gateway-runs N]. Prints a Markdown table. Not a test: numbers vary by machine.
"""
import argparse, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlparse, parse_qs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def catalog(d, version, base, slo_port=None, replicas=1):
    slo = ""
    analysis = ""
    if slo_port:
        slo = f"""---
apiVersion: mcpfleet.io/v1alpha1
kind: SLO
metadata:
  name: fast
spec:
  successRate: "99%"
  analysis:
    provider: prometheus
    interval: 1s
    count: 3
    failureLimit: 1
    prometheus:
      address: http://127.0.0.1:{slo_port}
      successRateQuery: 'success{{revision="{{{{revision}}}}"}}'
"""
        analysis = "  slo: fast\n"
    rollout = ("strategy: canary\n    steps:\n      - replicas: 1\n        analysis: true" if slo_port
               else "strategy: rolling\n    maxSurge: 1\n    maxUnavailable: 0")
    open(os.path.join(d, "fleet.yaml"), "w").write(f"""apiVersion: mcpfleet.io/v1alpha1
kind: Environment
metadata:
  name: bench
spec:
  driver: local
  portRange: {base}-{base + 9}
  stateDir: {d}/../state
---
apiVersion: mcpfleet.io/v1alpha1
kind: Tenant
metadata:
  name: bench
spec:
  isolation: shared
---
apiVersion: mcpfleet.io/v1alpha1
kind: Server
metadata:
  name: time
spec:
  version: "{version}"
  tenant: bench
  artifact:
    command: ["python3", "${{MANIFEST_DIR}}/time/server.py", "--port", "${{PORT}}"]
  transport:
    type: streamable-http
    port: {base}
    path: /mcp
  replicas: {replicas}
  health:
    probe: mcp
    interval: 500ms
    timeout: 2s
  rollout:
    {rollout}
    progressDeadline: 60s
{analysis}{slo}""")

def audit(mcpfleet, d, server="time"):
    out = subprocess.run([mcpfleet, "history", server, "-C", d, "-o", "json", "--limit", "1000"], capture_output=True, text=True)
    return json.loads(out.stdout)["audit"] if out.returncode == 0 else []

def wait(cond, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v: return v
        time.sleep(0.05)
    raise TimeoutError("condition not met")

class Prom(BaseHTTPRequestHandler):
    def do_GET(self):
        q = parse_qs(urlparse(self.path).query).get("query", [""])[0]
        bad = Prom.bad_revision and Prom.bad_revision in q
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {}, "value": [time.time(), "0.5" if bad else "1"]}]}}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
Prom.bad_revision = None

def gateway_catalog(d, version, base, gateway, fail_every=0):
    fail = f', "--fail-every", "{fail_every}"' if fail_every else ""
    open(os.path.join(d, "fleet.yaml"), "w").write(f"""apiVersion: mcpfleet.io/v1alpha1
kind: Environment
metadata:
  name: bench
spec:
  driver: local
  portRange: {base}-{base + 9}
  stateDir: {d}/../state
  gateway:
    address: {gateway}
---
apiVersion: mcpfleet.io/v1alpha1
kind: Tenant
metadata:
  name: bench
spec:
  isolation: shared
---
apiVersion: mcpfleet.io/v1alpha1
kind: Server
metadata:
  name: echo
spec:
  version: "{version}"
  tenant: bench
  artifact:
    command: ["python3", "${{MANIFEST_DIR}}/py_server.py", "--port", "${{PORT}}"{fail}]
  transport:
    type: streamable-http
    port: {base}
    path: /mcp
  replicas: 2
  health:
    probe: mcp
    interval: 500ms
    timeout: 2s
  rollout:
    strategy: canary
    steps:
      - weight: 50
    progressDeadline: 60s
    drainTimeout: 5s
  slo: tools
---
apiVersion: mcpfleet.io/v1alpha1
kind: SLO
metadata:
  name: tools
spec:
  successRate: "99%"
  analysis: {{provider: gateway, interval: 2s, count: 3, failureLimit: 1, minimumCalls: 10}}
""")

def gateway_breach(mcpfleet, runs):
    """Analysis start -> failed revision at 0, with the gateway provider judging real tool calls."""
    out = []
    for run in range(runs):
        work = tempfile.mkdtemp(prefix="mcpfleet-bench-gw-")
        d = os.path.join(work, "cat"); os.makedirs(d)
        shutil.copy(os.path.join(ROOT, "Tests/FleetGatewayTests/py_server.py"), os.path.join(d, "py_server.py"))
        base = 23000 + ((os.getpid() + run) % 300) * 10
        gateway = f"127.0.0.1:{free_port()}"
        gateway_catalog(d, "good", base, gateway)
        log = open(os.path.join(work, "controller.log"), "w")
        ctl = subprocess.Popen([mcpfleet, "run", d, "--poll", "100ms", "--metrics-address", ""], stdout=log, stderr=log)
        clients = []
        try:
            audit_of = lambda: audit(mcpfleet, d, "echo")
            wait(lambda: any(e["action"] == "rollout-complete" for e in audit_of()))
            client = os.path.join(ROOT, "Tests/FleetGatewayTests/mcp_client.py")
            for _ in range(8):
                clients.append(subprocess.Popen(["python3", client, f"http://{gateway}/echo/mcp", "--loop", 'echo:120:{"text":"b"}', "--per-session", "10"],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(2)
            seen = len(audit_of())
            gateway_catalog(d, "bad", base, gateway, fail_every=10)
            start = wait(lambda: next((e for e in audit_of()[seen:] if e["action"] == "rollout-start"), None))
            analysis = wait(lambda: next((e for e in audit_of()[seen:] if e["action"] == "analysis-start"), None))
            rollback = wait(lambda: next((e for e in audit_of()[seen:] if e["action"] in ("rollback", "analysis-inconclusive", "analysis-passed")), None))
            if rollback["action"] != "rollback":
                metrics = subprocess.run(["curl", "-s", f"http://{gateway}/metrics"], capture_output=True, text=True).stdout
                calls = [l for l in metrics.splitlines() if l.startswith("mcpfleet_gateway_tool_calls_total")]
                raise RuntimeError(f"expected a rollback, got {rollback['action']} (too few calls through the gateway on a loaded machine?): {calls}")
            gone = wait(lambda: next((e for e in audit_of()[seen:] if e["action"] == "scale" and e["revision"] == start["revision"] and "→ 0" in e["reason"]), None))
            out.append((rollback["time"] - analysis["time"], gone["time"] - analysis["time"]))
        finally:
            for c in clients: c.kill()
            ctl.send_signal(signal.SIGTERM)
            ctl.wait(timeout=60)
            shutil.rmtree(work, ignore_errors=True)
    return out

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mcpfleet", default=os.path.join(ROOT, ".build/debug/mcpfleet"))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--gateway-runs", type=int, default=3)
    ap.add_argument("--only-gateway", action="store_true", help="only the gateway-provider measurement")
    a = ap.parse_args()
    if a.only_gateway:
        print_gateway(gateway_breach(a.mcpfleet, a.gateway_runs))
        return
    work = tempfile.mkdtemp(prefix="mcpfleet-bench-")
    d = os.path.join(work, "cat"); os.makedirs(os.path.join(d, "time"))
    shutil.copy(os.path.join(ROOT, "Manifests/servers/time/server.py"), os.path.join(d, "time/server.py"))
    prom_port = free_port()
    threading.Thread(target=HTTPServer(("127.0.0.1", prom_port), Prom).serve_forever, daemon=True).start()
    base = 21000 + (os.getpid() % 300) * 10
    catalog(d, "0", base)
    log = open(os.path.join(work, "controller.log"), "w")
    ctl = subprocess.Popen([a.mcpfleet, "run", d, "--poll", "100ms", "--metrics-address", ""], stdout=log, stderr=log)
    try:
        wait(lambda: any(e["action"] == "rollout-complete" for e in audit(a.mcpfleet, d)))
        reactions = []
        for i in range(1, a.runs + 1):
            seen = len(audit(a.mcpfleet, d))
            t0 = time.time() * 1000
            catalog(d, str(i), base)
            first = wait(lambda: next((e for e in audit(a.mcpfleet, d)[seen:] if e["action"] == "scale"), None))
            reactions.append(first["time"] - t0)
            wait(lambda: any(e["action"] == "rollout-complete" for e in audit(a.mcpfleet, d)[seen:]))
        # SLO breach: a canary whose success rate Prometheus reports at 50%.
        seen = len(audit(a.mcpfleet, d))
        catalog(d, "good", base, slo_port=prom_port)
        wait(lambda: any(e["action"] == "rollout-complete" for e in audit(a.mcpfleet, d)[seen:]))
        seen = len(audit(a.mcpfleet, d))
        Prom.bad_revision = ""  # set once the revision is known
        catalog(d, "bad", base, slo_port=prom_port)
        start = wait(lambda: next((e for e in audit(a.mcpfleet, d)[seen:] if e["action"] == "rollout-start"), None))
        Prom.bad_revision = start["revision"]
        analysis = wait(lambda: next((e for e in audit(a.mcpfleet, d)[seen:] if e["action"] == "analysis-start"), None))
        gone = wait(lambda: next((e for e in audit(a.mcpfleet, d)[seen:] if e["action"] == "scale" and e["revision"] == start["revision"] and "→ 0" in e["reason"]), None))
        breach_ms = gone["time"] - analysis["time"]
    finally:
        ctl.send_signal(signal.SIGTERM)
        ctl.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    reactions.sort()
    p50 = statistics.median(reactions)
    p90 = reactions[int(0.9 * (len(reactions) - 1))]
    print("| measurement | result | target |")
    print("|---|---|---|")
    print(f"| manifest change → first runtime change, p50 ({len(reactions)} runs) | {p50:.0f} ms | ≤ 1000 ms |")
    print(f"| manifest change → first runtime change, p90 | {p90:.0f} ms | |")
    print(f"| SLO breach (interval 1s × failureLimit 1) → old revision alone | {breach_ms:.0f} ms | ≤ 6000 ms |")
    print_gateway(gateway_breach(a.mcpfleet, a.gateway_runs))

def print_gateway(results):
    for i, (rollback, alone) in enumerate(results, 1):
        print(f"| gateway provider, 10 % failing tool calls (interval 2s × failureLimit 1), run {i}: → rollback | {rollback:.0f} ms | ≤ 7000 ms |")
        print(f"| … → old revision alone (failed revision drained, then stopped) | {alone:.0f} ms | |")

if __name__ == "__main__":
    main()
