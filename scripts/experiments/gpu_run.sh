#!/usr/bin/env bash
# One GPU lease, one real result (issue 11): on a machine with a GPU and its own PyTorch, make a corpus from text
# the machine already holds, train a vanilla and a `sink: token` model of the same size and budget in bf16, stream
# both over the held-out split with 0+W, 1+(W-1), 4+(W-4) caches and the dense / window / recompute baselines,
# inspect their attention, and pack every figure into one results archive. scripts/gpu_lease.sh runs it, with the
# cuda tests and the benchmarks, as the one device call of a lease; it can also run phase by phase:
#
#   scripts/experiments/gpu_run.sh [all|prepare|corpus|probe|train-eval|report]    (default all)
#
# prepare = corpus, probe; train-eval = training of both models sized from the probe, streaming evaluation, report.
# The programs: $STREAMSINK_BIN when set, else scripts/gpu_programs.sh (the carried bundle, or a build here). Work lives in $WORK (default runs/gpu, git-ignored, kept
# between calls); results go to $OUT (the device tool's folder) or runs/gpu/out.
#
# Budgets (enforced: training stops in time to evaluate): TRAIN_S seconds per model (default 150), EVAL_TOKENS
# (default 50000), RECOMPUTE_TOKENS (default 3000), CORPUS_MB (default 400). REHEARSE=1 runs the whole flow on the
# CPU in about a minute with the tiny config, a small corpus and an already built binary
# (tests/test_gpu_rehearsal.cpp does this).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
what=${1:-all}
work=${WORK:-$root/runs/gpu}
out=${OUT:-$work/out}
rehearse=${REHEARSE:-0}
train_s=${TRAIN_S:-150}
eval_tokens=${EVAL_TOKENS:-50000}
recompute_tokens=${RECOMPUTE_TOKENS:-3000}
config=${CONFIG:-$root/configs/gpu-sink.yaml}
vocab=${VOCAB:-8192}
corpus_mb=${CORPUS_MB:-400}
corpus_min_bytes=1024
split_fraction=${SPLIT_FRACTION:-0.01}  # of the documents, for each of val and test
mkdir -p "$work" "$out"
log="$out/gpu_run.log"
t0=$(date +%s)
phase() { echo "=== [$(( $(date +%s) - t0 ))s] $*" | tee -a "$log"; }
timing() { echo "$1 $2" >> "$work/phase_seconds.txt"; }

if [ "$rehearse" = 1 ]; then
  ss=${STREAMSINK_BIN:-$root/build/streamsink}
  config=$root/configs/tiny.yaml
  vocab=${VOCAB:-512}
  split_fraction=${SPLIT_FRACTION:-0.1}
  corpus_min_bytes=1
  py=${STREAMSINK_PYTHON:-$HOME/.cache/streamsink/venv/bin/python}
  extra_set=(--set train.device=cpu --set train.precision=fp32 --set model.vocab_size=$vocab)
else
  # the carried programs, or a build against this machine's PyTorch (scripts/gpu_programs.sh), unless given
  if [ -z "${STREAMSINK_BIN:-}" ]; then
    source "$root/scripts/gpu_programs.sh" || { echo "gpu_run: no programs: $STREAMSINK_PROGRAMS" >&2; exit 1; }
  fi
  ss=$STREAMSINK_BIN
  py=python3
  extra_set=()
fi
W=$(( $(sed -n 's/^  context_length: *\([0-9]*\).*/\1/p' "$config") / 2 ))  # half the training context

make_corpus() {
  local s=$(date +%s)
  phase "corpus from text this machine holds"
  local src  # folders, space-separated: CORPUS_SRC, else the Python installation's packages and standard library
  if [ "$rehearse" = 1 ]; then src=${CORPUS_SRC:-$root/tests/data/corpus}; else
    src=${CORPUS_SRC:-$(python3 -c 'import sysconfig; p = sysconfig.get_paths(); print(p["purelib"], p["stdlib"])')}; fi
  rm -rf "$work/corpus"
  # Source and documentation text, deduplicated by content, capped at CORPUS_MB; one file per document, so the split
  # into train / val / test is by file.
  "$py" "$root/scripts/experiments/make_corpus.py" $src --out "$work/corpus" --cap-mb "$corpus_mb" \
    --min-bytes "$corpus_min_bytes" | tee -a "$log"
  "$ss" tokenizer train --input "$work/corpus" --vocab-size "$vocab" --max-sentences 300000 \
    --out "$work/tokenizer.model" >> "$log" 2>&1
  "$ss" data prepare --tokenizer "$work/tokenizer.model" --input "$work/corpus" --out "$work/data" \
    --val-fraction "$split_fraction" --test-fraction "$split_fraction" 2>&1 | tail -2 | tee -a "$log"
  cp "$work/tokenizer.model" "$work/data/tokenizer.model"
  timing corpus $(( $(date +%s) - s ))
}

