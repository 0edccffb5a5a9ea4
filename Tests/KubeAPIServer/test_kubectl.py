"""Proves the test API server faithful by pointing the real kubectl at it, plus direct HTTP checks
of what the driver relies on (conflicts, 410 Gone, dry runs, faults, selectors).

    python3 -m pytest Tests/KubeAPIServer -q
"""
import http.client
import json
import os
import queue
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "fake_apiserver.py")
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
TOKEN = "test-token-4f1c"  # a fixed test credential for a throwaway local server

if not os.path.exists(KUBECTL):  # the real thing is the point: fail loudly rather than skip
    raise RuntimeError(f"kubectl not found (looked on PATH and at {KUBECTL}); these tests need the real kubectl")


def wait_until(deadline_s, check, what):
    """Polls `check` until it returns a truthy value or the deadline passes."""
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {deadline_s}s waiting for {what} (last: {last!r})")


class Server:
    def __init__(self, workdir, *extra, tls=None, token=None):
        self.workdir, self.tls, self.token = workdir, tls, token
        args = [sys.executable, SERVER, "--port", "0", *extra]
        if token:
            args += ["--token", token]
        if tls:
            args += ["--tls-cert", tls["cert"], "--tls-key", tls["key"]]
        self.stderr = open(os.path.join(workdir, f"server-{time.monotonic_ns()}.log"), "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        lines = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()
        first = lines.get(timeout=15)
        assert first.startswith("PORT "), f"unexpected first line {first!r}"
        self.port = int(first.split()[1])
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.ctx = ssl.create_default_context(cafile=tls["ca"]) if tls else None
        self.kubeconfig = os.path.join(workdir, f"kubeconfig-{self.port}")
        cluster = {"server": self.url}
        if tls:
            cluster["certificate-authority"] = tls["ca"]
        user = {"token": token} if token else {}
        with open(self.kubeconfig, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "t",
                       "clusters": [{"name": "t", "cluster": cluster}],
                       "users": [{"name": "u", "user": user}],
                       "contexts": [{"name": "t", "context": {"cluster": "t", "user": "u", "namespace": "default"}}]},
                      f)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            rc = self.proc.wait(timeout=10)
            assert rc == 0, f"server exited with {rc} on SIGTERM"
        self.stderr.close()

    # -- kubectl
    def kubectl(self, *args, input=None, check=True, timeout=60):
        env = dict(os.environ, HOME=self.workdir, KUBECONFIG=self.kubeconfig)
        p = subprocess.run([KUBECTL, "--kubeconfig", self.kubeconfig, *args], input=input, capture_output=True,
                           text=True, timeout=timeout, env=env)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    def kjson(self, *args):
        return json.loads(self.kubectl(*args, "-o", "json", "--show-managed-fields").stdout)

    # -- direct HTTP
    def request(self, method, path, body=None, ctype="application/json", headers=None, auth=True, timeout=30):
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h = {"Accept": "application/json"}
        if data is not None:
            h["Content-Type"] = ctype
        if auth and self.token:
            h["Authorization"] = f"Bearer {self.token}"
        h.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as r:
                raw = r.read()
                return r.status, dict(r.headers), json.loads(raw) if raw.strip() else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, dict(e.headers), json.loads(raw) if raw.strip() else None

    def control(self, method, path, body=None):
        status, _, obj = self.request(method, "/__control/" + path, body)
        assert status == 200, obj
        return obj

    def open_watch(self, path):
        """Returns (connection, response) for a streaming watch."""
        conn = (http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=15) if self.tls
                else http.client.HTTPConnection("127.0.0.1", self.port, timeout=15))
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        conn.request("GET", path, headers=headers)
        return conn, conn.getresponse()


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")

    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
         "-out", "ca.crt", "-days", "1", "-subj", "/CN=mcpfleet-test-ca")
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key",
         "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                           "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "server.crt", "-days", "1", "-extfile", "ext")
    return {"ca": str(d / "ca.crt"), "cert": str(d / "server.crt"), "key": str(d / "server.key")}


@pytest.fixture(scope="module")
def srv(tmp_path_factory, tls):
    # kubectl only sends a bearer token over TLS, so the main server is TLS + token, as a real one is.
    s = Server(str(tmp_path_factory.mktemp("srv")), "--ready-delay-ms", "150", "--bookmark-interval-ms", "300",
               tls=tls, token=TOKEN)
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def reset_faults(request):
    if "srv" in request.fixturenames:
        request.getfixturevalue("srv").control("POST", "reset")
    yield


def deployment(name, ns, replicas=2, image="nginx:1.25", labels=None, annotations=None, deadline=None):
    labels = labels or {"app": name}
    d = {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "namespace": ns, "labels": labels},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": labels["app"]}},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [{"name": "app", "image": image,
                                                        "ports": [{"containerPort": 8080}]}]}}}}
    if annotations:
        d["metadata"]["annotations"] = annotations
    if deadline is not None:
        d["spec"]["progressDeadlineSeconds"] = deadline
    return json.dumps(d)


def new_namespace(srv, name):
    srv.kubectl("create", "namespace", name)
    return name


# ----------------------------------------------------------------------------------------------
# kubectl

