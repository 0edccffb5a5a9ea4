#!/usr/bin/env bash
# Installs what mcpfleet needs on a fresh Debian machine: the system libraries it links
# (libyaml, libcurl, SQLite), the tools the tests use, and the Python packages of the test suite.
set -euo pipefail
need=()
# chromium and tmux: the dashboard's end-to-end test (Tests/dashboard) drives a headless browser and a pseudo-terminal;
# prometheus: its promtool checks the shipped alert rules (deploy/observability).
for pkg in libyaml-dev libcurl4-openssl-dev libsqlite3-dev pkg-config git openssl time chromium tmux prometheus; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "${MCPFLEET_SKIP_PIP:-0}" != 1 ]; then
  python3 - <<'PY' || python3 -m pip install -q --disable-pip-version-check -r "$(dirname "$0")/../Tests/requirements.txt"
import importlib, sys
for m in ("jsonschema", "yaml", "pytest", "mcp", "kubernetes_validate"):
    try:
        importlib.import_module(m)
    except Exception:
        sys.exit(1)
PY
fi
command -v swift >/dev/null || { echo "setup: swift not found on PATH (install Swift 6.1 or newer)" >&2; exit 2; }
