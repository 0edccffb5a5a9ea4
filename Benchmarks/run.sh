#!/usr/bin/env bash
# Benchmark mcpfleet's manifest loading against PyYAML's C loader and libyaml's raw event parse,
# and planning against a live snapshot (no-op and 1 % drift).
#
#   Benchmarks/run.sh [--release | --debug] [--sizes "1000 10000"] [--no-build]
#
# --release (default) builds `swift build -c release --product mcpfleet`; --debug is for a quick
# smoke run only (its figures mean nothing). Scratch path: $BENCH_SCRATCH (default .build-bench).
# Catalogs go to Benchmarks/out/ (gitignored); the Markdown table is printed and written to
# Benchmarks/results.md (raw JSON lines to Benchmarks/out/results.jsonl).
# Takes about 1 minute on 2 idle cores (most of it PyYAML on 10k servers), under 3 when loaded.
set -euo pipefail

cd "$(dirname "$0")/.."
CONFIG=release
SIZES="1000 10000"
BUILD=1
SCRATCH="${BENCH_SCRATCH:-.build-bench}"
while [ $# -gt 0 ]; do
    case "$1" in
        --release) CONFIG=release ;;
        --debug) CONFIG=debug ;;
        --sizes) SIZES="$2"; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

OUT=Benchmarks/out
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

if [ "$BUILD" = 1 ]; then
    echo "building mcpfleet ($CONFIG, scratch $SCRATCH)…" >&2
    swift build -c "$CONFIG" --scratch-path "$SCRATCH" --product mcpfleet >&2
fi
BIN="$(swift build -c "$CONFIG" --scratch-path "$SCRATCH" --show-bin-path)/mcpfleet"
[ -x "$BIN" ] || { echo "run.sh: $BIN not found (build first or drop --no-build)" >&2; exit 2; }

if [ -x /usr/bin/time ]; then TIMER=(/usr/bin/time -f '%e %M' -o "$OUT/time.txt"); else
    echo "run.sh: /usr/bin/time missing (apt-get install -y time); end-to-end RSS not measured" >&2; TIMER=(); fi

label() { if [ "$1" -ge 1000 ] && [ $(( $1 % 1000 )) -eq 0 ]; then echo "$(( $1 / 1000 ))k"; else echo "$1"; fi; }
record() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(json.loads(sys.argv[2])); print(json.dumps(d, separators=(",",":")))' "$1" "$2" >> "$RESULTS"; }

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
# The process alone (runtime, Foundation, libcurl and their data mapped in): the floor under every
# peak-RSS figure, reported so the per-1,000-servers memory budget can be read above it.
if [ ${#TIMER[@]} -gt 0 ]; then
    "${TIMER[@]}" "$BIN" --version > /dev/null
    read -r _ IDLE_KIB < "$OUT/time.txt"
    record '{"bench":"idle"}' "{\"servers\":0,\"peak_rss_kib\":$IDLE_KIB}"
fi
for N in $SIZES; do
    L="$(label "$N")"
    DIR="$OUT/catalog-$L"
    python3 Benchmarks/gen_catalog.py "$N" "$DIR"
    # Modest iteration counts keep the whole run under ~3 minutes on 2 cores.
    if [ "$N" -ge 5000 ]; then IT=7; PY_IT=3; PY_WARM=0; else IT=21; PY_IT=5; PY_WARM=1; fi

    echo "[$L] mcpfleet validate (end to end)…" >&2
    if [ ${#TIMER[@]} -gt 0 ]; then
        "${TIMER[@]}" "$BIN" validate "$DIR" >&2
        read -r E2E_S E2E_KIB < "$OUT/time.txt"
        record '{"bench":"validate-e2e"}' "{\"servers\":$N,\"wall_ms\":$(python3 -c "print(round($E2E_S*1000))"),\"peak_rss_kib\":$E2E_KIB}"
    else
        "$BIN" validate "$DIR" >&2
    fi

    echo "[$L] mcpfleet bench load…" >&2
    record "$("$BIN" bench load "$DIR" --iterations "$IT")" "{\"servers\":$N}"
    echo "[$L] mcpfleet bench load, one thread (MCPFLEET_THREADS=1)…" >&2
    record "$(MCPFLEET_THREADS=1 "$BIN" bench load "$DIR" --iterations "$IT")" "{\"servers\":$N,\"bench\":\"load-1t\"}"
    echo "[$L] mcpfleet bench raw-parse…" >&2
    record "$("$BIN" bench raw-parse "$DIR" --iterations "$IT")" "{\"servers\":$N}"
    echo "[$L] mcpfleet bench plan (no-op, then 1 % drift)…" >&2
    record "$("$BIN" bench plan "$DIR" --env local --iterations "$IT")" "{\"servers\":$N,\"bench\":\"plan-noop\"}"
    record "$("$BIN" bench plan "$DIR" --env local --iterations "$IT" --drift 1)" "{\"servers\":$N,\"bench\":\"plan-drift\"}"
    record "$(MCPFLEET_THREADS=1 "$BIN" bench plan "$DIR" --env local --iterations "$IT")" "{\"servers\":$N,\"bench\":\"plan-noop-1t\"}"
    echo "[$L] PyYAML CSafeLoader…" >&2
    record "$(python3 Benchmarks/pyyaml_parse.py "$DIR" --iterations "$PY_IT" --warmup "$PY_WARM")" "{\"servers\":$N}"
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

python3 Benchmarks/report.py "$RESULTS" --config "$CONFIG" --load-before "$LOAD_BEFORE" --load-after "$LOAD_AFTER" \
    --binary "$BIN" > Benchmarks/results.md
cat Benchmarks/results.md