def test_version_and_api_resources(srv):
    out = srv.kubectl("version").stdout
    assert "Server Version: v1.32" in out
    res = srv.kubectl("api-resources").stdout
    for line in ("deployments", "leases", "networkpolicies", "namespaces", "configmaps", "secrets",
                 "serviceaccounts", "resourcequotas", "limitranges", "services", "pods"):
        assert line in res
    assert "apps/v1" in res and "coordination.k8s.io/v1" in res and "networking.k8s.io/v1" in res


def test_aggregated_discovery_is_served(srv):
    srv.kubectl("api-resources")
    reqs = srv.control("GET", "requests")
    api = [r for r in reqs if r["path"] in ("/api", "/apis")]
    assert api and all("as=APIGroupDiscoveryList" in r["accept"] for r in api)
    # kubectl got what it asked for and did not fall back to per-group-version discovery
    assert not [r for r in reqs if r["path"] in ("/api/v1", "/apis/apps/v1")]


def test_create_namespace_and_builtin_contents(srv):
    ns = new_namespace(srv, "kc-ns")
    got = srv.kjson("get", "namespace", ns)
    assert got["status"]["phase"] == "Active"
    assert got["metadata"]["labels"]["kubernetes.io/metadata.name"] == ns
    wait_until(5, lambda: srv.kubectl("get", "serviceaccount", "default", "-n", ns, check=False).returncode == 0,
               "the default service account")
    assert srv.kubectl("get", "namespace", ns).stdout.split("\n")[0].split() == ["NAME", "STATUS", "AGE"]
    again = srv.kubectl("create", "namespace", ns, check=False)
    assert again.returncode != 0 and "AlreadyExists" in again.stderr


def test_server_side_apply_lifecycle(srv):
    ns = new_namespace(srv, "kc-ssa")
    out = srv.kubectl("apply", "--server-side", "-f", "-", input=deployment("web", ns)).stdout
    assert "deployment.apps/web serverside-applied" in out
    d = srv.kjson("get", "deploy", "web", "-n", ns)
    assert int(d["metadata"]["resourceVersion"]) > 0 and d["metadata"]["generation"] == 1
    mf = {(m["manager"], m["operation"]): m for m in d["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in mf
    fields = mf[("kubectl", "Apply")]["fieldsV1"]
    assert "f:replicas" in fields["f:spec"]
    assert 'k:{"name":"app"}' in fields["f:spec"]["f:template"]["f:spec"]["f:containers"]

    # Re-applying the same configuration is a no-op: nothing stored, resourceVersion unchanged.
    settled = wait_until(5, lambda: (lambda o: o if o.get("status", {}).get("readyReplicas") == 2 else None)(
        srv.kjson("get", "deploy", "web", "-n", ns)), "the simulated controller to report 2 ready")
    srv.kubectl("apply", "--server-side", "-f", "-", input=deployment("web", ns))
    assert srv.kjson("get", "deploy", "web", "-n", ns)["metadata"]["resourceVersion"] == \
        settled["metadata"]["resourceVersion"]

    srv.kubectl("apply", "--server-side", "-f", "-", input=deployment("web", ns, replicas=3))
    d = srv.kjson("get", "deploy", "web", "-n", ns)
    assert d["spec"]["replicas"] == 3 and d["metadata"]["generation"] == 2

    clash = srv.kubectl("apply", "--server-side", "--field-manager", "other", "-f", "-",
                        input=deployment("web", ns, replicas=5), check=False)
    assert clash.returncode != 0
    assert 'conflict with "kubectl"' in clash.stderr and ".spec.replicas" in clash.stderr
    assert srv.kjson("get", "deploy", "web", "-n", ns)["spec"]["replicas"] == 3

    srv.kubectl("apply", "--server-side", "--field-manager", "other", "--force-conflicts", "-f", "-",
                input=deployment("web", ns, replicas=5))
    d = srv.kjson("get", "deploy", "web", "-n", ns)
    assert d["spec"]["replicas"] == 5
    owners = {m["manager"]: m["fieldsV1"] for m in d["metadata"]["managedFields"]}
    assert "f:replicas" in owners["other"]["f:spec"]
    assert "f:replicas" not in owners["kubectl"]["f:spec"]  # forced away from the first manager

    # A field dropped from a manager's configuration is removed when nobody else owns it.
    cfg = json.loads(deployment("web", ns, replicas=5))
    cfg["metadata"]["labels"]["tier"] = "front"
    srv.kubectl("apply", "--server-side", "--field-manager", "other", "-f", "-", input=json.dumps(cfg))
    assert srv.kjson("get", "deploy", "web", "-n", ns)["metadata"]["labels"]["tier"] == "front"
    srv.kubectl("apply", "--server-side", "--field-manager", "other", "-f", "-", input=deployment("web", ns, 5))
    assert "tier" not in srv.kjson("get", "deploy", "web", "-n", ns)["metadata"]["labels"]


def test_unknown_fields_are_rejected(srv):
    ns = new_namespace(srv, "kc-strict")
    cfg = json.loads(deployment("web", ns))
    cfg["spec"]["replicaz"] = 3
    p = srv.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(cfg), check=False)
    assert p.returncode != 0 and "field not declared in schema" in p.stderr
    p = srv.kubectl("create", "-f", "-", input=json.dumps(cfg), check=False)
    assert p.returncode != 0 and 'unknown field "spec.replicaz"' in p.stderr


def test_diff(srv):
    ns = new_namespace(srv, "kc-diff")
    srv.kubectl("apply", "--server-side", "-f", "-", input=deployment("web", ns))
    # Let the simulated controller settle first: kubectl diff sends the resourceVersion it read, and a
    # status write in between is a (real) 409 that kubectl retries for seconds.
    srv.kubectl("rollout", "status", "deploy/web", "-n", ns, "--timeout=20s")
    same = srv.kubectl("diff", "--server-side", "-f", "-", input=deployment("web", ns), check=False)
    assert same.returncode == 0, same.stdout + same.stderr
    changed = srv.kubectl("diff", "--server-side", "-f", "-", input=deployment("web", ns, image="nginx:1.27"),
                          check=False)
    assert changed.returncode == 1, changed.stderr
    diff_lines = changed.stdout.splitlines()
    assert any(x.startswith("-") and x.endswith("image: nginx:1.25") for x in diff_lines), changed.stdout
    assert any(x.startswith("+") and x.endswith("image: nginx:1.27") for x in diff_lines), changed.stdout
    # the dry run stored nothing
    d = srv.kjson("get", "deploy", "web", "-n", ns)
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"

    # Client-side apply and diff (strategic merge patch with dryRun=All).
    srv.kubectl("apply", "-f", "-", input=deployment("csa", ns))
    srv.kubectl("rollout", "status", "deploy/csa", "-n", ns, "--timeout=20s")
    same = srv.kubectl("diff", "-f", "-", input=deployment("csa", ns), check=False)
    assert same.returncode == 0, same.stdout + same.stderr
    changed = srv.kubectl("diff", "-f", "-", input=deployment("csa", ns, replicas=4), check=False)
    assert changed.returncode == 1 and "+  replicas: 4" in changed.stdout
    out = srv.kubectl("apply", "-f", "-", input=deployment("csa", ns, replicas=4)).stdout
    assert "configured" in out
    assert srv.kjson("get", "deploy", "csa", "-n", ns)["spec"]["replicas"] == 4


def test_label_selectors_with_kubectl(srv):
    ns = new_namespace(srv, "kc-labels")
    srv.kubectl("apply", "--server-side", "-f", "-", input=deployment("a", ns, labels={"app": "a", "tier": "x"}))
    srv.kubectl("apply", "--server-side", "-f", "-", input=deployment("b", ns, labels={"app": "b", "tier": "y"}))
    srv.kubectl("apply", "--server-side", "-f", "-", input=deployment("c", ns, labels={"app": "c"}))

    def names(sel):
        return sorted(srv.kubectl("get", "deploy", "-n", ns, "-l", sel, "-o", "name").stdout.split())

    assert names("app=a") == ["deployment.apps/a"]
    assert names("tier in (x,y)") == ["deployment.apps/a", "deployment.apps/b"]
    assert names("tier,tier!=x") == ["deployment.apps/b"]
    assert names("!tier") == ["deployment.apps/c"]
    assert "No resources found" in srv.kubectl("get", "deploy", "-n", ns, "-l", "app=zzz").stderr
    table = srv.kubectl("get", "deploy", "-n", ns, "-l", "app=a").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]


