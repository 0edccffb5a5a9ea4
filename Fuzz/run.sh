#!/bin/sh
# Builds the libFuzzer harness (no Package.swift target: the main build stays uninstrumented) and runs it.
#   Fuzz/run.sh [libFuzzer options...]     e.g. Fuzz/run.sh -max_total_time=60
# Environment: OUT (build dir, default .build-fuzz).
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-.build-fuzz}
mkdir -p "$OUT" "$OUT/corpus"
# FleetCore and FleetYAML (and swift-crypto, which FleetCore hashes revisions with) are built by SwiftPM
# with libFuzzer's coverage instrumentation and ASan, in a scratch path of their own; the harness is
# then compiled against those modules and linked with their objects.
FLAGS="-sanitize=fuzzer -sanitize=address -sanitize-coverage=edge,inline-8bit-counters,pc-table,indirect-calls,trace-cmp"
# SwiftPM does not rebuild when only -Xswiftc flags change: start over when they differ from last time.
if [ "$(cat "$OUT/flags" 2>/dev/null)" != "$FLAGS" ]; then rm -rf "$OUT/spm"; echo "$FLAGS" > "$OUT/flags"; fi
XFLAGS=""
for f in $FLAGS; do XFLAGS="$XFLAGS -Xswiftc $f"; done
# shellcheck disable=SC2086 # one word per flag
swift build -c release --scratch-path "$OUT/spm" --target FleetYAML $XFLAGS >&2
R="$OUT/spm/release"
OBJECTS=$(for t in FleetCore FleetYAML Crypto CryptoBoringWrapper CCryptoBoringSSL CCryptoBoringSSLShims CXKCP CXKCPShims; do
    [ -d "$R/$t.build" ] && find "$R/$t.build" -name '*.o'; done | sort)
rm -f "$OUT/fleetyaml-fuzzer"
# shellcheck disable=SC2086 # OBJECTS is a list of paths without spaces
swiftc -O -g -swift-version 6 -sanitize=fuzzer,address -parse-as-library -I "$R/Modules" -I Sources/CYAML \
    Fuzz/FleetYAMLFuzzer.swift $OBJECTS -lyaml -o "$OUT/fleetyaml-fuzzer" 2>&1 | grep -v "Cannot export local symbol '__asan" >&2 || true
[ -x "$OUT/fleetyaml-fuzzer" ] || { echo "Fuzz/run.sh: the harness did not link" >&2; exit 1; }

SWIFT_BACKTRACE=${SWIFT_BACKTRACE:-enable=no} exec "$OUT/fleetyaml-fuzzer" -max_len=4096 -rss_limit_mb=2048 -timeout=5 "$@" "$OUT/corpus" Fuzz/corpus
