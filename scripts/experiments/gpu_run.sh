#!/usr/bin/env bash
# One GPU lease, one real result (issue 11): on a machine with a GPU and its own PyTorch, make a corpus from text
# the machine already holds, train a vanilla and a `sink: token` model of the same size and budget in bf16, stream
# both over the held-out split with 0+W, 1+(W-1), 4+(W-4) caches and the dense / window / recompute baselines,
# inspect their attention, and pack every figure into one results archive. scripts/gpu_lease.sh runs it, with the
# cuda tests and the benchmarks, as the one device call of a lease; it can also run phase by phase:
#
#   scripts/experiments/gpu_run.sh [all|prepare|corpus|probe|train-eval|eval|report]    (default all)
#
# prepare = corpus, probe; train-eval = training of both models sized from the probe, streaming evaluation, report;
# eval = the streaming evaluation of the models trained before, and the report.
# The programs: $STREAMSINK_BIN when set, else scripts/gpu_programs.sh (the carried bundle, or a build here). Work
# lives in $WORK (default runs/gpu, git-ignored, kept between calls); results go to $OUT (the device tool's folder)
# or runs/gpu/out.
#
# Budgets (enforced: training stops in time to evaluate): TRAIN_S seconds per model (default 150), EVAL_TOKENS
# (default 50000), RECOMPUTE_TOKENS (default 3000), CORPUS_MB (default 400); SEED (default the config's);
# PRECISION (default the config's: bf16). A probe that fails in bf16 is tried again in fp32, and the models then
# train in fp32 (slower, but a result): the summary says which precision they trained in. EVAL_DEVICE (default
# auto: the GPU) is where the models are streamed and inspected; a command that fails there runs again on the CPU.
# REHEARSE=1 runs the whole flow on the CPU in about 20 s with the tiny config, 4 MB of the set-up Python's
# standard library (CORPUS_SRC), an already built binary (STREAMSINK_BIN) and budgets of TRAIN_S=3,
# EVAL_TOKENS=1200, RECOMPUTE_TOKENS=150 unless given (tests/test_gpu_rehearsal.cpp does this).
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
eval_device=${EVAL_DEVICE:-auto}
split_fraction=${SPLIT_FRACTION:-0.01}  # of the documents, for each of val and test
mkdir -p "$work" "$out"
log="$out/gpu_run.log"
t0=$(date +%s)
phase() { echo "=== [$(( $(date +%s) - t0 ))s] $*" | tee -a "$log"; }
timing() { echo "$1 $2" >> "$work/phase_seconds.txt"; }
status=0

if [ "$rehearse" = 1 ]; then
  ss=${STREAMSINK_BIN:-$root/build/streamsink}
  config=$root/configs/tiny.yaml
  vocab=${VOCAB:-512}
  split_fraction=${SPLIT_FRACTION:-0.1}
  corpus_min_bytes=1
  corpus_mb=${CORPUS_MB:-4}
  train_s=${TRAIN_S:-3}
  eval_tokens=${EVAL_TOKENS:-1200}
  recompute_tokens=${RECOMPUTE_TOKENS:-150}
  py=${STREAMSINK_PYTHON:-$HOME/.cache/streamsink/venv/bin/python}
  precision=${PRECISION:-fp32}
  extra_set=(--set train.device=cpu --set model.vocab_size=$vocab)
else
  # the carried programs, or a build against this machine's PyTorch (scripts/gpu_programs.sh), unless given
  if [ -z "${STREAMSINK_BIN:-}" ]; then
    source "$root/scripts/gpu_programs.sh" || { echo "gpu_run: no programs: $STREAMSINK_PROGRAMS" >&2; exit 1; }
  fi
  ss=$STREAMSINK_BIN
  py=python3
  precision=${PRECISION:-$(sed -n 's/^  precision: *\([a-z0-9]*\).*/\1/p' "$config")}
  precision=${precision:-fp32}  # the trainer's default, for a config that names none
  extra_set=()
