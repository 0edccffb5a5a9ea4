#!/usr/bin/env bash
# Kubernetes apply throughput: the mcpfleet driver versus `kubectl apply --server-side`, both against
# the project's test API server (Tests/KubeAPIServer, over TLS), 1,000 servers (a Service and a
# Deployment each), then a rescale of every server while the server throttles 20 writes with 429.
# Runs twice: with the driver's default client limits (50 qps, burst 100) and with raised limits.
#
#   Benchmarks/kubernetes/run.sh [SERVERS]        # writes Benchmarks/kubernetes/results.md
#
# Environment: SCRATCH (swift build scratch path, default .build), MCPFLEET_K8S_BENCH_CONCURRENCY
# (calls in flight, default 16), FAST_QPS / FAST_BURST (the raised limits, default 400 / 800).
set -euo pipefail
cd "$(dirname "$0")/../.."
scratch="${SCRATCH:-.build}"
export MCPFLEET_K8S_BENCH=1
export MCPFLEET_K8S_BENCH_SERVERS="${1:-1000}"
out="Benchmarks/kubernetes/results.md"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
swift build --scratch-path "$scratch" --build-tests >/dev/null

MCPFLEET_K8S_BENCH_OUT="$tmp/default.md" \
  swift test --scratch-path "$scratch" --skip-build --filter KubernetesBenchmarkTests
MCPFLEET_K8S_BENCH_OUT="$tmp/fast.md" MCPFLEET_K8S_BENCH_QPS="${FAST_QPS:-400}" MCPFLEET_K8S_BENCH_BURST="${FAST_BURST:-800}" \
  swift test --scratch-path "$scratch" --skip-build --filter KubernetesBenchmarkTests
{
  echo "# Kubernetes apply benchmark"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores, $(kubectl version --client 2>/dev/null | head -1), test API server"
  echo "Tests/KubeAPIServer/fake_apiserver.py (Python, TLS), $MCPFLEET_K8S_BENCH_SERVERS servers. Reproduce: Benchmarks/kubernetes/run.sh"
  echo
  echo "## Default client limits (50 qps, burst 100)"
  echo
  cat "$tmp/default.md"; echo
  echo "## Raised client limits (${FAST_QPS:-400} qps, burst ${FAST_BURST:-800})"
  echo
  cat "$tmp/fast.md"; echo
} > "$out"
cat "$out"
