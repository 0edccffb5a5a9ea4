#!/usr/bin/env python3
"""A Kubernetes API server for tests: an in-memory model faithful enough for the real kubectl.

No real API server can run on the test machines, so mcpfleet's Kubernetes driver is tested
against this one, and this one is tested by pointing the real kubectl at it (test_kubectl.py).
Standard library only, plus PyYAML for apply-patch+yaml bodies. See README.md for what is and
is not modelled.

    python3 fake_apiserver.py --port 0 [--host 127.0.0.1] [--token T] [--tls-cert C --tls-key K]
                              [--state-file F] [--ready-delay-ms 200] [--watch-window 1000]

The first stdout line is `PORT <n>` once listening. Logs go to stderr. SIGTERM exits cleanly.
"""
import argparse
import base64
import copy
import datetime as dt
import hashlib
import heapq
import hmac
import http.server
import json
import os
import random
import re
import select
import signal
import socket
import ssl
import string
import sys
import threading
import time
import urllib.parse
import uuid

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
K8S_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-mcpfleet-test", "gitCommit": "0" * 40,
               "gitTreeState": "clean", "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.4",
               "compiler": "gc", "platform": "linux/amd64"}
MISSING = object()


def log(msg):
    sys.stderr.write(f"[fake-apiserver] {msg}\n")
    sys.stderr.flush()


def now_ts():
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(s):
    try:
        return dt.datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc).timestamp()
    except (TypeError, ValueError):
        return time.time()


def human_age(ts):
    # Same buckets as apimachinery's duration.HumanDuration, which kubectl's AGE column uses.
    s = max(0, int(time.time() - parse_ts(ts)))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    return f"{d}d" if d < 730 else f"{d // 365}y"


# ----------------------------------------------------------------------------------------------
# Schemas: the real definitions (see gen_schemas.py), used for field validation, server-side
# apply field sets, strategic merge patch and the OpenAPI v3 documents.

with open(os.path.join(HERE, "k8s_schemas.json")) as _f:
    DEFS = json.load(_f)["definitions"]


def resolve(s):
    while isinstance(s, dict) and "$ref" in s:
        s = DEFS[s["$ref"]]
    return s or {}


def shape(s):
    s = resolve(s)
    if "oneOf" in s:
        return "scalar"
    t = s.get("type")
    if t == "object" and "properties" in s:
        return "struct"
    if t == "object":
        return "map" if isinstance(s.get("additionalProperties"), dict) else "any"
    if t == "array":
        return "list"
    return "scalar"


def is_atomic(s):
    s = resolve(s)
    return s.get("x-kubernetes-map-type") == "atomic" or (
        shape(s) == "list" and s.get("x-kubernetes-list-type", "atomic") == "atomic")


KEY_DEFAULTS = {"protocol": "TCP"}


def item_key(item, keys):
    return {k: item.get(k, KEY_DEFAULTS.get(k)) for k in sorted(keys)} if isinstance(item, dict) else {}


def key_token(item, keys):
    return "k:" + json.dumps(item_key(item, keys), separators=(",", ":"))


class FieldErrors(Exception):
    def __init__(self, errors):
        super().__init__("; ".join(errors))
        self.errors = errors


def type_ok(v, s):
    s = resolve(s)
    if "oneOf" in s:
        return isinstance(v, (str, int, float)) and not isinstance(v, bool)
    t = s.get("type")
    if t == "string":
        return isinstance(v, str)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "array":
        return isinstance(v, list)
    if t == "object":
        return isinstance(v, dict)
    return True


def fieldset(value, schema, path=(), out=None, errors=None, dotted=""):
    """The set of field paths (fieldsV1 elements: f:, k:, v:) a value sets, per the schema.
    Collects unknown fields and type errors into `errors` (real servers reject them for apply
    and with fieldValidation=Strict)."""
    if out is None:
        out = set()
    s = resolve(schema)
    if value is None:
        if path:
            out.add(path)
        return out
    if not type_ok(value, s):
        if errors is not None:
            want = s.get("type", "int-or-string")
            errors.append(f"{dotted.lstrip('.') or '<root>'}: expected {want}, got {type(value).__name__}")
        if path:
            out.add(path)
        return out
    sh = shape(s)
    if sh == "struct" and not is_atomic(s):
        if not value and path:
            out.add(path)
        props = s["properties"]
        for k, v in value.items():
            if k not in props:
                if errors is not None:
                    errors.append(f'unknown field "{(dotted + "." + k).lstrip(".")}"')
                continue
            fieldset(v, props[k], path + ("f:" + k,), out, errors, dotted + "." + k)
    elif sh == "map" and not is_atomic(s):
        if path:
            out.add(path)
        for k, v in value.items():
            fieldset(v, s["additionalProperties"], path + ("f:" + k,), out, errors, dotted + "." + k)
    elif sh == "list" and s.get("x-kubernetes-list-type") == "map":
        keys = s["x-kubernetes-list-map-keys"]
        if not value and path:
            out.add(path)
        for i, item in enumerate(value):
            p = path + (key_token(item, keys),)
            out.add(p)
            fieldset(item, s["items"], p, out, errors, f"{dotted}[{i}]")
    elif sh == "list" and s.get("x-kubernetes-list-type") == "set":
        if not value and path:
            out.add(path)
        for item in value:
            out.add(path + ("v:" + json.dumps(item, separators=(",", ":")),))
    else:
        if path:
            out.add(path)
    return out


def to_trie(paths):
    root = {}
    for p in sorted(paths, key=len):
        node = root
        for el in p:
            node = node.setdefault(el, {})
    # A member path that also has children is marked with ".".
    def mark(node, path):
        for k, child in node.items():
            if k == ".":
                continue
            cp = path + (k,)
            if child and cp in paths:
                child["."] = {}
            mark(child, cp)
    mark(root, ())
    return root


def from_trie(trie, path=(), out=None):
    if out is None:
        out = set()
    for k, child in (trie or {}).items():
        if k == ".":
            out.add(path)
            continue
        cp = path + (k,)
        if not child:
            out.add(cp)
        else:
            from_trie(child, cp, out)
    return out


def get_path(obj, path):
    cur = obj
    for el in path:
        if el.startswith("f:"):
            if not isinstance(cur, dict) or el[2:] not in cur:
                return MISSING
            cur = cur[el[2:]]
        elif el.startswith("k:"):
            want = json.loads(el[2:])
            if not isinstance(cur, list):
                return MISSING
            for item in cur:
                if isinstance(item, dict) and item_key(item, want.keys()) == want:
                    cur = item
                    break
            else:
                return MISSING
        elif el.startswith("v:"):
            want = json.loads(el[2:])
            if not isinstance(cur, list) or want not in cur:
                return MISSING
            cur = want
        else:
            return MISSING
    return cur


def remove_path(obj, path):
    if not path:
        return
    parent = get_path(obj, path[:-1])
    el = path[-1]
    if el.startswith("f:") and isinstance(parent, dict):
        parent.pop(el[2:], None)
    elif el.startswith("k:") and isinstance(parent, list):
        want = json.loads(el[2:])
        parent[:] = [i for i in parent if not (isinstance(i, dict) and item_key(i, want.keys()) == want)]
    elif el.startswith("v:") and isinstance(parent, list):
        want = json.loads(el[2:])
        parent[:] = [i for i in parent if i != want]


def apply_merge(live, cfg, schema):
    """Merge an applied configuration into the live value, per the schema's structure."""
    s = resolve(schema)
    sh = shape(s)
    if cfg is None:
        return None
    if isinstance(live, dict) and isinstance(cfg, dict) and not is_atomic(s) and sh in ("struct", "map"):
        out = dict(live)
        for k, v in cfg.items():
            sub = s["properties"].get(k, {}) if sh == "struct" else s["additionalProperties"]
            out[k] = apply_merge(live.get(k, MISSING), v, sub)
        return out
    if isinstance(live, list) and isinstance(cfg, list) and sh == "list":
        lt = s.get("x-kubernetes-list-type")
        if lt == "map":
            keys = s["x-kubernetes-list-map-keys"]
            out = list(live)
            for item in cfg:
                k = item_key(item, keys)
                for i, cur in enumerate(out):
                    if item_key(cur, keys) == k:
                        out[i] = apply_merge(cur, item, s["items"])
                        break
                else:
                    out.append(copy.deepcopy(item))
            return out
        if lt == "set":
            return list(live) + [copy.deepcopy(x) for x in cfg if x not in live]
    return copy.deepcopy(cfg)


def strategic_merge(orig, patch, schema):
    """Strategic merge patch: maps merge, lists with a patch merge key merge by that key,
    `$patch: replace|delete`, `$retainKeys`, `$deleteFromPrimitiveList/...` and
    `$setElementOrder/...` (order hints, ignored) are honoured."""
    s = resolve(schema)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return MISSING
    out = dict(orig) if isinstance(orig, dict) else {}
    props = s.get("properties", {})
    for k, v in patch.items():
        if k.startswith("$deleteFromPrimitiveList/"):
            f = k.split("/", 1)[1]
            if isinstance(out.get(f), list):
                out[f] = [x for x in out[f] if x not in v]
            continue
        if k.startswith("$"):
            continue
        if v is None:
            out.pop(k, None)
            continue
        sub = props.get(k) if props else s.get("additionalProperties", {})
        sub_r = resolve(sub or {})
        if isinstance(v, list) and shape(sub_r) == "list" and "merge" in sub_r.get("x-kubernetes-patch-strategy", ""):
            out[k] = merge_list(out.get(k), v, sub_r)
        elif isinstance(v, dict) and "replace" not in sub_r.get("x-kubernetes-patch-strategy", ""):
            merged = strategic_merge(out.get(k), v, sub_r)
            if merged is MISSING:
                out.pop(k, None)
            else:
                out[k] = merged
        else:
            out[k] = copy.deepcopy(v)
    if isinstance(patch.get("$retainKeys"), list):
        keep = set(patch["$retainKeys"])
        out = {k: v for k, v in out.items() if k in keep}
    return out