def test_wait_rollout_status_and_scale(srv):
    ns = new_namespace(srv, "kc-rollout")
    srv.kubectl("apply", "--server-side", "-f", "-", input=deployment("web", ns))
    srv.kubectl("wait", "--for=condition=Available", "deploy/web", "-n", ns, "--timeout=20s")
    out = srv.kubectl("rollout", "status", "deploy/web", "-n", ns, "--timeout=20s").stdout
    assert 'deployment "web" successfully rolled out' in out
    srv.kubectl("scale", "deploy/web", "-n", ns, "--replicas=4")
    srv.kubectl("rollout", "status", "deploy/web", "-n", ns, "--timeout=20s")
    d = srv.kjson("get", "deploy", "web", "-n", ns)
    assert d["spec"]["replicas"] == 4 and d["status"]["readyReplicas"] == 4
    assert d["status"]["observedGeneration"] == d["metadata"]["generation"]
    assert any(m.get("subresource") == "scale" for m in d["metadata"]["managedFields"])
    pods = srv.kjson("get", "pods", "-n", ns, "-l", "app=web")["items"]
    assert len(pods) == 4 and all(p["status"]["phase"] == "Running" for p in pods)
    # kubectl scale took ownership of replicas, so applying another value conflicts
    clash = srv.kubectl("apply", "--server-side", "-f", "-", input=deployment("web", ns), check=False)
    assert clash.returncode != 0 and 'with subresource "scale"' in clash.stderr


def test_never_ready_annotation(srv):
    ns = new_namespace(srv, "kc-stuck")
    srv.kubectl("apply", "--server-side", "-f", "-",
                input=deployment("stuck", ns, annotations={"mcpfleet.test/never-ready": "true"}, deadline=2))
    p = srv.kubectl("rollout", "status", "deploy/stuck", "-n", ns, "--timeout=20s", check=False)
    assert p.returncode != 0 and "exceeded its progress deadline" in p.stderr
    d = srv.kjson("get", "deploy", "stuck", "-n", ns)
    assert d["status"].get("readyReplicas", 0) == 0 and d["status"]["unavailableReplicas"] == 2
    conds = {c["type"]: c for c in d["status"]["conditions"]}
    assert conds["Available"]["status"] == "False"
    assert conds["Progressing"]["reason"] == "ProgressDeadlineExceeded"


