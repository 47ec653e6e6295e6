#!/usr/bin/env bash
# Everything the toolkit has to show on a GPU, as the ONE device call of a lease (issues 3, 5, 8 and 11), ending
# before DEADLINE_S seconds (default 550) so that the call (timeout 595 s) returns its results:
#
#   here:       scripts/pack_gpu_deps.sh            (libraries + the programs built here, into .devdeps/)
#   the lease:  run(command="bash scripts/gpu_lease.sh", carry=[".devdeps"], timeout_s=595)
#
# Phases, each under a time limit; every figure lands in $OUT as it is measured, so a phase that fails or runs out of
# time still leaves the earlier ones' results:
#   1. programs (scripts/gpu_programs.sh): the bundle in .devdeps/bin when its source hash matches this tree and it
#      starts against this machine's torch (the same 2.11.0+cu130 as the venv it was built against), else a build
#      here with all cores;
#   2. the cuda-labelled tests (tests/test_cuda.cpp: CPU-vs-GPU logits, fused SDPA, decoder, bf16, NCCL), and beside
#      them (they use the GPU, it the CPUs)
#   3. corpus: text this machine holds, deduplicated, tokenizer trained here, shards (gpu_run.sh corpus);
#   4. benchmarks: the card's achieved bf16 matmul rate (bench-peak --device cuda), bf16 GPT-2-124M training
#      tokens/s and MFU (against the data sheet, and mfu_of_matmul against that rate), decode latency on the GPU
#      (gpu_check.sh bench);
#   5. the sink experiment (gpu_run.sh): throughput probe, vanilla and sink-token training each given half of the
#      time that is left once evaluation and the report are set aside (EVAL_RESERVE_S, default 90; TRAIN_S
#      overrides), streaming evaluation (both models at once, the 0+W vs 4+(W-4) comparison first), attention,
#      report; if the deadline cuts it off, a report of what is there follows in the call's last 25 s
#      (TRAIN_EVAL_LIMIT_S shortens the phase: the rehearsal test cuts it off on purpose).
#
# Results in $OUT (7 files; the device tool returns at most 8): lease.txt (phase times, where the programs came
# from), gpu_check.txt (tests, benchmarks), profile_train.txt (where a 124M training step's time goes),
# summary.txt and results.tar.gz (the experiment), gpu_run.log and gpu_check.log.
# REHEARSE=1 runs every phase on the CPU with the tiny config and a small corpus, in about a minute
# (tests/test_gpu_rehearsal.cpp): the cuda tests skip themselves and the benchmarks run at toy size.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${WORK:-$root/runs/gpu}
out=${OUT:-$work/out}
# 550: at worst the training phase ends 5 s past the deadline (its limit, then the 10 s kill-after) and the report
# gets the rest of REPORT_MARGIN_S (20 s) plus its own 10 s kill-after: 585 s in all, inside the call's 595 (with
# 560 the worst case ended at exactly 595, the report or its last line cut by the call's own timeout).
deadline=$(( $(date +%s) + ${DEADLINE_S:-550} ))
eval_reserve=${EVAL_RESERVE_S:-90}  # seconds kept for the streaming evaluation and the report
rehearse=${REHEARSE:-0}
mkdir -p "$work" "$out"
export WORK=$work OUT=$out
lease="$out/lease.txt"
: > "$lease"
# an earlier lease's (a local $OUT is kept): the report below checks for them
rm -f "$out/summary.txt" "$out/results.tar.gz" "$out/gpu_run.log"
note() { echo "$*" | tee -a "$lease"; }
left() { echo $(( deadline - $(date +%s) )); }
start_ms=$(date +%s%3N)
since_ms() { echo $(( $(date +%s%3N) - start_ms )); }  # milliseconds since the lease began (the phases' spans)
# phase NAME LIMIT_S CMD...: runs CMD under min(LIMIT_S, time left), records its exit status, seconds and span.
phase() {
  local name=$1 limit=$2 s rc
  shift 2
  [ "$limit" -gt "$(left)" ] && limit=$(left)
  if [ "$limit" -le 5 ]; then note "phase=$name skipped: a limit of ${limit} s ($(left) s left)"; return 1; fi
  s=$(since_ms)
  echo "=== $name (limit ${limit}s, $(left)s left)"
  timeout --kill-after=10 "$limit" "$@"
  rc=$?
  local e=$(since_ms)
  note "phase=$name rc=$rc seconds=$(( (e - s + 500) / 1000 )) span_ms=$s-$e$([ $rc = 124 ] && echo ' (time limit)')"
  return $rc
}

