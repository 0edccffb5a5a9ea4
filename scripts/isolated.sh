#!/usr/bin/env bash
# Runs a command in a private network namespace with its own loopback (needs root): two test runs on
# one machine then cannot collide on the fixed ports the suites bind. Usage: scripts/isolated.sh CMD...
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }
exec unshare -n bash -c 'ip link set lo up && exec "$@"' _ "$@"