probe() {
  local s=$(date +%s)
  phase "throughput probe"
  rm -rf "$work/probe"
  "$ss" train "$config" --set train.data_dir="$work/data" "${extra_set[@]}" --set train.steps=20 \
    --set train.log_interval=10 --set train.eval_interval=0 --set train.checkpoint_interval=0 \
    --out "$work/probe" >> "$log" 2>&1
  # tokens/s of the last logged window (past warm-up)
  grep "\"tok_s\"" "$work/probe/metrics.jsonl" | tail -1 | python3 -c 'import json,sys; j=json.loads(sys.stdin.read()); print(j["tok_s"], j["mfu"])' \
    > "$work/probe_tok_s.txt"
  echo "probe: $(cat "$work/probe_tok_s.txt") (tokens/s, MFU)" | tee -a "$log"
  timing probe $(( $(date +%s) - s ))
}

train_both() {
  local tok_s per_step steps
  tok_s=$(cut -d' ' -f1 "$work/probe_tok_s.txt")
  per_step=$(( $(sed -n 's/^  batch_size: *\([0-9]*\).*/\1/p' "$config") * $(sed -n 's/^  seq_len: *\([0-9]*\).*/\1/p' "$config") ))
  steps=$(python3 -c "print(max(20, int($train_s * $tok_s * 0.9 / $per_step)))")
  echo "training budget: $train_s s per model at $tok_s tokens/s -> $steps steps of $per_step tokens" | tee -a "$log"
  for v in none token; do
    local s=$(date +%s)
    phase "train sink=$v"
    rm -rf "$work/$v"
    "$ss" train "$config" --set train.data_dir="$work/data" "${extra_set[@]}" --set model.sink=$v \
      --set train.steps=$steps --set train.warmup_steps=$(( steps / 10 + 1 )) --set train.eval_interval=$(( steps / 4 + 1 )) \
      --set train.max_seconds=$(( train_s * 11 / 10 )) --out "$work/$v" 2>&1 | tee "$work/$v.train.log" |
      grep --line-buffered -E '^(# |step|\[eval\]|\[train\])' | grep --line-buffered -v '^# resolved' | tee -a "$log"
    # the run's full log and what the training report says about it (scripts/plots/emergence_plot.py)
    mv "$work/$v.train.log" "$work/$v/train.log"
    "$py" -c 'import json, sys; json.dump({"config": sys.argv[1], "tokenizer": sys.argv[2]}, open(sys.argv[3], "w"))' \
      "${config#"$root/"}" "sp$vocab" "$work/$v/emergence.json"
    timing "train_$v" $(( $(date +%s) - s ))
  done
}

evaluate() {
  local s=$(date +%s)
  phase "streaming evaluation, W=$W"
  rm -rf "$work/eval" && mkdir -p "$work/eval"
  for v in none token; do
    for k in 0 1 4; do
      "$ss" eval-stream --checkpoint "$work/$v" --data "$work/data" --policy streaming --sinks $k --window $((W - k)) \
        --tokens "$eval_tokens" --out "$work/eval/${v}__streaming_${k}+$((W - k)).nll.jsonl" | tail -1 | tee -a "$log"
    done
    "$ss" eval-stream --checkpoint "$work/$v" --data "$work/data" --policy dense --tokens "$eval_tokens" \
      --out "$work/eval/${v}__dense_0+${eval_tokens}.nll.jsonl" | tail -1 | tee -a "$log"
    "$ss" eval-stream --checkpoint "$work/$v" --data "$work/data" --policy recompute --sinks 0 --window "$W" \
      --tokens "$recompute_tokens" --out "$work/eval/${v}__recompute_0+$W.nll.jsonl" | tail -1 | tee -a "$log"
    "$ss" inspect-attention --checkpoint "$work/$v" --data "$work/data" --out "$work/attention-$v" \
      --tokens 128 --samples 16 | tail -1 | tee -a "$log"
  done
  timing eval $(( $(date +%s) - s ))
}

