"""A YAML loader for mcpfleet manifests that reads scalars the way the Swift loader does.

The Swift decoder keeps scalars as text and types them by the field they land in, so `version: 1.10`
is the string "1.10". A JSON Schema needs typed values, so this loader resolves plain scalars with a
reduced YAML 1.2 core schema: `null`/`Null`/`NULL`/`~`/empty -> None, `true`/`false` -> bool,
decimal integers -> int, everything else (floats, timestamps, `yes`/`on`, ...) -> str.

It also applies the YAML-layer rules of the spec, raising `ManifestYAMLError(code, line, column)`:
duplicate keys (merge keys excepted), non-scalar keys, tags outside the YAML core set, nesting
deeper than MAX_DEPTH and alias expansion beyond MAX_ALIAS_NODES.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

MAX_DEPTH = 64
MAX_ALIAS_NODES = 100_000

CORE = "tag:yaml.org,2002:"
ALLOWED_TAGS = {CORE + t for t in ("str", "int", "bool", "float", "null", "map", "seq", "merge")}


@dataclass
class ManifestYAMLError(Exception):
    code: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = f"{self.line}:{self.column}: " if self.line else ""
        return f"{where}{self.code}: {self.message}"


_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CoreLoader(_Base):  # type: ignore[misc, valid-type]
    """SafeLoader (libyaml-backed when available) with the reduced YAML 1.2 core resolvers."""


CoreLoader.yaml_implicit_resolvers = {}
CoreLoader.add_implicit_resolver(CORE + "null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
CoreLoader.add_implicit_resolver(CORE + "bool", re.compile(r"^(?:true|false)$"), list("tf"))
CoreLoader.add_implicit_resolver(CORE + "int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
CoreLoader.add_implicit_resolver(CORE + "merge", re.compile(r"^(?:<<)$"), ["<"])


def _int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    return int(loader.construct_scalar(node))


def _bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    value = loader.construct_scalar(node)
    if value not in ("true", "false"):
        raise ManifestYAMLError("yaml-tag", f"not a boolean: {value!r}", node.start_mark.line + 1, node.start_mark.column + 1)
    return value == "true"


CoreLoader.add_constructor(CORE + "int", _int)  # decimal only: `0x10` stays a string unless tagged
CoreLoader.add_constructor(CORE + "bool", _bool)


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _check_depth(data: bytes | str) -> None:
    depth = 0
    for event in yaml.parse(data, Loader=CoreLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise ManifestYAMLError("yaml-depth-limit", f"nesting deeper than {MAX_DEPTH}",
                                        event.start_mark.line + 1, event.start_mark.column + 1)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _check_node(root: yaml.Node) -> None:
    """Tags, keys and alias expansion, walking the graph iteratively (aliases are shared nodes)."""
    visited = 0
    stack = [root]
    while stack:
        node = stack.pop()
        visited += 1
        if visited > MAX_ALIAS_NODES:
            raise ManifestYAMLError("yaml-alias-limit", f"document expands past {MAX_ALIAS_NODES} nodes", *_pos(node))
        if node.tag not in ALLOWED_TAGS:
            raise ManifestYAMLError("yaml-tag", f"unsupported tag {node.tag!r}", *_pos(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    raise ManifestYAMLError("yaml-complex-key", "mapping key is not a scalar", *_pos(key))
                if key.tag != CORE + "merge":
                    if key.value in seen:
                        raise ManifestYAMLError("yaml-duplicate-key", f"duplicate key {key.value!r}", *_pos(key))
                    seen.add(key.value)
                stack.append(key)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def load_documents(data: bytes | str) -> list:
    """All documents of one manifest file, as plain Python values. Raises ManifestYAMLError."""
    try:
        _check_depth(data)
        loader = CoreLoader(data)
        try:
            docs = []
            while loader.check_node():
                node = loader.get_node()
                if node is None:
                    continue
                _check_node(node)
                docs.append(loader.construct_document(node))
            return docs
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as exc:
        raise ManifestYAMLError("yaml-invalid-utf8", str(exc)) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ManifestYAMLError("yaml-syntax", str(exc), mark.line + 1 if mark else None,
                                mark.column + 1 if mark else None) from exc
    except yaml.YAMLError as exc:  # the C loader's reader errors are plain YAMLErrors
        code = "yaml-invalid-utf8" if "utf-8" in str(exc).lower() or "octet" in str(exc).lower() else "yaml-syntax"
        raise ManifestYAMLError(code, str(exc)) from exc
