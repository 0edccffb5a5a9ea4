"""Resync passes of an idle `mcpfleet run` on the local driver, several per size, from the controller's own
"sync pass done" log lines (wall and process CPU of each pass): the median of several passes instead of the
one pass `bench.py` records, whose spread at these sizes (tens to hundreds of milliseconds) is as large as
the differences looked for. Servers are probed every 300 s, so the figures are the controller's own cost.

    scripts/isolated.sh bash -c "ulimit -n 65536; python3 Benchmarks/scale/passes.py MCPFLEET LABEL 1000,3000 65"
"""
import os, sys, subprocess, time, signal, shutil, tempfile, json, statistics
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench
mcp = sys.argv[1]; label = sys.argv[2]; sizes = [int(x) for x in sys.argv[3].split(",")]; window = int(sys.argv[4])
for n in sizes:
    work = tempfile.mkdtemp(prefix=f"fpass-{n}-")
    tiny = bench.build_tiny(work)
    cat = os.path.join(work, "catalog"); state = os.path.join(work, "state")
    bench.write_catalog(cat, n, "local", tiny=tiny, interval="300s")
    env = dict(os.environ)
    subprocess.run([mcp, "apply", cat, "--env", "bench", "--log-level", "error", "--timeout", "300s"], env=env, capture_output=True)
    log = os.path.join(work, "run.log")
    p = subprocess.Popen([mcp, "run", cat, "--env", "bench", "--resync", "10s", "--metrics-address", "127.0.0.1:19464", "--no-stop-on-exit",
                          "--log-level", "info", "--log-format", "json"], env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"), start_new_session=True)
    load0 = bench.load()
    time.sleep(window)
    os.killpg(p.pid, signal.SIGTERM); p.wait()
    passes = [json.loads(l) for l in open(log) if '"sync pass done"' in l]
    passes = passes[1:]  # the first is the start-up pass
    w = [int(x["wall_ms"]) for x in passes]; c = [int(x["cpu_ms"]) for x in passes]
    print(json.dumps({"label": label, "n": n, "passes": len(passes), "wall_ms": w, "cpu_ms": c,
                      "median_wall_ms": statistics.median(w) if w else None, "median_cpu_ms": statistics.median(c) if c else None,
                      "load": [round(load0, 2), round(bench.load(), 2)]}), flush=True)
    bench.local_cleanup(mcp, cat, state, env)
    shutil.rmtree(work, ignore_errors=True)