def test_kubectl_watch(srv):
    ns = new_namespace(srv, "kc-watch")
    srv.kubectl("apply", "--server-side", "-f", "-", input=deployment("web", ns))
    env = dict(os.environ, HOME=srv.workdir)
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", srv.kubeconfig, "get", "deploy", "-n", ns, "-w",
                             "--output-watch-events", "--request-timeout=30s"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        seen = []

        def next_line():
            seen.append(lines.get(timeout=15))
            return seen[-1]

        assert next_line().split()[:2] == ["EVENT", "NAME"]
        assert next_line().split()[:2] == ["ADDED", "web"]
        srv.kubectl("apply", "--server-side", "-f", "-", input=deployment("web", ns, replicas=3))
        wait_until(15, lambda: "MODIFIED" in next_line() and "/3" in seen[-1], "a MODIFIED event for replicas 3")
        srv.kubectl("delete", "deploy", "web", "-n", ns)
        wait_until(15, lambda: next_line().startswith("DELETED"), "a DELETED event")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_delete_and_not_found(srv):
    ns = new_namespace(srv, "kc-delete")
    srv.kubectl("apply", "--server-side", "-f", "-", input=deployment("web", ns))
    wait_until(5, lambda: len(srv.kjson("get", "pods", "-n", ns)["items"]) == 2, "simulated pods")
    assert 'deployment.apps "web" deleted' in srv.kubectl("delete", "deploy", "web", "-n", ns).stdout
    p = srv.kubectl("get", "deploy", "web", "-n", ns, check=False)
    assert p.returncode == 1 and 'deployments.apps "web" not found' in p.stderr
    assert srv.kjson("get", "pods", "-n", ns)["items"] == []  # background propagation removed them
    p = srv.kubectl("delete", "deploy", "web", "-n", ns, check=False)
    assert p.returncode != 0 and "NotFound" in p.stderr


def test_delete_namespace_deletes_contents(srv):
    ns = new_namespace(srv, "kc-nsdel")
    srv.kubectl("create", "configmap", "c", "-n", ns, "--from-literal=a=b")
    srv.kubectl("apply", "--server-side", "-f", "-", input=deployment("web", ns))
    srv.kubectl("delete", "namespace", ns, "--timeout=20s")
    assert srv.kubectl("get", "namespace", ns, check=False).returncode == 1
    st, _, obj = srv.request("GET", f"/api/v1/namespaces/{ns}/configmaps/c")
    assert st == 404
    p = srv.kubectl("delete", "namespace", "default", check=False)
    assert p.returncode != 0 and "may not be deleted" in p.stderr


def test_delete_propagation(srv, hns):
    path = f"/apis/apps/v1/namespaces/{hns}/deployments"
    pods = f"/api/v1/namespaces/{hns}/pods"

    def pod_count(app):
        return len(srv.request("GET", pods + "?labelSelector=app%3D" + app)[2]["items"])

    for name in ("fg", "orphan"):
        assert srv.request("POST", path, json.loads(deployment(name, hns)))[0] == 201
        wait_until(5, lambda: pod_count(name) == 2, f"pods of {name}")
    st, _, obj = srv.request("DELETE", path + "/fg", {"propagationPolicy": "Foreground", "gracePeriodSeconds": 0})
    assert st == 200 and obj["metadata"]["deletionTimestamp"] and obj["metadata"]["finalizers"] == ["foregroundDeletion"]
    wait_until(5, lambda: srv.request("GET", path + "/fg")[0] == 404, "foreground deletion to finish")
    assert pod_count("fg") == 0
    st, _, obj = srv.request("DELETE", path + "/orphan?propagationPolicy=Orphan")
    assert st == 200 and obj["kind"] == "Status" and obj["status"] == "Success"
    assert srv.request("GET", path + "/orphan")[0] == 404 and pod_count("orphan") == 2


def test_kubectl_patch_types(srv):
    ns = new_namespace(srv, "kc-patch")
    srv.kubectl("apply", "--server-side", "-f", "-", input=deployment("web", ns))
    srv.kubectl("patch", "deploy", "web", "-n", ns, "--type", "merge", "-p", '{"spec":{"replicas":1}}')
    srv.kubectl("patch", "deploy", "web", "-n", ns, "--type", "json",
                "-p", '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:2"}]')
    srv.kubectl("patch", "deploy", "web", "-n", ns, "-p",
                '{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox:1"}]}}}}')
    d = srv.kjson("get", "deploy", "web", "-n", ns)
    assert d["spec"]["replicas"] == 1
    cs = {c["name"]: c["image"] for c in d["spec"]["template"]["spec"]["containers"]}
    assert cs == {"app": "nginx:2", "side": "busybox:1"}  # strategic merge: containers merged by name


def test_leases(srv):
    ns = new_namespace(srv, "kc-lease")
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "leader", "namespace": ns},
             "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": "2024-01-01T00:00:00.000000Z",
                      "renewTime": "2024-01-01T00:00:00.000000Z", "leaseTransitions": 0}}
    srv.kubectl("create", "-f", "-", input=json.dumps(lease))
    out = srv.kubectl("get", "leases", "-n", ns).stdout
    assert out.splitlines()[1].split()[:2] == ["leader", "a"]
    got = srv.kjson("get", "lease", "leader", "-n", ns)
    assert got["spec"]["holderIdentity"] == "a"
    # Leader election: take over with the current resourceVersion; a stale one loses.
    path = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/leader"
    got["spec"].update(holderIdentity="b", leaseTransitions=1)
    st, _, b = srv.request("PUT", path, got)
    assert st == 200 and b["spec"]["holderIdentity"] == "b"
    got["spec"]["holderIdentity"] = "c"
    st, _, err = srv.request("PUT", path, got)
    assert st == 409 and err["reason"] == "Conflict"
    assert srv.kjson("get", "lease", "leader", "-n", ns)["spec"]["holderIdentity"] == "b"


