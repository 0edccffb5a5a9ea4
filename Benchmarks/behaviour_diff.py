#!/usr/bin/env python3
"""Differential check for performance work: two mcpfleet binaries must behave identically.

    python3 Benchmarks/behaviour_diff.py OLD_BIN NEW_BIN [--mutants N] [--seed S] [--keep DIR]

For a set of base catalogs (Manifests/, the plan fixtures, the invalid corpus, a small generated
catalog) and N randomly mutated copies of them (lines deleted, duplicated, re-indented; scalar values
swapped for odd ones or for values of the same key elsewhere in the catalog, which makes duplicate
names, port collisions and quota overruns likely), it runs both binaries and compares, byte for byte:

- `validate DIR -o json` (every diagnostic: code, message, hint, position) and its exit status;
- for catalogs that validate, `plan DIR --env E --live L -o json` (and `-o text`) for every environment E, against an
  empty live state and against a converged snapshot (built from the old binary's desired state) with
  random drift (changed fields and revisions, replica counts, pins, pauses, failed revisions, extra
  servers and tenants).

Exits 1 and prints the first differences when any output differs. Needs only the standard library.
"""

import argparse
import copy
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ODD_VALUES = ["", "~", "null", "latest", "1.0", "-1", "0", "abc", "99999", "65536", "yes", "x/y", "${FOO}",
              "[a, b]", "{}", "{a: 1}", '"quoted"', "1.x", "^1.2", "Bad_Name", "250m", "1Gi", "25%", "0s",
              "5m", "untilPromoted", "canary", "recreate", "stdio", "sse", "prometheus", "true", "false",
              "/abs/path", "../escape", "sha256:00", "TOKEN", "\"a\\nb\"", "-", "team-0000", "dev", "local"]


THREADS = {}  # binary path -> MCPFLEET_THREADS for its runs (--old-threads / --new-threads)


def run(cmd):
    env = dict(os.environ)
    if cmd[0] in THREADS:
        env["MCPFLEET_THREADS"] = str(THREADS[cmd[0]])
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return p.returncode, p.stdout


def mutate(lines, rng, pool):
    """One random edit of a YAML file's lines."""
    if not lines:
        return lines
    i = rng.randrange(len(lines))
    op = rng.random()
    line = lines[i]
    m = re.match(r"^(\s*-?\s*)([A-Za-z_][\w.-]*)(\s*:\s*)(.*)$", line)
    if op < 0.12:
        del lines[i]
    elif op < 0.2:
        lines.insert(i, line)
    elif op < 0.27:
        lines[i] = "  " + line
    elif op < 0.6 and m and m.group(4):
        key = m.group(2)
        choices = pool.get(key, [])
        value = rng.choice(choices) if choices and rng.random() < 0.6 else rng.choice(ODD_VALUES)
        lines[i] = m.group(1) + key + m.group(3) + value
    elif op < 0.75 and m:
        key = m.group(2)
        typo = key[:-1] if len(key) > 2 and rng.random() < 0.5 else key + rng.choice(["s", "x", "_"])
        lines[i] = m.group(1) + typo + m.group(3) + m.group(4)
    elif op < 0.85:
        # Move a line elsewhere (reorders keys, breaks structure now and then).
        del lines[i]
        lines.insert(rng.randrange(len(lines) + 1), line)
    else:
        # Append a copy of a whole document (duplicate names) when the file has several.
        text = "\n".join(lines)
        docs = [d for d in re.split(r"^---\s*$", text, flags=re.M) if "kind:" in d]
        if docs:
            lines += ["---"] + rng.choice(docs).strip("\n").split("\n")
    return lines


