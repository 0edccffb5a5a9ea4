#!/usr/bin/env bash
# Runs the whole test suite: one build of everything (plus the official Swift SDK's
# mcp-everything-server, the real MCP server the driver and controller tests run), the Swift tests,
# then the Python suites (schemas, the dashboard in headless Chromium during a canary, the Kubernetes
# test API server against real kubectl) against the
# same built binary.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
log=$(mktemp)
build() {
  if ! swift build "$@" >"$log" 2>&1; then
    grep -E "error:|warning: unre" "$log" | head -50 || true
    tail -20 "$log"
    echo "test.sh: swift build $* failed" >&2
    exit 2
  fi
  tail -1 "$log"
}
build --build-tests
build --product mcp-everything-server
bin="$(swift build --show-bin-path)"
export MCPFLEET_BIN="$bin/mcpfleet"
export MCP_EVERYTHING_SERVER="$bin/mcp-everything-server"
status=0
# Suites run one after another: on 2 cores, end-to-end suites (real systemd, real MCP servers, kill -9
# trials) in parallel starve each other and turn timing into flakiness.
# Per-test "started"/"passed" lines are left out of the console (they are in the log); failures,
# issues and the closing summary are shown.
set +e
swift_log="$(swift build --show-bin-path)/../swift-test.log"
swift test --skip-build --no-parallel > "$swift_log" 2>&1
swift_status=$?
set -e
grep -vE '^(◇|↳)|^✔ (Test|Suite) [^r]|^Test Case .* (started|passed)|^Test Suite .* (started|passed)' "$swift_log" || true
[ "$swift_status" -eq 0 ] || status=$swift_status
suites=(Tests/schemas Tests/dashboard)
[ -d Tests/KubeAPIServer ] && suites+=(Tests/KubeAPIServer)
python3 -m pytest -q "${suites[@]}" || status=$?
exit $status