report() {  # the plots are optional (a missing matplotlib costs the PNGs, never the tables or the archive)
  phase "report"
  local res="$work/results"
  rm -rf "$res" && mkdir -p "$res"
  "$py" "$root/scripts/plots/stream_report.py" "$work/eval" --md "$res/table.md" --csv "$res/table.csv" | tee -a "$log"
  for v in none token; do
    "$py" "$root/scripts/plots/plot_stream.py" "$res/stream_ppl_$v.png" --title "sink=$v" --train-len $((2 * W)) \
      "dense=$work/eval/${v}__dense_0+${eval_tokens}.nll.jsonl" "0+$W=$work/eval/${v}__streaming_0+$W.nll.jsonl" \
      "1+$((W - 1))=$work/eval/${v}__streaming_1+$((W - 1)).nll.jsonl" \
      "4+$((W - 4))=$work/eval/${v}__streaming_4+$((W - 4)).nll.jsonl" >/dev/null ||
      echo "gpu_run: no plot for sink=$v (plot_stream.py failed; the tables do not need it)" | tee -a "$log"
    cp "$work/$v/metrics.jsonl" "$res/metrics_$v.jsonl"
    cp -r "$work/attention-$v" "$res/attention-$v"
  done
  cp "$work"/eval/*.summary.json "$res/" 2>/dev/null || true
  "$py" "$root/scripts/plots/sink_summary.py" "vanilla=$work/attention-none/attention.json" \
    "token=$work/attention-token/attention.json" | tee "$res/sinks.txt" | tee -a "$log"
  # Training: tokens, tokens/s, MFU-bearing metrics and the sink metrics at every evaluation, with the verdict
  "$py" "$root/scripts/plots/emergence_plot.py" "vanilla=$work/none" "token=$work/token" --csv "$res/training.csv" \
    --md "$res/training.md" --png "$res/training.png" --command "scripts/gpu_lease.sh" > /dev/null ||
    echo "gpu_run: emergence_plot.py failed (the tables below need only its training.md, written before the plot)" |
    tee -a "$log"
  sed -n '/^## Runs/,$p' "$res/training.md" > "$res/training-tables.md"
  "$py" - "$work" > "$res/throughput.txt" <<'PY'  # tokens/s and MFU of each model's last logged training window
import json, os, sys
for v in ("none", "token"):
    rows = [json.loads(l) for l in open(os.path.join(sys.argv[1], v, "metrics.jsonl")) if '"tok_s"' in l]
    if rows:
        j = rows[-1]
        print("sink=%s steps=%d tokens=%d tok_s=%.0f mfu=%.3f" % (v, j["step"], j["tokens_seen"], j["tok_s"], j["mfu"]))
    else:
        print("sink=%s: no training window was logged (the run stopped before its first log_interval)" % v)
PY
  cp "$work/phase_seconds.txt" "$res/" 2>/dev/null || true
  cp "$log" "$res/" 2>/dev/null || true
  { echo "device: $("$ss" --version | grep -E 'device|cuda' | tr '\n' ' ')"; echo "phase seconds:"; cat "$work/phase_seconds.txt";
    echo "training (last logged window):"; cat "$res/throughput.txt"
    echo; cat "$res/table.md"; echo; cat "$res/sinks.txt"; echo; cat "$res/training-tables.md"; } > "$out/summary.txt"
  tar -czf "$out/results.tar.gz" -C "$work" results
  echo "results: $out/summary.txt and $out/results.tar.gz" | tee -a "$log"
}

case "$what" in
  prepare) rm -f "$work/phase_seconds.txt"; make_corpus; probe ;;
  corpus) make_corpus ;;
  probe) probe ;;
  train-eval) train_both; evaluate; report ;;
  report) report ;;
  all) rm -f "$work/phase_seconds.txt"; make_corpus; probe; train_both; evaluate; report ;;
  *) echo "usage: gpu_run.sh [all|prepare|corpus|probe|train-eval|report]" >&2; exit 2 ;;
esac
phase "done ($what)"
