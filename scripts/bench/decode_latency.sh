#!/usr/bin/env bash
# Per-token decoding latency (StreamingLLM Figure 10): streaming (4 sinks + window) vs window vs sliding window
# with re-computation at caches 256..4096, on one random-init model (configs/small.yaml's shape by default:
# dim 256, 4 layers, 4 heads, 2 kv heads, vocab 4096; 4.0M parameters). Prints per cache size:
#   cache=4096 streaming_ms=... window_ms=... recompute_ms=... ratio=...   (ratio = recompute / streaming)
#   scripts/bench/decode_latency.sh [--quick] [--threads N] [-- extra decode_latency flags]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${STREAMSINK_BENCH_BUILD:-$root/build-bench}
args=(--caches 256,512,1024,2048,4096 --tokens 128 --repeats 5 --recompute-tokens 2)
threads=1
while [ $# -gt 0 ]; do
  case $1 in
    --quick) args=(--caches 256,512,1024,2048,4096 --tokens 32 --repeats 3 --recompute-tokens 1) ;;
    --threads) threads=$2; shift ;;
    --) shift; break ;;
    *) echo "decode_latency.sh: unknown flag $1" >&2; exit 2 ;;
  esac
  shift
done
if [ ! -x "$build/scripts/bench/decode_latency" ]; then
  [ -f "$build/CMakeCache.txt" ] || "$root/scripts/build.sh" "$build" >/dev/null
  cmake --build "$build" -j2 --target decode_latency >/dev/null
fi
echo "# $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$build/scripts/bench/decode_latency" "${args[@]}" --threads "$threads" "$@"
