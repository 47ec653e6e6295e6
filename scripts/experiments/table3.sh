#!/usr/bin/env bash
# The paper's Table 3 at small scale: the four sink variants trained with identical data and budget over several
# seeds, each streamed over the held-out split with 0+W, 1+(W-1), 2+(W-2), 4+(W-4) caches; mean ± std per cell in
# results/table3.md, one row per run in results/table3.csv, the paper's own Table 3 beside ours.
#   scripts/experiments/table3.sh [CONF]      (default scripts/experiments/table3.conf; OUT=runs/table3)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/common.sh"
source "${1:-$here/table3.conf}"
out=${OUT:-$root/runs/table3}
results=${RESULTS:-$root/results}
mkdir -p "$out/eval" "$results"
prepare_corpus "${DATA_ROOT:-$root/runs/kernel-docs}"
data=${DATA:-${DATA_ROOT:-$root/runs/kernel-docs}/data}
start=$(date +%s)
for v in $VARIANTS; do
  for seed in $SEEDS; do
    run="$out/$v-seed$seed"
    echo "=== [$(( $(date +%s) - start ))s] train $v seed $seed"
    # shellcheck disable=SC2086
    "$ss" train "$root/configs/sink-$v.yaml" --set train.data_dir="$data" --set train.steps="$STEPS" \
      --set train.seed="$seed" $EXTRA_SET --out "$run" --resume auto 2>&1 | grep --line-buffered -E '^(\[eval\]|\[train\] done)'
    for s in $SINKS; do
      "$ss" eval-stream --checkpoint "$run" --data "$data" --policy streaming --sinks "$s" --window $((WINDOW - s)) \
        --tokens "$EVAL_TOKENS" --out "$out/eval/${v}__streaming_${s}+$((WINDOW - s))__seed${seed}.nll.jsonl" | tail -1
    done
  done
done
"$py" "$root/scripts/plots/stream_report.py" "$out/eval" --md "$results/table3.md" --csv "$results/table3.csv" --paper-table3
echo "table3 done in $(( $(date +%s) - start )) s: $results/table3.md, $results/table3.csv"
