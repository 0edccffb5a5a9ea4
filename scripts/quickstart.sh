#!/usr/bin/env bash
# Quick start: installs the system packages if missing, builds mcpfleet, validates the example
# catalog in Manifests/ and shows the plan for the local environment.
set -euo pipefail
cd "$(dirname "$0")/.."
MCPFLEET_SKIP_PIP=1 ./scripts/setup.sh
swift build --product mcpfleet 2>&1 | tail -1
bin="$(swift build --show-bin-path)/mcpfleet"
"$bin" validate Manifests
echo
empty="$(mktemp)"; trap 'rm -f "$empty"' EXIT
echo '{"servers": [], "tenants": []}' > "$empty"
set +e
"$bin" plan Manifests --env local --live "$empty"
code=$?
set -e
[ "$code" -le 1 ] || exit "$code"
