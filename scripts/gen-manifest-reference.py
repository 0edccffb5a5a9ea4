#!/usr/bin/env python3
"""Generates docs/manifest-reference.md from the JSON Schemas in Schemas/.

    python3 scripts/gen-manifest-reference.py            # rewrite docs/manifest-reference.md
    python3 scripts/gen-manifest-reference.py --stdout   # print instead (used by Tests/schemas)
    python3 scripts/gen-manifest-reference.py --check    # exit 1 when the file is stale

Every property's `description` in the schemas is the text of the reference; edit the schemas, not
the generated file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "Schemas"
OUTPUT = ROOT / "docs" / "manifest-reference.md"
KINDS = [("Server", "server"), ("Policy", "policy"), ("SLO", "slo"), ("Tenant", "tenant"), ("Environment", "environment")]
SHARED = ["apiVersion", "name", "version", "duration", "cpuQuantity", "memoryQuantity", "percentOrInt", "percent", "port",
          "labelKey", "labels", "annotations", "safeText", "substitutedText", "absolutePath", "relativePath", "urlPath"]


def load(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


DEFS = load("defs")["$defs"]


def resolve(schema: dict, local: dict) -> tuple[dict, str | None]:
    """Follows one $ref. Returns (target, shared-def name or None)."""
    ref = schema.get("$ref")
    if not ref:
        return schema, None
    if ref.startswith("defs.schema.json#/$defs/"):
        name = ref.rsplit("/", 1)[1]
        return DEFS[name], name
    if ref.startswith("#/$defs/"):
        name = ref.rsplit("/", 1)[1]
        return local[name], (name if local is DEFS else None)
    raise ValueError(f"unexpected $ref {ref}")


def esc(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def code(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return "`" + esc(text).replace("`", "'") + "`" if text != "" else '`""`'


def type_name(schema: dict, local: dict) -> str:
    target, shared = resolve(schema, local)
    if shared:
        return f"[{shared}](#{shared.lower()})"
    if "const" in target:
        return "constant"
    if "enum" in target:
        return "enum"
    if "anyOf" in target and "type" not in target:
        return " or ".join(dict.fromkeys(type_name(s, local) for s in target["anyOf"]))
    if "allOf" in target and "type" not in target:
        return type_name(target["allOf"][0], local)
    t = target.get("type")
    if t == "object":
        return "mapping"
    if t == "array":
        return "list of " + type_name(target.get("items", {}), local)
    if isinstance(t, list):
        return " or ".join(t)
    return t or "any"


def constraints(schema: dict, local: dict) -> str:
    target, shared = resolve(schema, local)
    if shared:  # the shared syntax is described once, in its own section
        return ""
    parts = []
    if "const" in target:
        parts.append("must be " + code(target["const"]))
    if "enum" in target:
        parts.append("one of " + ", ".join(code(v) for v in target["enum"]))
    if "pattern" in target:
        parts.append("pattern " + code(target["pattern"]))
    if "minimum" in target or "maximum" in target:
        lo, hi = target.get("minimum"), target.get("maximum")
        parts.append(f"{lo}–{hi}" if lo is not None and hi is not None else (f"≥ {lo}" if lo is not None else f"≤ {hi}"))
    if "minLength" in target and target["minLength"] > 1:
        parts.append(f"at least {target['minLength']} characters")
    if "maxLength" in target:
        parts.append(f"at most {target['maxLength']} characters")
    if target.get("minItems"):
        parts.append(f"at least {target['minItems']} item(s)")
    if target.get("uniqueItems"):
        parts.append("no duplicates")
    for alt in target.get("anyOf", []) + target.get("allOf", []):
        sub = constraints(alt, local)
        if sub:
            parts.append(sub)
    if target.get("type") == "array" and "items" in target:
        item = target["items"]
        _, item_shared = resolve(item, local)
        if not item_shared and resolve(item, local)[0].get("type") != "object":
            sub = constraints(item, local)
            if sub:
                parts.append("items: " + sub)
    return "; ".join(parts)


def rows(obj: dict, local: dict, prefix: str, out: list):
    required = set(obj.get("required", []))
    for name, prop in obj.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        target, shared = resolve(prop, local)
        description = prop.get("description") or target.get("description", "")
        default = prop.get("default", target.get("default"))
        out.append((path, type_name(prop, local), "yes" if name in required else "", "" if default is None else code(default),
                    description, constraints(prop, local)))
        if shared:
            continue
        if target.get("type") == "object" and "properties" in target:
            rows(target, local, path, out)
        elif target.get("type") == "array":
            item, item_shared = resolve(target.get("items", {}), local)
            if not item_shared and item.get("type") == "object" and "properties" in item:
                if item.get("description"):
                    out.append((path + "[]", "mapping", "", "", item["description"], ""))
                rows(item, local, path + "[]", out)


def table(out_rows: list) -> list[str]:
    lines = ["| field | type | required | default | description | allowed |", "|---|---|---|---|---|---|"]
    for path, typ, req, default, desc, allowed in out_rows:
        lines.append(f"| `{path}` | {typ} | {req} | {default} | {esc(desc)} | {allowed} |")
    return lines


def generate() -> str:
    out = ["# Manifest reference (`mcpfleet.io/v1alpha1`)", "",
           "<!-- Generated by scripts/gen-manifest-reference.py from Schemas/*.schema.json. Do not edit by hand. -->", "",
           "The contract is `docs/designs/0001-manifest-model.md`; this page lists every field the JSON Schemas in",
           "`Schemas/` define. Editors pick the schemas up with a first line such as",
           "`# yaml-language-server: $schema=../Schemas/mcpfleet.schema.json` (path relative to the manifest).",
           "Rules that span documents (references, unique names, port blocks, quotas, `..` escapes, evidence files)",
           "are checked by `mcpfleet validate`, not by the schemas.", "",
           "Every document has exactly these top-level keys:", ""]
    top = load("mcpfleet")
    doc_rows: list = []
    rows({"properties": top["properties"], "required": top["required"]}, {}, "", doc_rows)
    out += table(doc_rows) + [""]
    out += ["## metadata", ""]
    meta_rows: list = []
    rows(DEFS["metadata"], DEFS, "metadata", meta_rows)
    out += table(meta_rows) + [""]
    for kind, stem in KINDS:
        schema = load(stem)
        spec = schema["$defs"]["spec"]
        out += [f"## {kind}", "", schema["description"], "", spec.get("description", ""), ""]
        kind_rows: list = []
        rows(spec, schema["$defs"], "spec", kind_rows)
        out += table(kind_rows) + [""]
    out += ["## Common syntaxes", ""]
    for name in SHARED:
        d = DEFS[name]
        out += [f"### {name}", "", d["description"], ""]
        extra = constraints(d, DEFS)
        if "additionalProperties" in d and isinstance(d["additionalProperties"], dict):
            extra = "; ".join(x for x in [extra, "values: " + d["additionalProperties"]["description"]] if x)
        if extra:
            out += [f"Type: {type_name(d, DEFS)}; {extra}", ""]
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stdout", action="store_true", help="print instead of writing the file")
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/manifest-reference.md is stale")
    args = parser.parse_args()
    text = generate()
    if args.stdout:
        sys.stdout.write(text)
    elif args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: run python3 scripts/gen-manifest-reference.py", file=sys.stderr)
            return 1
    else:
        OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
