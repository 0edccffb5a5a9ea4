#!/usr/bin/env bash
# The gateway benchmark (not a timed test): wrk with mcp.lua (initialize a session, then call a tool
# on it) against the same MCP server (the SDK's everything server, release build, one instance run
# by the local driver), reached (a) directly, (b) through HAProxy as a sticky L7 proxy on
# Mcp-Session-Id, (c) through the mcpfleet gateway (release build), (d) through ContextForge when it
# is installed (see README). Fixed rates 500/1,000/2,000 req/s and max throughput.
#
#   Benchmarks/gateway/run.sh [--no-build] [--duration 15s] [--rates "500 1000 2000"] [--contextforge VENV]
#                             [--only "haproxy gateway"]   (a subset of direct, haproxy, gateway, contextforge)
#                             [--max-connections "8"]      (maximum throughput with each of these connection counts)
#
# Writes Benchmarks/gateway/out/results.jsonl and Benchmarks/gateway/results.md (printed too).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
here=Benchmarks/gateway
build=1; duration=15s; rates="500 1000 2000"; conns=4; maxconns=8; cf_venv=""; only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --duration) duration=$2; shift ;;
    --rates) rates=$2; shift ;;
    --contextforge) cf_venv=$2; shift ;;   # a venv with `pip install mcp-contextforge-gateway`
    --only) only=$2; shift ;;
    --max-connections) maxconns=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
command -v wrk >/dev/null && command -v haproxy >/dev/null || { apt-get install -y -qq wrk haproxy >/dev/null; }
if [ $build = 1 ]; then
  swift build -c release --product mcpfleet >/dev/null
  swift build -c release --product mcp-everything-server >/dev/null
fi
bin=${BENCH_BIN:-$root/.build/release}
work=$(mktemp -d /tmp/mcpfleet-gwbench.XXXXXX)
out=$here/out; mkdir -p "$out"; : > "$out/results.jsonl"
server_port=18510; haproxy_port=18511; gateway_port=18512; cf_port=18513
pids=()
cleanup() {
  [ -f "$work/contextforge.pid" ] && kill "$(cat "$work/contextforge.pid")" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"
}
trap cleanup EXIT

# The fleet: one everything-server instance under the local driver; the gateway served by `run`.
mkdir -p "$work/cat"
cat > "$work/cat/fleet.yaml" <<YAML
apiVersion: mcpfleet.io/v1alpha1
kind: Environment
metadata: {name: bench}
spec: {driver: local, portRange: 18500-18509, stateDir: $work/state}
---
apiVersion: mcpfleet.io/v1alpha1
kind: Tenant
metadata: {name: bench}
spec: {isolation: shared}
---
apiVersion: mcpfleet.io/v1alpha1
kind: Server
metadata: {name: everything}
spec:
  version: "0.12.1"
  tenant: bench
  artifact: {command: ["$bin/mcp-everything-server", "--port", "\${PORT}"]}
  transport: {type: streamable-http, port: 18500, path: /mcp}
  replicas: 1
  health: {probe: mcp, interval: 30s}
YAML
"$bin/mcpfleet" run "$work/cat" --metrics-address "" --gateway-address 127.0.0.1:$gateway_port --access-log "" \
  --log-format json --log-level warning > "$work/run.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST 127.0.0.1:$gateway_port/everything/mcp -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"b","version":"1"}}}' || true)
  [ "$code" = 200 ] && break; sleep 0.5
done
[ "$code" = 200 ] || { echo "the gateway did not come up"; cat "$work/run.log"; exit 1; }
server_port=18500

cat > "$work/haproxy.cfg" <<CFG
global
  maxconn 4000
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend mcp
  bind 127.0.0.1:$haproxy_port
  default_backend servers
backend servers
  # Sticky on the MCP session: learnt from the initialize response, matched on every request.
  stick-table type string len 128 size 100k expire 30m
  stick on req.hdr(mcp-session-id)
  stick store-response res.hdr(mcp-session-id)
  # The SDK's server refuses a Host that is not its own (DNS-rebinding protection), as the gateway knows.
  http-request set-header Host 127.0.0.1:$server_port
  server s1 127.0.0.1:$server_port
