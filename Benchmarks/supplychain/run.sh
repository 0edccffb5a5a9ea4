#!/usr/bin/env bash
# Supply-chain gate benchmark: verify N servers' evidence (default 1,000) with FleetSupplyChain and
# compare the per-signature cost with `openssl speed -seconds 1 ecdsap256`.
#
#   Benchmarks/supplychain/run.sh [--release | --debug] [--servers N] [--no-build]
#
# --release (default) builds the test bundle with `-c release`; --debug is a smoke run whose gate
# figures are not representative (the crypto itself is C either way). Scratch path:
# $BENCH_SCRATCH (default .build-bench-sc). Writes Benchmarks/supplychain/results.md.
# `openssl speed` runs here, from the shell: started from inside the test process it inherits a
# signal mask that blocks the SIGALRM it relies on and never finishes.
set -euo pipefail

cd "$(dirname "$0")/../.."
CONFIG=release
SERVERS=1000
BUILD=1
SCRATCH="${BENCH_SCRATCH:-.build-bench-sc}"
while [ $# -gt 0 ]; do
    case "$1" in
        --release) CONFIG=release ;;
        --debug) CONFIG=debug ;;
        --servers) SERVERS="$2"; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "openssl speed -seconds 1 ecdsap256…" >&2
openssl speed -seconds 1 ecdsap256 > "$tmp/openssl-speed.txt" 2>/dev/null

if [ "$BUILD" = 1 ]; then
    echo "building tests ($CONFIG, scratch $SCRATCH)…" >&2
    swift build -c "$CONFIG" -Xswiftc -enable-testing --scratch-path "$SCRATCH" --build-tests >&2
fi

echo "gate benchmark, $SERVERS servers…" >&2
MCPFLEET_BENCH=1 MCPFLEET_BENCH_SERVERS="$SERVERS" MCPFLEET_BENCH_OPENSSL="$tmp/openssl-speed.txt" \
MCPFLEET_BENCH_OUT="$tmp/result.txt" \
    swift test -c "$CONFIG" -Xswiftc -enable-testing --scratch-path "$SCRATCH" --skip-build --filter benchmark1000Servers >&2

{
    echo "# Supply-chain gate benchmark"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $CONFIG build, $(nproc) cores, $(openssl version)"
    echo
    echo '```'
    cat "$tmp/result.txt"
    echo '```'
} > Benchmarks/supplychain/results.md
cat Benchmarks/supplychain/results.md
