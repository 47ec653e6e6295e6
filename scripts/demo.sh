#!/usr/bin/env bash
# The README's main command: sets up, builds, makes a corpus from the Python library folder that the set-up's
# Python carries (sysconfig's stdlib, which on these machines also holds the base interpreter's site-packages: the
# corpus depends on the image; 20 MB of source and docs, deduplicated; a 512-piece tokenizer; split by file), trains a vanilla and
# a `sink: token` model (configs/tiny.yaml) with the same data, seed and budget (18.4M tokens each) on the CPU,
# streams both over 20,000 held-out tokens with 0+W, 1+(W-1) and 4+(W-4) caches, the dense cache (which fails past
# the training length) and the sliding window with re-computation, and writes the comparison table, the plots and
# the attention maps, all under runs/demo/. This is the setting in which a sink shows on a CPU (docs/results.md,
# "A sink on the CPU"): the sink-token model relies on its sink token, the vanilla model grows none.
#
#   scripts/demo.sh     # STEPS, EVAL_TOKENS, RECOMPUTE_TOKENS, CORPUS (folders), OUT and STREAMSINK_BIN (an already
#                       # built executable: no set-up, no build) can be set in the environment
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${OUT:-$root/runs/demo}
steps=${STEPS:-35974}               # optimizer steps per model (8 x 64 tokens a step): 18.4M tokens
eval_tokens=${EVAL_TOKENS:-20000}   # tokens of the held-out stream per evaluation
recompute_tokens=${RECOMPUTE_TOKENS:-2000}  # recompute runs a forward per token: the stream's first tokens only
W=32                                # half the training context (64), as in the paper's Table 3
start=$(date +%s)
phase() { echo; echo "=== [$(( $(date +%s) - start ))s] $*"; }

phase "set-up and build"
SETUP_ARGS=""  # the demo needs no kernel docs
# the set-up and the build into build/, or STREAMSINK_BIN=PATH (an already built executable: its test)
source "$root/scripts/experiments/common.sh"
"$ss" --version
mkdir -p "$out"

data="$out/data"
# An earlier demo's output (until session 4: the kernel docs, configs/small.yaml) cannot be reused.
for f in "$data/manifest.json" "$out/none/config.yaml" "$out/token/config.yaml"; do
  if [ -f "$f" ] && ! grep -q '"vocab_size": 512\|vocab_size: 512' "$f"; then
    echo "demo: $f is from an earlier demo (another corpus or model); move $out away or set OUT" >&2
    exit 1
  fi
done
corpus=${CORPUS:-$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')}
phase "corpus, tokenizer and shards from $corpus"
if [ ! -f "$data/manifest.json" ]; then
  rm -rf "$out/corpus"
  # shellcheck disable=SC2086
  "$py" "$root/scripts/experiments/make_corpus.py" $corpus --out "$out/corpus" --cap-mb 20 --min-bytes 1
  "$ss" tokenizer train --input "$out/corpus" --vocab-size 512 --max-sentences 300000 --out "$out/tokenizer.model" \
    2>&1 | tail -2
  "$ss" data prepare --tokenizer "$out/tokenizer.model" --input "$out/corpus" --out "$data" --val-fraction 0.1 \
    --test-fraction 0.1 2>&1 | tail -2  # the data folder gets its copy of the tokenizer
else
  echo "reusing $data"
fi

for v in none token; do
  phase "train sink=$v ($steps steps of 512 tokens)"
  check_run_budget "$out/$v" "$steps"  # another STEPS would reuse, or resume with a changed schedule, this model
  "$ss" train "$root/configs/tiny.yaml" --set model.sink=$v --set model.vocab_size=512 --set train.data_dir="$data" \
    --set train.steps="$steps" --set train.warmup_steps=$(( steps / 10 + 1 )) \
    --set train.eval_interval=$(( steps / 4 + 1 )) --set train.checkpoint_interval=2000 --set train.log_interval=2000 \
    --out "$out/$v" --resume auto 2>&1 | grep --line-buffered -E '^(# run|# model|# data|step|\[eval\]|\[train\])'
done

phase "stream the held-out split ($eval_tokens tokens) through each cache"
rm -rf "$out/eval" && mkdir -p "$out/eval"
for v in none token; do
  for s in 0 1 4; do
    "$ss" eval-stream --checkpoint "$out/$v" --data "$data" --policy streaming --sinks $s --window $((W - s)) \
      --tokens "$eval_tokens" --out "$out/eval/${v}__streaming_${s}+$((W - s)).nll.jsonl" | tail -1
  done
  "$ss" eval-stream --checkpoint "$out/$v" --data "$data" --policy dense --tokens "$eval_tokens" \
    --out "$out/eval/${v}__dense_0+${eval_tokens}.nll.jsonl" | tail -1
  for s in 0 1; do  # 1+(W-1) keeps the sink token: the fair recompute baseline for the sink-token model
    "$ss" eval-stream --checkpoint "$out/$v" --data "$data" --policy recompute --sinks $s --window $((W - s)) \
      --tokens "$recompute_tokens" --out "$out/eval/${v}__recompute_${s}+$((W - s)).nll.jsonl" | tail -1
  done
done

phase "attention maps (the paper's Figure 2)"
for v in none token; do
  "$ss" inspect-attention --checkpoint "$out/$v" --data "$data" --out "$out/attention-$v" --tokens 64 \
    --samples 16 | tail -1
  # the maps with axes and a colour bar, one panel per layer; a failed plot costs the plot, not the demo
  "$py" "$root/scripts/plots/plot_attention.py" "$out/attention-$v/attention.json" "$out/attention-$v.png" \
    --title "sink=$v" || echo "demo: no attention plot for sink=$v (plot_attention.py failed)" >&2
done

phase "results"
"$py" "$root/scripts/plots/stream_report.py" "$out/eval" --md "$out/table.md" --csv "$out/table.csv"
for v in none token; do
  "$py" "$root/scripts/plots/plot_stream.py" "$out/stream_ppl_$v.png" --title "sink=$v: perplexity along the stream" \
    --train-len 64 "dense=$out/eval/${v}__dense_0+${eval_tokens}.nll.jsonl" \
    "0+$W=$out/eval/${v}__streaming_0+$W.nll.jsonl" "1+$((W - 1))=$out/eval/${v}__streaming_1+$((W - 1)).nll.jsonl" \
    "4+$((W - 4))=$out/eval/${v}__streaming_4+$((W - 4)).nll.jsonl"
done
"$py" "$root/scripts/plots/sink_summary.py" "vanilla=$out/attention-none/attention.json" \
  "token=$out/attention-token/attention.json" | tee "$out/sinks.txt"
"$py" "$root/scripts/plots/emergence_plot.py" "vanilla=$out/none" "token=$out/token" --csv "$out/training.csv" \
  --md "$out/training.md" --png "$out/training.png" --command "scripts/demo.sh" \
  --title "What the trainer measured: vanilla vs sink token (\`scripts/demo.sh\`)" | tail -3
echo
echo "demo done in $(( $(date +%s) - start )) s: table $out/table.md, plots $out/*.png, attention maps $out/attention-*.png (raw: $out/attention-*/)," \
  "sink metrics over training $out/training.md"