def value_pool(directory):
    pool = {}
    for dirpath, _, files in os.walk(directory):
        for f in files:
            if not f.endswith((".yaml", ".yml")):
                continue
            with open(os.path.join(dirpath, f), encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    m = re.match(r"^\s*-?\s*([A-Za-z_][\w.-]*)\s*:\s*(\S.*)$", line.rstrip("\n"))
                    if m:
                        pool.setdefault(m.group(1), set()).add(m.group(2))
    return {k: sorted(v) for k, v in pool.items()}


def yaml_files(directory):
    out = []
    for dirpath, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        out += [os.path.join(dirpath, f) for f in files if f.endswith((".yaml", ".yml"))]
    return sorted(out)


def drifted_live(desired, rng):
    """A converged snapshot of a desired state, with random drift."""
    servers = []
    for d in desired.get("servers", []):
        fields = copy.deepcopy(d.get("fields", []))
        revision = d["revision"]
        replicas = d["replicas"]
        s = {"name": d["name"], "tenant": d["tenant"], "revisions": [], "lastGoodRevision": revision}
        r = rng.random()
        if r < 0.15 and fields:
            f = rng.choice(fields)
            f["canonical"] = f["canonical"] + "-old"
            f["display"] = f["display"] + "-old"
            revision = "0000" + revision[4:]
        elif r < 0.2 and fields:
            fields.pop(rng.randrange(len(fields)))
            revision = "1111" + revision[4:]
        elif r < 0.25:
            replicas = max(0, replicas + rng.choice([-1, 1, 2]))
        s["revisions"].append({"revision": revision, "version": d.get("version"), "replicas": replicas, "ready": replicas, "fields": fields})
        r = rng.random()
        if r < 0.04:
            s["pinnedRevision"] = revision
        elif r < 0.08:
            s["paused"] = True
        elif r < 0.12:
            s["failedRevisions"] = [d["revision"]]
        elif r < 0.16:
            s["targetRevision"] = d["revision"]
            s["phase"] = "progressing"
            s["revisions"].append({"revision": d["revision"], "replicas": 1, "ready": 0})
        if rng.random() > 0.05:
            servers.append(s)
    if rng.random() < 0.5:
        servers.append({"name": "legacy-extra", "tenant": "nobody", "revisions": [{"revision": "abcdefabcdef", "replicas": 1, "ready": 1}]})
        servers.append({"name": "handmade", "managed": False, "revisions": [{"revision": "abcdefabcde0", "replicas": 1, "ready": 1}]})
    tenants = []
    for t in desired.get("tenants", []):
        fields = copy.deepcopy(t.get("fields", []))
        if fields and rng.random() < 0.2:
            fields[0]["canonical"] += "x"
        tenants.append({"name": t["name"], "fields": fields})
    if rng.random() < 0.3:
        tenants.append({"name": "gone-tenant"})
    return {"environment": desired.get("environment"), "driver": desired.get("driver"), "servers": servers, "tenants": tenants}


def compare(old, new, directory, work, rng, report, formats):
    """Runs both binaries on one catalog; returns the number of comparisons made."""
    n = 0
    a = run([old, "validate", directory, "-o", "json"])
    b = run([new, "validate", directory, "-o", "json"])
    n += 1
    if a != b:
        report.append((directory, "validate", a, b))
        return n
    if a[0] != 0:
        return n
    # Environment names: from an empty-live plan of each Environment document the catalog defines.
    names = set()
    for f in yaml_files(directory):
        with open(f, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        for doc in re.split(r"^---\s*$", text, flags=re.M):
            if re.search(r"^kind:\s*Environment\s*$", doc, flags=re.M):
                m = re.search(r"^metadata:\s*\n(?:\s+.*\n)*?\s+name:\s*(\S+)", doc, flags=re.M)
                if m:
                    names.add(m.group(1).strip("\"'"))
    envs = sorted(names)
    empty = os.path.join(work, "empty-live.json")
    with open(empty, "w") as fh:
        json.dump({"servers": []}, fh)
    for env in envs:
        a = run([old, "plan", directory, "--env", env, "--live", empty, "-o", "json"])
        b = run([new, "plan", directory, "--env", env, "--live", empty, "-o", "json"])
        n += 1
        if a != b:
            report.append((directory, f"plan --env {env} (empty live)", a, b))
            continue
        try:
            desired = json.loads(a[1]).get("desired", {})
        except json.JSONDecodeError:
            continue
        live = os.path.join(work, "live.json")
        with open(live, "w") as fh:
            json.dump(drifted_live(desired, rng), fh)
        for fmt in formats:
            a = run([old, "plan", directory, "--env", env, "--live", live, "-o", fmt, "--no-color"])
            b = run([new, "plan", directory, "--env", env, "--live", live, "-o", fmt, "--no-color"])
            n += 1
            if a != b:
                report.append((directory, f"plan --env {env} (drifted live, {fmt})", a, b))
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--mutants", type=int, default=300)
    ap.add_argument("--old-threads", type=int, help="MCPFLEET_THREADS for OLD_BIN (e.g. 1: sequential)")
    ap.add_argument("--new-threads", type=int, help="MCPFLEET_THREADS for NEW_BIN")
    ap.add_argument("--large", type=int, default=1500,
                    help="servers in the large generated catalog (big enough for the parallel paths; 0 = none)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", help="keep the work directory here")
    ap.add_argument("--plan-formats", default="json,text",
                    help="plan outputs to compare (json,text); drop text when the formatter itself changed in between")
    args = ap.parse_args()
    if args.old == args.new:
        # The same binary twice (e.g. sequential against parallel): runs are told apart by path.
        alias = os.path.join(tempfile.mkdtemp(prefix="mcpfleet-diff-bin-"), "mcpfleet-new")
        os.symlink(os.path.abspath(args.new), alias)
        args.new = alias
    if args.old_threads:
        THREADS[args.old] = args.old_threads
    if args.new_threads:
        THREADS[args.new] = args.new_threads
    rng = random.Random(args.seed)
    formats = [f for f in args.plan_formats.split(",") if f]
    work = args.keep or tempfile.mkdtemp(prefix="mcpfleet-diff-")
    os.makedirs(work, exist_ok=True)

    bases = [os.path.join(ROOT, "Manifests")]
    plan_root = os.path.join(ROOT, "Tests", "Fixtures", "plan")
    for case in sorted(os.listdir(plan_root)):
        for sub in ["manifests", "before"]:
            p = os.path.join(plan_root, case, sub)
            if os.path.isdir(p):
                bases.append(p)
    generated = os.path.join(work, "generated")
    subprocess.run([sys.executable, os.path.join(ROOT, "Benchmarks", "gen_catalog.py"), "120", generated, "--files", "3"],
                   check=True, capture_output=True)
    bases.append(generated)
    if args.large:
        # Large enough that loading, decoding and rendering split the work across threads.
        large = os.path.join(work, "generated-large")
        subprocess.run([sys.executable, os.path.join(ROOT, "Benchmarks", "gen_catalog.py"), str(args.large), large,
                        "--files", "24"], check=True, capture_output=True)
        bases.append(large)

    report = []
    count = 0
    for b in bases:
        count += compare(args.old, args.new, b, work, rng, report, formats)
    for f in sorted(os.listdir(os.path.join(ROOT, "Manifests", "invalid"))):
        if f.endswith(".yaml"):
            count += compare(args.old, args.new, os.path.join(ROOT, "Manifests", "invalid", f), work, rng, report, formats)

    pools = {b: value_pool(b) for b in bases}
    for i in range(args.mutants):
        base = rng.choice(bases)
        target = os.path.join(work, f"m{i}")
        shutil.rmtree(target, ignore_errors=True)
        # Manifests/ holds the invalid corpus too; leave it out of mutants.
        shutil.copytree(base, target, ignore=shutil.ignore_patterns("invalid"))
        files = yaml_files(target)
        for _ in range(rng.choice([1, 1, 2, 3])):
            f = rng.choice(files)
            with open(f, encoding="utf-8", errors="replace") as fh:
                lines = fh.read().split("\n")
            with open(f, "w", encoding="utf-8") as fh:
                fh.write("\n".join(mutate(lines, rng, pools[base])))
        count += compare(args.old, args.new, target, work, rng, report, formats)
        if not args.keep:
            shutil.rmtree(target, ignore_errors=True)
        if (i + 1) % 50 == 0:
            print(f"{i + 1} mutants, {count} comparisons, {len(report)} differences", file=sys.stderr)

    print(f"{count} comparisons over {len(bases)} base catalogs, the invalid corpus and {args.mutants} mutants: "
          f"{len(report)} differences")
    for directory, what, a, b in report[:5]:
        print(f"--- {directory}: {what}\nold (exit {a[0]}):\n{a[1][:3000]}\nnew (exit {b[0]}):\n{b[1][:3000]}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if report else 0)


if __name__ == "__main__":
    main()
