#!/usr/bin/env python3
"""Generate a realistic, valid mcpfleet catalog of N servers for benchmarks.

    python3 Benchmarks/gen_catalog.py N OUTDIR [--files K] [--seed S]

Writes into OUTDIR (created; existing *.yaml under it are removed first):
  tenants.yaml            one Tenant per ~50 servers, with quotas that hold (with headroom)
  slo.yaml                three SLOs
  policy.yaml             one Policy without signature requirements
  environments/local.yaml one `local` Environment whose portRange holds every port block
  servers/servers-NNNN.yaml  the N servers, multi-document, spread over K files
                          (default: ceil(N / 100) files)

Servers look like the example catalog in Manifests/ (env vars with values and secretRefs, resources,
health, rolling rollout, SLO) but carry no supplyChain evidence. Ports never collide: a server's
block is [port, port + replicas + 1) (rolling, maxSurge 1), packed from 20000 upwards; about one
server in ten uses stdio (its block is where the local driver's stdio bridge listens); if the 16-bit
port space runs out, generation fails.
Output is deterministic for a given N, K and seed. Needs only the Python standard library.
"""

import argparse
import hashlib
import math
import os
import random
import sys

API = "mcpfleet.io/v1alpha1"
PORT_START = 20000
PORT_END = 65535
SERVERS_PER_TENANT = 50
TOOLS = ["search", "fetch", "read_file", "write_file", "list_issues", "create_issue", "query", "summarize",
         "translate", "get_time", "convert_time", "run_sql", "list_tables", "embed", "rank"]
ADJECTIVES = ["github", "jira", "slack", "postgres", "time", "files", "search", "docs", "calendar", "mail",
              "billing", "metrics", "tickets", "wiki", "maps", "weather", "crm", "storage", "vault", "build"]
SLOS = [
    ("interactive", '"99.5%"', "400ms"),
    ("batch", '"99%"', "5s"),
    ("critical", '"99.9%"', "200ms"),
]


def header(kind, name, comment=None):
    lines = []
    if comment:
        lines.append(f"# {comment}")
    lines += [f"apiVersion: {API}", f"kind: {kind}", "metadata:", f"  name: {name}"]
    return lines


def server_doc(i, s):
    name = s["name"]
    lines = header("Server", name)
    lines += [
        "  labels:",
        "    app.kubernetes.io/part-of: mcp-catalog",
        f"    team: {s['tenant']}",
        f"    tier: {s['tier']}",
        "  annotations:",
        f"    owner: {s['tenant']}@example.com",
        f'    runbook: "https://runbooks.example.com/mcp/{name}"',
        "spec:",
        f"  description: {s['family'].capitalize()} tools for the {s['tenant']} tenant (instance {i}).",
        f'  version: "{s["version"]}"',
        f"  tenant: {s['tenant']}",
        "  artifact:",
    ]
    if s["stdio"]:
        lines.append(f"    command: [/opt/mcp/bin/{s['family']}-server, --stdio, --profile, {name}]")
    else:
        lines += [
            "    command:",
            f"      - /opt/mcp/bin/{s['family']}-server",
            "      - --listen",
            '      - "127.0.0.1:${PORT}"',
            "      - --replica",
            '      - "${REPLICA}"',
            "      - --profile",
            f"      - {name}",
        ]
    lines += [
        f"    workingDirectory: /var/lib/mcp/{name}",
        f"    digest: sha256:{s['digest']}",
        "  transport:",
    ]
    if s["stdio"]:
        lines += ["    type: stdio", f"    port: {s['port']}"]
    else:
        lines += ["    type: streamable-http", f"    port: {s['port']}", "    path: /mcp"]
    lines += [
        "  env:",
        "    - name: LOG_LEVEL",
        f"      value: {s['log_level']}",
        "    - name: UPSTREAM_URL",
        f'      value: "https://{s["family"]}.internal.example.com/api/v2"',
        "      description: Base URL of the upstream API.",
        "    - name: API_TOKEN",
        "      isSecret: true",
        "      secretRef:",
        f"        name: {name}",
        "        key: api-token",
        "    - name: CACHE_DIR",
        f"      value: /var/cache/mcp/{name}",
    ]
    if s["extra_secret"]:
        lines += [
            "    - name: DATABASE_PASSWORD",
            "      isSecret: true",
            f"      secretRef: {{name: {s['tenant']}-db, key: password}}",
        ]
    lines += [
        f"  replicas: {s['replicas']}",
        "  resources:",
        f"    cpu: {s['cpu']}m",
        f"    memory: {s['memory']}Mi",
        "  health:",
    ]
    if not s["stdio"] and s["probe"] == "http":
        lines += ["    probe: http", "    path: /healthz"]
    else:
        lines += ["    probe: mcp", f"    requireTools: [{', '.join(s['tools'])}]"]
    lines += [
        "    interval: 10s",
        "    timeout: 2s",
        "    failureThreshold: 3",
        "  rollout:",
        "    strategy: rolling",
        "    maxSurge: 1",
        "    maxUnavailable: 0",
        "    autoRollback: true",
        "    progressDeadline: 10m",
        f"  slo: {s['slo']}",
        "  environments: [local]",
    ]
    return "\n".join(lines) + "\n"


def tenant_doc(t):
    lines = header("Tenant", t["name"])
    lines += [
        "  labels:",
        f"    team: {t['name']}",
        "spec:",
        f"  displayName: Team {t['index']}",
        "  isolation: strict",
        f"  namespace: mcp-{t['name']}",
        "  quota:",
        f"    cpu: {t['cpu']}m",
        f"    memory: {t['memory']}Mi",
        f"    maxServers: {t['servers']}",
        f"    maxReplicas: {t['replicas']}",
        f"    tasks: {max(1, t['replicas'] * 64)}",
    ]
    return "\n".join(lines) + "\n"