def merge_list(orig, patch, s):
    orig = list(orig) if isinstance(orig, list) else []
    key = s.get("x-kubernetes-patch-merge-key")
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    if not key:
        return orig + [copy.deepcopy(i) for i in patch if i not in orig]
    out = orig
    for item in patch:
        if not isinstance(item, dict):
            continue
        idx = next((n for n, cur in enumerate(out) if isinstance(cur, dict) and cur.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(strategic_merge({}, item, s["items"]))
        else:
            out[idx] = strategic_merge(out[idx], item, s["items"])
    return out


def json_merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = json_merge_patch(out.get(k), v)
    return out


class PatchError(Exception):
    pass


def json_patch(doc, ops):
    doc = copy.deepcopy(doc)

    def split(ptr):
        if ptr == "":
            return []
        if not ptr.startswith("/"):
            raise PatchError(f"invalid JSON pointer {ptr!r}")
        return [p.replace("~1", "/").replace("~0", "~") for p in ptr[1:].split("/")]

    def locate(parts):
        cur = doc
        for p in parts[:-1]:
            if isinstance(cur, list):
                cur = cur[int(p)]
            elif isinstance(cur, dict) and p in cur:
                cur = cur[p]
            else:
                raise PatchError(f"path not found: /{'/'.join(parts)}")
        return cur, parts[-1]

    def get(ptr):
        cur = doc
        for p in split(ptr):
            if isinstance(cur, list):
                cur = cur[int(p)]
            elif isinstance(cur, dict) and p in cur:
                cur = cur[p]
            else:
                raise PatchError(f"path not found: {ptr}")
        return cur

    def add(ptr, val):
        parent, last = locate(split(ptr))
        if isinstance(parent, list):
            parent.insert(len(parent) if last == "-" else int(last), val)
        else:
            parent[last] = val

    def remove(ptr):
        parent, last = locate(split(ptr))
        if isinstance(parent, list):
            return parent.pop(int(last))
        if last not in parent:
            raise PatchError(f"path not found: {ptr}")
        return parent.pop(last)

    if not isinstance(ops, list):
        raise PatchError("json patch must be a list of operations")
    try:
        for op in ops:
            o, path = op.get("op"), op.get("path", "")
            if o == "add":
                add(path, copy.deepcopy(op["value"]))
            elif o == "remove":
                remove(path)
            elif o == "replace":
                remove(path)
                add(path, copy.deepcopy(op["value"]))
            elif o == "move":
                add(path, remove(op["from"]))
            elif o == "copy":
                add(path, copy.deepcopy(get(op["from"])))
            elif o == "test":
                if get(path) != op.get("value"):
                    raise PatchError(f"test failed at {path}")
            else:
                raise PatchError(f"unknown op {o!r}")
    except (IndexError, ValueError, KeyError, TypeError) as e:
        raise PatchError(f"invalid patch: {e}")
    return doc


# ----------------------------------------------------------------------------------------------
# Protobuf request bodies. kubectl's typed clients (`kubectl create namespace|configmap|secret|
# serviceaccount`) send application/vnd.kubernetes.protobuf and do not fall back to JSON, so the
# few messages those commands send are decoded here (field numbers from k8s.io/api generated.proto).

def _pb_fields(buf):
    i = 0
    while i < len(buf):
        key, i = _pb_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _pb_varint(buf, i)
        elif wt == 2:
            n, i = _pb_varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 1:
            v, i = int.from_bytes(buf[i:i + 8], "little"), i + 8
        elif wt == 5:
            v, i = int.from_bytes(buf[i:i + 4], "little"), i + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        yield num, v


def _pb_varint(buf, i):
    out = shift = 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return out, i


def _pb_time(b):
    f = dict(_pb_fields(b))
    return dt.datetime.fromtimestamp(f.get(1, 0), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


PB = {
    "ObjectMeta": {1: ("name", "s"), 2: ("generateName", "s"), 3: ("namespace", "s"), 4: ("selfLink", "s"),
                   5: ("uid", "s"), 9: ("deletionTimestamp", "time"), 10: ("deletionGracePeriodSeconds", "i"),
                   17: ("managedFields", "skip"),
                   6: ("resourceVersion", "s"), 7: ("generation", "i"), 8: ("creationTimestamp", "time"),
                   11: ("labels", "map"), 12: ("annotations", "map"), 13: ("ownerReferences", "[OwnerReference"),
                   14: ("finalizers", "[s")},
    "OwnerReference": {1: ("kind", "s"), 3: ("name", "s"), 4: ("uid", "s"), 5: ("apiVersion", "s"),
                       6: ("controller", "b"), 7: ("blockOwnerDeletion", "b")},
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec"), 3: ("status", "NamespaceStatus")},
    "NamespaceSpec": {1: ("finalizers", "[s")},
    "NamespaceStatus": {1: ("phase", "s")},
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", "map"), 3: ("binaryData", "bmap"), 4: ("immutable", "b")},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", "bmap"), 3: ("type", "s"), 4: ("stringData", "map"),
               5: ("immutable", "b")},
    "ServiceAccount": {1: ("metadata", "ObjectMeta"), 2: ("secrets", "[ObjectReference"),
                       3: ("imagePullSecrets", "[LocalObjectReference"), 4: ("automountServiceAccountToken", "b")},
    "ObjectReference": {1: ("kind", "s"), 2: ("namespace", "s"), 3: ("name", "s"), 4: ("uid", "s"),
                        5: ("apiVersion", "s"), 6: ("resourceVersion", "s"), 7: ("fieldPath", "s")},
    "LocalObjectReference": {1: ("name", "s")},
}


def _pb_message(buf, msg):
    spec, out = PB[msg], {}
    for num, v in _pb_fields(buf):
        if num not in spec:
            raise ValueError(f"field {num} of {msg} is not modelled")
        name, t = spec[num]
        rep = t.startswith("[")
        t = t.lstrip("[")
        if t == "skip" or (t in ("s", "time") and not v):
            continue  # Go's protobuf writes empty strings and zero times that JSON would omit
        if t == "s":
            val = v.decode()
        elif t == "i":
            val = v
        elif t == "b":
            val = bool(v)
        elif t == "time":
            val = _pb_time(v)
        elif t in ("map", "bmap"):
            kv = dict(_pb_fields(v))
            val = kv.get(2, b"")
            out.setdefault(name, {})[kv.get(1, b"").decode()] = \
                base64.b64encode(val).decode() if t == "bmap" else val.decode()
            continue
        else:
            val = _pb_message(v, t)
        if rep:
            out.setdefault(name, []).append(val)
        else:
            out[name] = val
    return out


def decode_protobuf(body):
    if body[:4] != b"k8s\x00":
        raise ValueError("missing protobuf magic")
    env = dict(_pb_fields(body[4:]))
    tm = dict(_pb_fields(env.get(1, b"")))
    api_version, kind = tm.get(1, b"").decode(), tm.get(2, b"").decode()
    if kind not in PB:
        raise ValueError(f"protobuf bodies for {kind} are not modelled; send JSON")
    obj = {"apiVersion": api_version, "kind": kind}
    obj.update(_pb_message(env.get(2, b""), kind))
    return obj


# ----------------------------------------------------------------------------------------------
# Kinds

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class Kind:
    def __init__(self, group, version, resource, kind, namespaced=True, short=(), categories=(),
                 status_sub=False, scale_sub=False, generation=False, schema=None):
        self.group, self.version, self.resource, self.kind = group, version, resource, kind
        self.namespaced, self.short, self.categories = namespaced, list(short), list(categories)
        self.status_sub, self.scale_sub, self.generation = status_sub, scale_sub, generation
        self.schema = {"$ref": schema}
        self.singular = kind.lower()
        self.api_version = f"{group}/{version}" if group else version
        self.key = f"{group}/{resource}"
        self.verbs = [v for v in VERBS if not (resource == "namespaces" and v == "deletecollection")]

    @property
    def qualified(self):
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @property
    def gv_path(self):
        return f"/apis/{self.group}/{self.version}" if self.group else "/api/v1"


KINDS = [
    Kind("", "v1", "namespaces", "Namespace", namespaced=False, short=["ns"], status_sub=True,
         schema="io.k8s.api.core.v1.Namespace"),
    Kind("", "v1", "services", "Service", short=["svc"], categories=["all"], status_sub=True,
         schema="io.k8s.api.core.v1.Service"),
    Kind("", "v1", "configmaps", "ConfigMap", short=["cm"], schema="io.k8s.api.core.v1.ConfigMap"),
    Kind("", "v1", "secrets", "Secret", schema="io.k8s.api.core.v1.Secret"),
    Kind("", "v1", "serviceaccounts", "ServiceAccount", short=["sa"], schema="io.k8s.api.core.v1.ServiceAccount"),
    Kind("", "v1", "resourcequotas", "ResourceQuota", short=["quota"], status_sub=True,
         schema="io.k8s.api.core.v1.ResourceQuota"),
    Kind("", "v1", "limitranges", "LimitRange", short=["limits"], schema="io.k8s.api.core.v1.LimitRange"),
    Kind("", "v1", "pods", "Pod", short=["po"], categories=["all"], status_sub=True,
         schema="io.k8s.api.core.v1.Pod"),
    Kind("apps", "v1", "deployments", "Deployment", short=["deploy"], categories=["all"], status_sub=True,
         scale_sub=True, generation=True, schema="io.k8s.api.apps.v1.Deployment"),
    Kind("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short=["netpol"], generation=True,
         schema="io.k8s.api.networking.v1.NetworkPolicy"),
    Kind("coordination.k8s.io", "v1", "leases", "Lease", schema="io.k8s.api.coordination.v1.Lease"),
    Kind("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short=["pdb"], status_sub=True, generation=True,
         schema="io.k8s.api.policy.v1.PodDisruptionBudget"),
]
GROUPS = {}  # group -> {version -> [Kind]}
for _k in KINDS:
    GROUPS.setdefault(_k.group, {}).setdefault(_k.version, []).append(_k)
BY_PATH = {(k.group, k.version, k.resource): k for k in KINDS}
DEPLOYMENTS = BY_PATH[("apps", "v1", "deployments")]
NAMESPACES = BY_PATH[("", "v1", "namespaces")]
SERVICEACCOUNTS = BY_PATH[("", "v1", "serviceaccounts")]
CONFIGMAPS = BY_PATH[("", "v1", "configmaps")]
PODS = BY_PATH[("", "v1", "pods")]
IMMORTAL_NAMESPACES = {"default", "kube-system", "kube-public"}
SERVER_META = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink",
               "deletionTimestamp", "deletionGracePeriodSeconds")
NEVER_READY = "mcpfleet.test/never-ready"


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None, headers=None):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details, self.headers = details, headers or {}

    def status(self):
        st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            st["details"] = self.details
        return st


def details(kind, name, causes=None):
    d = {"name": name, "kind": kind.resource}
    if kind.group:
        d["group"] = kind.group
    if causes:
        d["causes"] = causes
    return d


def not_found(kind, name):
    return ApiError(404, "NotFound", f'{kind.qualified} "{name}" not found', details(kind, name))


def conflict(kind, name):
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind.qualified} "{name}": the object has '
                    "been modified; please apply your changes to the latest version and try again",
                    details(kind, name))


def invalid(kind, name, causes):
    msg = "; ".join(f"{c['field']}: {c['message']}" for c in causes)
    return ApiError(422, "Invalid", f'{kind.kind} "{name}" is invalid: {msg}',
                    {**details(kind, name), "kind": kind.kind, "causes": causes})


def bad_request(msg):
    return ApiError(400, "BadRequest", msg)


DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# ----------------------------------------------------------------------------------------------
# Selectors

class Selector:
    """Label selector: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`."""

    def __init__(self, text):
        self.reqs = []
        text = (text or "").strip()
        if not text:
            return
        parts, depth, cur = [], 0, ""
        for ch in text:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        for p in (x.strip() for x in parts):
            m = re.match(r"^([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)$", p)
            if m:
                vals = {v.strip() for v in m.group(3).split(",") if v.strip()}
                self.reqs.append((m.group(1), m.group(2), vals))
                continue
            m = re.match(r"^([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)$", p)
            if m:
                op = "!=" if m.group(2) == "!=" else "="
                self.reqs.append((m.group(1), op, {m.group(3)}))
                continue
            m = re.match(r"^(!?)\s*([A-Za-z0-9_./-]+)$", p)
            if m:
                self.reqs.append((m.group(2), "!" if m.group(1) else "exists", set()))
                continue
            raise bad_request(f'unable to parse requirement: found \'{p}\', expected: valid label selector')

    def matches(self, labels):
        labels = labels or {}
        for key, op, vals in self.reqs:
            has = key in labels
            v = labels.get(key)
            if op == "=" and not (has and v in vals):
                return False
            if op == "!=" and has and v in vals:
                return False
            if op == "in" and not (has and v in vals):
                return False
            if op == "notin" and has and v in vals:
                return False
            if op == "exists" and not has:
                return False
            if op == "!" and has:
                return False
        return True


FIELD_PATHS = {"metadata.name", "metadata.namespace", "status.phase", "spec.nodeName", "type"}


class FieldSelector:
    def __init__(self, text):
        self.reqs = []
        for p in (x.strip() for x in (text or "").split(",") if x.strip()):
            m = re.match(r"^([A-Za-z.]+)\s*(==|=|!=)\s*(.*)$", p)
            if not m:
                raise bad_request(f'invalid selector: \'{p}\'; can\'t understand \'{p}\'')
            if m.group(1) not in FIELD_PATHS:
                raise bad_request(f'field label not supported: {m.group(1)}')
            self.reqs.append((m.group(1), m.group(2) == "!=", m.group(3)))

    def matches(self, obj):
        for path, neg, val in self.reqs:
            cur = obj
            for p in path.split("."):
                cur = cur.get(p, "") if isinstance(cur, dict) else ""
            if (str(cur) == val) == neg:
                return False
        return True


# ----------------------------------------------------------------------------------------------
# Store

class Event:
    __slots__ = ("rv", "type", "key", "ns", "obj", "prev")

    def __init__(self, rv, type_, key, ns, obj, prev):
        self.rv, self.type, self.key, self.ns, self.obj, self.prev = rv, type_, key, ns, obj, prev