def test_kubectl_retries_429_with_retry_after(srv):
    srv.control("POST", "faults", {"status": 429, "retry_after": 1, "count": 2, "path_regex": "^/api/v1/namespaces$"})
    start = time.monotonic()
    srv.kubectl("get", "namespaces")
    assert time.monotonic() - start >= 1.5  # two Retry-After: 1 waits
    reqs = [r for r in srv.control("GET", "requests") if r["path"] == "/api/v1/namespaces"]
    assert [r["status"] for r in reqs] == [429, 429, 200]


def test_wrong_token_is_unauthorized(srv, tmp_path):
    cfg = json.load(open(srv.kubeconfig))
    cfg["users"][0]["user"]["token"] = "wrong"
    bad = tmp_path / "kubeconfig"
    bad.write_text(json.dumps(cfg))
    p = subprocess.run([KUBECTL, "--kubeconfig", str(bad), "get", "ns"], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, HOME=str(tmp_path)))
    assert p.returncode != 0 and "provide credentials" in p.stderr
    st, _, obj = srv.request("GET", "/api/v1/namespaces", auth=False)
    assert st == 401 and obj["reason"] == "Unauthorized"


def test_plain_http_without_token_and_state_file(tmp_path):
    state = str(tmp_path / "state.json")
    s = Server(str(tmp_path), "--state-file", state)
    try:
        assert "default" in s.kubectl("get", "ns").stdout
        s.kubectl("create", "configmap", "keep", "--from-literal=k=v")
        rv = s.kjson("get", "cm", "keep")["metadata"]["resourceVersion"]
    finally:
        s.stop()  # asserts a clean exit on SIGTERM
    s = Server(str(tmp_path), "--state-file", state)
    try:
        cm = s.kjson("get", "cm", "keep")
        assert cm["data"] == {"k": "v"} and cm["metadata"]["resourceVersion"] == rv
        # the event history did not survive the restart, so resuming from before it is 410 Gone
        conn, resp = s.open_watch(f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={int(rv) - 1}")
        ev = json.loads(resp.readline())
        conn.close()
        assert ev["type"] == "ERROR" and ev["object"]["code"] == 410
    finally:
        s.stop()


# ----------------------------------------------------------------------------------------------
# Direct HTTP

CM = "/api/v1/namespaces/{ns}/configmaps"


def configmap(name, labels=None, data=None):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}},
            "data": data or {"k": "v"}}


@pytest.fixture(scope="module")
def hns(srv):
    srv.kubectl("create", "namespace", "http")
    return "http"


def test_status_objects_for_errors(srv, hns):
    st, _, obj = srv.request("GET", CM.format(ns=hns) + "/missing")
    assert st == 404 and obj == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                 "message": 'configmaps "missing" not found', "reason": "NotFound",
                                 "details": {"name": "missing", "kind": "configmaps"}, "code": 404}
    st, _, _ = srv.request("POST", CM.format(ns=hns), configmap("dup"))
    assert st == 201
    st, _, obj = srv.request("POST", CM.format(ns=hns), configmap("dup"))
    assert st == 409 and obj["reason"] == "AlreadyExists" and obj["details"]["name"] == "dup"
    st, _, obj = srv.request("POST", CM.format(ns="nope"), configmap("x"))
    assert st == 404 and obj["message"] == 'namespaces "nope" not found'
    bad = json.loads(deployment("Bad_Name", hns))
    st, _, obj = srv.request("POST", f"/apis/apps/v1/namespaces/{hns}/deployments", bad)
    assert st == 422 and obj["reason"] == "Invalid" and obj["details"]["causes"][0]["field"] == "metadata.name"


def test_stale_resource_version_conflicts(srv, hns):
    st, _, cm = srv.request("POST", CM.format(ns=hns), configmap("rv"))
    assert st == 201
    stale = json.loads(json.dumps(cm))
    cm["data"] = {"k": "2"}
    st, _, cm2 = srv.request("PUT", CM.format(ns=hns) + "/rv", cm)
    assert st == 200 and int(cm2["metadata"]["resourceVersion"]) > int(cm["metadata"]["resourceVersion"])
    stale["data"] = {"k": "3"}
    st, _, obj = srv.request("PUT", CM.format(ns=hns) + "/rv", stale)
    assert st == 409 and obj["reason"] == "Conflict" and "has been modified" in obj["message"]
    # a merge patch carrying a stale resourceVersion is a precondition and fails the same way
    st, _, obj = srv.request("PATCH", CM.format(ns=hns) + "/rv",
                             {"metadata": {"resourceVersion": stale["metadata"]["resourceVersion"]}, "data": {"k": "4"}},
                             ctype="application/merge-patch+json")
    assert st == 409


