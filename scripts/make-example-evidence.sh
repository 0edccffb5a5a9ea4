#!/usr/bin/env bash
# Regenerates the supply-chain evidence for the example catalog's `time` server:
#
#   Manifests/keys/release-2026.pub          P-256 public key (SPKI PEM) — the only key material committed
#   Manifests/evidence/time-server.sig       cosign `sign-blob --key` format: base64 DER ECDSA over SHA-256
#   Manifests/evidence/time-server.cdx.json  CycloneDX 1.5 SBOM from cyclonedx-py, metadata.component = time
#   Manifests/evidence/time-server.grype.json Grype JSON report (no findings above high)
#   Manifests/evidence/time-server.intoto.json in-toto Statement v1 whose subject is server.py's sha256
#
# The private key is generated in a temporary directory and deleted on exit, so every run rotates
# the key: commit the .pub together with the new signature. Needs openssl, python3 and cyclonedx-py
# (`pip install cyclonedx-bom`; set CYCLONEDX_PY to its path if it is not on PATH).
# Prints the artifact digest for the catalog's `spec.artifact.digest`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
artifact="$root/Manifests/servers/time/server.py"
manifest="$root/Manifests/servers/time.yaml"
evidence="$root/Manifests/evidence"
keys="$root/Manifests/keys"
cyclonedx="${CYCLONEDX_PY:-$(command -v cyclonedx-py || true)}"

[ -f "$artifact" ] || { echo "error: $artifact does not exist" >&2; exit 1; }
[ -f "$manifest" ] || { echo "error: $manifest does not exist" >&2; exit 1; }
[ -n "$cyclonedx" ] && [ -x "$cyclonedx" ] || {
    echo "error: cyclonedx-py not found (pip install cyclonedx-bom, or set CYCLONEDX_PY)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "error: openssl not found" >&2; exit 1; }

# The version the catalog declares for the server (spec.version of the Server document).
version="$(python3 - "$manifest" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r'^kind:\s*Server\s*$.*?^spec:\s*$.*?^  version:\s*["\']?([^"\'\s#]+)', text, re.S | re.M)
if not m:
    sys.exit("error: no spec.version in " + sys.argv[1])
print(m.group(1))
PY
)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$evidence" "$keys"

# 1. Key pair: private key only in $tmp.
openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/release-2026.key" 2>/dev/null
openssl pkey -in "$tmp/release-2026.key" -pubout -out "$keys/release-2026.pub"

# 2. Signature, exactly as `cosign sign-blob --key` prints it (base64 of the DER signature).
openssl dgst -sha256 -sign "$tmp/release-2026.key" -out "$tmp/sig.der" "$artifact"
openssl base64 -A -in "$tmp/sig.der" > "$evidence/time-server.sig"
echo >> "$evidence/time-server.sig"
openssl base64 -d -A -in "$evidence/time-server.sig" -out "$tmp/check.der"
openssl dgst -sha256 -verify "$keys/release-2026.pub" -signature "$tmp/check.der" "$artifact" >/dev/null

digest="$(openssl dgst -sha256 -r "$artifact" | cut -c1-64)"

# 3. SBOM: cyclonedx-py over the pinned dependency closure of the `mcp` SDK the server imports
#    (as installed for python3), then metadata.component set to the artifact itself.
python3 - > "$tmp/requirements.txt" <<'PY'
import re
from importlib import metadata
seen, todo = {}, ["mcp"]
while todo:
    name = todo.pop()
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        continue
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        continue
    seen[key] = dist.version
    for req in dist.requires or []:
        if "extra ==" in req:
            continue
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        if m:
            todo.append(m.group(1))
for k in sorted(seen):
    print(f"{k}=={seen[k]}")
if not seen:
    print("mcp")
PY
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1767225600}" "$cyclonedx" requirements "$tmp/requirements.txt" \
    --sv 1.5 --of JSON --output-reproducible -o "$tmp/raw.cdx.json"
python3 - "$tmp/raw.cdx.json" "$evidence/time-server.cdx.json" "$version" "$digest" <<'PY'
import json, sys
src, dst, version, digest = sys.argv[1:5]
bom = json.load(open(src, encoding="utf-8"))
meta = bom.setdefault("metadata", {})
old_ref = (meta.get("component") or {}).get("bom-ref")
root = {
    "type": "application",
    "bom-ref": "mcpfleet-example/time@" + version,
    "name": "time",
    "version": version,
    "description": "mcpfleet example MCP server (Manifests/servers/time/server.py)",
    "hashes": [{"alg": "SHA-256", "content": digest}],
    "purl": "pkg:generic/mcpfleet-example/time@" + version,
}
meta["component"] = root
deps = bom.setdefault("dependencies", [])
if old_ref:
    deps[:] = [d for d in deps if d.get("ref") != old_ref]
deps.append({"ref": root["bom-ref"], "dependsOn": sorted(c["bom-ref"] for c in bom.get("components", []) if "bom-ref" in c)})
json.dump(bom, open(dst, "w", encoding="utf-8"), indent=2, sort_keys=False)
open(dst, "a").write("\n")
PY

# 4. Grype report (grype -o json layout). The example has no findings; the gate's ceiling is "high".
cat > "$evidence/time-server.grype.json" <<JSON
{
  "matches": [],
  "source": {
    "type": "file",
    "target": "Manifests/servers/time/server.py"
  },
  "distro": {
    "name": "",
    "version": "",
    "idLike": null
  },
  "descriptor": {
    "name": "grype",
    "version": "0.87.0",
    "configuration": {
      "output": ["json"],
      "search": {"scope": "squashed"}
    },
    "db": {
      "built": "2026-01-01T00:00:00Z",
      "schemaVersion": 5
    },
    "timestamp": "2026-01-01T00:00:00Z"
  }
}
JSON

# 5. in-toto Statement v1 with a SLSA provenance predicate naming this script as the builder.
cat > "$evidence/time-server.intoto.json" <<JSON
{
  "_type": "https://in-toto.io/Statement/v1",
  "subject": [
    {
      "name": "Manifests/servers/time/server.py",
      "digest": {"sha256": "$digest"}
    }
  ],
  "predicateType": "https://slsa.dev/provenance/v1",
  "predicate": {
    "buildDefinition": {
      "buildType": "https://mcpfleet.io/example-evidence@v1",
      "externalParameters": {"server": "time", "version": "$version"}
    },
    "runDetails": {
      "builder": {"id": "scripts/make-example-evidence.sh"}
    }
  }
}
JSON

echo "time $version: artifact Manifests/servers/time/server.py"
echo "key fingerprint (sha256 of DER SPKI): $(openssl pkey -pubin -in "$keys/release-2026.pub" -outform DER | openssl dgst -sha256 -r | cut -c1-64)"
echo "digest: sha256:$digest"
