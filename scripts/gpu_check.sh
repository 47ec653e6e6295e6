#!/usr/bin/env bash
# The GPU check (issue 8), one script for whenever a GPU machine is at hand: builds against that machine's PyTorch
# (scripts/gpu_build.sh, with the .devdeps/ that scripts/pack_gpu_deps.sh packs), runs the `cuda`-labelled tests,
# the bf16 training benchmark of the GPT-2-124M-sized config, and the decode-latency benchmark on the GPU, and writes
# every figure to $OUT/gpu_check.txt (OUT defaults to runs/gpu/out). Without a GPU it says so and exits 0 after the
# build and the (skipping) tests: it fails soft.
#   scripts/gpu_check.sh            WORK (default runs/gpu) keeps the build and data between calls
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${WORK:-$root/runs/gpu}
out=${OUT:-$work/out}
mkdir -p "$work" "$out"
report="$out/gpu_check.txt"
log="$out/gpu_check.log"
: > "$report"
say() { echo "$*" | tee -a "$report"; }
export LD_LIBRARY_PATH="$root/.devdeps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
t0=$(date +%s)

ss=${STREAMSINK_BIN:-$work/build/streamsink}
if [ -z "${STREAMSINK_BIN:-}" ]; then
  "$root/scripts/gpu_build.sh" "$work/build" "$log" || { say "build=failed (see $log)"; exit 1; }
fi
say "build_s=$(( $(date +%s) - t0 ))"
"$ss" --version | tee -a "$report"

# 1. the cuda-labelled tests (they skip themselves without a GPU)
if [ -d "$work/build/tests" ]; then
  (cd "$work/build" && ctest -L cuda --output-on-failure 2>&1) | tee -a "$log" | tail -3 | sed 's/^/ctest: /' | tee -a "$report"
fi
if ! python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  say "gpu=none: no CUDA device here; the training and decode benchmarks need one (nothing more to measure)"
  exit 0
fi

# 2. bf16 training throughput of the GPT-2-124M-sized config, on a corpus made from this machine's own text
data=$work/data
if [ ! -f "$data/manifest.json" ]; then
  CORPUS_MB=${CORPUS_MB:-100} WORK="$work" OUT="$out" \
    bash "$root/scripts/experiments/gpu_run.sh" corpus >> "$log" 2>&1 || say "corpus=failed (see $log)"
fi
rm -rf "$work/bench-124m"
"$ss" train "$root/configs/gpt2-124m.yaml" --set train.data_dir="$data" --set train.steps=${BENCH_STEPS:-60} \
  --set train.warmup_steps=10 --set train.log_interval=10 --set train.eval_interval=0 \
  --set train.checkpoint_interval=0 --out "$work/bench-124m" >> "$log" 2>&1 || say "train_bench=failed (see $log)"
grep '"tok_s"' "$work/bench-124m/metrics.jsonl" | tail -1 |
  python3 -c 'import json,sys; j=json.loads(sys.stdin.read()); print("config=gpt2-124m precision=bf16 tok_s=%.0f mfu=%.3f" % (j["tok_s"], j["mfu"]))' |
  tee -a "$report"

# 3. decode latency on the GPU: streaming vs window vs recompute at 256..4096
"$work/build/scripts/bench/decode_latency" --device cuda --caches 256,512,1024,2048,4096 --tokens 64 --repeats 3 \
  --recompute-tokens 4 2>&1 | tee -a "$report"
say "total_s=$(( $(date +%s) - t0 ))"