def test_generation_and_no_op_writes(srv, hns):
    path = f"/apis/apps/v1/namespaces/{hns}/deployments"
    st, _, d = srv.request("POST", path, json.loads(deployment("gen", hns)))
    assert st == 201 and d["metadata"]["generation"] == 1
    st, _, same = srv.request("PATCH", path + "/gen", {"metadata": {"labels": {"app": "gen"}}},
                              ctype="application/merge-patch+json")
    assert same["metadata"]["resourceVersion"] == d["metadata"]["resourceVersion"]  # nothing changed
    st, _, lab = srv.request("PATCH", path + "/gen", {"metadata": {"labels": {"x": "y"}}},
                             ctype="application/merge-patch+json")
    assert lab["metadata"]["generation"] == 1  # metadata changes do not bump generation
    st, _, spec = srv.request("PATCH", path + "/gen", {"spec": {"replicas": 7}}, ctype="application/merge-patch+json")
    assert spec["metadata"]["generation"] == 2
    d = wait_until(5, lambda: (lambda o: o if o.get("status", {}).get("observedGeneration") == 2 else None)(
        srv.request("GET", path + "/gen")[2]), "observedGeneration 2")
    assert d["status"]["readyReplicas"] == 7 and d["status"]["updatedReplicas"] == 7
    # status written through the main resource is ignored; through /status it sticks
    st, _, d2 = srv.request("PATCH", path + "/gen", {"status": {"replicas": 99}}, ctype="application/merge-patch+json")
    assert d2["status"]["replicas"] == 7
    st, _, d3 = srv.request("PATCH", path + "/gen/status", {"status": {"replicas": 99}},
                            ctype="application/merge-patch+json")
    assert st == 200 and d3["status"]["replicas"] == 99 and d3["metadata"]["generation"] == 2
    st, _, scale = srv.request("GET", path + "/gen/scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 7 and scale["status"]["selector"] == "app=gen"


def test_dry_run_does_not_persist(srv, hns):
    base = CM.format(ns=hns)
    st, _, obj = srv.request("POST", base + "?dryRun=All", configmap("dry"))
    assert st == 201 and obj["metadata"]["name"] == "dry"
    assert srv.request("GET", base + "/dry")[0] == 404
    apply_body = json.dumps(configmap("dry-apply")).encode()
    st, _, obj = srv.request("PATCH", base + "/dry-apply?fieldManager=t&dryRun=All", apply_body,
                             ctype="application/apply-patch+yaml")
    assert st == 201 and obj["metadata"]["managedFields"][0]["manager"] == "t"
    assert srv.request("GET", base + "/dry-apply")[0] == 404
    srv.request("POST", base, configmap("dry2"))
    rv = srv.control("GET", "info")["resourceVersion"]
    st, _, obj = srv.request("PUT", base + "/dry2?dryRun=All", configmap("dry2", data={"k": "changed"}))
    assert st == 200 and obj["data"] == {"k": "changed"}
    st, _, _ = srv.request("DELETE", base + "/dry2?dryRun=All")
    assert st == 200
    assert srv.request("GET", base + "/dry2")[2]["data"] == {"k": "v"}
    assert srv.control("GET", "info")["resourceVersion"] == rv


def test_apply_yaml_body_and_required_field_manager(srv, hns):
    base = CM.format(ns=hns)
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  a: '1'\n"
    st, _, obj = srv.request("PATCH", base + "/y", body, ctype="application/apply-patch+yaml")
    assert st == 400 and "fieldManager" in obj["message"]
    st, _, obj = srv.request("PATCH", base + "/y?fieldManager=m1", body, ctype="application/apply-patch+yaml")
    assert st == 201 and obj["data"] == {"a": "1"}
    st, _, obj = srv.request("PATCH", base + "/y?fieldManager=m2", body.replace(b"'1'", b"'2'"),
                             ctype="application/apply-patch+yaml")
    assert st == 409 and obj["reason"] == "Conflict"
    assert obj["details"]["causes"] == [{"type": "FieldManagerConflict", "message": 'conflict with "m1" using v1',
                                         "field": ".data.a"}]
    st, _, obj = srv.request("PATCH", base + "/y?fieldManager=m2&force=true", body.replace(b"'1'", b"'2'"),
                             ctype="application/apply-patch+yaml")
    assert st == 200 and obj["data"] == {"a": "2"}


def test_label_and_field_selectors(srv, hns):
    base = CM.format(ns=hns)
    for name, labels in [("s1", {"a": "b", "e": "x", "g": "1"}), ("s2", {"a": "b", "c": "d", "e": "x", "g": "1"}),
                         ("s3", {"a": "b", "e": "y", "f": "1", "g": "1"}), ("s4", {"a": "b", "e": "z", "g": "1"}),
                         ("s5", {"a": "b", "e": "y", "g": "1", "c": "q"})]:
        assert srv.request("POST", base, configmap(name, labels))[0] == 201

    def names(query):
        st, _, lst = srv.request("GET", base + "?" + urllib.parse.urlencode(query))
        assert st == 200, lst
        return [i["metadata"]["name"] for i in lst["items"]]

    assert names({"labelSelector": "a=b,c!=d,e in (x,y),!f,g"}) == ["s1", "s5"]
    assert names({"labelSelector": "e notin (x,y),a==b"}) == ["s4"]
    assert names({"fieldSelector": "metadata.name=s3"}) == ["s3"]
    assert names({"fieldSelector": "metadata.name!=s3", "labelSelector": "e=y"}) == ["s5"]
    st, _, obj = srv.request("GET", base + "?fieldSelector=spec.bogus%3Dx")
    assert st == 400
    # paging
    st, _, page = srv.request("GET", base + "?labelSelector=g&limit=2")
    assert [i["metadata"]["name"] for i in page["items"]] == ["s1", "s2"] and page["metadata"]["remainingItemCount"] == 3
    st, _, page2 = srv.request("GET", base + "?labelSelector=g&limit=2&continue=" + page["metadata"]["continue"])
    assert [i["metadata"]["name"] for i in page2["items"]] == ["s3", "s4"]


def read_events(resp, n, timeout=10):
    """Reads n watch events (one JSON object per line) from a streaming response."""
    out = []
    end = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        line = resp.readline()
        if not line:
            break
        out.append(json.loads(line))
    return out


def test_watch_events_selectors_and_bookmarks(srv, hns):
    base = CM.format(ns=hns)
    st, _, lst = srv.request("GET", base)
    rv = lst["metadata"]["resourceVersion"]
    conn, resp = srv.open_watch(base + f"?watch=1&resourceVersion={rv}&labelSelector=w%3D1&allowWatchBookmarks=true"
                                       "&timeoutSeconds=20")
    try:
        assert resp.status == 200 and resp.headers["Transfer-Encoding"] == "chunked"
        srv.request("POST", base, configmap("w1", {"w": "1"}))
        srv.request("POST", base, configmap("w2", {"w": "2"}))  # filtered out
        srv.request("PATCH", base + "/w1", {"data": {"k": "2"}}, ctype="application/merge-patch+json")
        srv.request("PATCH", base + "/w2", {"metadata": {"labels": {"w": "1"}}}, ctype="application/merge-patch+json")
        srv.request("PATCH", base + "/w1", {"metadata": {"labels": {"w": "0"}}}, ctype="application/merge-patch+json")
        srv.request("DELETE", base + "/w2")
        events = []
        wait_until(15, lambda: events.extend(read_events(resp, 1)) or
                   [e["type"] for e in events if e["type"] != "BOOKMARK"] ==
                   ["ADDED", "MODIFIED", "ADDED", "DELETED", "DELETED"] and events[-1]["type"] == "BOOKMARK" or None,
                   "the filtered event sequence and a bookmark")
        real = [e for e in events if e["type"] != "BOOKMARK"]
        assert [e["object"]["metadata"]["name"] for e in real] == ["w1", "w1", "w2", "w1", "w2"]
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert rvs == sorted(rvs)
        assert events[-1]["object"]["metadata"]["resourceVersion"]
    finally:
        conn.close()
    # timeoutSeconds ends the stream cleanly
    conn, resp = srv.open_watch(base + f"?watch=1&resourceVersion={srv.control('GET', 'info')['resourceVersion']}"
                                       "&timeoutSeconds=1")
    start = time.monotonic()
    assert resp.read() == b""
    assert time.monotonic() - start < 5
    conn.close()


def test_watch_410_gone_after_compaction(srv, hns):
    base = CM.format(ns=hns)
    st, _, lst = srv.request("GET", base)
    old_rv = lst["metadata"]["resourceVersion"]
    srv.request("POST", base, configmap("gone"))
    srv.control("POST", "compact")
    conn, resp = srv.open_watch(base + f"?watch=1&resourceVersion={old_rv}")
    try:
        ev = read_events(resp, 1)[0]
    finally:
        conn.close()
    assert ev["type"] == "ERROR"
    assert ev["object"]["code"] == 410 and ev["object"]["reason"] == "Expired"
    assert "too old resource version" in ev["object"]["message"]
    # a relist gives a resourceVersion to watch from again
    rv = srv.request("GET", base)[2]["metadata"]["resourceVersion"]
    conn, resp = srv.open_watch(base + f"?watch=1&resourceVersion={rv}&timeoutSeconds=5")
    try:
        srv.request("POST", base, configmap("after-relist"))
        ev = read_events(resp, 1)[0]
        assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "after-relist"
    finally:
        conn.close()


def test_fault_503_counted(srv, hns):
    srv.control("POST", "faults", {"status": 503, "count": 3, "path_regex": "/configmaps"})
    codes = [srv.request("GET", CM.format(ns=hns))[0] for _ in range(4)]
    assert codes == [503, 503, 503, 200]
    st, _, obj = srv.request("GET", "/api/v1/namespaces")  # unmatched path untouched
    assert st == 200


def test_fault_429_retry_after(srv, hns):
    srv.control("POST", "faults", {"status": 429, "retry_after": 2, "count": 1, "method": "POST"})
    st, headers, obj = srv.request("POST", CM.format(ns=hns), configmap("limited"))
    assert st == 429 and headers["Retry-After"] == "2"
    assert obj["reason"] == "TooManyRequests" and obj["details"]["retryAfterSeconds"] == 2
    assert srv.request("POST", CM.format(ns=hns), configmap("limited"))[0] == 201
    reqs = srv.control("GET", "requests")
    assert [r["status"] for r in reqs if r["method"] == "POST"] == [429, 201]


def test_fault_latency(srv, hns):
    srv.control("POST", "faults", {"latency_ms": 500, "count": 2})
    start = time.monotonic()
    assert srv.request("GET", CM.format(ns=hns))[0] == 200
    assert srv.request("GET", CM.format(ns=hns))[0] == 200
    assert time.monotonic() - start >= 1.0
    start = time.monotonic()
    srv.request("GET", CM.format(ns=hns))
    assert time.monotonic() - start < 0.5


def test_fault_dropped_watch(srv, hns):
    base = CM.format(ns=hns)
    for i in range(3):
        srv.request("POST", base, configmap(f"drop{i}", {"drop": "yes"}))
    srv.control("POST", "faults", {"drop_watch_after_events": 2, "count": 1})
    conn, resp = srv.open_watch(base + "?watch=1&labelSelector=drop%3Dyes")
    try:
        got = read_events(resp, 2)
        assert [e["type"] for e in got] == ["ADDED", "ADDED"]
        with pytest.raises((http.client.IncompleteRead, ConnectionError, ssl.SSLError, ValueError)):
            rest = resp.read()
            if not rest:  # a clean end of stream would not be a dropped connection
                raise AssertionError("stream ended cleanly")
            raise AssertionError(f"unexpected data after the drop: {rest!r}")
    finally:
        conn.close()
    # the fault was used up: the next watch sees all three
    conn, resp = srv.open_watch(base + "?watch=1&labelSelector=drop%3Dyes&timeoutSeconds=2")
    try:
        assert len(read_events(resp, 3)) == 3
    finally:
        conn.close()


def test_request_log_records_applies(srv):
    srv.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(configmap("logged") | {
        "metadata": {"name": "logged", "namespace": "default"}}))
    reqs = srv.control("GET", "requests")
    applies = [r for r in reqs if r["method"] == "PATCH" and r["content_type"] == "application/apply-patch+yaml"]
    assert len(applies) == 1
    assert "fieldManager=kubectl" in applies[0]["query"] and applies[0]["path"].endswith("/configmaps/logged")


