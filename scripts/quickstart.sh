#!/usr/bin/env bash
# Quick start: installs the system packages if missing, builds mcpfleet and the official Swift MCP SDK's
# mcp-everything-server, checks the example catalog in Manifests/, and runs the controller on it with
# the local driver: real MCP servers come up as supervised processes, with live progress and then a
# status table. Ctrl-C stops the fleet cleanly.
#
#   ./scripts/quickstart.sh          run until Ctrl-C
#   ./scripts/quickstart.sh --once   converge, show the status table, stop the fleet, exit (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
once=0
[ "${1:-}" = "--once" ] && once=1
./scripts/setup.sh
echo "quickstart: building (the first build takes a few minutes)"
for product in mcpfleet mcp-everything-server; do
  log=$(mktemp)
  swift build --product "$product" >"$log" 2>&1 || { tail -30 "$log"; exit 2; }
done
bin="$(swift build --show-bin-path)"
export PATH="$bin:$PATH"   # the catalog runs `mcp-everything-server` by name
mcpfleet validate Manifests
mcpfleet verify Manifests --env local
echo
if [ "$once" = 1 ]; then
  mcpfleet run Manifests --env local --once --timeout 180s
  mcpfleet status Manifests --env local
  mcpfleet stop Manifests --env local
else
  echo "quickstart: starting the fleet (Ctrl-C stops it)"
  exec mcpfleet run Manifests --env local
fi