# ---- 1. programs ----
if [ "$rehearse" = 1 ]; then
  bin=$(dirname "${STREAMSINK_BIN:?REHEARSE=1 needs STREAMSINK_BIN (a built streamsink)}")
  export STREAMSINK_BIN TEST_CUDA=$bin/tests/test_cuda DECODE_LATENCY=$bin/scripts/bench/decode_latency
  note "programs=given ($bin)"
else
  note "torch=$(python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no-gpu")')"
  s=$(date +%s)
  source "$root/scripts/gpu_programs.sh"
  rc=$?
  note "programs=$STREAMSINK_PROGRAMS seconds=$(( $(date +%s) - s ))"
  [ $rc = 0 ] || exit 1
fi
"$STREAMSINK_BIN" --version > "$work/version.txt" 2>&1
tee -a "$lease" < "$work/version.txt"
if [ "$rehearse" != 1 ] && ! grep -q '^cuda *usable' "$work/version.txt"; then
  # Everything below needs the GPU: stop now, with what it takes to see why, and keep the lease's time.
  note "cuda=not usable by streamsink on this machine: stopping (nothing below would measure a GPU)"
  { nvidia-smi 2>&1 | head -20; python3 -c 'import torch; print("python torch sees cuda:", torch.cuda.is_available())' 2>&1; } |
    tee -a "$lease"
  exit 1
fi

# ---- 2. tests, 3. corpus, 4. benchmarks ----
status=0  # the exit status: non-zero when any phase failed (its results so far are in $OUT all the same)
# The tests keep the GPU busy and the corpus the CPUs, so they run side by side (the tests' output follows the corpus').
phase cuda_tests 120 bash "$root/scripts/gpu_check.sh" tests > "$work/cuda_tests.out" 2>&1 &
tests_pid=$!
phase corpus 150 bash "$root/scripts/experiments/gpu_run.sh" corpus
corpus_rc=$?
wait $tests_pid || status=1
cat "$work/cuda_tests.out"
# A failed corpus still leaves the benchmarks: gpu_check.sh makes a smaller one for its training benchmark.
[ $corpus_rc = 0 ] || { note "corpus=failed: the benchmarks try a smaller one"; status=1; }
phase benchmarks 90 bash "$root/scripts/gpu_check.sh" bench || status=1
[ -f "$work/data/manifest.json" ] || { note "no corpus: nothing to train on"; exit 1; }

# ---- 5. the sink experiment ----
phase probe 60 bash "$root/scripts/experiments/gpu_run.sh" probe || { note "the throughput probe failed"; exit 1; }
[ "$rehearse" = 1 ] && TRAIN_S=${TRAIN_S:-3}  # seconds, not a share of the deadline: a rehearsal takes a minute
if [ -n "${TRAIN_S:-}" ]; then
  train_s=$TRAIN_S  # given (the rehearsal gives 3 s)
else
  train_s=$(( ($(left) - eval_reserve) / 2 - 15 ))  # 15 s per model for start-up and its final checkpoint
fi
if [ "$train_s" -lt 10 ] && [ -z "${TRAIN_S:-}" ]; then
  note "only $(left) s left: no time to train (the report below has the probe)"
  status=1
else
  note "train_s=$train_s per model"
  export TRAIN_S=$train_s
  phase train_eval "${TRAIN_EVAL_LIMIT_S:-$(( $(left) - 5 ))}" bash "$root/scripts/experiments/gpu_run.sh" train-eval ||
    status=1
fi
# Cut off by the deadline (or a training that failed) before its report finished (its last line, "results: ...", is not
# in gpu_run.log): the report, from whatever is there, in the margin the call's timeout (595 s) leaves past the
# deadline. The summary a cut-off report wrote stays in $OUT until this one replaces it.
if ! grep -q '^results: ' "$out/gpu_run.log" 2>/dev/null; then
  deadline=$(( deadline + ${REPORT_MARGIN_S:-25} ))
  phase report "${REPORT_MARGIN_S:-25}" bash "$root/scripts/experiments/gpu_run.sh" report || status=1
fi
note "total_s=$(( $(since_ms) / 1000 )) status=$status"
exit $status
