#!/usr/bin/env bash
# Runs the whole test suite: one build of everything, the Swift tests, then the schema and
# end-to-end checks in Python against the same built binary.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
swift build --build-tests 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\] (Compiling|Emitting|Write|Linking|Applying)' || true
swift build --build-tests >/dev/null   # fail here, with the compiler's output above, if the build broke
bin="$(swift build --show-bin-path)/mcpfleet"
export MCPFLEET_BIN="$bin"
status=0
swift test --skip-build --parallel 2>&1 | tee /tmp/mcpfleet-swift-test.log || status=$?
python3 -m pytest -q Tests/schemas || status=$?
exit $status
