"""The dashboard and `status --watch` during a real canary of the example fleet (issue 18).

The built binary runs the example catalog (Manifests/) with the local driver: the Swift SDK's
everything-server and the Python time server. A manifest edit starts the time server's canary; a
headless Chromium on /ui sees the step appear without a reload, the revisions, the pause countdown
and, after `mcpfleet promote`, the analysis measurements; full-page screenshots are saved. The same
canary is watched by `mcpfleet status --watch` in a tmux pseudo-terminal (its screen printed to the
log) and through a pipe (appended lines). The JSON endpoints and events validate against
Schemas/dashboard-*.schema.json, and a secret planted in the catalog appears on no page or endpoint.

Needs MCPFLEET_BIN and MCP_EVERYTHING_SERVER (scripts/test.sh sets both), chromium and tmux; run it in
a private network namespace (scripts/isolated.sh): it binds 127.0.0.1:9464, :9470 and 18xxx.
Screenshots go to $MCPFLEET_SCREENSHOTS (default: a temporary directory, printed).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from cdp import Browser

ROOT = Path(__file__).resolve().parent.parent.parent
SCHEMAS = ROOT / "Schemas"
OPS = "127.0.0.1:9464"
BASE = f"http://{OPS}"

BIN = os.environ.get("MCPFLEET_BIN")
EVERYTHING = os.environ.get("MCP_EVERYTHING_SERVER")
pytestmark = pytest.mark.skipif(not BIN or not EVERYTHING, reason="needs MCPFLEET_BIN and MCP_EVERYTHING_SERVER (scripts/test.sh sets them)")


def validators():
    resources = []
    for p in SCHEMAS.glob("*.schema.json"):
        s = json.loads(p.read_text())
        resources.append((s["$id"], Resource.from_contents(s, default_specification=DRAFT202012)))
    registry = Registry().with_resources(resources)
    return {name: Draft202012Validator(json.loads((SCHEMAS / f"dashboard-{name}.schema.json").read_text()), registry=registry)
            for name in ("fleet", "server", "events")}


def get(path: str, timeout: float = 10) -> tuple[int, str, dict]:
    try:
        with urllib.request.urlopen(BASE + path, timeout=timeout) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)
    except (urllib.error.URLError, ConnectionError) as e:  # not listening yet
        return 0, str(e), {}


def first_events(path: str, names: set[str], timeout: float = 10) -> list[tuple[str, str]]:
    """Reads an event stream until one event of each name in `names` arrived (or raises on timeout)."""
    out: list[tuple[str, str]] = []
    with urllib.request.urlopen(BASE + path, timeout=timeout) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        name, deadline = None, time.monotonic() + timeout
        for raw in r:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: ") and name:
                out.append((name, line[len("data: "):]))
                if names <= {n for n, _ in out}:
                    return out
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"no {names} event on {path} within {timeout}s: {out}")


def wait_until(what: str, predicate, timeout: float = 90, every: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@pytest.fixture
def fleet(tmp_path):
    """The example catalog copied, its SLO analysis sped up (3 s apart, the time server probed every
    second so each interval has probe results; a p95 bound a loaded 2-core machine keeps), a secret
    planted in the time server's environment, and `mcpfleet run` on it."""
    shutil.copytree(ROOT / "Manifests", tmp_path / "Manifests")
    # Ports moved off the example's 181xx/182xx: other suites on the machine find the example fleet's
    # processes by those ports (PID namespaces are shared) and kill one to test healing.
    for name, old, new in (("everything.yaml", "port: 18100", "port: 18300"), ("time.yaml", "port: 18200", "port: 18400")):
        f = tmp_path / "Manifests" / "servers" / name
        assert old in f.read_text()
        f.write_text(f.read_text().replace(old, new))
    slo = tmp_path / "Manifests" / "slo.yaml"
    slo.write_text(slo.read_text().replace("interval: 30s", "interval: 3s").replace("latencyP95: 400ms", "latencyP95: 3s"))
    planted = "planted-" + secrets.token_hex(16)
    server = tmp_path / "Manifests" / "servers" / "time.yaml"
    text = server.read_text().replace("    interval: 5s\n", "    interval: 1s\n")
    assert "      description: Zone used by the `now` tool when the caller gives none.\n" in text
    server.write_text(text.replace(
        "      description: Zone used by the `now` tool when the caller gives none.\n",
        "      description: Zone used by the `now` tool when the caller gives none.\n"
        "    - name: DASHBOARD_TEST_TOKEN\n      isSecret: true\n      secretRef:\n        name: time\n        key: token\n"))
    secret_dir = tmp_path / ".mcpfleet" / "local" / "secrets" / "time"
    secret_dir.mkdir(parents=True)
    (secret_dir / "token").write_text(planted + "\n")
    os.chmod(secret_dir / "token", 0o600)

    # The manifests in git, as a GitOps checkout: the dashboard shows the commit the controller synced.
    git = ["git", "-C", str(tmp_path / "Manifests"), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "example fleet"], check=True)

    env = dict(os.environ)
    env["PATH"] = str(Path(EVERYTHING).parent) + ":" + env.get("PATH", "/usr/bin:/bin")
    log = open(tmp_path / "controller.log", "wb")
    proc = subprocess.Popen([BIN, "run", "Manifests", "--env", "local", "--metrics-address", OPS, "--log-format", "json", "--poll", "500ms"],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    ctx = {"dir": tmp_path, "env": env, "proc": proc, "secret": planted, "server_file": server, "git": git}
    try:
        yield ctx
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        subprocess.run([BIN, "stop", "Manifests", "--env", "local"], cwd=tmp_path, env=env, capture_output=True)
        print("---- controller log (last 40 lines) ----")
        print("\n".join((tmp_path / "controller.log").read_text(errors="replace").splitlines()[-40:]))


def mcpfleet(ctx, *args, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run([BIN, *args], cwd=ctx["dir"], env=ctx["env"], capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, f"mcpfleet {' '.join(args)}: {r.stdout}\n{r.stderr}"
    return r


def fleet_json() -> dict:
    status, body, _ = get("/api/v1/fleet")
    assert status == 200, body
    return json.loads(body)


def server_row(view: dict, name: str) -> dict:
    return next(s for s in view["servers"] if s["name"] == name)


class Tmux:
    """`mcpfleet status --watch` in a tmux pseudo-terminal of a fixed size."""

    def __init__(self, ctx):
        self.name = "mcpfleet-watch-" + secrets.token_hex(4)
        self.socket = str(ctx["dir"] / "tmux.sock")
        cmd = f"cd {ctx['dir']} && PATH={ctx['env']['PATH']} {BIN} status Manifests --env local --watch"
        subprocess.run(["tmux", "-S", self.socket, "new-session", "-d", "-s", self.name, "-x", "170", "-y", "45", cmd], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "-S", self.socket, "capture-pane", "-p", "-t", self.name], capture_output=True, text=True, check=True).stdout

    def close(self):
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True)


@pytest.mark.skipif((not shutil.which("chromium") or not shutil.which("tmux")) and not os.environ.get("CI"),
                    reason="needs chromium and tmux (scripts/setup.sh installs them; in CI their absence fails)")
def test_dashboard_follows_a_canary_live(fleet, capsys):
    v = validators()
    shots = Path(os.environ.get("MCPFLEET_SCREENSHOTS") or tempfile.mkdtemp(prefix="mcpfleet-screenshots-"))
    shots.mkdir(parents=True, exist_ok=True)
    seen: dict[str, str] = {}  # every page, endpoint and screen the test saw, for the secret check

    def log(text: str):
        """Into the test log even when the test passes (the watch screens are part of the evidence)."""
        with capsys.disabled():
            print("\n" + text)

    # The fleet comes up: every server stable with its replicas ready.
    def settled():
        status, body, _ = get("/api/v1/fleet")
        if status != 200:
            return False
        view = json.loads(body)
        rows = {s["name"]: s for s in view["servers"]}
        ok = all(rows.get(n, {}).get("phase") == "stable" and rows[n]["readyReplicas"] == 2 for n in ("time", "everything"))
        return view if ok else False
    view = wait_until("the example fleet up and stable", settled, timeout=180)
    v["fleet"].validate(view)
    assert view["syncedCommit"] and not view["syncedCommit"].endswith("-dirty")
    stable = server_row(view, "time")["servingRevision"]
    assert server_row(view, "time")["tenant"] == "research"
    assert server_row(view, "time")["endpoint"] == "http://127.0.0.1:9470/time/mcp"
    # The planted secret is live: the time server's processes have it in their environment.
    pids = subprocess.run(["pgrep", "-f", "time/server.py --port"], capture_output=True, text=True).stdout.split()
    assert any(fleet["secret"].encode() in Path(f"/proc/{p}/environ").read_bytes() for p in pids), "the planted secret reached no instance"

    browser = Browser()
    watch = Tmux(fleet)
    try:
        browser.navigate(BASE + "/ui")
        browser.wait_for("document.querySelector('tr[data-server=time]') !== null", what="the fleet page's time row")
        loaded_at = browser.evaluate("window.mcpfleetDashboard.loadedAt")
        navigations = browser.navigations()

        # A manifest edit, committed, starts the canary (a new revision of the time server).
        f = fleet["server_file"]
        f.write_text(f.read_text().replace("value: UTC", "value: Europe/Paris"))
        subprocess.run([*fleet["git"], "commit", "-qam", "time: Europe/Paris"], check=True)
        head = subprocess.run([*fleet["git"], "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()

        # The fleet page shows the step without a reload.
        step = browser.wait_for("(document.querySelector('tr[data-server=time] .rollout-step') || {}).textContent", what="the canary step on the fleet page")
        step = browser.wait_for("(() => { const t = document.querySelector('tr[data-server=time] .rollout-step').textContent; return t.includes('step 1 of 2') && t; })()",
                                what="step 1 of 2 on the fleet page")
        assert "canary" in step
        assert browser.evaluate("window.mcpfleetDashboard.loadedAt") == loaded_at and browser.navigations() == navigations, "the page was reloaded"
        browser.wait_for("/pause \\d+m\\d+s left/.test(document.querySelector('tr[data-server=time] .rollout-step').textContent)", what="the countdown on the fleet page")
        assert browser.wait_for(f"document.getElementById('context').textContent.includes('synced commit {head[:12]}')", what="the synced commit")
        assert browser.wait_for("(document.getElementById('events') || {textContent: ''}).textContent.includes('rollout-start')", what="the rollout in the last events")
        browser.screenshot(str(shots / "dashboard-fleet.png"))
        seen["fleet page"] = browser.html()

        # The server page: both revisions with their shares, the step, a pause counting down.
        browser.navigate(BASE + "/ui/servers/time")
        browser.wait_for("document.querySelectorAll('#revisions tr[data-revision]').length === 2", what="two revisions")
        roles = browser.evaluate("[...document.querySelectorAll('#revisions tr[data-revision]')].map(r => r.dataset.role + ' ' + r.dataset.revision)")
        assert f"serving {stable}" in roles and any(r.startswith("target ") for r in roles), roles
        assert "step 1 of 2" in browser.evaluate("document.getElementById('rollout-step').textContent")
        first = browser.wait_for("(() => { const m = /pause: (\\d+)m(\\d+)s left/.exec(document.getElementById('pause-countdown').textContent); return m && (+m[1] * 60 + +m[2]); })()",
                                 what="the pause countdown")
        assert 0 < first <= 120
        browser.wait_for(f"(() => {{ const m = /pause: (\\d+)m(\\d+)s left/.exec(document.getElementById('pause-countdown').textContent); return m && (+m[1] * 60 + +m[2]) < {first}; }})()",
                         timeout=10, what="the countdown moving")
        detail = json.loads(get("/api/v1/servers/time")[1])
        v["server"].validate(detail)
        assert detail["server"]["rollout"]["pauseMs"] == 120_000 and detail["server"]["rollout"]["pauseEndsAt"] > detail["generatedAt"]
        assert any(c["action"] == "promote" and c["applies"] and c["command"].startswith("mcpfleet promote time -C /") for c in detail["commands"])

        screen = wait_until("the watch view showing the step", lambda: (s := watch.screen()) and "step 1 of 2" in s and s)
        log("---- status --watch (tmux, canary paused at step 1) ----\n" + screen)
        assert re.search(r"time\s+canary → \w+\s+step 1 of 2 · paused, \d+m\d+s left", screen), screen
        assert "promote: mcpfleet promote time -C Manifests --env local" in screen
        seen["watch screen 1"] = screen

        # Without a terminal the watch appends a line per change.
        piped = subprocess.Popen([BIN, "status", "Manifests", "--env", "local", "--watch"], cwd=fleet["dir"], env=fleet["env"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        # Promote: step 2 (analysis) follows on the same page, without a reload.
        page_loaded = browser.evaluate("window.mcpfleetDashboard.loadedAt")
        page_navigations = browser.navigations()
        mcpfleet(fleet, "promote", "time", "-C", "Manifests", "--env", "local")
        browser.wait_for("document.getElementById('rollout-step').textContent.includes('step 2 of 2')", what="step 2 of 2")
        browser.wait_for("document.querySelectorAll('#analysis tr.measurement').length >= 2", timeout=90, what="two analysis measurements")
        row = browser.evaluate("document.querySelector('#analysis tr.measurement').innerText")
        assert re.search(r"pass\s+100\.00% \(≥ 99\.50%\)", row), row
        assert browser.evaluate("document.querySelectorAll('#analysis svg.chart circle').length") >= 2
        assert browser.evaluate("window.mcpfleetDashboard.loadedAt") == page_loaded and browser.navigations() == page_navigations, "the page was reloaded"
        browser.wait_for("document.querySelectorAll('#analysis tr.measurement').length >= 5 || document.getElementById('pause-countdown').textContent.includes('waiting for promote')",
                         timeout=60, what="the analysis run complete")
        browser.screenshot(str(shots / "dashboard-server.png"))
        seen["server page"] = browser.html()
        detail = json.loads(get("/api/v1/servers/time")[1])
        v["server"].validate(detail)
        assert detail["analysis"]["measurements"][0]["successRate"] == 1.0 and detail["analysis"]["successRateObjective"] == 0.995
        assert any(e["action"] == "promote" for e in detail["audit"]), detail["audit"]

        screen = wait_until("the watch view showing analysis", lambda: (s := watch.screen()) and "analysis:" in s and s)
        log("---- status --watch (tmux, canary at step 2 with analysis) ----\n" + screen)
        assert "step 2 of 2" in screen
        seen["watch screen 2"] = screen

        piped.send_signal(signal.SIGINT)
        out, err = piped.communicate(timeout=10)
        log("---- status --watch (pipe) ----\n" + out)
        assert "\x1b[" not in out, "no escape codes without a terminal"
        lines = [l for l in out.splitlines() if " time · " in l]
        assert len(lines) >= 2 and any("step 1 of 2" in l for l in lines) and any("step 2 of 2" in l for l in lines), out
        seen["watch pipe"] = out + err

        # Every endpoint validates, events included, and none carries the planted secret.
        for path in ("/ui", "/ui/servers/time", "/ui/assets/dashboard.js", "/ui/assets/dashboard.css", "/api/v1/fleet",
                     "/api/v1/servers/time", "/api/v1/servers/everything", "/health/detailed", "/metrics"):
            status, body, headers = get(path)
            assert status == 200, f"{path}: {status} {body[:200]}"
            seen[path] = body + json.dumps(headers)
        v["fleet"].validate(json.loads(seen["/api/v1/fleet"].split("\n")[0]))
        v["server"].validate(json.loads(seen["/api/v1/servers/everything"].split("\n")[0]))
        for path, names in (("/api/v1/events", {"fleet"}), ("/api/v1/events?server=time", {"server"}), ("/api/v1/events?server=nothere", {"gone"})):
            events = first_events(path, names)
            for _, data in events:
                v["events"].validate(json.loads(data))
            seen[path] = json.dumps(events)
        status, body, _ = get("/api/v1/servers/nothere")
        assert status == 404 and "no server `nothere`" in body
        status, _, headers = get("/ui")
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        for what, text in seen.items():
            assert fleet["secret"] not in text, f"the planted secret appears in {what}"
        log(f"screenshots: {shots / 'dashboard-fleet.png'} {shots / 'dashboard-server.png'}")
    finally:
        watch.close()
        browser.close()
