#!/usr/bin/env python3
"""Regenerate k8s_schemas.json from the official schemas shipped by kubernetes-validate.

The test API server needs real field lists, list types and merge keys (for strict field
validation, server-side apply field sets, strategic merge patch and the OpenAPI v3 documents
kubectl reads), but must run on the standard library alone, so the closure of the definitions
for the modelled kinds is extracted once, descriptions stripped, and committed.

    python3 Tests/KubeAPIServer/gen_schemas.py [--k8s v1.32.0]
"""
import argparse
import json
import os
import sys

ROOTS = [
    "io.k8s.api.core.v1.Namespace", "io.k8s.api.core.v1.Service", "io.k8s.api.core.v1.ConfigMap",
    "io.k8s.api.core.v1.Secret", "io.k8s.api.core.v1.ServiceAccount", "io.k8s.api.core.v1.ResourceQuota",
    "io.k8s.api.core.v1.LimitRange", "io.k8s.api.core.v1.Pod", "io.k8s.api.apps.v1.Deployment",
    "io.k8s.api.networking.v1.NetworkPolicy", "io.k8s.api.coordination.v1.Lease",
    "io.k8s.api.autoscaling.v1.Scale", "io.k8s.api.policy.v1.PodDisruptionBudget",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k8s", default="v1.32.0")
    args = ap.parse_args()
    import kubernetes_validate  # only the generator needs it
    base = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
    src = os.path.join(base, args.k8s + "-local-strict", "_definitions.json")
    with open(src) as f:
        defs = json.load(f)["$defs"]

    def norm(x):
        if isinstance(x, dict):
            out = {}
            for k, v in x.items():
                if k == "description":
                    continue
                if k == "$ref":
                    out[k] = v.split("/")[-1]
                elif k == "type" and isinstance(v, list):
                    t = [t for t in v if t != "null"]
                    out[k] = t[0] if len(t) == 1 else t
                else:
                    out[k] = norm(v)
            return out
        if isinstance(x, list):
            return [norm(v) for v in x]
        return x

    seen = {}

    def visit(name):
        if name in seen:
            return
        seen[name] = norm(defs[name])
        stack = [seen[name]]
        while stack:
            x = stack.pop()
            if isinstance(x, dict):
                if "$ref" in x:
                    visit(x["$ref"])
                stack.extend(x.values())
            elif isinstance(x, list):
                stack.extend(x)

    for r in ROOTS:
        visit(r)
    out = {"kubernetes": args.k8s, "source": "kubernetes-validate " + args.k8s + "-local-strict",
           "definitions": dict(sorted(seen.items()))}
    dst = os.path.join(os.path.dirname(os.path.abspath(__file__)), "k8s_schemas.json")
    with open(dst, "w") as f:
        json.dump(out, f, separators=(",", ":"), sort_keys=False)
        f.write("\n")
    print(f"wrote {len(seen)} definitions to {dst}", file=sys.stderr)


if __name__ == "__main__":
    main()
