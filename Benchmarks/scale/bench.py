#!/usr/bin/env python3
"""The control-plane scale benchmark (issue 14): how mcpfleet's cost grows with the fleet.

    bench.py local      --mcpfleet BIN --sizes 100,300,1000,3000 [--label NAME]
    bench.py kubernetes --mcpfleet BIN --sizes 100,1000,3000    [--label NAME]
    bench.py report     --from Benchmarks/out/scale/NAME.jsonl     (the tables again)

Generates N single-replica servers whose replicas are `tinymcp` (Benchmarks/scale/tinymcp.c: one
epoll process, no fork per connection, answers mcpfleet's MCP probe), then measures with the real
binary, each step bounded by a timeout (a step that does not finish is recorded as such):

  cold     `mcpfleet apply DIR` from nothing until every server is settled
  no-op    `mcpfleet apply DIR` again, nothing changed
  change   one server's version changed, `mcpfleet apply DIR`; also the time from the start of that
           apply to the changed server's first runtime action (its first `scale` in the audit log)
  idle     `mcpfleet run DIR --resync 30s` for a window after its first sync: CPU seconds, RSS and,
           on Kubernetes, API requests (a running controller with nothing to do)
  resync   in that same controller, a sync pass with nothing changed (the periodic resync: the sync key
           and every server's reconcile): its wall and process CPU seconds, as the controller measures
           them (`mcpfleet_resync_pass_seconds`, `mcpfleet_resync_pass_cpu_seconds` on /metrics; the CPU
           includes the probes that run meanwhile). The first pass after start (adoption) is not counted.
For each: wall seconds, controller CPU seconds (user+sys, from wait4), peak RSS, and on Kubernetes the
API requests by verb (the test API server's /__control/counters). On Kubernetes the same rendered
objects are also applied with `kubectl apply --server-side` to a fresh test API server, and the ratio
kubectl / mcpfleet cold is reported.

Local runs need ports 20000+ free (run it in a private network namespace: Benchmarks/scale/run.sh
does). Writes JSON lines to Benchmarks/out/scale/<label>.jsonl and a Markdown table to stdout.
Not a test: nothing is asserted; the figures depend on the machine (the load is recorded).
"""
import argparse
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
API_SERVER = os.path.join(ROOT, "Tests", "KubeAPIServer", "fake_apiserver.py")
BASE_PORT = 20000
DIGEST = "sha256:" + "ab" * 32