class Store:
    def __init__(self, args):
        self.args = args
        self.cond = threading.Condition(threading.RLock())
        self.objects = {}  # (kind.key, ns, name) -> obj
        self.rv = 1
        self.events = []  # contiguous: events[i].rv == self.first_event_rv + i
        self.first_event_rv = 2
        self.closing = False
        self.tasks = []  # heap of (due, seq, fn)
        self.task_seq = 0
        self.faults = []
        self.requests = []
        self.counters = {}  # (verb, resource) -> requests, kept apart from the bounded request log
        self.loaded = False
        if args.state_file and os.path.exists(args.state_file):
            with open(args.state_file) as f:
                st = json.load(f)
            self.rv = st["resourceVersion"]
            self.first_event_rv = self.rv + 1
            for o in st["objects"]:
                k = KIND_BY_KEY[o["key"]]
                self.objects[(k.key, o["ns"], o["name"])] = o["obj"]
            self.loaded = True
            log(f"loaded {len(self.objects)} objects from state file at resourceVersion {self.rv}")
        with self.cond:
            for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
                if (NAMESPACES.key, "", ns) not in self.objects:
                    self.create_internal(NAMESPACES, "", {"metadata": {"name": ns, "labels": {
                        "kubernetes.io/metadata.name": ns}}, "spec": {"finalizers": ["kubernetes"]},
                        "status": {"phase": "Active"}})
                    self.populate_namespace(ns)
        threading.Thread(target=self.run_tasks, name="controllers", daemon=True).start()
        for (key, ns, name), o in list(self.objects.items()):
            if key == DEPLOYMENTS.key:
                self.schedule(0, lambda ns=ns, name=name: self.reconcile_deployment(ns, name))

    # -- persistence and events
    def save(self):
        if not self.args.state_file:
            return
        tmp = self.args.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"resourceVersion": self.rv, "objects": [
                {"key": k, "ns": ns, "name": n, "obj": o} for (k, ns, n), o in self.objects.items()]}, f)
        os.replace(tmp, self.args.state_file)

    def next_rv(self):
        self.rv += 1
        return self.rv

    def record(self, type_, kind, ns, obj, prev):
        rv = int(obj["metadata"]["resourceVersion"])
        assert rv == self.first_event_rv + len(self.events), "events must be contiguous"
        self.events.append(Event(rv, type_, kind.key, ns, copy.deepcopy(obj), prev))
        excess = len(self.events) - self.args.watch_window
        if excess > 0:
            del self.events[:excess]
            self.first_event_rv += excess
        self.save()
        self.cond.notify_all()

    def compact(self):
        with self.cond:
            self.first_event_rv += len(self.events)
            self.events = []
            self.cond.notify_all()
            return self.rv

    # -- scheduled controllers
    def schedule(self, delay_s, fn):
        with self.cond:
            self.task_seq += 1
            heapq.heappush(self.tasks, (time.monotonic() + delay_s, self.task_seq, fn))
            self.cond.notify_all()

    def run_tasks(self):
        with self.cond:
            while not self.closing:
                now = time.monotonic()
                if self.tasks and self.tasks[0][0] <= now:
                    _, _, fn = heapq.heappop(self.tasks)
                    try:
                        fn()
                    except Exception as e:  # a controller bug must not kill the server
                        log(f"controller error: {e!r}")
                    continue
                self.cond.wait(timeout=(self.tasks[0][0] - now) if self.tasks else 1.0)

    # -- basic object operations (callers hold the lock)
    def get(self, kind, ns, name):
        return self.objects.get((kind.key, ns, name))

    def list(self, kind, ns):
        out = [o for (k, n, _), o in self.objects.items() if k == kind.key and (ns is None or n == ns)]
        out.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return out

    def put(self, kind, ns, obj, prev, type_):
        obj["metadata"]["resourceVersion"] = str(self.next_rv())
        self.objects[(kind.key, ns, obj["metadata"]["name"])] = obj
        self.record(type_, kind, ns, obj, prev)
        return obj

    def remove(self, kind, ns, name):
        obj = self.objects.pop((kind.key, ns, name))
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self.next_rv())
        self.record("DELETED", kind, ns, gone, obj)
        return gone

    def create_internal(self, kind, ns, obj):
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        md = obj["metadata"]
        if kind.namespaced:
            md["namespace"] = ns
        md.setdefault("uid", str(uuid.uuid4()))
        md.setdefault("creationTimestamp", now_ts())
        if kind.generation:
            md["generation"] = 1
        return self.put(kind, ns, reorder(obj), None, "ADDED")

    # -- controllers
    def after_write(self, kind, ns, obj, prev):
        """Schedules the simulated controllers' reactions to a stored write."""
        delay = self.args.ready_delay_ms / 1000.0
        name = obj["metadata"]["name"]
        if kind is DEPLOYMENTS:
            if prev is None or prev["metadata"].get("generation") != obj["metadata"].get("generation") or \
                    prev["metadata"].get("annotations", {}).get(NEVER_READY) != \
                    obj["metadata"].get("annotations", {}).get(NEVER_READY):
                self.schedule(delay, lambda: self.reconcile_deployment(ns, name))
        if kind is NAMESPACES and prev is None:
            self.schedule(0, lambda: self.populate_namespace(name))
        md = obj["metadata"]
        if md.get("deletionTimestamp") and not md.get("finalizers") and kind is not NAMESPACES:
            if self.get(kind, ns, name) is obj:
                self.remove(kind, ns, name)

    def populate_namespace(self, ns):
        # What the service account and root-CA controllers add to every new namespace.
        if not self.get(NAMESPACES, "", ns) or self.get(NAMESPACES, "", ns)["metadata"].get("deletionTimestamp"):
            return
        if not self.get(SERVICEACCOUNTS, ns, "default"):
            self.create_internal(SERVICEACCOUNTS, ns, {"metadata": {"name": "default"}})
        if not self.get(CONFIGMAPS, ns, "kube-root-ca.crt"):
            self.create_internal(CONFIGMAPS, ns, {"metadata": {"name": "kube-root-ca.crt", "annotations": {
                "kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver "
                "when using internal endpoints such as the internal service IP or kubernetes.default.svc."}},
                "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nTEST\n-----END CERTIFICATE-----\n"}})

    def finalize_namespace(self, ns):
        if not self.get(NAMESPACES, "", ns):
            return
        for kind in KINDS:
            if kind.namespaced:
                for o in self.list(kind, ns):
                    self.remove(kind, ns, o["metadata"]["name"])
        self.remove(NAMESPACES, "", ns)

    def finish_foreground(self, kind, ns, name):
        o = self.get(kind, ns, name)
        if o and o["metadata"].get("deletionTimestamp"):
            prev = o
            o = copy.deepcopy(o)
            o["metadata"]["finalizers"] = [f for f in o["metadata"].get("finalizers", []) if f != "foregroundDeletion"]
            if not o["metadata"]["finalizers"]:
                del o["metadata"]["finalizers"]
                self.remove(kind, ns, name)
            else:
                self.put(kind, ns, o, prev, "MODIFIED")

    def reconcile_deployment(self, ns, name):
        d = self.get(DEPLOYMENTS, ns, name)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        prev = d
        d = copy.deepcopy(d)
        spec, md = d.get("spec", {}), d["metadata"]
        replicas = spec.get("replicas", 1)
        never = md.get("annotations", {}).get(NEVER_READY) == "true"
        ready = 0 if never else replicas
        old = prev.get("status", {})
        st = {"observedGeneration": md.get("generation", 1)}
        if replicas:
            st.update({"replicas": replicas, "updatedReplicas": replicas})
        if ready:
            st.update({"readyReplicas": ready, "availableReplicas": ready})
        if replicas - ready:
            st["unavailableReplicas"] = replicas - ready
        ts = now_ts()
        rs = f"{name}-{pod_template_hash(spec.get('template', {}))}"

        def cond(type_, status, reason, message):
            for c in old.get("conditions", []):
                if c["type"] == type_ and c["status"] == status and c["reason"] == reason:
                    return {**c, "lastUpdateTime": ts if c.get("message") != message else c["lastUpdateTime"],
                            "message": message}
            return {"type": type_, "status": status, "lastUpdateTime": ts, "lastTransitionTime": ts,
                    "reason": reason, "message": message}

        avail = cond("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.") \
            if ready >= replicas else \
            cond("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        deadline = spec.get("progressDeadlineSeconds", 600)
        prog_old = next((c for c in old.get("conditions", []) if c["type"] == "Progressing"), None)
        if ready >= replicas:
            prog = cond("Progressing", "True", "NewReplicaSetAvailable", f'ReplicaSet "{rs}" has successfully progressed.')
        else:
            started = parse_ts(prog_old["lastTransitionTime"]) if prog_old and prog_old["reason"] == "ReplicaSetUpdated" \
                and old.get("observedGeneration") == st["observedGeneration"] else time.time()
            if time.time() - started >= deadline:
                prog = cond("Progressing", "False", "ProgressDeadlineExceeded", f'ReplicaSet "{rs}" has timed out progressing.')
            else:
                prog = cond("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs}" is progressing.')
                self.schedule(max(0.05, started + deadline - time.time()), lambda: self.reconcile_deployment(ns, name))
        st["conditions"] = [avail, prog]
        if st == old:
            return
        d["status"] = st
        update_managed_fields(d, prev, DEPLOYMENTS, "kube-controller-manager", "status")
        self.put(DEPLOYMENTS, ns, d, prev, "MODIFIED")
        self.sync_pods(d)

    def sync_pods(self, d):
        """One simulated Pod per replica, so `kubectl get pods -l ...` shows something real-shaped."""
        ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
        tmpl = d.get("spec", {}).get("template", {})
        h = pod_template_hash(tmpl)
        want = d.get("spec", {}).get("replicas", 1)
        ready = d.get("status", {}).get("readyReplicas", 0) >= want
        mine = [p for p in self.list(PODS, ns) if owned_pod(name, p)]
        current = [p for p in mine if p["metadata"]["labels"].get("pod-template-hash") == h]
        # As the ReplicaSet controller does: among pods of the same state, the lowest
        # controller.kubernetes.io/pod-deletion-cost goes first (stable otherwise).
        current.sort(key=lambda p: -deletion_cost(p))
        keep = current[:want]
        for p in mine:
            if p not in keep:
                self.remove(PODS, ns, p["metadata"]["name"])
        for _ in range(want - len(keep)):
            labels = dict(tmpl.get("metadata", {}).get("labels", {}), **{"pod-template-hash": h})
            pname = f"{name}-{h}-{rand_suffix()}"
            self.create_internal(PODS, ns, {
                "metadata": {"name": pname, "labels": labels, "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{name}-{h}",
                    "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, d["metadata"]["uid"] + h)),
                    "controller": True, "blockOwnerDeletion": True}]},
                "spec": copy.deepcopy(tmpl.get("spec", {})),
                "status": pod_status(tmpl, ready, self.args.pod_ip)})

    # -- deleting owned pods with their deployment
    def cascade(self, kind, ns, obj):
        if kind is DEPLOYMENTS:
            for p in self.list(PODS, ns):
                if owned_pod(obj["metadata"]["name"], p):
                    self.remove(PODS, ns, p["metadata"]["name"])


KIND_BY_KEY = {k.key: k for k in KINDS}


def deletion_cost(pod):
    try:
        return int(pod["metadata"].get("annotations", {}).get("controller.kubernetes.io/pod-deletion-cost", "0"))
    except ValueError:
        return 0


def owned_pod(deployment, pod):
    h = pod["metadata"].get("labels", {}).get("pod-template-hash")
    return h is not None and any(r.get("kind") == "ReplicaSet" and r.get("name") == f"{deployment}-{h}"
                                 for r in pod["metadata"].get("ownerReferences", []))


def rand_suffix(n=5):
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


def pod_template_hash(tmpl):
    h = hashlib.sha256(json.dumps(tmpl, sort_keys=True).encode()).hexdigest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    n = int(h[:16], 16)
    out = ""
    for _ in range(10):
        out += alphabet[n % len(alphabet)]
        n //= len(alphabet)
    return out


def pod_status(tmpl, ready, ip=None):
    cs = [{"name": c.get("name", ""), "image": c.get("image", ""), "ready": ready, "restartCount": 0,
           "started": ready, "state": {"running": {"startedAt": now_ts()}} if ready else
           {"waiting": {"reason": "ContainerCreating"}}} for c in tmpl.get("spec", {}).get("containers", [])]
    return {"phase": "Running" if ready else "Pending", "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now_ts()}],
        "containerStatuses": cs, "podIP": ip or "10.244.0." + str(random.randint(2, 250)), "startTime": now_ts()}


def reorder(obj):
    """apiVersion, kind, metadata, spec..., status — the order real servers serialize in."""
    out = {}
    for k in ("apiVersion", "kind", "metadata"):
        if k in obj:
            out[k] = obj[k]
    for k, v in obj.items():
        if k not in out and k != "status":
            out[k] = v
    if "status" in obj:
        out["status"] = obj["status"]
    return out


# ----------------------------------------------------------------------------------------------
# Defaulting and validation (the parts a client can observe)

