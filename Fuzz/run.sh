#!/bin/sh
# Builds the FleetYAML libFuzzer harness with swiftc (no Package.swift target) and runs it.
#   Fuzz/run.sh [libFuzzer options...]     e.g. Fuzz/run.sh -max_total_time=60
# Environment: OUT (build dir, default .build-fuzz), FLEETCORE_DIR (default Sources/FleetCore),
# FLEETYAML_DIR (default Sources/FleetYAML).
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-.build-fuzz}
CORE=${FLEETCORE_DIR:-Sources/FleetCore}
YAML=${FLEETYAML_DIR:-Sources/FleetYAML}
mkdir -p "$OUT" "$OUT/corpus"
FLAGS="-O -g -swift-version 6 -enable-upcoming-feature ExistentialAny -sanitize=fuzzer,address -parse-as-library"

swiftc $FLAGS -wmo -module-name FleetCore -emit-module -emit-module-path "$OUT/FleetCore.swiftmodule" \
    -c -o "$OUT/FleetCore.o" $(find "$CORE" -name '*.swift' | sort)
swiftc $FLAGS -wmo -module-name FleetYAML -I "$OUT" -I Sources/CYAML \
    -emit-module -emit-module-path "$OUT/FleetYAML.swiftmodule" \
    -c -o "$OUT/FleetYAML.o" $(find "$YAML" -name '*.swift' | sort)
swiftc $FLAGS -I "$OUT" -I Sources/CYAML Fuzz/FleetYAMLFuzzer.swift \
    "$OUT/FleetCore.o" "$OUT/FleetYAML.o" -lyaml -o "$OUT/fleetyaml-fuzzer"

SWIFT_BACKTRACE=${SWIFT_BACKTRACE:-enable=no} exec "$OUT/fleetyaml-fuzzer" -max_len=4096 -rss_limit_mb=2048 -timeout=5 "$@" "$OUT/corpus" Fuzz/corpus
