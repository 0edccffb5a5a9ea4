#!/usr/bin/env bash
# The control-plane scale benchmark (see README.md here): local driver at N = 100, 300, 1,000, 3,000 and
# Kubernetes (the project's test API server) at N = 100, 1,000, 3,000, in a private network namespace.
#
#   Benchmarks/scale/run.sh [local|kubernetes|all] [--label NAME] [--sizes A,B] [--cold-timeout S] ...
#
# Environment: MCPFLEET (a built binary to measure; default: a release build of this tree, made first
# in .build-release). Results: Benchmarks/out/scale/<label>.jsonl, the Markdown tables on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
which="${1:-all}"
[ $# -gt 0 ] && shift
if [ -z "${MCPFLEET:-}" ]; then
  swift build -c release --scratch-path .build-release --product mcpfleet >&2
  MCPFLEET="$PWD/.build-release/release/mcpfleet"
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "machine: $(nproc) cores, $(uptime)" >&2
for driver in local kubernetes; do
  if [ "$which" = all ] || [ "$which" = "$driver" ]; then
    scripts/isolated.sh python3 Benchmarks/scale/bench.py "$driver" --mcpfleet "$MCPFLEET" "$@"
  fi
done