def slo_doc(name, rate, latency):
    lines = header("SLO", name)
    lines += [
        "spec:",
        f"  successRate: {rate}",
        f"  latencyP95: {latency}",
        "  analysis:",
        "    provider: probe",
        "    interval: 30s",
        "    count: 5",
        "    failureLimit: 1",
    ]
    return "\n".join(lines) + "\n"


def generate(n, outdir, files, seed):
    rng = random.Random(seed)
    tenant_count = max(1, math.ceil(n / SERVERS_PER_TENANT))
    tenants = [{"index": t, "name": f"team-{t:04d}", "servers": 0, "replicas": 0, "cpu": 0, "memory": 0}
               for t in range(tenant_count)]

    servers = []
    port = PORT_START
    for i in range(n):
        family = ADJECTIVES[i % len(ADJECTIVES)]
        replicas = rng.randint(1, 3)
        stdio = i % 10 == 9
        block = replicas + 1  # rolling, maxSurge 1: replicas + 1 slots
        if port + block - 1 > PORT_END:
            sys.exit(f"gen_catalog: the port space {PORT_START}-{PORT_END} is full at server {i}")
        s = {
            "name": f"{family}-{i:06d}",
            "family": family,
            "tenant": tenants[i % tenant_count]["name"],
            "tier": rng.choice(["gold", "silver", "bronze"]),
            "version": f"{rng.randint(0, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
            "digest": hashlib.sha256(f"{seed}-{i}".encode()).hexdigest(),
            "port": port,
            "stdio": stdio,
            "replicas": replicas,
            "cpu": rng.choice([50, 100, 250, 500]),
            "memory": rng.choice([64, 128, 256, 512]),
            "probe": rng.choice(["mcp", "mcp", "http"]),
            "tools": rng.sample(TOOLS, rng.randint(1, 3)),
            "log_level": rng.choice(["info", "info", "debug", "warn"]),
            "extra_secret": i % 3 == 0,
            "slo": SLOS[i % len(SLOS)][0],
        }
        port += block
        t = tenants[i % tenant_count]
        t["servers"] += 1
        t["replicas"] += replicas
        t["cpu"] += s["cpu"] * replicas
        t["memory"] += s["memory"] * replicas
        servers.append(s)

    # Quotas hold with ~25% headroom.
    for t in tenants:
        t["cpu"] = max(100, math.ceil(t["cpu"] * 1.25))
        t["memory"] = max(64, math.ceil(t["memory"] * 1.25))
        t["servers"] = t["servers"] + max(1, t["servers"] // 4)
        t["replicas"] = t["replicas"] + max(1, t["replicas"] // 4)

    os.makedirs(os.path.join(outdir, "servers"), exist_ok=True)
    os.makedirs(os.path.join(outdir, "environments"), exist_ok=True)
    for root, _dirs, names in os.walk(outdir):
        for name in names:
            if name.endswith((".yaml", ".yml")):
                os.remove(os.path.join(root, name))

    def write(rel, docs):
        with open(os.path.join(outdir, rel), "w", encoding="utf-8") as f:
            f.write("---\n".join(docs))

    schema = "# yaml-language-server: $schema=https://mcpfleet.io/schemas/v1alpha1/mcpfleet.schema.json\n"
    write("tenants.yaml", [schema + tenant_doc(t) for t in tenants])
    write("slo.yaml", [schema + slo_doc(*x) for x in SLOS])
    policy = header("Policy", "catalog", "Supply-chain rules without signature requirements (benchmark catalog).")
    policy += [
        "spec:",
        "  mode: warn",
        "  requireSignature: false",
        "  requireSBOM: false",
        "  maxSeverity: critical",
        "  allowedCommands:",
        '    - "/opt/mcp/bin/*"',
    ]
    write("policy.yaml", [schema + "\n".join(policy) + "\n"])
    last_port = max((s["port"] + s["replicas"] for s in servers), default=PORT_START)
    env = header("Environment", "local", "The embedded driver on this machine.")
    env += [
        "spec:",
        "  driver: local",
        "  description: Benchmark machine; processes supervised by mcpfleet itself.",
        f"  portRange: {PORT_START}-{max(last_port, PORT_START)}",
        "  stateDir: .mcpfleet/local",
        "  secretsDir: .mcpfleet/local/secrets",
        "  local:",
        "    logDir: .mcpfleet/local/logs",
        "    maxLogBytes: 10485760",
        "    restartBackoff: 2s",
    ]
    write(os.path.join("environments", "local.yaml"), [schema + "\n".join(env) + "\n"])

    files = max(1, min(files or math.ceil(n / 100), max(n, 1)))
    per_file = math.ceil(n / files) if n else 0
    for k in range(files):
        chunk = servers[k * per_file:(k + 1) * per_file]
        if not chunk and n:
            continue
        docs = [server_doc(k * per_file + j, s) for j, s in enumerate(chunk)]
        write(os.path.join("servers", f"servers-{k:04d}.yaml"), docs or ["# no servers\n"])
    return {"servers": n, "tenants": tenant_count, "files": files + 4,
            "stdio": sum(1 for s in servers if s["stdio"]), "last_port": last_port}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int, help="number of servers")
    ap.add_argument("outdir")
    ap.add_argument("--files", type=int, default=0, help="spread the servers over K files (default ceil(N/100))")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.n < 0:
        ap.error("N must be >= 0")
    info = generate(args.n, args.outdir, args.files, args.seed)
    print(f"{args.outdir}: {info['servers']} servers ({info['stdio']} stdio), {info['tenants']} tenants, "
          f"{info['files']} files, ports {PORT_START}-{info['last_port']}", file=sys.stderr)


if __name__ == "__main__":
    main()
