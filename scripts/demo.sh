#!/usr/bin/env bash
# The README's main command: sets up, builds, prepares the default corpus (the Linux kernel documentation),
# trains a vanilla and a `sink: token` model with the same budget on the CPU, streams both over the held-out split
# with 0+W, 1+(W-1) and 4+(W-4) caches (and the dense cache as the baseline that fails past the training length),
# prints the comparison table and writes the plots and attention maps, all under runs/demo/.
#
#   scripts/demo.sh            # STEPS, EVAL_TOKENS and OUT can be set in the environment
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${OUT:-$root/runs/demo}
steps=${STEPS:-800}              # optimizer steps per model (configs/small.yaml: 8 x 256 tokens a step)
eval_tokens=${EVAL_TOKENS:-20000}  # tokens of the held-out stream per evaluation
corpus=/usr/share/doc/linux-doc-6.1/Documentation
start=$(date +%s)
phase() { echo; echo "=== [$(( $(date +%s) - start ))s] $*"; }

phase "set-up and build"
"$root/scripts/setup.sh" --corpus
"$root/scripts/build.sh" "$root/build" >/dev/null
source "$("$root/scripts/setup.sh" --print-env)"
ss="$root/build/streamsink"
"$ss" --version
mkdir -p "$out"

phase "tokenizer and shards from $corpus"
if [ ! -f "$out/data/manifest.json" ]; then
  "$ss" tokenizer train --input "$corpus" --vocab-size 4096 --max-sentences 200000 --out "$out/tokenizer.model" 2>&1 |
    grep -v "LOG(INFO)" | tail -3
  "$ss" data prepare --tokenizer "$out/tokenizer.model" --input "$corpus" --out "$out/data" 2>&1 | tail -3
  cp "$out/tokenizer.model" "$out/data/tokenizer.model"
else
  echo "reusing $out/data"
fi

W=128   # half the training context (256), as in the paper's Table 3
for v in none token; do
  phase "train sink=$v ($steps steps)"
  "$ss" train "$root/configs/sink-$v.yaml" --set train.data_dir="$out/data" --set train.steps="$steps" \
    --out "$out/$v" --resume auto 2>&1 | grep --line-buffered -E '^(# run|# model|# data|step|\[eval\]|\[train\])' 
done

phase "stream the held-out split ($eval_tokens tokens) through each cache"
mkdir -p "$out/eval"
for v in none token; do
  for s in 0 1 4; do
    "$ss" eval-stream --checkpoint "$out/$v" --data "$out/data" --policy streaming --sinks $s --window $((W - s)) \
      --tokens "$eval_tokens" --out "$out/eval/${v}__streaming_${s}+$((W - s)).nll.jsonl" | tail -1
  done
  "$ss" eval-stream --checkpoint "$out/$v" --data "$out/data" --policy dense --tokens "$eval_tokens" \
    --out "$out/eval/${v}__dense_0+${eval_tokens}.nll.jsonl" | tail -1
done

phase "attention maps (the paper's Figure 2)"
for v in none token; do
  "$ss" inspect-attention --checkpoint "$out/$v" --data "$out/data" --out "$out/attention-$v" --tokens 128 --samples 16 | tail -1
done

phase "results"
py="$STREAMSINK_PYTHON"
"$py" "$root/scripts/plots/stream_report.py" "$out/eval" --md "$out/table.md" --csv "$out/table.csv"
for v in none token; do
  "$py" "$root/scripts/plots/plot_stream.py" "$out/stream_ppl_$v.png" --title "sink=$v: perplexity along the stream" \
    --train-len 256 "dense=$out/eval/${v}__dense_0+${eval_tokens}.nll.jsonl" \
    "0+$W=$out/eval/${v}__streaming_0+$W.nll.jsonl" "1+$((W - 1))=$out/eval/${v}__streaming_1+$((W - 1)).nll.jsonl" \
    "4+$((W - 4))=$out/eval/${v}__streaming_4+$((W - 4)).nll.jsonl"
done
"$py" "$root/scripts/plots/sink_summary.py" "vanilla=$out/attention-none/attention.json" \
  "token=$out/attention-token/attention.json" | tee "$out/sinks.txt"
echo
echo "demo done in $(( $(date +%s) - start )) s: table $out/table.md, plots $out/*.png, attention maps $out/attention-*/"