def default_pod_spec(ps):
    ps.setdefault("restartPolicy", "Always")
    ps.setdefault("terminationGracePeriodSeconds", 30)
    ps.setdefault("dnsPolicy", "ClusterFirst")
    ps.setdefault("securityContext", {})
    ps.setdefault("schedulerName", "default-scheduler")
    for c in ps.get("containers", []) + ps.get("initContainers", []):
        if not isinstance(c, dict):
            continue
        image = c.get("image", "")
        tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
        c.setdefault("imagePullPolicy", "IfNotPresent" if tagged and not image.endswith(":latest") else "Always")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("resources", {})
        for p in c.get("ports", []) or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")


def apply_defaults(kind, obj, old):
    spec = obj.get("spec")
    if kind is DEPLOYMENTS and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        st = spec.setdefault("strategy", {"type": "RollingUpdate"})
        if isinstance(st, dict):
            st.setdefault("type", "RollingUpdate")
            if st["type"] == "RollingUpdate":
                ru = st.setdefault("rollingUpdate", {})
                if isinstance(ru, dict):
                    ru.setdefault("maxUnavailable", "25%")
                    ru.setdefault("maxSurge", "25%")
        ps = spec.get("template", {}).get("spec") if isinstance(spec.get("template"), dict) else None
        if isinstance(ps, dict):
            default_pod_spec(ps)
        if isinstance(spec.get("template"), dict):
            spec["template"].setdefault("metadata", {}).setdefault("creationTimestamp", None)
    elif kind is PODS and isinstance(spec, dict):
        default_pod_spec(spec)
    elif kind.resource == "services" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["type"] != "ExternalName":
            ip = (old or {}).get("spec", {}).get("clusterIP") or spec.get("clusterIP") or \
                f"10.96.{random.randint(0, 255)}.{random.randint(1, 254)}"
            spec["clusterIP"] = ip
            spec.setdefault("clusterIPs", [ip])
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        for p in spec.get("ports", []) or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
                p.setdefault("targetPort", p.get("port"))
        obj.setdefault("status", {"loadBalancer": {}})
    elif kind.resource == "secrets":
        obj.setdefault("type", "Opaque")
    elif kind is NAMESPACES:
        if old is None:
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif kind.resource == "networkpolicies" and isinstance(spec, dict):
        if "policyTypes" not in spec:
            spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])


def validate(kind, obj, old):
    name = obj["metadata"].get("name", "")
    causes = []

    def bad(field, msg, reason="FieldValueInvalid"):
        causes.append({"reason": reason, "message": msg, "field": field})

    pat = DNS_LABEL if kind.resource in ("namespaces", "services") else DNS_SUBDOMAIN
    limit = 63 if pat is DNS_LABEL else 253
    if not pat.match(name) or len(name) > limit:
        bad("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 '
            f'{"label" if pat is DNS_LABEL else "subdomain"} must consist of lower case alphanumeric characters, '
            "'-'" + (" or '.'" if pat is DNS_SUBDOMAIN else "") + ", and must start and end with an alphanumeric character")
    for k, v in (obj["metadata"].get("labels") or {}).items():
        if not isinstance(v, str) or len(v) > 63 or not re.match(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", v):
            bad(f"metadata.labels", f'Invalid value: "{v}": a valid label must be an empty string or consist of '
                "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")
    if kind is DEPLOYMENTS:
        spec = obj.get("spec") or {}
        sel = spec.get("selector")
        tmpl = spec.get("template") or {}
        if not sel:
            bad("spec.selector", "Required value", "FieldValueRequired")
        else:
            labels = (tmpl.get("metadata") or {}).get("labels") or {}
            ml = sel.get("matchLabels") or {}
            if not ml and not sel.get("matchExpressions"):
                bad("spec.selector", "Invalid value: empty selector is invalid for deployment")
            if any(labels.get(k) != v for k, v in ml.items()):
                bad("spec.template.metadata.labels", f"Invalid value: {json.dumps(labels)}: `selector` does not "
                    "match template `labels`")
            if old and old.get("spec", {}).get("selector") != sel:
                bad("spec.selector", f"Invalid value: {json.dumps(sel)}: field is immutable")
        if spec.get("replicas", 1) < 0:
            bad("spec.replicas", "Invalid value: must be greater than or equal to 0")
        containers = (tmpl.get("spec") or {}).get("containers") or []
        if not containers:
            bad("spec.template.spec.containers", "Required value", "FieldValueRequired")
        for i, c in enumerate(containers):
            if not c.get("name"):
                bad(f"spec.template.spec.containers[{i}].name", "Required value", "FieldValueRequired")
            if not c.get("image"):
                bad(f"spec.template.spec.containers[{i}].image", "Required value", "FieldValueRequired")
    if kind.resource == "services":
        spec = obj.get("spec") or {}
        if spec.get("type", "ClusterIP") != "ExternalName" and not spec.get("ports") and spec.get("clusterIP") != "None":
            bad("spec.ports", "Required value", "FieldValueRequired")
    if kind.resource == "configmaps":
        for k in list((obj.get("data") or {})) + list((obj.get("binaryData") or {})):
            if not re.match(r"^[-._a-zA-Z0-9]+$", k):
                bad(f"data[{k}]", f'Invalid value: "{k}": a valid config key must consist of alphanumeric characters, '
                    "'-', '_' or '.'")
    if causes:
        raise invalid(kind, name, causes)


# ----------------------------------------------------------------------------------------------
# Managed fields

def tracked(kind, obj, sub):
    """The part of an object a manager's fields are computed over, for a write to `sub`."""
    o = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    md = {k: v for k, v in (o.get("metadata") or {}).items() if k not in SERVER_META + ("name", "namespace", "generateName")}
    o["metadata"] = md
    if not md:
        del o["metadata"]
    if sub == "status":
        return {"status": o["status"]} if "status" in o else {}
    if kind.status_sub:
        o.pop("status", None)
    return o


def fields_of(kind, obj, sub, errors=None):
    return fieldset(tracked(kind, obj, sub), kind.schema, (), None, errors)


def managers(obj):
    return [dict(e) for e in obj["metadata"].get("managedFields") or []]


def entry_id(e):
    return (e.get("manager"), e.get("operation"), e.get("subresource", ""))


def make_entry(manager, op, kind, paths, sub):
    e = {"manager": manager, "operation": op, "apiVersion": kind.api_version, "time": now_ts(),
         "fieldsType": "FieldsV1", "fieldsV1": to_trie(paths)}
    if sub:
        e["subresource"] = sub
    return e


def leaves(paths):
    parents = {p[:i] for p in paths for i in range(len(p))}
    return {p for p in paths if p not in parents}


def update_managed_fields(new, old, kind, manager, sub, scale=False):
    """Ownership after an Update operation: the updater takes every field it changed (from any
    other manager, without conflicts); fields that disappeared are dropped from every manager."""
    entries = managers(old) if old else []
    if scale:
        fnew = {("f:spec",), ("f:spec", "f:replicas")} if "replicas" in new.get("spec", {}) else set()
        fold = {("f:spec",), ("f:spec", "f:replicas")} if old and "replicas" in old.get("spec", {}) else set()
        alln = fields_of(kind, new, "") | fields_of(kind, new, "status")
    else:
        fnew = fields_of(kind, new, sub)
        fold = fields_of(kind, old, sub) if old else set()
        alln = fields_of(kind, new, "") | fields_of(kind, new, "status")
    lv = leaves(fnew)
    changed = {p for p in fnew if p not in fold or (p in lv and get_path(tracked(kind, old, sub), p) !=
                                                    get_path(tracked(kind, new, sub), p))}
    if scale:
        changed = {p for p in changed if p == ("f:spec", "f:replicas")}
    me = (manager, "Update", "scale" if scale else sub)
    out, found = [], False
    for e in entries:
        paths = from_trie(e.get("fieldsV1")) & alln
        if entry_id(e) == me:
            found = True
            mine = paths | changed
            if mine == from_trie(e.get("fieldsV1")):
                out.append(e)
            elif mine:
                out.append(make_entry(manager, "Update", kind, mine, "scale" if scale else sub))
            continue
        paths -= changed
        if paths:
            if paths != from_trie(e.get("fieldsV1")):
                e["fieldsV1"] = to_trie(paths)
            out.append(e)
    if not found and changed:
        out.append(make_entry(manager, "Update", kind, changed, "scale" if scale else sub))
    set_managed(new, out)


def set_managed(obj, entries):
    if entries:
        obj["metadata"]["managedFields"] = entries
    else:
        obj["metadata"].pop("managedFields", None)


def fmt_path(p):
    out = ""
    for el in p:
        if el.startswith("f:"):
            out += "." + el[2:]
        elif el.startswith("k:"):
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(el[2:]).items()) + "]"
        elif el.startswith("v:"):
            out += f"[={el[2:]}]"
    return out


def server_side_apply(kind, live, cfg, manager, force, sub):
    """Returns the new object (or raises a 409 apply conflict)."""
    errors = []
    fa = fieldset(tracked(kind, cfg, sub), kind.schema, (), None, errors)
    name = cfg["metadata"]["name"]
    if errors:
        ns = cfg["metadata"].get("namespace")
        msgs = [f'.{e[len("unknown field "):].strip(chr(34))}: field not declared in schema' if e.startswith("unknown")
                else "." + e for e in errors]
        raise bad_request(f"failed to create typed patch object ({ns + '/' if ns else ''}{name}; {kind.api_version}, "
                          f"Kind={kind.kind}): " + "; ".join(msgs))
    me = (manager, "Apply", sub)
    if live is None:
        return cfg, [make_entry(manager, "Apply", kind, fa, sub)] if fa else []
    entries = managers(live)
    tl, tc = tracked(kind, live, sub), tracked(kind, cfg, sub)
    lv = leaves(fa)
    conflicts = []
    for e in entries:
        if entry_id(e) == me:
            continue
        for p in sorted(from_trie(e.get("fieldsV1")) & lv):
            if get_path(tl, p) != get_path(tc, p):
                conflicts.append((e, p))
    if conflicts and not force:
        causes = [{"type": "FieldManagerConflict", "message": f'conflict with "{e["manager"]}"'
                   + (f' with subresource "{e["subresource"]}"' if e.get("subresource") else "")
                   + f' using {e.get("apiVersion")}',
                   "field": fmt_path(p)} for e, p in conflicts]
        lines = "\n".join(f'- {c["message"]}: {c["field"]}' for c in causes)
        n = len(causes)
        raise ApiError(409, "Conflict", f"Apply failed with {n} conflict{'s' if n != 1 else ''}: " +
                       ("\n" + lines if n > 1 else f'{causes[0]["message"]}: {causes[0]["field"]}'),
                       {**details(kind, name), "causes": causes})
    # Forced: the conflicting fields move to the applier.
    taken = {p for _, p in conflicts}
    prev_mine = next((from_trie(e.get("fieldsV1")) for e in entries if entry_id(e) == me), set())
    others = set()
    out = []
    for e in entries:
        if entry_id(e) == me:
            continue
        paths = from_trie(e.get("fieldsV1"))
        if taken & paths:
            paths -= taken
            e["fieldsV1"] = to_trie(paths)
        if paths:
            out.append(e)
            others |= paths
    new = copy.deepcopy(live)
    # Fields this manager applied before and no longer does, owned by nobody else, are removed.
    for p in sorted(prev_mine - fa, key=len, reverse=True):
        if not any(o[:len(p)] == p for o in others):
            target = new.get("status") if sub == "status" else new
            remove_path(new, p)
            del target
    merged = apply_merge({k: v for k, v in new.items()}, strip_server_meta(cfg, sub, kind), kind.schema)
    prev_entry = next((e for e in entries if entry_id(e) == me), None)
    mine = None
    if fa:
        mine = prev_entry if prev_entry and prev_mine == fa else make_entry(manager, "Apply", kind, fa, sub)
    # Keep the entries' order stable so a repeated apply is a true no-op.
    kept = {id(e) for e in out}
    ordered = []
    for e in entries:
        if entry_id(e) == me:
            if mine:
                ordered.append(mine)
                mine = None
        elif id(e) in kept:
            ordered.append(e)
    if mine:
        ordered.append(mine)
    return merged, ordered


def strip_server_meta(cfg, sub, kind):
    c = {k: v for k, v in cfg.items() if k not in ("apiVersion", "kind")}
    c["metadata"] = {k: v for k, v in (cfg.get("metadata") or {}).items() if k not in SERVER_META + ("name", "namespace")}
    if sub == "status":
        return {"status": cfg.get("status", {})}
    if kind.status_sub:
        c.pop("status", None)
    return c


def spec_of(obj):
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


# ----------------------------------------------------------------------------------------------
# Tables (what `kubectl get` prints)

def col(name, type_="string", fmt="", priority=0, desc=""):
    return {"name": name, "type": type_, "format": fmt, "description": desc, "priority": priority}


