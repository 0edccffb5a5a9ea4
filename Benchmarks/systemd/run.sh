#!/bin/sh
# Applies N single-replica servers (`sleep infinity`) in one batch to a systemd booted in a throwaway
# namespace (FleetTesting.SystemdSandbox) and prints one JSON line per measurement.
# Needs root. Usage: Benchmarks/systemd/run.sh [N]   (default 200)
set -eu
cd "$(dirname "$0")/../.."
SCRATCH=${SCRATCH:-.build}
export MCPFLEET_SYSTEMD_BENCH=1
export MCPFLEET_SYSTEMD_BENCH_SERVERS=${1:-200}
swift build --scratch-path "$SCRATCH" --build-tests >/dev/null
swift test --scratch-path "$SCRATCH" --skip-build --filter SystemdBenchmarkTests 2>&1 | grep -E '^\{"benchmark"|passed|failed|error'
