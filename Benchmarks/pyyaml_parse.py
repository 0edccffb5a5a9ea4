#!/usr/bin/env python3
"""Baseline: PyYAML's C loader merely parsing a manifest directory (no validation).

    python3 Benchmarks/pyyaml_parse.py DIR [--iterations N] [--warmup W]

Selects files as mcpfleet does (*.yaml / *.yml, recursively, hidden entries skipped), reads them
up front, then times `list(yaml.load_all(text, Loader=yaml.CSafeLoader))` over all of them.
Prints one JSON line like `mcpfleet bench`: median/min wall ms over the iterations, documents,
and peak RSS (ru_maxrss, KiB). Fails if PyYAML was built without libyaml (no CSafeLoader).
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import yaml


def manifest_files(root):
    if os.path.isfile(root):
        return [root]
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.endswith((".yaml", ".yml")):
                found.append(os.path.join(dirpath, name))
    return sorted(found, key=lambda p: os.path.relpath(p, root).encode())


def libyaml_version():
    try:
        from yaml import _yaml
        return _yaml.get_version_string()
    except (ImportError, AttributeError):
        return None


def main():
    ap = argparse.ArgumentParser(description="PyYAML CSafeLoader parse baseline")
    ap.add_argument("dir")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    if not hasattr(yaml, "CSafeLoader"):
        sys.exit("pyyaml_parse: PyYAML has no CSafeLoader (built without libyaml)")

    paths = manifest_files(args.dir)
    if not paths:
        sys.exit(f"pyyaml_parse: no manifest files under {args.dir}")
    texts = []
    for p in paths:
        with open(p, "rb") as f:
            texts.append(f.read())

    times = []
    documents = 0
    for i in range(args.warmup + args.iterations):
        t0 = time.perf_counter()
        docs = 0
        for text in texts:
            docs += len(list(yaml.load_all(text, Loader=yaml.CSafeLoader)))
        elapsed = (time.perf_counter() - t0) * 1000
        if i >= args.warmup:
            times.append(elapsed)
        documents = docs

    median = statistics.median(times)
    print(json.dumps({
        "bench": "pyyaml-csafeloader",
        "files": len(paths),
        "bytes": sum(len(t) for t in texts),
        "documents": documents,
        "iterations": args.iterations,
        "median_ms": round(median, 3),
        "min_ms": round(min(times), 3),
        "max_ms": round(max(times), 3),
        "documents_per_s": round(documents / (median / 1000), 1) if median > 0 else 0,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "pyyaml": yaml.__version__,
        "libyaml": libyaml_version(),
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