def table_columns(kind):
    name = col("Name", fmt="name", desc="Name must be unique within a namespace.")
    age = col("Age", desc="CreationTimestamp is a timestamp representing the server time when this object was created.")
    r = kind.resource
    if r == "deployments":
        return [name, col("Ready"), col("Up-to-date", "integer"), col("Available", "integer"), age,
                col("Containers", priority=1), col("Images", priority=1), col("Selector", priority=1)]
    if r == "namespaces":
        return [name, col("Status"), age]
    if r == "services":
        return [name, col("Type"), col("Cluster-IP"), col("External-IP"), col("Port(s)"), age,
                col("Selector", priority=1)]
    if r == "configmaps":
        return [name, col("Data", "integer"), age]
    if r == "secrets":
        return [name, col("Type"), col("Data", "integer"), age]
    if r == "serviceaccounts":
        return [name, col("Secrets", "integer"), age]
    if r == "pods":
        return [name, col("Ready"), col("Status"), col("Restarts", "string"), age, col("IP", priority=1),
                col("Node", priority=1)]
    if r == "networkpolicies":
        return [name, col("Pod-Selector"), age]
    if r == "leases":
        return [name, col("Holder"), age]
    if r == "resourcequotas":
        return [name, age, col("Request"), col("Limit")]
    if r == "limitranges":
        return [name, col("Created At", fmt="date")]
    return [name, age]


def sel_string(sel):
    parts = [f"{k}={v}" for k, v in sorted(((sel or {}).get("matchLabels") or {}).items())]
    for e in (sel or {}).get("matchExpressions") or []:
        op = e.get("operator", "")
        if op in ("In", "NotIn"):
            parts.append(f"{e['key']} {op.lower()} ({','.join(e.get('values', []))})")
        elif op == "Exists":
            parts.append(e["key"])
        elif op == "DoesNotExist":
            parts.append("!" + e["key"])
    return ",".join(parts)


def table_cells(kind, o):
    md, spec, st = o["metadata"], o.get("spec") or {}, o.get("status") or {}
    name, age = md["name"], human_age(md.get("creationTimestamp"))
    r = kind.resource
    if r == "deployments":
        cs = (spec.get("template") or {}).get("spec", {}).get("containers", [])
        return [name, f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}", st.get("updatedReplicas", 0),
                st.get("availableReplicas", 0), age, ",".join(c.get("name", "") for c in cs),
                ",".join(c.get("image", "") for c in cs), sel_string(spec.get("selector"))]
    if r == "namespaces":
        return [name, st.get("phase", "Active"), age]
    if r == "services":
        ports = ",".join(f"{p.get('port')}{'/' + p['protocol'] if p.get('protocol') else ''}"
                         for p in spec.get("ports", []))
        return [name, spec.get("type", "ClusterIP"), spec.get("clusterIP", "None"), "<none>", ports or "<none>", age,
                ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items())) or "<none>"]
    if r == "configmaps":
        return [name, len(o.get("data") or {}) + len(o.get("binaryData") or {}), age]
    if r == "secrets":
        return [name, o.get("type", "Opaque"), len(o.get("data") or {}) + len(o.get("stringData") or {}), age]
    if r == "serviceaccounts":
        return [name, len(o.get("secrets") or []), age]
    if r == "pods":
        cs = st.get("containerStatuses", [])
        return [name, f"{sum(1 for c in cs if c.get('ready'))}/{len(spec.get('containers', []))}",
                st.get("phase", "Pending"), "0", age, st.get("podIP", "<none>"), spec.get("nodeName", "<none>")]
    if r == "networkpolicies":
        return [name, sel_string(spec.get("podSelector")) or "<none>", age]
    if r == "leases":
        return [name, spec.get("holderIdentity", ""), age]
    if r == "resourcequotas":
        return [name, age, ", ".join(f"{k}: {(st.get('used') or {}).get(k, '0')}/{v}" for k, v in
                                     sorted((spec.get("hard") or {}).items()) if not k.startswith("limits.")), ""]
    if r == "limitranges":
        return [name, md.get("creationTimestamp")]
    return [name, age]


def table_for(kind, objs, include, rv, with_columns=True, cont=None):
    rows = []
    for o in objs:
        row = {"cells": table_cells(kind, o)}
        if include == "Object":
            row["object"] = o
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": o["metadata"]}
        rows.append(row)
    t = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv}}
    if cont:
        t["metadata"]["continue"] = cont
    t["columnDefinitions"] = table_columns(kind) if with_columns else []
    t["rows"] = rows
    return t


# ----------------------------------------------------------------------------------------------
# Discovery and OpenAPI

def api_resource(kind):
    r = {"name": kind.resource, "singularName": kind.singular, "namespaced": kind.namespaced, "kind": kind.kind,
         "verbs": kind.verbs,
         "storageVersionHash": base64.b64encode(hashlib.sha256(kind.key.encode()).digest()[:8]).decode()}
    if kind.short:
        r["shortNames"] = kind.short
    if kind.categories:
        r["categories"] = kind.categories
    out = [r]
    if kind.status_sub:
        out.append({"name": kind.resource + "/status", "singularName": "", "namespaced": kind.namespaced,
                    "kind": kind.kind, "verbs": ["get", "patch", "update"]})
    if kind.scale_sub:
        out.append({"name": kind.resource + "/scale", "singularName": "", "namespaced": kind.namespaced,
                    "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
    if kind is NAMESPACES:
        out.append({"name": "namespaces/finalize", "singularName": "", "namespaced": False, "kind": "Namespace",
                    "verbs": ["update"]})
    return out


def resource_list(group, version):
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": [r for k in GROUPS[group][version] for r in api_resource(k)]}


def group_list():
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
         "preferredVersion": {"groupVersion": f"{g}/{next(iter(vs))}", "version": next(iter(vs))}}
        for g, vs in GROUPS.items() if g]}


def aggregated(groups):
    items = []
    for g in groups:
        versions = []
        for v, kinds in GROUPS[g].items():
            res = []
            for k in kinds:
                r = {"resource": k.resource, "responseKind": {"group": g, "version": v, "kind": k.kind},
                     "scope": "Namespaced" if k.namespaced else "Cluster", "singularResource": k.singular,
                     "verbs": k.verbs}
                if k.short:
                    r["shortNames"] = k.short
                if k.categories:
                    r["categories"] = k.categories
                subs = []
                if k.status_sub:
                    subs.append({"subresource": "status", "responseKind": {"group": g, "version": v, "kind": k.kind},
                                 "verbs": ["get", "patch", "update"]})
                if k.scale_sub:
                    subs.append({"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1",
                                                                          "kind": "Scale"},
                                 "verbs": ["get", "patch", "update"]})
                if subs:
                    r["subresources"] = subs
                res.append(r)
            versions.append({"version": v, "resources": res, "freshness": "Current"})
        items.append({"metadata": {"name": g, "creationTimestamp": None}, "versions": versions})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items}


def to_openapi(s):
    if isinstance(s, dict):
        if "$ref" in s:
            return {"$ref": "#/components/schemas/" + s["$ref"]}
        return {k: to_openapi(v) for k, v in s.items()}
    if isinstance(s, list):
        return [to_openapi(v) for v in s]
    return s


def schema_closure(names):
    seen = set()
    stack = list(names)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        todo = [DEFS[n]]
        while todo:
            x = todo.pop()
            if isinstance(x, dict):
                if "$ref" in x:
                    stack.append(x["$ref"])
                todo.extend(x.values())
            elif isinstance(x, list):
                todo.extend(x)
    return seen


def openapi_schema(name):
    s = to_openapi(DEFS[name])
    if name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
        return {"type": "string", "format": "int-or-string", "x-kubernetes-int-or-string": True}
    if name == "io.k8s.apimachinery.pkg.api.resource.Quantity":
        return {"type": "string"}
    return s


QUERY_PARAMS = {
    "dryRun": "When present, indicates that modifications should not be persisted.",
    "fieldManager": "fieldManager is a name associated with the actor or entity that is making these changes.",
    "fieldValidation": "fieldValidation instructs the server on how to handle objects in the request containing "
                       "unknown or duplicate fields.",
    "force": "Force is going to \"force\" Apply requests.",
    "pretty": "If 'true', then the output is pretty printed.",
}


def openapi_gv(group, version):
    kinds = GROUPS[group][version]
    paths = {}
    names = set()
    for k in kinds:
        sname = k.schema["$ref"]
        names.add(sname)
        gvk = [{"group": k.group, "version": k.version, "kind": k.kind}]
        ref = {"$ref": "#/components/schemas/" + sname}
        body = {"content": {"application/json": {"schema": ref}}}
        patch_body = {"content": {t: {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}}
                                  for t in ("application/apply-patch+yaml", "application/json-patch+json",
                                            "application/merge-patch+json", "application/strategic-merge-patch+json")}}
        resp = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}

        def op(action, verb, params=(), with_body=False, kgvk=gvk, kresp=resp, kbody=body, kind=k):
            if action == "patch":
                kbody = patch_body
            o = {"tags": [kind.group or "core"], "operationId": f"{verb}{kind.kind}",
                 "parameters": [{"name": p, "in": "query", "description": QUERY_PARAMS[p], "schema": {
                     "type": "boolean" if p == "force" else "string", "uniqueItems": True}} for p in params],
                 "responses": kresp, "x-kubernetes-action": action, "x-kubernetes-group-version-kind": kgvk[0]}
            if with_body:
                o["requestBody"] = kbody
            return o

        base = k.gv_path + ("/namespaces/{namespace}/" if k.namespaced else "/") + k.resource
        pparams = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string", "uniqueItems": True}}]
        if k.namespaced:
            pparams.append({"name": "namespace", "in": "path", "required": True,
                            "schema": {"type": "string", "uniqueItems": True}})
        paths[base] = {"get": op("list", "list"), "post": op("post", "create", ("dryRun", "fieldManager", "fieldValidation"), True),
                       "parameters": pparams[1:]}
        paths[base + "/{name}"] = {
            "get": op("get", "read"),
            "put": op("put", "replace", ("dryRun", "fieldManager", "fieldValidation"), True),
            "patch": op("patch", "patch", ("dryRun", "fieldManager", "fieldValidation", "force"), True),
            "delete": op("delete", "delete", ("dryRun",)),
            "parameters": pparams}
        for sub in (["status"] if k.status_sub else []):
            paths[base + "/{name}/" + sub] = {
                "get": op("get", "read"), "put": op("put", "replace", ("dryRun", "fieldManager", "fieldValidation"), True),
                "patch": op("patch", "patch", ("dryRun", "fieldManager", "fieldValidation", "force"), True),
                "parameters": pparams}
        if k.scale_sub:
            names.add("io.k8s.api.autoscaling.v1.Scale")
            sref = {"$ref": "#/components/schemas/io.k8s.api.autoscaling.v1.Scale"}
            sgvk = [{"group": "autoscaling", "version": "v1", "kind": "Scale"}]
            sresp = {"200": {"description": "OK", "content": {"application/json": {"schema": sref}}}}
            sbody = {"content": {"application/json": {"schema": sref}}}
            paths[base + "/{name}/scale"] = {
                "get": op("get", "read", kgvk=sgvk, kresp=sresp),
                "put": op("put", "replace", ("dryRun", "fieldManager", "fieldValidation"), True, sgvk, sresp, sbody),
                "patch": op("patch", "patch", ("dryRun", "fieldManager", "fieldValidation", "force"), True, sgvk,
                            sresp, sbody),
                "parameters": pparams}
    schemas = {n: openapi_schema(n) for n in sorted(schema_closure(names))}
    schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Patch"] = {"type": "object"}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": K8S_VERSION["gitVersion"]},
            "paths": paths, "components": {"schemas": schemas}}


OPENAPI_DOCS = {}
for _g, _vs in GROUPS.items():
    for _v in _vs:
        _p = f"apis/{_g}/{_v}" if _g else "api/v1"
        _doc = json.dumps(openapi_gv(_g, _v), separators=(",", ":")).encode()
        OPENAPI_DOCS[_p] = (_doc, hashlib.sha512(_doc).hexdigest()[:128].upper())


# ----------------------------------------------------------------------------------------------
# HTTP

