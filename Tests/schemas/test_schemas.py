"""Schemas/ against the manifest corpus, and (optionally) `mcpfleet validate` against the same corpus.

Run from the repository root:   python3 -m pytest Tests/schemas -q
With a built binary:            MCPFLEET_BIN=.build/debug/mcpfleet python3 -m pytest Tests/schemas -q
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from manifest_yaml import ManifestYAMLError, load_documents  # noqa: E402

ROOT = HERE.parent.parent
SCHEMAS = ROOT / "Schemas"
MANIFESTS = ROOT / "Manifests"
INVALID = MANIFESTS / "invalid"
EXCLUDED = {"invalid", "deploy"}  # as Manifests/.mcpfleetignore says
SCHEMA_BASE = "https://mcpfleet.io/schemas/v1alpha1/"
OUR_SCHEMAS = ["defs", "server", "policy", "slo", "tenant", "environment", "mcpfleet"]

EXPECT_RE = re.compile(r"^# expect: (?P<code>[a-z0-9-]+)(?: (?P<line>\d+):(?P<col>\d+))?\s*$")
SCHEMA_RE = re.compile(r"^# schema: (?P<verdict>reject|accept|n/a)\s*$")
NEVER_SHOWN_RE = re.compile(r"^# never-shown: (?P<text>\S+)\s*$")
LINKS = INVALID / "links"


def schema_files() -> list[Path]:
    return sorted(SCHEMAS.glob("*.schema.json"))


def registry() -> Registry:
    resources = []
    for path in schema_files():
        contents = json.loads(path.read_text())
        resources.append((contents["$id"], Resource.from_contents(contents, default_specification=DRAFT202012)))
    return Registry().with_resources(resources)


def validator() -> Draft202012Validator:
    top = json.loads((SCHEMAS / "mcpfleet.schema.json").read_text())
    return Draft202012Validator(top, registry=registry())


def catalog_files() -> list[Path]:
    files = []
    for path in sorted(MANIFESTS.rglob("*.yaml")) + sorted(MANIFESTS.rglob("*.yml")):
        rel = path.relative_to(MANIFESTS)
        if rel.parts[0] in EXCLUDED:
            continue
        files.append(path)
    return files


def invalid_files() -> list[Path]:
    return sorted(p for p in INVALID.glob("*.yaml") if not p.is_symlink())


def link_files() -> list[Path]:
    """Manifests that are symbolic links out of their root: read on their own, each must be refused unread."""
    return sorted(p for p in LINKS.glob("*.yaml") if p.is_symlink())


def never_shown(path: Path) -> list[str]:
    return [m["text"] for raw in path.read_bytes().split(b"\n")[:10]
            if (m := NEVER_SHOWN_RE.match(raw.decode("utf-8", "replace")))]


def expectations(path: Path) -> tuple[list[tuple[str, int | None, int | None]], str]:
    expects, verdict = [], None
    for raw in path.read_bytes().split(b"\n")[:10]:
        line = raw.decode("utf-8", "replace")
        if m := EXPECT_RE.match(line):
            expects.append((m["code"], int(m["line"]) if m["line"] else None, int(m["col"]) if m["col"] else None))
        elif m := SCHEMA_RE.match(line):
            verdict = m["verdict"]
    assert expects, f"{path.name}: no '# expect: <code> <line>:<col>' line in the first lines"
    assert verdict, f"{path.name}: no '# schema: reject|accept|n/a' line in the first lines"
    return expects, verdict


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ------------------------------------------------------------------ (a) the schemas themselves

def test_expected_schema_files_exist():
    names = {p.name for p in schema_files()}
    for stem in OUR_SCHEMAS:
        assert f"{stem}.schema.json" in names


@pytest.mark.parametrize("path", schema_files(), ids=lambda p: p.name)
def test_schema_is_valid_2020_12(path: Path):
    schema = json.loads(path.read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_BASE + path.name


def _walk(schema, where="#"):
    if isinstance(schema, dict):
        yield where, schema
        for key, value in schema.items():
            if key in ("properties", "$defs", "patternProperties"):
                for name, sub in value.items():
                    yield from _walk(sub, f"{where}/{key}/{name}")
            elif isinstance(value, (dict, list)) and key not in ("const", "enum", "default", "examples"):
                yield from _walk(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for i, sub in enumerate(schema):
            yield from _walk(sub, f"{where}/{i}")


@pytest.mark.parametrize("path", schema_files(), ids=lambda p: p.name)
def test_objects_are_closed_and_properties_described(path: Path):
    schema = json.loads(path.read_text())
    for where, node in _walk(schema):
        if "properties" in node and node.get("type") == "object":  # if/then/not fragments are not objects
            assert node.get("additionalProperties") is False, f"{path.name} {where}: additionalProperties must be false"
            for name, prop in node["properties"].items():
                assert prop.get("description"), f"{path.name} {where}/properties/{name}: missing description"


def test_all_refs_resolve():
    reg = registry()
    for path in schema_files():
        schema = json.loads(path.read_text())
        resolver = reg.resolver(base_uri=schema["$id"])
        for where, node in _walk(schema):
            if "$ref" in node:
                resolver.lookup(node["$ref"])  # raises when unresolvable


# ------------------------------------------------------------------ (b) the example catalog

def test_catalog_is_not_empty():
    kinds = set()
    for path in catalog_files():
        for doc in load_documents(path.read_bytes()):
            kinds.add(doc["kind"])
    assert kinds == {"Server", "Policy", "SLO", "Tenant", "Environment"}


@pytest.mark.parametrize("path", catalog_files(), ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_catalog_file_validates(path: Path):
    text = path.read_text()
    assert text.startswith("# yaml-language-server: $schema="), f"{rel(path)} must start with the yaml-language-server modeline"
    target = (path.parent / text.splitlines()[0].split("$schema=", 1)[1].strip()).resolve()
    assert target == (SCHEMAS / "mcpfleet.schema.json").resolve(), f"{rel(path)}: modeline points at {target}"
    docs = load_documents(path.read_bytes())
    assert docs, f"{rel(path)} has no documents"
    v = validator()
    for i, doc in enumerate(docs):
        errors = sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert not errors, f"{rel(path)} document {i}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_catalog_names_unique_and_references_resolve():
    """A light re-statement of the cross-document rules, so the catalog stays consistent."""
    by_kind: dict[str, dict[str, dict]] = {}
    for path in catalog_files():
        for doc in load_documents(path.read_bytes()):
            names = by_kind.setdefault(doc["kind"], {})
            assert doc["metadata"]["name"] not in names, f"duplicate {doc['kind']} {doc['metadata']['name']}"
            names[doc["metadata"]["name"]] = doc
    envs = by_kind["Environment"]
    for name, server in by_kind["Server"].items():
        spec = server["spec"]
        assert spec["tenant"] in by_kind["Tenant"], name
        if "slo" in spec:
            assert spec["slo"] in by_kind["SLO"], name
        for env in spec.get("environments", envs):
            assert env in envs, name
    for policy in by_kind["Policy"].values():
        for env in policy["spec"].get("environments", []):
            assert env in envs


# ------------------------------------------------------------------ (c) the invalid corpus

def test_invalid_corpus_present():
    assert len(invalid_files()) >= 25


def test_ignore_file():
    lines = [l.strip() for l in (MANIFESTS / ".mcpfleetignore").read_text().splitlines()]
    assert "invalid/" in lines and "deploy/" in lines


@pytest.mark.parametrize("path", invalid_files(), ids=lambda p: p.name)
def test_invalid_file_against_schema(path: Path):
    expects, verdict = expectations(path)
    codes = {c for c, _, _ in expects}
    yaml_layer = all(c.startswith("yaml-") for c in codes)
    assert (verdict == "n/a") == yaml_layer, f"{path.name}: use '# schema: n/a' exactly for yaml-* expectations"
    try:
        docs = load_documents(path.read_bytes())
    except ManifestYAMLError as exc:
        assert verdict == "n/a", f"{path.name}: YAML layer rejected it ({exc}) but the file says schema: {verdict}"
        assert exc.code in codes, f"{path.name}: YAML layer says {exc.code}, file expects {sorted(codes)}"
        (_, line, col), = [e for e in expects if e[0] == exc.code][:1] or [(None, None, None)]
        if line is not None and exc.line is not None and exc.code != "yaml-invalid-utf8":
            assert (exc.line, exc.column) == (line, col), f"{path.name}: libyaml reports {exc.line}:{exc.column}"
        return
    assert verdict != "n/a", f"{path.name}: expected the YAML layer to reject it, but it loaded"
    v = validator()
    errors = [e for doc in docs for e in v.iter_errors(doc)]
    if verdict == "reject":
        assert errors, f"{path.name}: the schema accepts it, but the file says schema: reject"
    else:
        assert not errors, f"{path.name}: the schema rejects it: " + "; ".join(e.message for e in errors[:3])


def test_deep_nesting_generated():
    """20,000-deep nesting is refused by the YAML layer without recursion errors."""
    data = b"apiVersion: mcpfleet.io/v1alpha1\nkind: Tenant\nmetadata: {name: x}\nspec: {displayName: " \
        + b"[" * 20000 + b"]" * 20000 + b"}\n"
    with pytest.raises(ManifestYAMLError) as exc:
        load_documents(data)
    assert exc.value.code == "yaml-depth-limit"


# ------------------------------------------------------------------ (d) mcpfleet validate, when built

MCPFLEET_BIN = os.environ.get("MCPFLEET_BIN")
needs_bin = pytest.mark.skipif(not MCPFLEET_BIN, reason="set MCPFLEET_BIN to a built mcpfleet binary to check `mcpfleet validate` against the corpus")


def run_validate(target: Path, tmp: Path | None = None) -> tuple[int, dict]:
    proc = subprocess.run([MCPFLEET_BIN, "validate", str(target), "-o", "json"],
                          capture_output=True, timeout=120, cwd=ROOT)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"validate {target}: stdout is not JSON ({exc}): {proc.stdout[:500]!r} stderr {proc.stderr[:500]!r}")
    return proc.returncode, report


@needs_bin
def test_validate_catalog_ok():
    code, report = run_validate(MANIFESTS)
    errors = [d for d in report.get("diagnostics", []) if d.get("severity") == "error"]
    assert code == 0 and not errors and report.get("errorCount") == 0, json.dumps(report, indent=2)


@needs_bin
@pytest.mark.parametrize("path", invalid_files(), ids=lambda p: p.name)
def test_validate_invalid_file(path: Path):
    expects, _ = expectations(path)
    code, report = run_validate(path)
    diags = report.get("diagnostics", [])
    shown = json.dumps(diags, indent=2)
    assert code == 1, f"{path.name}: exit {code}, expected 1\n{shown}"
    for want_code, line, col in expects:
        hits = [d for d in diags if d.get("code") == want_code and d.get("severity") == "error"]
        assert hits, f"{path.name}: no {want_code} diagnostic\n{shown}"
        if line is not None:
            assert any((d.get("line"), d.get("column")) == (line, col) for d in hits), \
                f"{path.name}: {want_code} expected at {line}:{col}\n{shown}"
    assert report.get("errorCount") == len(expects), f"{path.name}: expected exactly {len(expects)} error(s)\n{shown}"
    hidden = never_shown(path)
    if hidden:
        text = subprocess.run([MCPFLEET_BIN, "validate", str(path)], capture_output=True, timeout=120, cwd=ROOT)
        for secret in hidden:
            for where, out in (("json", json.dumps(report)), ("text", (text.stdout + text.stderr).decode("utf-8", "replace"))):
                assert secret not in out, f"{path.name}: validate ({where}) printed a value it must never show"


@needs_bin
@pytest.mark.parametrize("path", link_files(), ids=lambda p: p.name)
def test_validate_link_out_of_root(path: Path):
    """A manifest that is a link out of its root is an error naming the link; not one byte of the target is read."""
    target = path.resolve()
    code, report = run_validate(path)
    diags = report.get("diagnostics", [])
    assert code == 1, diags
    assert [(d["code"], d.get("line"), d.get("column")) for d in diags] == [("link-outside-root", 1, 1)], diags
    assert diags[0]["file"].endswith(path.name)
    text = subprocess.run([MCPFLEET_BIN, "validate", str(path)], capture_output=True, timeout=120, cwd=ROOT)
    out = json.dumps(report) + (text.stdout + text.stderr).decode("utf-8", "replace")
    for line in target.read_text().splitlines():
        if len(line.strip()) >= 8:
            assert line.strip() not in out, f"validate printed a line of {target}"
    assert str(target) not in out, "validate named the link's target"


@needs_bin
def test_validate_deep_nesting(tmp_path: Path):
    target = tmp_path / "deep.yaml"
    target.write_bytes(b"apiVersion: mcpfleet.io/v1alpha1\nkind: Tenant\nmetadata: {name: x}\nspec: {displayName: "
                       + b"[" * 20000 + b"]" * 20000 + b"}\n")
    code, report = run_validate(target)
    assert code == 1 and any(d.get("code") == "yaml-depth-limit" for d in report.get("diagnostics", [])), report


# ------------------------------------------------------------------ (e) the generated reference

def test_manifest_reference_up_to_date():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-manifest-reference.py"), "--stdout"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    current = (ROOT / "docs" / "manifest-reference.md").read_text()
    assert proc.stdout == current, "docs/manifest-reference.md is stale: run python3 scripts/gen-manifest-reference.py"
