#!/usr/bin/env bash
# The paper's Figure 3 at small scale: perplexity against position over a long held-out stream for the dense,
# window (0+W), sliding-window-with-recompute (0+W and 1+(W-1)) and streaming (1+(W-1), 4+(W-4)) caches, for the vanilla and the sink-token
# model, as PNG plots in $RESULTS/figure3_<variant>.png with figure3.md and figure3.csv beside them.
#   scripts/experiments/figure3.sh       RUNS: folder with none/ and token/ runs and data/ (default runs/demo, from
#                                        the demo), TOKENS (default 20000), RECOMPUTE_TOKENS (default TOKENS),
#                                        W (default half the models' training context), RESULTS (default
#                                        results/tmp: the committed figures are replaced only when it says so)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SETUP_ARGS=${SETUP_ARGS-""}  # trained runs and their data are given: the set-up needs no kernel docs
source "$here/common.sh"
runs=${RUNS:-$root/runs/demo}
data=${DATA:-$runs/data}
tokens=${TOKENS:-20000}
recompute_tokens=${RECOMPUTE_TOKENS:-$tokens}
[ -f "$runs/none/config.yaml" ] || { echo "figure3: no run $runs/none (run scripts/demo.sh first, or set RUNS)" >&2; exit 1; }
context=$(sed -n 's/^  context_length: *\([0-9]*\).*/\1/p' "$runs/none/config.yaml")
W=${W:-$(( context / 2 ))}
out=${OUT:-$root/runs/figure3}
results=${RESULTS:-$root/results/tmp}
mkdir -p "$out" "$results"
rm -f "$out"/*.nll.jsonl "$out"/*.nll.jsonl.summary.json  # another TOKENS or W would be reported beside these
for v in none token; do
  [ -d "$runs/$v" ] || { echo "figure3: no run $runs/$v (run scripts/demo.sh first, or set RUNS)" >&2; exit 1; }
  e() { "$ss" eval-stream --checkpoint "$runs/$v" --data "$data" "$@" | tail -1; }
  e --policy dense --tokens "$tokens" --out "$out/${v}__dense_0+$tokens.nll.jsonl"
  e --policy window --window "$W" --tokens "$tokens" --out "$out/${v}__window_0+$W.nll.jsonl"
  e --policy recompute --sinks 0 --window "$W" --tokens "$recompute_tokens" --out "$out/${v}__recompute_0+$W.nll.jsonl"
  # keeping the first token too: the fair baseline for the sink-token model, every training sample of which began
  # with its sink token (a fresh forward over the last W tokens alone is the window again)
  e --policy recompute --sinks 1 --window $((W - 1)) --tokens "$recompute_tokens" \
    --out "$out/${v}__recompute_1+$((W - 1)).nll.jsonl"
  e --policy streaming --sinks 4 --window $((W - 4)) --tokens "$tokens" --out "$out/${v}__streaming_4+$((W - 4)).nll.jsonl"
  # and streaming with the budget of recompute 1+(W-1), the like-for-like comparison of the two
  e --policy streaming --sinks 1 --window $((W - 1)) --tokens "$tokens" --out "$out/${v}__streaming_1+$((W - 1)).nll.jsonl"
  "$py" "$root/scripts/plots/plot_stream.py" "$results/figure3_$v.png" --title "sink=$v: perplexity along the stream" \
    --train-len "$context" "dense=$out/${v}__dense_0+$tokens.nll.jsonl" "window 0+$W=$out/${v}__window_0+$W.nll.jsonl" \
    "recompute 0+$W=$out/${v}__recompute_0+$W.nll.jsonl" \
    "recompute 1+$((W - 1))=$out/${v}__recompute_1+$((W - 1)).nll.jsonl" \
    "streaming 1+$((W - 1))=$out/${v}__streaming_1+$((W - 1)).nll.jsonl" \
    "streaming 4+$((W - 4))=$out/${v}__streaming_4+$((W - 4)).nll.jsonl"
done
"$py" "$root/scripts/plots/stream_report.py" "$out" --md "$results/figure3.md" --csv "$results/figure3.csv"