fi
[ -n "${SEED:-}" ] && extra_set+=(--set train.seed="$SEED")  # another initialisation and data order (default: the config's)
W=$(( $(sed -n 's/^  context_length: *\([0-9]*\).*/\1/p' "$config") / 2 ))  # half the training context

make_corpus() {
  local s=$(date +%s)
  phase "corpus from text this machine holds"
  local src  # folders, space-separated: CORPUS_SRC, else the Python installation's packages and standard library
  if [ "$rehearse" = 1 ]; then  # the set-up's Python's standard library, capped small
    src=${CORPUS_SRC:-$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')}; else
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
  timing corpus $(( $(date +%s) - s ))
}

# 20 steps in precision $1, into $work/probe (the trainer's output in probe.log)
probe_in() {
  rm -rf "$work/probe"
  "$ss" train "$config" --set train.data_dir="$work/data" "${extra_set[@]}" --set train.precision="$1" \
    --set train.steps=20 --set train.log_interval=10 --set train.eval_interval=0 --set train.checkpoint_interval=0 \
    --out "$work/probe" > "$work/probe.log" 2>&1
  local rc=$?
  cat "$work/probe.log" >> "$log"
  return $rc
}

probe() {
  local s=$(date +%s)
  phase "throughput probe ($precision)"
  if ! probe_in "$precision"; then
    [ "$precision" != fp32 ] || { tail -5 "$work/probe.log"; echo "gpu_run: the probe failed" >&2; return 1; }
    echo "gpu_run: the $precision probe failed (below); the models will train in fp32" | tee -a "$log"
    tail -5 "$work/probe.log" | tee -a "$log"
    precision=fp32
    probe_in fp32 || { tail -5 "$work/probe.log"; echo "gpu_run: the fp32 probe failed too" >&2; return 1; }
  fi
  echo "$precision" > "$work/precision.txt"
  # tokens/s of the last logged window (past warm-up)
  grep "\"tok_s\"" "$work/probe/metrics.jsonl" | tail -1 | python3 -c 'import json,sys; j=json.loads(sys.stdin.read()); print(j["tok_s"], j["mfu"])' \
    > "$work/probe_tok_s.txt"
  echo "probe: $(cat "$work/probe_tok_s.txt") (tokens/s, MFU)" | tee -a "$log"
  timing probe $(( $(date +%s) - s ))
}

train_both() {
  local tok_s per_step steps
  tok_s=$(cut -d' ' -f1 "$work/probe_tok_s.txt")
  precision=$(cat "$work/precision.txt")  # the probe's: the config's, or fp32 where that failed
  per_step=$(( $(sed -n 's/^  batch_size: *\([0-9]*\).*/\1/p' "$config") * $(sed -n 's/^  seq_len: *\([0-9]*\).*/\1/p' "$config") ))
  steps=$(python3 -c "print(max(20, int($train_s * $tok_s * 0.9 / $per_step)))")
  echo "training budget: $train_s s per model at $tok_s tokens/s ($precision) -> $steps steps of $per_step tokens" |
    tee -a "$log"
  # Sinks grow with training (none on the CPU after millions of tokens; the paper's 160M models saw billions): a plan
  # under 100M tokens a model says so up front, so a table without a vanilla sink is read for what it is.
  local planned=$(( steps * per_step ))
  [ "$planned" -ge 100000000 ] ||
    echo "note: $(( planned / 1000000 ))M tokens per model, under 100M: a vanilla sink may not have grown yet" |
    tee -a "$log"
  for v in none token; do
    local s=$(date +%s)
    phase "train sink=$v"
    rm -rf "$work/$v"
    # a model that fails to train costs itself, not the other model or the report (set -e would end the script)
    "$ss" train "$config" --set train.data_dir="$work/data" "${extra_set[@]}" --set train.precision="$precision" \
      --set model.sink=$v \
      --set train.steps=$steps --set train.warmup_steps=$(( steps / 10 + 1 )) --set train.eval_interval=$(( steps / 4 + 1 )) \
      --set train.max_seconds=$(( train_s * 11 / 10 )) --out "$work/$v" 2>&1 | tee "$work/$v.train.log" |
      grep --line-buffered -E '^(# |step|\[eval\]|\[train\]|error)' | grep --line-buffered -v '^# resolved' |
      tee -a "$log" || { echo "gpu_run: training sink=$v failed (the end of its log above)" | tee -a "$log"; status=1; }
    # the run's full log and what the training report says about it (scripts/plots/emergence_plot.py)
    mkdir -p "$work/$v"
    mv "$work/$v.train.log" "$work/$v/train.log"
    "$py" -c 'import json, sys; json.dump({"config": sys.argv[1], "tokenizer": sys.argv[2]}, open(sys.argv[3], "w"))' \
      "${config#"$root/"}" "sp$vocab" "$work/$v/emergence.json"
    timing "train_$v" $(( $(date +%s) - s ))
  done
}

# An evaluation's result lines, tagged with the model, appended to $log (in $OUT) the moment they come: a run that the
# deadline cuts off keeps the figures of the evaluations that finished, whatever becomes of the report.
results_to_log() {
  grep --line-buffered -E '^(  policy |perplexity |inspect-attention: |  uniform |  +[0-9]+ +[0-9.]+ |wrote )' |
    sed -u "s/^/[sink=$1] /" >> "$log"
}

# `streamsink CMD ARGS...` on $eval_device; where it fails, once more on the CPU with half its cores (the other model's
# evaluation runs beside it), so that a GPU-only failure costs time rather than the streaming table.
on_eval_device() {
  "$ss" "$@" --device "$eval_device" && return 0
  [ "$eval_device" = cpu ] && return 1
  echo "gpu_run: failed on device $eval_device; again on the CPU: streamsink $*" >&2
  "$ss" "$@" --device cpu --threads $(( ($(nproc) + 1) / 2 ))
}

# One model's streaming evaluation, the paper's comparison first (0+W against 4+(W-4)), so that a run cut short by
# the lease's deadline still has it; then 1+(W-1), the attention maps, dense and recompute (a forward per token, over
# a prefix: the slowest). A command that fails does not stop the ones after it; the status says one failed.
eval_model() {
  local v=$1 k rc=0
  for k in 0 4 1; do
    on_eval_device eval-stream --checkpoint "$work/$v" --data "$work/data" --policy streaming --sinks $k \
      --window $((W - k)) --tokens "$eval_tokens" --out "$work/eval/${v}__streaming_${k}+$((W - k)).nll.jsonl" |
      results_to_log $v || rc=1
  done
  # the maps over windows the model was trained on: at most its context (2W), so no row sits at an untrained position
  on_eval_device inspect-attention --checkpoint "$work/$v" --data "$work/data" --out "$work/attention-$v" \
    --tokens $(( 2 * W < 128 ? 2 * W : 128 )) --samples 16 | results_to_log $v || rc=1
  on_eval_device eval-stream --checkpoint "$work/$v" --data "$work/data" --policy dense --tokens "$eval_tokens" \
    --out "$work/eval/${v}__dense_0+${eval_tokens}.nll.jsonl" | results_to_log $v || rc=1
  # recompute keeping the first token too (1+(W-1)): the fair baseline for the sink-token model, every training
  # sample of which began with its sink token (a fresh forward over the last W tokens alone is the window again)
  for k in 0 1; do
    on_eval_device eval-stream --checkpoint "$work/$v" --data "$work/data" --policy recompute --sinks $k \
      --window $((W - k)) --tokens "$recompute_tokens" --out "$work/eval/${v}__recompute_${k}+$((W - k)).nll.jsonl" |
      results_to_log $v || rc=1
  done
  return $rc
}

# Both models at once, in two processes: a decode step is a chain of small kernels that leaves the GPU mostly idle
# (and on a CPU each process gets its share of the cores).
evaluate() {
  local s=$(date +%s) rc=0 v
  local -a pids=()
  phase "streaming evaluation, W=$W"
  rm -rf "$work/eval" && mkdir -p "$work/eval"
  for v in none token; do
    eval_model $v > "$work/eval-$v.log" 2>&1 &
    pids+=($!)
  done
  wait "${pids[0]}" || rc=1
  wait "${pids[1]}" || rc=1
  cat "$work/eval-none.log" "$work/eval-token.log" | tee -a "$log"  # what else they said (errors; results are in $log)
  timing eval $(( $(date +%s) - s ))
  [ $rc = 0 ] || echo "gpu_run: an evaluation failed (its log above); the report has what the others wrote" | tee -a "$log"
  return $rc
}

# The report, from whatever the runs left: a model that did not train, an evaluation that did not finish (the lease's
# deadline) or a missing matplotlib costs its own part, never the rest, the summary or the archive. The figures come
# first, with summary.txt and the archive written at once (a deadline that cuts the plots off leaves them); then the
# plots, and both are written again.
report() {
  phase "report"
  local res="$work/results" v
  device_line=$("$ss" --version | grep -E 'device|cuda' | tr '\n' ' ')
  local -a runs=() attention=()
  rm -rf "$res" && mkdir -p "$res"
  "$py" "$root/scripts/plots/stream_report.py" "$work/eval" --md "$res/table.md" --csv "$res/table.csv" | tee -a "$log" ||
    echo "No streaming evaluation finished: no table." | tee "$res/table.md" | tee -a "$log"
  for v in none token; do
    if [ -f "$work/$v/metrics.jsonl" ]; then
      cp "$work/$v/metrics.jsonl" "$res/metrics_$v.jsonl"
      runs+=("$([ $v = none ] && echo vanilla || echo token)=$work/$v")
    fi
    if [ -f "$work/attention-$v/attention.json" ]; then
      cp -r "$work/attention-$v" "$res/attention-$v"
      attention+=("$([ $v = none ] && echo vanilla || echo token)=$work/attention-$v/attention.json")
    fi
  done
  cp "$work"/eval/*.summary.json "$res/" 2>/dev/null || true
  if [ ${#attention[@]} -gt 0 ]; then
    "$py" "$root/scripts/plots/sink_summary.py" "${attention[@]}" | tee "$res/sinks.txt" | tee -a "$log" || true
  else
    echo "No attention was inspected: no sink verdict from the attention maps." > "$res/sinks.txt"
  fi
  # tokens/s and MFU of each model's last logged training window. A line cut short by the deadline's kill is
  # skipped, and nothing here may stop the report (set -e): summary.txt and the archive come after it.
  "$py" - "$work" > "$res/throughput.txt" <<'PY' || echo "gpu_run: throughput.txt failed" | tee -a "$log"
import json, os, sys
def records(path):
    for line in open(path):
        try:
            yield json.loads(line)
        except ValueError:
            continue
for v in ("none", "token"):
    path = os.path.join(sys.argv[1], v, "metrics.jsonl")
    rows = [r for r in records(path) if "tok_s" in r] if os.path.exists(path) else []
    if rows:
        j = rows[-1]
        print("sink=%s steps=%d tokens=%d tok_s=%.0f mfu=%.3f" % (v, j["step"], j["tokens_seen"], j["tok_s"], j["mfu"]))
    else:
        print("sink=%s: no training window was logged (the run did not start, or stopped before its first log)" % v)
PY
  : > "$res/training-tables.md"
  write_summary
  # Plots, and the training report (its tables come from training.md, written before its plot)
  for v in none token; do
    "$py" "$root/scripts/plots/plot_stream.py" "$res/stream_ppl_$v.png" --title "sink=$v" --train-len $((2 * W)) \
      "dense=$work/eval/${v}__dense_0+${eval_tokens}.nll.jsonl" "0+$W=$work/eval/${v}__streaming_0+$W.nll.jsonl" \
      "1+$((W - 1))=$work/eval/${v}__streaming_1+$((W - 1)).nll.jsonl" \
      "4+$((W - 4))=$work/eval/${v}__streaming_4+$((W - 4)).nll.jsonl" >/dev/null 2>&1 ||
      echo "gpu_run: no plot for sink=$v (plot_stream.py failed: an evaluation missing, or matplotlib)" | tee -a "$log"
    if [ -f "$work/attention-$v/attention.json" ]; then
      "$py" "$root/scripts/plots/plot_attention.py" "$work/attention-$v/attention.json" "$res/attention-$v.png" \
        --title "sink=$v" >/dev/null 2>&1 ||
        echo "gpu_run: no attention plot for sink=$v (plot_attention.py failed: matplotlib, or an old attention.json)" |
        tee -a "$log"
    fi
  done
  # Training: tokens, tokens/s, MFU-bearing metrics and the sink metrics at every evaluation, with the verdict
  if [ ${#runs[@]} -gt 0 ]; then
    "$py" "$root/scripts/plots/emergence_plot.py" "${runs[@]}" --csv "$res/training.csv" --md "$res/training.md" \
      --png "$res/training.png" --command "scripts/gpu_lease.sh" \
      --title "What the trainer measured: vanilla vs sink token (\`scripts/experiments/gpu_run.sh\`)" > /dev/null ||
      echo "gpu_run: emergence_plot.py failed (the tables below need only its training.md, written before the plot)" |
      tee -a "$log"
    sed -n '/^## Runs/,$p' "$res/training.md" > "$res/training-tables.md" 2>/dev/null || true
  fi
  write_summary
  echo "results: $out/summary.txt and $out/results.tar.gz" | tee -a "$log"
}

# summary.txt and results.tar.gz in $OUT from what $work/results holds now (report() calls it twice).
write_summary() {
  local res="$work/results"
  cp "$work/phase_seconds.txt" "$res/" 2>/dev/null || true
  cp "$log" "$res/" 2>/dev/null || true
  { echo "device: $device_line"
    echo "precision: $(cat "$work/precision.txt" 2>/dev/null || echo "? (no probe)")"; echo "phase seconds:"
    cat "$work/phase_seconds.txt" 2>/dev/null; echo "training (last logged window):"; cat "$res/throughput.txt"
    echo; cat "$res/table.md"; echo; cat "$res/sinks.txt"; echo; cat "$res/training-tables.md"
  } > "$work/summary.txt.tmp" 2>/dev/null || true  # a missing part leaves its lines out, never the summary
  # made in $work and moved: a kill mid-write leaves the last whole copy in $OUT, and no ninth file there (the device
  # tool returns at most 8)
  mv "$work/summary.txt.tmp" "$out/summary.txt"
  if tar -czf "$work/results.tar.gz.tmp" -C "$work" results; then
    mv "$work/results.tar.gz.tmp" "$out/results.tar.gz"
  else
    echo "gpu_run: the results archive failed" | tee -a "$log"
  fi
}

case "$what" in
  prepare) rm -f "$work/phase_seconds.txt"; make_corpus; probe ;;
  corpus) make_corpus ;;
  probe) probe ;;
  train-eval) train_both; evaluate || status=1; report ;;
  eval) evaluate || status=1; report ;;
  report) report ;;
  all) rm -f "$work/phase_seconds.txt"; make_corpus; probe; train_both; evaluate || status=1; report ;;
  *) echo "usage: gpu_run.sh [all|prepare|corpus|probe|train-eval|eval|report]" >&2; exit 2 ;;
esac
phase "done ($what)"
exit $status  # non-zero when an evaluation failed (the report has the rest)