def test_counters_by_verb_and_resource(srv, hns):
    srv.control("DELETE", "counters")
    base = CM.format(ns=hns)
    srv.request("POST", base, configmap("counted"))
    srv.request("GET", base + "/counted")
    srv.request("GET", base)
    srv.request("PUT", base + "/counted", json.loads(json.dumps(configmap("counted"))) | {
        "metadata": {"name": "counted", "namespace": hns}})
    srv.request("PATCH", base + "/counted", {"data": {"k": "3"}}, ctype="application/merge-patch+json")
    srv.request("PATCH", base + "/counted?fieldManager=t", {"apiVersion": "v1", "kind": "ConfigMap",
                                                            "metadata": {"name": "counted"}, "data": {"k": "4"}},
                ctype="application/apply-patch+yaml")
    conn, resp = srv.open_watch(base + "?watch=1&timeoutSeconds=1")
    resp.read()
    conn.close()
    srv.request("DELETE", base + "/counted")
    srv.kubectl("get", "configmaps", "-n", hns)  # discovery, then a list
    c = srv.control("GET", "counters")
    cms = c["byResource"]["configmaps"]
    assert cms["create"] == 1 and cms["get"] == 1 and cms["update"] == 1 and cms["patch"] == 1
    assert cms["apply"] == 1 and cms["watch"] == 1 and cms["delete"] == 1 and cms["list"] == 2
    assert c["byVerb"]["discovery"] >= 1
    assert c["total"] == sum(c["byVerb"].values())
    # The request log is bounded (20,000 entries); the counters are not, and reset on their own.
    srv.control("DELETE", "counters")
    assert srv.control("GET", "counters")["total"] == 0


