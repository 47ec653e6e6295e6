#!/usr/bin/env bash
# The paper's Table 3 at small scale: the four sink variants trained with identical data and budget over several
# seeds, each streamed over the held-out split with 0+W, 1+(W-1), 2+(W-2), 4+(W-4) caches; mean ± std per cell in
# results/table3.md, one row per run in results/table3.csv, the paper's own Table 3 beside ours; what the trainer
# measured at each evaluation (validation loss, sink metrics, the sink verdict) in results/table3-training.{md,csv,png}.
#   scripts/experiments/table3.sh [CONF]      (default scripts/experiments/table3.conf; OUT=runs/NAME)
# The conf may set NAME (default table3: RESULTS/NAME.md and .csv; RESULTS defaults to results/tmp, so that a rerun
# never overwrites the committed tables unless RESULTS=results says so), BASE_CONFIG (a config for every variant,
# the variant set by --set model.sink; default configs/sink-<variant>.yaml), DATA (a prepared data folder) or
# DATA_ROOT and VOCAB (the corpus prepared there when it has no data yet; default runs/kernel-docs, 4096 pieces).
# A run folder is reused or resumed only with the STEPS it was started with.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
source "${1:-$here/table3.conf}"
# The kernel docs (the set-up's --corpus) only when the default corpus will be read.
if [ -n "${DATA:-}" ] || [ -f "${DATA_ROOT:-$root/runs/kernel-docs}/data/manifest.json" ] || [ -n "${CORPUS:-}" ]; then
  SETUP_ARGS=${SETUP_ARGS-""}
fi
source "$here/common.sh"
name=${NAME:-table3}
out=${OUT:-$root/runs/$name}
results=${RESULTS:-$root/results/tmp}
if [ -n "${DATA:-}" ]; then
  data=$DATA
  [ -f "$data/manifest.json" ] || { echo "table3: DATA=$data holds no prepared data (no manifest.json)" >&2; exit 1; }
else
  prepare_corpus "${DATA_ROOT:-$root/runs/kernel-docs}" "${VOCAB:-4096}"
  data=${DATA_ROOT:-$root/runs/kernel-docs}/data
fi
# This invocation's evaluations only: files left by another conf (other seeds, sinks or budget) would be averaged in.
rm -f "$out"/eval/*.nll.jsonl "$out"/eval/*.nll.jsonl.summary.json
mkdir -p "$out/eval" "$results"
start=$(date +%s)
for v in $VARIANTS; do
  for seed in $SEEDS; do
    run="$out/$v-seed$seed"
    check_run_budget "$run" "$STEPS"
    echo "=== [$(( $(date +%s) - start ))s] train $v seed $seed"
    config=$root/${BASE_CONFIG:-configs/sink-$v.yaml}
    # shellcheck disable=SC2086
    if ! "$ss" train "$config" --set model.sink="$v" --set train.data_dir="$data" --set train.steps="$STEPS" \
        --set train.seed="$seed" $EXTRA_SET --out "$run" --resume auto 2>&1 | tee "$run.log" |
        { grep --line-buffered -E '^(\[eval\]|\[train\] done)' || true; }; then
      echo "table3: training $v (seed $seed) failed; the end of its log, $run.log:" >&2
      tail -5 "$run.log" >&2
      exit 1
    fi
    # For the training report (emergence_plot.py): the config, the data's tokenizer, the overrides, and the log
    # (its "# model:" and "# run:" lines: parameters, device, threads) inside the run folder.
    cp "$run.log" "$run/train.log"
    json_set "$run/emergence.json" config="${config#"$root/"}" tokenizer="${data#"$root/"}/tokenizer.model" \
      sets="--set model.sink=$v --set train.seed=$seed $EXTRA_SET"
    for s in $SINKS; do
      "$ss" eval-stream --checkpoint "$run" --data "$data" --policy streaming --sinks "$s" --window $((WINDOW - s)) \
        --tokens "$EVAL_TOKENS" --out "$out/eval/${v}__streaming_${s}+$((WINDOW - s))__seed${seed}.nll.jsonl" | tail -1
    done
  done
done
"$py" "$root/scripts/plots/stream_report.py" "$out/eval" --md "$results/$name.md" --csv "$results/$name.csv" --paper-table3
# What each run's trainer measured at its evaluations (validation loss, first-position attention per layer, the loss
# past W with and without 4 sinks, with its standard error) and the sink verdict: the figures beside the table.
runs=()
for v in $VARIANTS; do for seed in $SEEDS; do runs+=("$v-seed$seed=$out/$v-seed$seed"); done; done
"$py" "$root/scripts/plots/emergence_plot.py" "${runs[@]}" --csv "$results/$name-training.csv" \
  --md "$results/$name-training.md" --png "$results/$name-training.png" --command "table3.sh ${1:-}" \
  --title "What the trainer measured in the runs of $name (\`scripts/experiments/table3.sh\`)"
echo "$name done in $(( $(date +%s) - start )) s: $results/$name.md, $results/$name.csv, $results/$name-training.md"