class Fault:
    def __init__(self, spec):
        self.status = spec.get("status")
        self.count = spec.get("count")
        self.path_regex = re.compile(spec["path_regex"]) if spec.get("path_regex") else None
        self.method = (spec.get("method") or "").upper() or None
        self.retry_after = spec.get("retry_after")
        self.latency_ms = spec.get("latency_ms")
        self.drop_after = spec.get("drop_watch_after_events")
        self.drop_after_ms = spec.get("drop_watch_after_ms")
        self.stall = bool(spec.get("stall_watch"))
        self.message = spec.get("message")
        self.spec = spec

    def matches(self, method, target, is_watch):
        if self.count is not None and self.count <= 0:
            return False
        if self.method and self.method != method:
            return False
        if self.path_regex and not self.path_regex.search(target):
            return False
        if (self.drop_after is not None or self.drop_after_ms is not None or self.stall) and not is_watch:
            return False
        return True


def request_verb(method, path, query, ctype):
    """The verb and resource a request is counted under, as kube-apiserver's apiserver_request_total
    labels them: get, list, watch, create, update, patch, apply, delete, deletecollection; requests
    that are not for a resource (discovery, OpenAPI, health) count as verb "discovery"."""
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        return "discovery", path or "/"
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if rest and rest[0] == "watch":
        rest = rest[1:]
        watch = True
    else:
        watch = query.get("watch") in ("1", "true")
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] in {k.resource for k in KINDS}:
        rest = rest[2:]
    if not rest:
        return "discovery", path
    resource = rest[0] + ("/" + rest[2] if len(rest) > 2 else "")
    named = len(rest) > 1
    if method in ("GET", "HEAD"):
        verb = "watch" if watch else ("get" if named else "list")
    elif method == "POST":
        verb = "create"
    elif method == "PUT":
        verb = "update"
    elif method == "PATCH":
        verb = "apply" if ctype.split(";")[0].strip() == "application/apply-patch+yaml" else "patch"
    elif method == "DELETE":
        verb = "delete" if named else "deletecollection"
    else:
        verb = method.lower()
    return verb, resource


REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
           409: "Conflict", 410: "Expired", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
           503: "ServiceUnavailable", 504: "Timeout"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-apiserver"
    sys_version = ""

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError) as e:
                log(f"TLS handshake failed: {e}")
                raise
            self.request.settimeout(None)
        super().setup()

    def log_message(self, fmt, *args):
        if self.server.args.verbose:
            log(f"{self.address_string()} {fmt % args}")

    @property
    def store(self):
        return self.server.store

    # -- plumbing
    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def record_status(self, code):
        # Before the response leaves: a client that reads the request log right after its response
        # must find the status there.
        self.status_code = code
        entry = getattr(self, "log_entry", None)
        if entry is not None:
            with self.store.cond:
                entry["status"] = code

    def send(self, code, obj, headers=None, ctype="application/json"):
        data = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        self.record_status(code)
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        for w in getattr(self, "warnings", []):
            self.send_header("Warning", f'299 - {json.dumps(w)}')
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.status_code = code

    def send_error_status(self, e):
        self.send(e.code, e.status(), e.headers)

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def dispatch(self):
        self.status_code = 0
        self.log_entry = None
        self.warnings = []
        url = urllib.parse.urlsplit(self.path)
        self.url_path = url.path
        self.query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        entry = None
        try:
            body = self.read_body()
            if url.path.startswith("/__control/"):
                return self.control(url.path, body)
            entry = {"method": self.command, "path": url.path, "query": url.query,
                     "content_type": self.headers.get("Content-Type", ""), "accept": self.headers.get("Accept", ""),
                     "user_agent": self.headers.get("User-Agent", ""), "time": time.time(), "status": None}
            self.log_entry = entry
            verb, resource = request_verb(self.command, url.path, self.query, self.headers.get("Content-Type", ""))
            with self.store.cond:
                self.store.requests.append(entry)
                del self.store.requests[:-20000]
                key = (verb, resource)
                self.store.counters[key] = self.store.counters.get(key, 0) + 1
            token = self.server.args.token
            if token and not hmac.compare_digest(self.headers.get("Authorization", "").encode(),
                                                 f"Bearer {token}".encode()):
                raise ApiError(401, "Unauthorized", "Unauthorized")
            self.inject_faults(url)
            self.route(url.path, body)
        except ApiError as e:
            self.send_error_status(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        except Exception as e:
            log(f"internal error on {self.command} {self.path}: {e!r}")
            import traceback
            traceback.print_exc()
            try:
                self.send_error_status(ApiError(500, "InternalError", f"Internal error occurred: {e}"))
            except OSError:
                self.close_connection = True
        finally:
            if entry is not None and entry["status"] is None:
                with self.store.cond:
                    entry["status"] = self.status_code

    def inject_faults(self, url):
        target = url.path
        is_watch = self.query.get("watch") in ("1", "true") or "/watch/" in url.path
        latency = 0
        fail = None
        self.drop_after = None
        self.drop_after_ms = None
        self.stall = False
        with self.store.cond:
            for f in self.store.faults:
                if not f.matches(self.command, target, is_watch):
                    continue
                if f.count is not None:
                    f.count -= 1
                if f.latency_ms:
                    latency += f.latency_ms
                if f.drop_after is not None:
                    self.drop_after = f.drop_after
                if f.drop_after_ms is not None:
                    self.drop_after_ms = f.drop_after_ms
                if f.stall:
                    self.stall = True
                if f.status and fail is None:
                    fail = f
        if latency:
            time.sleep(latency / 1000.0)
        if fail:
            code = int(fail.status)
            headers = {}
            det = {}
            if fail.retry_after is not None:
                headers["Retry-After"] = str(fail.retry_after)
                det["retryAfterSeconds"] = int(fail.retry_after)
            msg = fail.message or {429: "Too many requests, please try again later.",
                                   503: "service unavailable", 500: "injected internal error",
                                   504: "the server was unable to return a response in the time allotted"}.get(
                code, f"injected fault {code}")
            raise ApiError(code, REASONS.get(code, "InternalError"), msg, det or None, headers)

    def control(self, path, body):
        st = self.store
        if path == "/__control/faults" and self.command == "POST":
            spec = json.loads(body or b"{}")
            specs = spec if isinstance(spec, list) else [spec]
            with st.cond:
                st.faults.extend(Fault(s) for s in specs)
            return self.send(200, {"faults": len(st.faults)})
        if path == "/__control/faults" and self.command == "GET":
            with st.cond:
                return self.send(200, [dict(f.spec, remaining=f.count) for f in st.faults])
        if path == "/__control/reset" and self.command == "POST":
            with st.cond:
                st.faults = []
                st.requests = []
                st.counters = {}
            return self.send(200, {"reset": True})
        if path == "/__control/counters":
            with st.cond:
                if self.command == "DELETE":
                    st.counters = {}
                counters = dict(st.counters)
            by_verb, by_resource = {}, {}
            for (verb, resource), n in sorted(counters.items()):
                by_verb[verb] = by_verb.get(verb, 0) + n
                by_resource.setdefault(resource, {})[verb] = n
            return self.send(200, {"total": sum(counters.values()), "byVerb": by_verb, "byResource": by_resource})
        if path == "/__control/requests":
            with st.cond:
                if self.command == "DELETE":
                    st.requests = []
                    return self.send(200, [])
                return self.send(200, list(st.requests))
        if path == "/__control/compact" and self.command == "POST":
            return self.send(200, {"compactedThrough": st.compact()})
        if path == "/__control/info":
            with st.cond:
                return self.send(200, {"resourceVersion": st.rv, "oldestEventResourceVersion": st.first_event_rv,
                                       "objects": len(st.objects), "kubernetes": K8S_VERSION["gitVersion"]})
        raise ApiError(404, "NotFound", f"no control endpoint {self.command} {path}")

    # -- routing
    def wants(self, marker):
        return marker in self.headers.get("Accept", "")

    def route(self, path, body):
        parts = [p for p in path.split("/") if p]
        if self.command not in ("GET", "HEAD") and not (parts and parts[0] in ("api", "apis") and len(parts) > 2):
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource")
        if path == "/version":
            return self.send(200, K8S_VERSION)
        if path in ("/healthz", "/readyz", "/livez"):
            return self.send(200, b"ok", ctype="text/plain; charset=utf-8")
        if path == "/api":
            if self.wants("as=APIGroupDiscoveryList"):
                return self.send(200, aggregated([""]), ctype=self.aggregated_ctype())
            return self.send(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.server.args.host}:{self.server.server_port}"}]})
        if path == "/apis":
            if self.wants("as=APIGroupDiscoveryList"):
                return self.send(200, aggregated([g for g in GROUPS if g]), ctype=self.aggregated_ctype())
            return self.send(200, group_list())
        if path == "/openapi/v3":
            return self.send(200, {"paths": {p: {"serverRelativeURL": f"/openapi/v3/{p}?hash={h}"}
                                             for p, (_, h) in OPENAPI_DOCS.items()}})
        if path.startswith("/openapi/v3/"):
            doc = OPENAPI_DOCS.get(path[len("/openapi/v3/"):])
            if doc:
                return self.send(200, doc[0], headers={"Etag": f'"{doc[1]}"'})
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not parts or parts[0] not in ("api", "apis"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if parts[0] == "api":
            if len(parts) < 2 or parts[1] != "v1":
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            group, version, rest = "", "v1", parts[2:]
        else:
            if len(parts) == 2:
                g = parts[1]
                if g not in GROUPS or not g:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                vs = GROUPS[g]
                v0 = next(iter(vs))
                return self.send(200, {"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": [
                    {"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                    "preferredVersion": {"groupVersion": f"{g}/{v0}", "version": v0}})
            if len(parts) < 3 or parts[1] not in GROUPS or parts[2] not in GROUPS[parts[1]]:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            group, version, rest = parts[1], parts[2], parts[3:]
        if not rest:
            if self.command != "GET":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            return self.send(200, resource_list(group, version))
        watch_path = False
        if rest[0] == "watch":
            watch_path, rest = True, rest[1:]
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces" and (group, version, rest[2]) in BY_PATH:
            ns, rest = rest[1], rest[2:]
        kind = BY_PATH.get((group, version, rest[0])) if rest else None
        if kind is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        if len(rest) > 3 or (sub and not ((sub == "status" and kind.status_sub) or (sub == "scale" and kind.scale_sub)
                                            or (sub == "finalize" and kind is NAMESPACES))):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if kind.namespaced and name is not None and ns is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not kind.namespaced:
            ns = ""
        self.handle_resource(kind, ns, name, sub, body, watch_path)

    def aggregated_ctype(self):
        v = "v2" if "v=v2;" in self.headers.get("Accept", "") or "v=v2," in self.headers.get("Accept", "") \
            or self.headers.get("Accept", "").endswith("v=v2") else "v2beta1"
        return f"application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"

    def handle_resource(self, kind, ns, name, sub, body, watch_path):
        m = self.command
        is_watch = watch_path or self.query.get("watch") in ("1", "true")
        if m in ("GET", "HEAD") and name is None:
            return self.watch(kind, ns) if is_watch else self.list_objects(kind, ns)
        if is_watch:
            self.query["fieldSelector"] = f"metadata.name={name}"
            return self.watch(kind, ns)
        if m == "POST" and name is None:
            return self.create(kind, ns, body)
        if m == "DELETE" and name is None:
            return self.delete_collection(kind, ns, body)
        if name is None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if m in ("GET", "HEAD"):
            return self.get_object(kind, ns, name, sub)
        if m == "PUT":
            return self.update(kind, ns, name, sub, body)
        if m == "PATCH":
            return self.patch(kind, ns, name, sub, body)
        if m == "DELETE" and not sub:
            return self.delete(kind, ns, name, body)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    # -- reads
    def get_object(self, kind, ns, name, sub):
        with self.store.cond:
            o = self.store.get(kind, ns, name)
            if o is None:
                raise not_found(kind, name)
            o = copy.deepcopy(o)
        if sub == "scale":
            return self.send(200, to_scale(o))
        if self.wants("as=Table"):
            return self.send(200, table_for(kind, [o], self.query.get("includeObject", "Metadata"),
                                            o["metadata"]["resourceVersion"]))
        return self.send(200, o)

    def selectors(self):
        return Selector(self.query.get("labelSelector")), FieldSelector(self.query.get("fieldSelector"))

    def list_objects(self, kind, ns):
        ls, fs = self.selectors()
        limit = int(self.query.get("limit") or 0)
        cont = self.query.get("continue")
        start = None
        if cont:
            try:
                start = json.loads(base64.urlsafe_b64decode(cont.encode()))["start"]
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid: invalid continue token")
        with self.store.cond:
            rv = str(self.store.rv)
            objs = [copy.deepcopy(o) for o in self.store.list(kind, ns)
                    if ls.matches(o["metadata"].get("labels")) and fs.matches(o)]
        if start:
            objs = [o for o in objs if [o["metadata"].get("namespace", ""), o["metadata"]["name"]] > start]
        next_token, remaining = None, 0
        if limit and len(objs) > limit:
            last = objs[limit - 1]["metadata"]
            next_token = base64.urlsafe_b64encode(json.dumps(
                {"rv": rv, "start": [last.get("namespace", ""), last["name"]]}).encode()).decode()
            remaining = len(objs) - limit
            objs = objs[:limit]
        if self.wants("as=Table"):
            return self.send(200, table_for(kind, objs, self.query.get("includeObject", "Metadata"), rv,
                                            cont=next_token))
        for o in objs:  # items of built-in lists carry no apiVersion/kind, as on a real server
            o.pop("apiVersion", None)
            o.pop("kind", None)
        md = {"resourceVersion": rv}
        if next_token:
            md["continue"] = next_token
            md["remainingItemCount"] = remaining
        return self.send(200, {"kind": kind.kind + "List", "apiVersion": kind.api_version, "metadata": md,
                               "items": objs})

    def watch(self, kind, ns):
        st = self.store
        ls, fs = self.selectors()
        rv_param = self.query.get("resourceVersion", "")
        timeout = float(self.query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        bookmarks = self.query.get("allowWatchBookmarks") in ("1", "true")
        table = self.wants("as=Table")
        include = self.query.get("includeObject", "Metadata")
        drop_after = getattr(self, "drop_after", None)
        drop_at = (time.monotonic() + self.drop_after_ms / 1000.0) if getattr(self, "drop_after_ms", None) is not None else None
        stall = getattr(self, "stall", False)
        sent = 0

        def match(o):
            return o is not None and (ns in (None, "") or o["metadata"].get("namespace", "") == ns or not kind.namespaced) \
                and ls.matches(o["metadata"].get("labels")) and fs.matches(o)

        def frame(type_, obj):
            if table and type_ not in ("ERROR", "BOOKMARK"):
                obj = table_for(kind, [obj], include, obj["metadata"]["resourceVersion"], with_columns=(sent == 0))
            return json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n"

        initial = []
        with st.cond:
            if rv_param in ("", "0"):
                initial = [copy.deepcopy(o) for o in st.list(kind, ns) if match(o)]
                cursor = st.rv
            else:
                try:
                    cursor = int(rv_param)
                except ValueError:
                    raise bad_request(f'invalid resource version "{rv_param}"')
                expired = cursor + 1 < st.first_event_rv
        self.record_status(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

        def write(data):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def gone(rv):
            write(frame("ERROR", {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": f"too old resource version: {rv} ({st.first_event_rv - 1})",
                                  "reason": "Expired", "code": 410}))

        def emit(type_, obj):
            nonlocal sent
            if drop_after is not None and sent >= drop_after:
                raise _Drop()
            write(frame(type_, obj))
            sent += 1
            if drop_after is not None and sent >= drop_after:
                raise _Drop()

        def drop():
            # An abrupt end without the terminating chunk, as when a connection drops.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        if stall:
            # A watch that silently stopped (a hung server, a connection dropped without a FIN): the head
            # was sent, then nothing ever comes — no event, no bookmark, no end — until the client gives up.
            # A client sends nothing on a watch connection: readable means it closed it (or went away).
            while not st.closing:
                try:
                    readable, _, _ = select.select([self.connection], [], [], 0.2)
                except (OSError, ValueError):
                    break
                if readable:
                    break
            self.close_connection = True
            return
        try:
            if rv_param not in ("", "0") and expired:
                gone(cursor)
                write(b"")
                return
            for o in initial:
                emit("ADDED", o)
            next_bookmark = time.monotonic() + self.server.args.bookmark_interval_ms / 1000.0
            while True:
                batch = []
                with st.cond:
                    while not st.closing:
                        now = time.monotonic()
                        if cursor + 1 < st.first_event_rv or now >= deadline or (drop_at is not None and now >= drop_at):
                            break
                        idx = cursor + 1 - st.first_event_rv
                        if idx < len(st.events):
                            batch = st.events[idx:]
                            break
                        if bookmarks and now >= next_bookmark:
                            break
                        wake = min(deadline, next_bookmark if bookmarks else deadline, drop_at if drop_at is not None else deadline)
                        st.cond.wait(timeout=wake - now)
                    if cursor + 1 < st.first_event_rv:
                        gone(cursor)
                        write(b"")
                        return
                    closing = st.closing
                if drop_at is not None and time.monotonic() >= drop_at:
                    raise _Drop()
                if closing or (time.monotonic() >= deadline and not batch):
                    write(b"")
                    return
                for ev in batch:
                    cursor = ev.rv
                    if ev.key != kind.key or (kind.namespaced and ns and ev.ns != ns):
                        continue
                    now_in, was_in = match(ev.obj), ev.type == "MODIFIED" and match(ev.prev)
                    if ev.type == "ADDED" and now_in:
                        emit("ADDED", ev.obj)
                    elif ev.type == "DELETED" and match(ev.prev):
                        emit("DELETED", ev.obj)
                    elif ev.type == "MODIFIED":
                        if now_in and was_in:
                            emit("MODIFIED", ev.obj)
                        elif now_in:
                            emit("ADDED", ev.obj)
                        elif was_in:
                            emit("DELETED", ev.obj)
                if bookmarks and time.monotonic() >= next_bookmark:
                    emit("BOOKMARK", {"kind": kind.kind, "apiVersion": kind.api_version,
                                      "metadata": {"resourceVersion": str(cursor)}})
                    next_bookmark = time.monotonic() + self.server.args.bookmark_interval_ms / 1000.0
        except _Drop:
            drop()

    # -- writes
    def decode(self, body, ctype=None):
        ctype = (ctype or self.headers.get("Content-Type", "application/json")).split(";")[0].strip()
        if ctype == "application/vnd.kubernetes.protobuf":
            try:
                return decode_protobuf(body)
            except (ValueError, IndexError, UnicodeDecodeError) as e:
                raise ApiError(415, "UnsupportedMediaType", f"the body of the request could not be decoded: {e}")
        if "protobuf" in ctype:
            raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                           f"accepted media types include: application/json, application/yaml")
        try:
            if ctype in ("application/yaml", "application/apply-patch+yaml"):
                return yaml.safe_load(body.decode() or "{}")
            return json.loads(body or b"{}")
        except (ValueError, yaml.YAMLError) as e:
            raise bad_request(f"error decoding request body: {e}")

    def dry_run(self):
        dr = self.query.get("dryRun")
        if dr not in (None, "All"):
            raise bad_request(f'unsupported dry run directive "{dr}"; supported: "All"')
        return dr == "All"

    def check_fields(self, kind, obj, sub=""):
        """fieldValidation: Strict rejects unknown fields; Warn (default) and Ignore drop them."""
        mode = self.query.get("fieldValidation", "Warn")
        errors = []
        fieldset(tracked(kind, obj, sub) if sub else {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")},
                 kind.schema, (), None, errors)
        if not errors:
            return obj
        if mode == "Strict":
            raise bad_request(f"{kind.kind} in version \"{kind.version}\" cannot be handled as a {kind.kind}: "
                              f"strict decoding error: " + ", ".join(errors))
        if mode != "Ignore":
            self.warnings.extend(errors)
        return prune_unknown(obj, kind.schema)

    def prep_body(self, kind, ns, obj, name=None):
        if not isinstance(obj, dict):
            raise bad_request("the body of the request was not a JSON object")
        if obj.get("kind") not in (None, kind.kind) or obj.get("apiVersion") not in (None, kind.api_version):
            raise bad_request(f"the API version in the data ({obj.get('apiVersion')}) does not match the expected "
                              f"API version ({kind.api_version})" if obj.get("apiVersion") != kind.api_version else
                              f"the kind in the data ({obj.get('kind')}) does not match the expected kind ({kind.kind})")
        md = obj.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise bad_request("metadata must be an object")
        if kind.namespaced:
            if md.get("namespace") not in (None, "", ns):
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            md["namespace"] = ns
        if name is not None and md.get("name") not in (None, name):
            raise bad_request(f"the name of the object ({md.get('name')}) does not match the name on the URL ({name})")
        if name is not None:
            md["name"] = name
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        return obj

    def check_namespace(self, kind, ns, name):
        if not kind.namespaced:
            return
        n = self.store.get(NAMESPACES, "", ns)
        if n is None:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"})
        if n["metadata"].get("deletionTimestamp"):
            raise ApiError(403, "Forbidden", f"{kind.qualified} \"{name}\" is forbidden: unable to create new content "
                           f"in namespace {ns} because it is being terminated",
                           {"name": ns, "kind": "namespaces",
                            "causes": [{"reason": "NamespaceTerminating", "message": f"namespace {ns} is being terminated",
                                        "field": "metadata.namespace"}]})

    def manager(self, default_op):
        fm = self.query.get("fieldManager")
        if fm:
            if len(fm) > 128:
                raise bad_request("fieldManager: Too long: may not be longer than 128")
            return fm
        ua = self.headers.get("User-Agent", "unknown")
        return ua.split("/")[0] or "unknown"

    def finish_write(self, kind, ns, new, old, sub, dry, code=200, scale=False):
        """Shared tail of every create/update: defaults, generation, validation, no-op detection, storage."""
        st = self.store
        apply_defaults(kind, new, old)
        md = new["metadata"]
        if old is not None:
            for k in ("uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds"):
                if k in old["metadata"]:
                    md[k] = old["metadata"][k]
                else:
                    md.pop(k, None)
            md["resourceVersion"] = old["metadata"]["resourceVersion"]
            if sub in ("status",):
                new = dict(old, status=new.get("status", {}), metadata=dict(old["metadata"], managedFields=md.get(
                    "managedFields", [])))
                if not new["metadata"]["managedFields"]:
                    del new["metadata"]["managedFields"]
                md = new["metadata"]
            elif kind.status_sub and "status" in old:
                new["status"] = old["status"]
            elif kind.status_sub:
                new.pop("status", None)
            if kind.generation and spec_of(new) != spec_of(old):
                md["generation"] = old["metadata"].get("generation", 1) + 1
        else:
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now_ts()
            md.pop("resourceVersion", None)
            if kind.generation:
                md["generation"] = 1
            if kind.status_sub and kind is not NAMESPACES and kind.resource != "services":
                new.pop("status", None)
        validate(kind, new, old)
        new = reorder(omit_empty(new, kind.schema))
        if old is not None and strip_times(new) == strip_times(old):
            return self.send(200, old)  # no-op: nothing stored, resourceVersion unchanged
        if dry:
            if old is None:
                md.pop("resourceVersion", None)
            return self.send(code, new)
        st.put(kind, ns, new, old, "ADDED" if old is None else "MODIFIED")
        st.after_write(kind, ns, new, old)
        return self.send(code, copy.deepcopy(new))

    def create(self, kind, ns, body):
        obj = self.prep_body(kind, ns, self.decode(body))
        obj = self.check_fields(kind, obj)
        dry = self.dry_run()
        md = obj["metadata"]
        if not md.get("name"):
            if md.get("generateName"):
                md["name"] = md["generateName"] + rand_suffix()
            else:
                raise invalid(kind, "", [{"reason": "FieldValueRequired", "message": "Required value: name or "
                                          "generateName is required", "field": "metadata.name"}])
        name = md["name"]
        for k in SERVER_META:
            md.pop(k, None)
        with self.store.cond:
            self.check_namespace(kind, ns, name)
            if self.store.get(kind, ns, name) is not None:
                raise ApiError(409, "AlreadyExists", f'{kind.qualified} "{name}" already exists', details(kind, name))
            new = copy.deepcopy(obj)
            apply_defaults(kind, new, None)
            update_managed_fields(new, None, kind, self.manager("Update"), "")
            return self.finish_write(kind, ns, new, None, "", dry, 201)

    def update(self, kind, ns, name, sub, body):
        if sub == "finalize":
            sub = ""
        if sub == "scale":
            return self.update_scale(kind, ns, name, self.decode(body), None)
        obj = self.prep_body(kind, ns, self.decode(body), name)
        obj = self.check_fields(kind, obj)
        dry = self.dry_run()
        with self.store.cond:
            old = self.store.get(kind, ns, name)
            if old is None:
                raise not_found(kind, name)
            rv = obj["metadata"].get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise conflict(kind, name)
            if old["metadata"]["uid"] != obj["metadata"].get("uid", old["metadata"]["uid"]):
                raise conflict(kind, name)
            new = copy.deepcopy(obj)
            self.keep_meta(new, old)
            apply_defaults(kind, new, old)
            update_managed_fields(new, old, kind, self.manager("Update"), sub)
            return self.finish_write(kind, ns, new, old, sub, dry)

    @staticmethod
    def keep_meta(new, old):
        # managedFields in a write body are ignored here (a real server would validate and take them).
        new["metadata"]["managedFields"] = old["metadata"].get("managedFields", [])

    def patch(self, kind, ns, name, sub, body):
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
        dry = self.dry_run()
        if sub == "finalize":
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if ctype == "application/apply-patch+yaml":
            return self.apply(kind, ns, name, sub, body, dry)
        patch = self.decode(body, "application/json")
        with self.store.cond:
            old = self.store.get(kind, ns, name)
            if old is None:
                raise not_found(kind, name)
            base = to_scale(old) if sub == "scale" else old
            try:
                if ctype == "application/merge-patch+json":
                    new = json_merge_patch(base, patch)
                elif ctype == "application/strategic-merge-patch+json":
                    schema = {"$ref": "io.k8s.api.autoscaling.v1.Scale"} if sub == "scale" else kind.schema
                    new = strategic_merge(base, patch, schema)
                elif ctype == "application/json-patch+json":
                    new = json_patch(base, patch)
                else:
                    raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                                   "accepted media types include: application/json-patch+json, application/merge-patch"
                                   "+json, application/apply-patch+yaml, application/strategic-merge-patch+json")
            except PatchError as e:
                raise ApiError(422, "Invalid", str(e))
            if not isinstance(new, dict):
                raise bad_request("patch result is not an object")
            if sub == "scale":
                return self.update_scale(kind, ns, name, new, old)
            rv = (new.get("metadata") or {}).get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise conflict(kind, name)
            new = self.prep_body(kind, ns, new, name)
            new = self.check_fields(kind, new)
            self.keep_meta(new, old)
            apply_defaults(kind, new, old)
            update_managed_fields(new, old, kind, self.manager("Update"), sub)
            return self.finish_write(kind, ns, new, old, sub, dry)

    def apply(self, kind, ns, name, sub, body, dry):
        fm = self.query.get("fieldManager")
        if not fm:
            raise bad_request("PATCH, application/apply-patch+yaml requires a non-empty fieldManager query parameter")
        force = self.query.get("force") in ("true", "1")
        cfg = self.decode(body, "application/apply-patch+yaml")
        if not isinstance(cfg, dict):
            raise bad_request("apply patch must be an object")
        if not cfg.get("apiVersion") or not cfg.get("kind"):
            raise bad_request("invalid object type: apiVersion and kind must be set in an apply patch")
        if sub == "scale":
            raise ApiError(415, "UnsupportedMediaType", "apply is not supported on the scale subresource by this server")
        cfg = self.prep_body(kind, ns, copy.deepcopy(cfg), name)
        with self.store.cond:
            old = self.store.get(kind, ns, name)
            rv = cfg["metadata"].get("resourceVersion")
            if rv and (old is None or rv != old["metadata"]["resourceVersion"]):
                raise conflict(kind, name)
            if old is None:
                if sub:
                    raise not_found(kind, name)
                self.check_namespace(kind, ns, name)
            merged, entries = server_side_apply(kind, old, cfg, fm, force, sub)
            if old is None:
                new = copy.deepcopy(merged)
                for k in SERVER_META:
                    new["metadata"].pop(k, None)
                new["metadata"]["name"] = name
                new["apiVersion"], new["kind"] = kind.api_version, kind.kind
                set_managed(new, entries)
                return self.finish_write(kind, ns, new, None, "", dry, 201)
            new = dict(merged, apiVersion=kind.api_version, kind=kind.kind)
            new["metadata"] = dict(new.get("metadata") or {}, name=name)
            if kind.namespaced:
                new["metadata"]["namespace"] = ns
            set_managed(new, entries)
            return self.finish_write(kind, ns, new, old, sub, dry)

    def update_scale(self, kind, ns, name, scale, old):
        dry = self.dry_run()
        if not isinstance(scale, dict) or not isinstance((scale.get("spec") or {}).get("replicas", 0), int):
            raise bad_request("invalid Scale object")
        with self.store.cond:
            old = old or self.store.get(kind, ns, name)
            if old is None:
                raise not_found(kind, name)
            rv = (scale.get("metadata") or {}).get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise conflict(kind, name)
            new = copy.deepcopy(old)
            new.setdefault("spec", {})["replicas"] = (scale.get("spec") or {}).get("replicas", 0)
            update_managed_fields(new, old, kind, self.manager("Update"), "", scale=True)
            if strip_times(new) == strip_times(old):
                return self.send(200, to_scale(old))
            st = self.store
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            validate(kind, new, old)
            if dry:
                return self.send(200, to_scale(new))
            st.put(kind, ns, new, old, "MODIFIED")
            st.after_write(kind, ns, new, old)
            return self.send(200, to_scale(new))

    def delete_options(self, body):
        opts = {}
        if body:
            opts = self.decode(body, "application/json") or {}
        for k in ("propagationPolicy", "gracePeriodSeconds", "orphanDependents"):
            if k in self.query:
                opts[k] = self.query[k]
        if "dryRun" in opts and opts["dryRun"]:
            self.query["dryRun"] = opts["dryRun"][0] if isinstance(opts["dryRun"], list) else opts["dryRun"]
        pp = opts.get("propagationPolicy")
        if pp not in (None, "Foreground", "Background", "Orphan"):
            raise invalid(KINDS[0], "", [{"reason": "FieldValueNotSupported", "field": "propagationPolicy",
                                          "message": f'Unsupported value: "{pp}": supported values: "Foreground", '
                                          '"Background", "Orphan"'}])
        return opts

    def delete(self, kind, ns, name, body):
        opts = self.delete_options(body)
        dry = self.dry_run()
        st = self.store
        with st.cond:
            o = st.get(kind, ns, name)
            if o is None:
                raise not_found(kind, name)
            pre = opts.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != o["metadata"]["uid"]:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind.qualified} "{name}": '
                               f'Precondition failed: UID in precondition: {pre["uid"]}, UID in object meta: '
                               f'{o["metadata"]["uid"]}', details(kind, name))
            if pre.get("resourceVersion") and pre["resourceVersion"] != o["metadata"]["resourceVersion"]:
                raise conflict(kind, name)
            if kind is NAMESPACES:
                if name in IMMORTAL_NAMESPACES:
                    raise ApiError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be '
                                   "deleted", {"name": name, "kind": "namespaces"})
                if o["metadata"].get("deletionTimestamp"):
                    return self.send(200, copy.deepcopy(o))
                new = copy.deepcopy(o)
                new["metadata"]["deletionTimestamp"] = now_ts()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                new["status"] = {"phase": "Terminating"}
                if dry:
                    return self.send(200, new)
                st.put(kind, ns, new, o, "MODIFIED")
                st.schedule(self.server.args.ready_delay_ms / 1000.0, lambda: st.finalize_namespace(name))
                return self.send(200, copy.deepcopy(new))
            fins = list(o["metadata"].get("finalizers") or [])
            if opts.get("propagationPolicy") == "Foreground" and kind is DEPLOYMENTS:
                fins = fins + ["foregroundDeletion"] if "foregroundDeletion" not in fins else fins
            if fins:
                if o["metadata"].get("deletionTimestamp"):
                    return self.send(200, copy.deepcopy(o))
                new = copy.deepcopy(o)
                new["metadata"]["deletionTimestamp"] = now_ts()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                new["metadata"]["finalizers"] = fins
                if kind.generation:
                    new["metadata"]["generation"] = o["metadata"].get("generation", 1) + 1
                if dry:
                    return self.send(200, new)
                st.put(kind, ns, new, o, "MODIFIED")
                if "foregroundDeletion" in fins:
                    st.cascade(kind, ns, new)
                    st.schedule(self.server.args.ready_delay_ms / 1000.0,
                                lambda: st.finish_foreground(kind, ns, name))
                return self.send(200, copy.deepcopy(new))
            if dry:
                return self.send(200, success(kind, o))
            if opts.get("propagationPolicy") != "Orphan" and str(opts.get("orphanDependents")).lower() != "true":
                st.cascade(kind, ns, o)
            st.remove(kind, ns, name)
            return self.send(200, success(kind, o))

    def delete_collection(self, kind, ns, body):
        self.delete_options(body)
        dry = self.dry_run()
        ls, fs = self.selectors()
        st = self.store
        with st.cond:
            objs = [o for o in st.list(kind, ns) if ls.matches(o["metadata"].get("labels")) and fs.matches(o)]
            if not dry:
                for o in objs:
                    st.cascade(kind, ns, o)
                    st.remove(kind, ns, o["metadata"]["name"])
            items = [copy.deepcopy(o) for o in objs]
        return self.send(200, {"kind": kind.kind + "List", "apiVersion": kind.api_version,
                               "metadata": {"resourceVersion": str(st.rv)}, "items": items})


class _Drop(Exception):
    pass


def success(kind, o):
    d = {"name": o["metadata"]["name"], "kind": kind.resource, "uid": o["metadata"]["uid"]}
    if kind.group:
        d["group"] = kind.group
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d}


def strip_times(o):
    o = copy.deepcopy(o)
    for e in o["metadata"].get("managedFields") or []:
        e.pop("time", None)
    return o


def to_scale(d):
    md = d["metadata"]
    sel = (d.get("spec") or {}).get("selector") or {}
    return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {
        "name": md["name"], "namespace": md.get("namespace"), "uid": md["uid"],
        "resourceVersion": md["resourceVersion"], "creationTimestamp": md["creationTimestamp"]},
        "spec": {"replicas": (d.get("spec") or {}).get("replicas", 0)},
        "status": {"replicas": (d.get("status") or {}).get("replicas", 0), "selector": sel_string(sel)}}


def omit_empty(value, schema):
    """What Go's `omitempty` does on the way out: empty maps and lists, and nulls, disappear."""
    s = resolve(schema)
    sh = shape(s)
    if isinstance(value, dict) and sh in ("struct", "map"):
        out = {}
        for k, v in value.items():
            sub = s["properties"].get(k, {}) if sh == "struct" else s["additionalProperties"]
            if v is None and k != "creationTimestamp" and sh == "struct":
                continue
            if v == [] or (v == {} and shape(sub) == "map"):
                continue
            out[k] = omit_empty(v, sub)
        return out
    if isinstance(value, list) and sh == "list":
        return [omit_empty(v, s.get("items", {})) for v in value]
    return value


def prune_unknown(value, schema):
    s = resolve(schema)
    sh = shape(s)
    if isinstance(value, dict) and sh == "struct":
        return {k: prune_unknown(v, s["properties"][k]) for k, v in value.items()
                if k in s["properties"] or k in ("apiVersion", "kind")}
    if isinstance(value, dict) and sh == "map":
        return {k: prune_unknown(v, s["additionalProperties"]) for k, v in value.items()}
    if isinstance(value, list) and sh == "list":
        return [prune_unknown(v, s.get("items", {})) for v in value]
    return value


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # A kube-apiserver listens with the kernel's backlog (somaxconn); socketserver's default of 5 drops
    # the SYNs of a client that opens a burst of connections, which then wait out TCP's 1 s, 3 s, 7 s …
    # retransmissions (a cold converge of 100 servers stalled for up to 25 s on it).
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--token", default=os.environ.get("FAKE_APISERVER_TOKEN"),
                    help="require 'Authorization: Bearer TOKEN' (also FAKE_APISERVER_TOKEN)")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--state-file", help="persist objects here after every write; loaded at start")
    ap.add_argument("--ready-delay-ms", type=int, default=200, help="simulated Deployment controller delay")
    ap.add_argument("--watch-window", type=int, default=1000, help="events retained for watch resumption")
    ap.add_argument("--bookmark-interval-ms", type=int, default=1000)
    ap.add_argument("--pod-ip", help="give every simulated Pod this IP (default: a random 10.244.0.x), e.g. 127.0.0.1 "
                    "so that probes of its containerPort reach a local test server")
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = ap.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")

    server = Server((args.host, args.port), Handler)
    server.args = args
    server.store = Store(args)
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        ctx.set_alpn_protocols(["http/1.1"])
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)

    def stop(signum, frame):
        log(f"signal {signum}: shutting down")
        with server.store.cond:
            server.store.closing = True
            server.store.cond.notify_all()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    port = server.server_address[1]
    print(f"PORT {port}", flush=True)
    log(f"listening on {'https' if args.tls_cert else 'http'}://{args.host}:{port}"
        f"{' (token required)' if args.token else ''}")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