def test_fault_stalled_watch_sends_nothing_and_never_ends(srv, hns):
    base = CM.format(ns=hns)
    rv = srv.request("GET", base)[2]["metadata"]["resourceVersion"]
    srv.control("POST", "faults", {"stall_watch": True, "count": 1})
    conn, resp = srv.open_watch(base + f"?watch=1&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=1")
    try:
        assert resp.status == 200
        srv.request("POST", base, configmap("unseen"))
        conn.sock.settimeout(2.5)  # well past timeoutSeconds and the 300 ms bookmark interval
        with pytest.raises((TimeoutError, OSError)):
            data = resp.read1(1)
            raise AssertionError(f"a stalled watch delivered {data!r}")
    finally:
        conn.close()
    # Used up: the next watch delivers the event it missed.
    conn, resp = srv.open_watch(base + f"?watch=1&resourceVersion={rv}&timeoutSeconds=5")
    try:
        ev = read_events(resp, 1)[0]
        assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "unseen"
    finally:
        conn.close()


def test_fault_watch_dropped_after_time(srv, hns):
    base = CM.format(ns=hns)
    rv = srv.request("GET", base)[2]["metadata"]["resourceVersion"]
    srv.control("POST", "faults", {"drop_watch_after_ms": 400, "count": 1})
    conn, resp = srv.open_watch(base + f"?watch=1&resourceVersion={rv}&timeoutSeconds=30")
    start = time.monotonic()
    try:
        with pytest.raises((http.client.IncompleteRead, ConnectionError, ssl.SSLError, ValueError)):
            rest = resp.read()
            if not rest:
                raise AssertionError("stream ended cleanly")
    finally:
        conn.close()
    assert 0.3 < time.monotonic() - start < 5


def test_pod_ip_option(tmp_path):
    s = Server(str(tmp_path), "--ready-delay-ms", "50", "--pod-ip", "127.0.0.1")
    try:
        s.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "p"}})
        s.request("POST", "/apis/apps/v1/namespaces/p/deployments", json.loads(deployment("web", "p", replicas=2)))
        pods = wait_until(10, lambda: s.request("GET", "/api/v1/namespaces/p/pods")[2]["items"] or None, "pods")
        assert [p["status"]["podIP"] for p in pods] == ["127.0.0.1", "127.0.0.1"]
    finally:
        s.stop()
