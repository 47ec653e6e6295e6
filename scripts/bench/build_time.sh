#!/usr/bin/env bash
# Clean build time: a fresh build folder, ccache disabled, -j2 (or --jobs N), the whole project (library,
# executable, tests, benchmarks). Prints build_seconds=... jobs=... load_before=... load_after=...
# Run it when the machine is quiet: other compiles on the same cores inflate the figure.
#   scripts/bench/build_time.sh [--jobs N] [--keep]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$("$root/scripts/setup.sh" --print-env)"
jobs=2 keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --jobs) jobs=$2; shift ;;
    --keep) keep=1 ;;
    *) echo "build_time.sh: unknown flag $1" >&2; exit 2 ;;
  esac
  shift
done
dir=$(mktemp -d /tmp/streamsink-build-time.XXXXXX)
[ $keep = 1 ] || trap 'rm -rf "$dir"' EXIT
load_before=$(cut -d' ' -f1 /proc/loadavg)
start=$(date +%s.%N)
CCACHE_DISABLE=1 cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DSTREAMSINK_PYTHON="$STREAMSINK_PYTHON" \
  -DCMAKE_CXX_COMPILER_LAUNCHER= >/dev/null
configured=$(date +%s.%N)
CCACHE_DISABLE=1 cmake --build "$dir" -j "$jobs" >/dev/null
end=$(date +%s.%N)
echo "build_seconds=$(echo "$end - $start" | bc) configure_seconds=$(echo "$configured - $start" | bc) jobs=$jobs" \
  "load_before=$load_before load_after=$(cut -d' ' -f1 /proc/loadavg) cpu=\"$(lscpu | sed -n 's/^Model name: *//p')\" cores=$(nproc)"
