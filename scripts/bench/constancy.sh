#!/usr/bin/env bash
# Streams 1M tokens (--quick: 200k) through the streaming cache (4 sinks + 508 recent = 512) and compares the
# per-token latency of the last 10k tokens with the first 10k after the cache is full (target: within 5%) and the
# resident memory at the end with the memory after those first 10k (target: < 1% growth). key=value lines.
#   scripts/bench/constancy.sh [--quick] [-- extra constancy flags]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${STREAMSINK_BENCH_BUILD:-$root/build-bench}
tokens=1000000
while [ $# -gt 0 ]; do
  case $1 in
    --quick) tokens=200000 ;;
    --) shift; break ;;
    *) echo "constancy.sh: unknown flag $1" >&2; exit 2 ;;
  esac
  shift
done
if [ ! -x "$build/scripts/bench/constancy" ]; then
  [ -f "$build/CMakeCache.txt" ] || "$root/scripts/build.sh" "$build" >/dev/null
  cmake "$build" >/dev/null && cmake --build "$build" -j2 --target constancy >/dev/null
fi
echo "# $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$build/scripts/bench/constancy" --tokens "$tokens" "$@"