CFG
haproxy -f "$work/haproxy.cfg" -db > "$work/haproxy.log" 2>&1 &
pids+=($!)
sleep 1

targets=("direct http://127.0.0.1:$server_port/mcp" "haproxy http://127.0.0.1:$haproxy_port/mcp" "gateway http://127.0.0.1:$gateway_port/everything/mcp")
cf_token=""
if [ -n "$cf_venv" ]; then
  read -r cf_url cf_token < <($here/contextforge.sh "$cf_venv" $cf_port "http://127.0.0.1:$server_port/mcp" "$work")
  targets+=("contextforge $cf_url")
fi

# CPU seconds (user + system, all threads) a process has used: the proxy's cost per request is the
# difference over a measurement divided by the requests served, which the machine's load (other
# processes on the same cores) moves far less than latency or throughput.
cpu_seconds() { [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] && awk -v t="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / t }' "/proc/$1/stat" || echo ""; }
server_pid=$(pgrep -f "mcp-everything-server --port $server_port" | head -1 || true)
haproxy_pid=${pids[1]}
gateway_pid=${pids[0]}
# Busy and idle jiffies of the whole machine (all cores): the idle share during a maximum-throughput
# run tells whether the target was limited by CPU (idle ≈ 0) or by something else (waits, a cap).
machine_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat; }
measure() { # name url rate connections
  local name=$1 url=$2 rate=$3 c=$4
  local load; load=$(cut -d' ' -f1-3 /proc/loadavg)
  local text
  local tool=test_simple_text token=""
  if [ "$name" = contextforge ]; then tool=everything-test-simple-text; token=$cf_token; fi
  local pid=""
  case $name in direct) pid=$server_pid ;; haproxy) pid=$haproxy_pid ;; gateway) pid=$gateway_pid ;; esac
  local cpu0 srv0 m0; cpu0=$(cpu_seconds "$pid"); srv0=$(cpu_seconds "$server_pid"); m0=$(machine_jiffies)
  # `times` after wrk: the CPU wrk itself used (user and system of the subshell's children).
  text=$(RATE=$rate CONNECTIONS=$c TOOL=$tool TOKEN=$token wrk -t "$c" -c "$c" -d "$duration" --timeout 5s --latency -s $here/mcp.lua "$url" 2>&1; times) || true
  local cpu1 srv1 m1; cpu1=$(cpu_seconds "$pid"); srv1=$(cpu_seconds "$server_pid"); m1=$(machine_jiffies)
  CPU_SECONDS=$( [ -n "$cpu0" ] && [ -n "$cpu1" ] && awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { print b - a }' || echo "") \
  SERVER_CPU_SECONDS=$( [ -n "$srv0" ] && [ -n "$srv1" ] && awk -v a="$srv0" -v b="$srv1" 'BEGIN { print b - a }' || echo "") \
  MACHINE_IDLE=$(awk -v a="$m0" -v b="$m1" 'BEGIN { split(a, x, " "); split(b, y, " "); busy = y[1] - x[1]; idle = y[2] - x[2]; if (busy + idle > 0) print idle / (busy + idle) }') \
    python3 $here/parse_wrk.py "$name" "$rate" "$c" "$load" <<<"$text" | tee -a "$out/results.jsonl"
}
for t in "${targets[@]}"; do
  set -- $t
  if [ -n "$only" ] && [[ " $only " != *" $1 "* ]]; then continue; fi
  # ContextForge cannot approach these rates (see README): its maximum only.
  if [ "$1" != contextforge ]; then for r in $rates; do measure "$1" "$2" "$r" $conns; done; fi
  for c in $maxconns; do measure "$1" "$2" 0 "$c"; done
done
python3 $here/report.py "$out/results.jsonl" | tee $here/results.md