def log(msg):
    sys.stderr.write(f"[scale {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def load():
    return os.getloadavg()[0]


# ----------------------------------------------------------------------------------------------
# Catalogs

def server_doc(i, tenant, version, artifact, port, interval="10s"):
    return "\n".join([
        "apiVersion: mcpfleet.io/v1alpha1", "kind: Server", "metadata:", f"  name: s{i:04d}", "spec:",
        f'  version: "{version}"', f"  tenant: {tenant}", "  artifact:", *artifact,
        "  transport:", "    type: streamable-http", f"    port: {port}", "    path: /mcp",
        "  replicas: 1", "  health:", "    probe: mcp", f"    interval: {interval}", "    timeout: 2s",
        "  rollout:", "    strategy: rolling", "    maxSurge: 1", "    maxUnavailable: 0", ""])


def write_catalog(d, n, driver, tiny=None, versions=None, interval="10s"):
    """N servers (s0000 …), one tenant per 50; `versions` overrides a server's version; `interval` is
    every server's `health.interval`."""
    os.makedirs(os.path.join(d, "servers"), exist_ok=True)
    tenants = max(1, (n + 49) // 50)
    with open(os.path.join(d, "tenants.yaml"), "w") as f:
        f.write("\n---\n".join(
            f"apiVersion: mcpfleet.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: t{t:03d}\nspec:\n  isolation: shared\n"
            for t in range(tenants)))
    with open(os.path.join(d, "environment.yaml"), "w") as f:
        if driver == "local":
            f.write(f"""apiVersion: mcpfleet.io/v1alpha1
kind: Environment
metadata:
  name: bench
spec:
  driver: local
  portRange: {BASE_PORT}-{BASE_PORT + 2 * n + 1}
  stateDir: {d}/../state
  local:
    restartBackoff: 2s
""")
        else:
            f.write("""apiVersion: mcpfleet.io/v1alpha1
kind: Environment
metadata:
  name: k8s
spec:
  driver: kubernetes
  kubernetes:
    namespacePrefix: mcp-
""")
    versions = versions or {}
    for start in range(0, n, 100):
        docs = []
        for i in range(start, min(n, start + 100)):
            version = versions.get(i, "1.0.0")
            if driver == "local":
                artifact = ["    command:", f"      - {tiny}", '      - "${PORT}"']
            else:
                artifact = [f"    image: registry.example.com/mcp/tiny:{version}@{DIGEST}"]
            docs.append(server_doc(i, f"t{i // 50:03d}", version, artifact, BASE_PORT + 2 * i, interval))
        with open(os.path.join(d, "servers", f"servers-{start // 100:03d}.yaml"), "w") as f:
            f.write("---\n".join(docs))


# ----------------------------------------------------------------------------------------------
# Running and measuring

def run_measured(argv, env=None, timeout=600, out=None):
    """Runs argv to completion (or kills it at `timeout`); wall, CPU (user+sys) and peak RSS from wait4."""
    out = out or subprocess.DEVNULL
    start = time.monotonic()
    load_before = load()
    p = subprocess.Popen(argv, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
    timed_out = False
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - start > timeout:
            timed_out = True
            os.killpg(p.pid, signal.SIGTERM)
            end = time.monotonic() + 30
            while time.monotonic() < end:
                pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                time.sleep(0.1)
            else:
                os.killpg(p.pid, signal.SIGKILL)
                pid, status, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.05)
    p.returncode = os.waitstatus_to_exitcode(status)
    return {"wall_s": round(time.monotonic() - start, 2), "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "peak_rss_mib": round(ru.ru_maxrss / 1024, 1), "rc": p.returncode, "timed_out": timed_out,
            "load": round(load_before, 2)}


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        text = f.read()
    rss = int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024
    hwm = int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) / 1024
    return round(rss, 1), round(hwm, 1)


def proc_rss_split_mib(pid):
    """RSS split as the kernel counts it: anonymous (heap, stacks, relocated data) and file-backed
    (code and read-only data mapped from the binary and its libraries, clean and shared)."""
    with open(f"/proc/{pid}/status") as f:
        text = f.read()
    def kib(field):
        m = re.search(field + r":\s+(\d+)", text)
        return round(int(m.group(1)) / 1024, 1) if m else None
    return {"rss_anon_mib": kib("RssAnon"), "rss_file_mib": kib("RssFile")}


def http_json(url, method="GET", body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        raw = r.read()
        return json.loads(raw) if raw.strip() else None


def first_action_ms(mcpfleet, catalog, env_name, server, since_ms, env):
    """Milliseconds from `since_ms` to the server's first `scale` audit entry after it."""
    p = subprocess.run([mcpfleet, "history", server, "-C", catalog, "--env", env_name, "-o", "json", "--limit", "200"],
                       capture_output=True, text=True, env=env, timeout=300)
    if p.returncode != 0:
        return None
    audit = json.loads(p.stdout).get("audit", [])
    times = [e["time"] for e in audit if e.get("action") == "scale" and e.get("time", 0) >= since_ms]
    return min(times) - since_ms if times else None


def metric_values(port):
    """The controller's unlabelled metrics from /metrics (name → value)."""
    out = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            parts = line.split()
            if len(parts) == 2 and not line.startswith("#") and "{" not in parts[0]:
                try:
                    out[parts[0]] = float(parts[1])
                except ValueError:
                    pass
    return out


def resync_pass(port, proc, timeout_s):
    """Waits until the controller finished a second sync pass (the first is its start), then its cost."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and proc.poll() is None:
        try:
            m = metric_values(port)
        except Exception:
            m = {}
        if m.get("mcpfleet_resync_passes_total", 0) >= 2:
            return {"wall_s": round(m["mcpfleet_resync_pass_seconds"], 3), "cpu_s": round(m["mcpfleet_resync_pass_cpu_seconds"], 3),
                    "servers": int(m.get("mcpfleet_resync_pass_servers", 0)), "passes": int(m["mcpfleet_resync_passes_total"]),
                    "load": round(load(), 2)}
        time.sleep(1)
    return {"note": f"no second sync pass within {timeout_s} s"}


def idle_window(mcpfleet, catalog, env_name, env, window_s, ready_timeout, counters=None, metrics_port=19464, resync=None):
    """`mcpfleet run` until its first sync is done, then `window_s` seconds with nothing to do; with
    `resync` (a list), then also the cost of its next sync pass with nothing changed, appended to it."""
    argv = [mcpfleet, "run", catalog, "--env", env_name, "--resync", "30s", "--metrics-address", f"127.0.0.1:{metrics_port}",
            "--no-stop-on-exit", "--log-level", "error"]
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    result = {"window_s": window_s}
    try:
        start = time.monotonic()
        ready = False
        while time.monotonic() - start < ready_timeout and p.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5) as r:
                    ready = r.status == 200
            except Exception:
                ready = False
            if ready:
                break
            time.sleep(0.5)
        result["first_sync_s"] = round(time.monotonic() - start, 2) if ready else None
        if not ready:
            result["note"] = f"first sync not done within {ready_timeout}s"
            return result
        if counters:
            counters("reset")
        cpu0 = proc_cpu_s(p.pid)
        result["load"] = round(load(), 2)
        time.sleep(window_s)
        result["cpu_s"] = round(proc_cpu_s(p.pid) - cpu0, 2)
        result["rss_mib"], result["peak_rss_mib"] = proc_rss_mib(p.pid)
        result.update(proc_rss_split_mib(p.pid))
        if counters:
            result["requests"] = counters("get")
        if resync is not None:
            resync.append(resync_pass(metrics_port, p, 90))
        return result
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


# ----------------------------------------------------------------------------------------------
# Local driver

def local_progress(state_dir):
    try:
        db = sqlite3.connect(os.path.join(state_dir, "state.db"), timeout=5)
        started = db.execute("SELECT COUNT(*) FROM local_instances WHERE pid IS NOT NULL").fetchone()[0]
        settled = sum(1 for (r,) in db.execute("SELECT record FROM rollouts") if json.loads(r).get("phase") == "stable"
                      and json.loads(r).get("stableRevision"))
        db.close()
        return {"instances_started": started, "servers_stable": settled}
    except sqlite3.Error as e:
        return {"progress_error": str(e)}


def local_cleanup(mcpfleet, catalog, state_dir, env):
    subprocess.run([mcpfleet, "stop", catalog, "--env", "bench"], env=env, capture_output=True, timeout=900)
    # A stop that did not finish must not leave thousands of processes behind: their process groups,
    # by the pids the driver recorded.
    try:
        db = sqlite3.connect(os.path.join(state_dir, "state.db"), timeout=5)
        pids = [p for (p,) in db.execute("SELECT pid FROM local_instances WHERE pid IS NOT NULL")]
        db.close()
    except sqlite3.Error:
        pids = []
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def bench_local(args, n, tiny, emit):
    work = tempfile.mkdtemp(prefix=f"mcpfleet-scale-local-{n}-")
    catalog, state = os.path.join(work, "catalog"), os.path.join(work, "state")
    env = dict(os.environ)
    logs = open(os.path.join(work, "mcpfleet.log"), "w")
    try:
        write_catalog(catalog, n, "local", tiny=tiny, interval=args.probe_interval)
        apply = [args.mcpfleet, "apply", catalog, "--env", "bench", "--log-level", "error"]
        log(f"local N={n}: cold converge")
        cold = run_measured(apply + ["--timeout", f"{args.cold_timeout}s"], env=env, timeout=args.cold_timeout + 120, out=logs)
        cold.update(local_progress(state))
        emit("local", n, "cold", cold)
        if cold["rc"] != 0:
            for step in ("no-op", "change", "idle"):
                emit("local", n, step, {"skipped": "cold converge did not finish"})
            return
        log(f"local N={n}: no-op")
        emit("local", n, "no-op", run_measured(apply + ["--timeout", f"{args.step_timeout}s"], env=env, timeout=args.step_timeout + 120, out=logs))
        log(f"local N={n}: one change")
        mid = n // 2
        write_catalog(catalog, n, "local", tiny=tiny, versions={mid: "1.0.1"}, interval=args.probe_interval)
        since = int(time.time() * 1000)
        change = run_measured(apply + ["--timeout", f"{args.step_timeout}s"], env=env, timeout=args.step_timeout + 120, out=logs)
        change["first_action_ms"] = first_action_ms(args.mcpfleet, catalog, "bench", f"s{mid:04d}", since, env)
        emit("local", n, "change", change)
        log(f"local N={n}: idle controller, then a resync pass")
        resync = []
        emit("local", n, "idle", idle_window(args.mcpfleet, catalog, "bench", env, args.idle_window, args.cold_timeout, resync=resync))
        if resync:
            emit("local", n, "resync", resync[0])
    finally:
        log(f"local N={n}: cleanup")
        local_cleanup(args.mcpfleet, catalog, state, env)
        logs.close()
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Kubernetes

class APIServer:
    def __init__(self, work, tag):
        self.log = open(os.path.join(work, f"apiserver-{tag}.log"), "w")
        self.proc = subprocess.Popen([sys.executable, API_SERVER, "--port", "0", "--ready-delay-ms", "200",
                                      "--watch-window", "1000000", "--bookmark-interval-ms", "60000", "--pod-ip", "127.0.0.1"],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"test API server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"
        self.kubeconfig = os.path.join(work, f"kubeconfig-{tag}")
        with open(self.kubeconfig, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "bench",
                       "clusters": [{"name": "bench", "cluster": {"server": self.url}}],
                       "users": [{"name": "bench", "user": {}}],
                       "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}]}, f)
        http_json(self.url + "/api/v1/namespaces", "POST",
                  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mcpfleet-system"}})

    def counters(self, what="get"):
        if what == "reset":
            http_json(self.url + "/__control/counters", "DELETE")
            return None
        c = http_json(self.url + "/__control/counters")
        return {"total": c["total"], **{k: v for k, v in sorted(c["byVerb"].items())}}

    def store_shape(self):
        """The rollout store's ConfigMaps: shards, the largest shard's size, per-server history ConfigMaps."""
        items = http_json(self.url + "/api/v1/namespaces/mcpfleet-system/configmaps", timeout=300)["items"]
        kinds = [cm.get("metadata", {}).get("labels", {}).get("mcpfleet.io/store") for cm in items]
        shard_bytes = [len(cm.get("data", {}).get("shard.json", "")) for cm, k in zip(items, kinds) if k == "shard"]
        return {"shards": len(shard_bytes), "largest_shard_kib": round(max(shard_bytes or [0]) / 1024, 1),
                "history_configmaps": sum(1 for k in kinds if k in ("revisions", "audit"))}

    def ready_deployments(self):
        items = http_json(self.url + "/apis/apps/v1/deployments?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dmcpfleet",
                          timeout=300)["items"]
        return sum(1 for d in items if d.get("status", {}).get("readyReplicas", 0) >= 1)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def bench_kubernetes(args, n, tiny, emit):
    work = tempfile.mkdtemp(prefix=f"mcpfleet-scale-k8s-{n}-")
    catalog = os.path.join(work, "catalog")
    logs = open(os.path.join(work, "mcpfleet.log"), "w")
    api = kubectl_api = pods = None
    try:
        write_catalog(catalog, n, "kubernetes", interval=args.probe_interval)
        api = APIServer(work, "mcpfleet")
        # Every simulated pod has IP 127.0.0.1: one tinymcp process answers the probes of every containerPort.
        pods = subprocess.Popen([tiny, "--range", f"{BASE_PORT}-{BASE_PORT + 2 * (n - 1)}:2"], stdin=subprocess.DEVNULL,
                                start_new_session=True)
        env = dict(os.environ, MCPFLEET_KUBECONFIG=api.kubeconfig)
        apply = [args.mcpfleet, "apply", catalog, "--env", "k8s", "--log-level", "error"]

        def measured(step, argv, timeout):
            api.counters("reset")
            r = run_measured(argv, env=env, timeout=timeout, out=logs)
            r["requests"] = api.counters()
            return r

        log(f"kubernetes N={n}: cold converge")
        cold = measured("cold", apply + ["--timeout", f"{args.cold_timeout}s"], args.cold_timeout + 120)
        cold["deployments_ready"] = api.ready_deployments()
        cold["store"] = api.store_shape()
        emit("kubernetes", n, "cold", cold)
        if cold["rc"] == 0:
            log(f"kubernetes N={n}: no-op")
            emit("kubernetes", n, "no-op", measured("no-op", apply + ["--timeout", f"{args.step_timeout}s"], args.step_timeout + 120))
            log(f"kubernetes N={n}: one change")
            mid = n // 2
            write_catalog(catalog, n, "kubernetes", versions={mid: "1.0.1"}, interval=args.probe_interval)
            since = int(time.time() * 1000)
            change = measured("change", apply + ["--timeout", f"{args.step_timeout}s"], args.step_timeout + 120)
            change["first_action_ms"] = first_action_ms(args.mcpfleet, catalog, "k8s", f"s{mid:04d}", since, env)
            emit("kubernetes", n, "change", change)
            log(f"kubernetes N={n}: idle controller")
            resync = []
            emit("kubernetes", n, "idle", idle_window(args.mcpfleet, catalog, "k8s", env, args.idle_window, args.cold_timeout,
                                                      counters=api.counters, resync=resync))
            if resync:
                emit("kubernetes", n, "resync", resync[0])
        else:
            for step in ("no-op", "change", "idle"):
                emit("kubernetes", n, step, {"skipped": "cold converge did not finish"})
        api.stop()
        api = None

        # The same objects, from nothing, with kubectl.
        if args.skip_kubectl:
            return
        log(f"kubernetes N={n}: kubectl apply --server-side")
        write_catalog(catalog, n, "kubernetes")
        objects = os.path.join(work, "objects.yaml")
        with open(objects, "w") as f:
            subprocess.run([args.mcpfleet, "render", catalog, "--env", "k8s"], stdout=f, check=True, timeout=300)
        kubectl_api = APIServer(work, "kubectl")
        kubectl_api.counters("reset")
        kenv = dict(os.environ, KUBECONFIG=kubectl_api.kubeconfig, HOME=work)
        r = run_measured([shutil.which("kubectl") or "/usr/bin/kubectl", "apply", "--server-side", "-f", objects],
                         env=kenv, timeout=args.cold_timeout + 120, out=logs)
        r["requests"] = kubectl_api.counters()
        r["objects"] = sum(1 for line in open(objects) if line.startswith("---"))
        emit("kubernetes", n, "kubectl", r)
        kubectl_api.stop()
        kubectl_api = None

        # mcpfleet's cold converge again, on a fresh API server, with the client's rate limit raised.
        if args.fast_qps > 0:
            log(f"kubernetes N={n}: cold converge at {args.fast_qps} qps")
            api = APIServer(work, "fast")
            env = dict(os.environ, MCPFLEET_KUBECONFIG=api.kubeconfig, MCPFLEET_KUBE_QPS=str(args.fast_qps),
                       MCPFLEET_KUBE_BURST=str(2 * args.fast_qps))
            fast = measured("cold-fast", apply + ["--timeout", f"{args.cold_timeout}s"], args.cold_timeout + 120)
            fast["qps"] = args.fast_qps
            emit("kubernetes", n, "cold-fast", fast)
    finally:
        for s in (api, kubectl_api):
            if s:
                s.stop()
        if pods and pods.poll() is None:
            os.killpg(pods.pid, signal.SIGKILL)
            pods.wait()
        logs.close()
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------------------------

def build_tiny(work):
    out = os.path.join(work, "tinymcp")
    src = os.path.join(HERE, "tinymcp.c")
    for extra in (["-static"], []):
        if subprocess.run(["gcc", "-O2", "-Wall", *extra, "-o", out, src], capture_output=True).returncode == 0:
            return out
    raise RuntimeError("cannot compile tinymcp.c with gcc")


def fmt(v, unit=""):
    return "–" if v is None else f"{v}{unit}"


def markdown(rows):
    lines = ["| driver | N | step | result | wall s | CPU s | peak RSS MiB | first action ms | requests (by verb) | load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["result"]
        if "skipped" in m:
            status = f"skipped: {m['skipped']}"
        elif m.get("timed_out") or m.get("rc", 0) != 0:
            limit = m.get("limit_s")
            status = f"did not finish within {limit} s" if limit else f"exit {m.get('rc')}"
            extra = {k: m[k] for k in ("instances_started", "servers_stable", "deployments_ready") if k in m}
            if extra:
                status += " (" + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in extra.items()) + ")"
        elif r["step"] == "resync":
            status = m.get("note") or f"sync pass over {m.get('servers')} servers, nothing changed"
        elif r["step"] == "idle":
            status = f"{m.get('window_s')} s window after first sync ({fmt(m.get('first_sync_s'))} s)" if m.get("first_sync_s") else m.get("note", "")
            if m.get("rss_anon_mib") is not None:
                status += f"; RSS {fmt(m.get('rss_anon_mib'))} anonymous + {fmt(m.get('rss_file_mib'))} file-backed MiB"
        else:
            status = "ok"
        if m.get("store"):
            st = m["store"]
            status += (f" (store: {st['shards']} shards, largest {st['largest_shard_kib']} KiB, "
                       f"{st['history_configmaps']} per-server history ConfigMaps)")
        req = m.get("requests")
        req_s = "; ".join(f"{k} {v}" for k, v in req.items()) if req else "–"
        wall = m.get("wall_s") if r["step"] != "idle" else m.get("window_s")
        rss = m.get("peak_rss_mib") if r["step"] != "idle" else m.get("rss_mib")
        lines.append(f"| {r['driver']} | {r['n']} | {r['step']} | {status} | {fmt(wall)} | {fmt(m.get('cpu_s'))} | {fmt(rss)} | "
                     f"{fmt(m.get('first_action_ms'))} | {req_s} | {fmt(m.get('load'))} |")
    return "\n".join(lines)


def growth(rows):
    """The measured exponent k of cost ~ N^k between consecutive sizes, per step (CPU seconds):
    k <= 1 means doubling N at most doubles the cost."""
    import math
    out = []
    for driver in sorted({r["driver"] for r in rows}):
        for step in ("resync", "no-op", "cold", "idle"):
            pts = sorted((r["n"], r["result"].get("cpu_s")) for r in rows
                         if r["driver"] == driver and r["step"] == step and r["result"].get("cpu_s"))
            ks = [f"{a}→{b}: N^{math.log(cb / ca) / math.log(b / a):.2f}" for (a, ca), (b, cb) in zip(pts, pts[1:]) if ca > 0 and cb > 0]
            if ks:
                out.append(f"{driver} {step} CPU: " + ", ".join(ks))
        # The resync pass's process CPU includes the probes that run meanwhile (N instances every
        # `health.interval`, so probe CPU during a pass grows as N x the pass's wall time). Without them:
        # the pass's CPU less the idle window's CPU rate over the pass's wall time.
        net = []
        for r in rows:
            if r["driver"] != driver or r["step"] != "resync" or r["result"].get("cpu_s") is None:
                continue
            idle = next((i["result"] for i in rows if i["driver"] == driver and i["n"] == r["n"] and i["step"] == "idle"), {})
            if idle.get("cpu_s") is not None and idle.get("window_s"):
                own = r["result"]["cpu_s"] - idle["cpu_s"] / idle["window_s"] * r["result"]["wall_s"]
                net.append((r["n"], round(own, 3)))
        net.sort()
        if net:
            ks = [f"{a}→{b}: N^{math.log(cb / ca) / math.log(b / a):.2f}" for (a, ca), (b, cb) in zip(net, net[1:]) if ca > 0 and cb > 0]
            out.append(f"{driver} resync CPU less the probes' rate (s: " + ", ".join(f"{n} {c}" for n, c in net) + "): " + (", ".join(ks) or "–"))
    return "\n".join(out)


def ratios(rows):
    """kubectl's time over mcpfleet's cold converge, per N (above 1: mcpfleet is faster)."""
    out = []
    for n in sorted({r["n"] for r in rows}):
        cold = next((r["result"] for r in rows if r["n"] == n and r["step"] == "cold"), {})
        kubectl = next((r["result"] for r in rows if r["n"] == n and r["step"] == "kubectl"), {})
        fast = next((r["result"] for r in rows if r["n"] == n and r["step"] == "cold-fast"), {})
        if cold.get("rc") == 0 and kubectl.get("rc") == 0:
            out.append(f"N={n}: kubectl apply --server-side {kubectl['wall_s']} s / mcpfleet cold {cold['wall_s']} s = "
                       f"{kubectl['wall_s'] / cold['wall_s']:.2f}x")
            if fast.get("rc") == 0:
                out.append(f"N={n}: kubectl apply --server-side {kubectl['wall_s']} s / mcpfleet cold at {fast.get('qps')} qps "
                           f"{fast['wall_s']} s = {kubectl['wall_s'] / fast['wall_s']:.2f}x")
        elif not kubectl:
            out.append(f"N={n}: no ratio (kubectl not run)")
        else:
            out.append(f"N={n}: no ratio (mcpfleet cold {'finished' if cold.get('rc') == 0 else 'did not finish'}, "
                       f"kubectl {'finished' if kubectl.get('rc') == 0 else 'did not finish'})")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("driver", choices=["local", "kubernetes", "report"])
    ap.add_argument("--mcpfleet")
    ap.add_argument("--from", dest="source", help="with `report`: a results .jsonl file")
    ap.add_argument("--sizes", default=None)
    ap.add_argument("--label", default="run")
    ap.add_argument("--cold-timeout", type=int, default=600, help="seconds a cold converge may take before it is recorded as unfinished")
    ap.add_argument("--step-timeout", type=int, default=600, help="seconds a no-op or one-change apply may take")
    ap.add_argument("--idle-window", type=int, default=60, help="seconds the idle controller is watched after its first sync")
    ap.add_argument("--skip-kubectl", action="store_true", help="Kubernetes: no kubectl baseline and no second cold converge (a run for the idle and resync figures)")
    ap.add_argument("--probe-interval", default="10s", help="every server's health.interval (e.g. 300s: the idle and resync figures"
                    " without the probes' CPU)")
    ap.add_argument("--fast-qps", type=int, default=400, help="Kubernetes: a second cold converge with the client's limit raised to this (0: none)")
    args = ap.parse_args()
    if args.driver == "report":
        if not args.source:
            ap.error("report needs --from FILE.jsonl")
        rows = [json.loads(line) for line in open(args.source) if line.strip()]
        for driver in ("local", "kubernetes"):
            part = [r for r in rows if r["driver"] == driver]
            if part:
                print(markdown(part))
                print()
                print(growth(part))
                if driver == "kubernetes":
                    print()
                    print(ratios(part))
                print()
        return
    if not args.mcpfleet:
        ap.error("--mcpfleet is required")
    args.mcpfleet = os.path.abspath(args.mcpfleet)
    sizes = [int(s) for s in (args.sizes or ("100,300,1000,3000" if args.driver == "local" else "100,1000,3000")).split(",")]
    outdir = os.path.join(ROOT, "Benchmarks", "out", "scale")
    os.makedirs(outdir, exist_ok=True)
    results = os.path.join(outdir, f"{args.label}.jsonl")
    rows = []
    tinydir = tempfile.mkdtemp(prefix="mcpfleet-scale-bin-")
    tiny = build_tiny(tinydir)

    def emit(driver, n, step, result):
        limit = {"cold": args.cold_timeout, "cold-fast": args.cold_timeout, "no-op": args.step_timeout, "change": args.step_timeout, "kubectl": args.cold_timeout + 120}.get(step)
        if result.get("timed_out") or result.get("rc", 0) not in (0,):
            result["limit_s"] = limit
        row = {"label": args.label, "driver": driver, "n": n, "step": step, "result": result, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "cores": os.cpu_count()}
        rows.append(row)
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
        log(f"{driver} N={n} {step}: {json.dumps(result)}")

    try:
        for n in sizes:
            (bench_local if args.driver == "local" else bench_kubernetes)(args, n, tiny, emit)
    finally:
        shutil.rmtree(tinydir, ignore_errors=True)
    print(markdown(rows))
    print()
    print(growth(rows))
    if args.driver == "kubernetes":
        print()
        print(ratios(rows))


if __name__ == "__main__":
    main()
