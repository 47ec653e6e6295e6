#!/usr/bin/env bash
# The paper's headline at small scale: a stream of 4 million tokens through the streaming cache (4+(W-4), W half the
# training context; 4+124 for the kernel-docs models of results/long_stream.png) of a trained model; perplexity per
# 100k tokens should stay flat and so should memory. The held-out splits are ~100k tokens for the kernel-docs
# data (~2.3M for the demo's), so the stream is the test split followed by the validation split, repeated until it is 4M tokens long (written as one
# llm.c shard); repeats are far apart (> 100k tokens) compared with the window (W tokens), so the cache never sees a
# repeat it could copy from.
#   scripts/experiments/long_stream.sh     RUN (default runs/demo/none), TOKENS (default 4000000), RESULTS (default
#                                          results/tmp: the committed plot is replaced only when it says so)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SETUP_ARGS=${SETUP_ARGS-""}  # trained runs and their data are given: the set-up needs no kernel docs
source "$here/common.sh"
run=${RUN:-$root/runs/demo/none}
data=${DATA:-$root/runs/demo/data}
[ -f "$run/config.yaml" ] || { echo "long_stream: no run $run (run scripts/demo.sh first, or set RUN and DATA)" >&2; exit 1; }
W=$(( $(sed -n 's/^  context_length: *\([0-9]*\).*/\1/p' "$run/config.yaml") / 2 ))  # 4 sinks + (W-4) recent tokens
tokens=${TOKENS:-4000000}
out=${OUT:-$root/runs/long-stream}
results=${RESULTS:-$root/results/tmp}
mkdir -p "$out" "$results"
"$py" - "$data" "$out/stream.bin" "$tokens" <<'PY'
import glob, sys
import numpy as np
data, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
parts = []
for split in ("test", "val"):
    for f in sorted(glob.glob(f"{data}/{split}_*.bin")):
        h = np.fromfile(f, dtype=np.int32, count=256)
        dt = np.uint16 if h[0] == 20240520 else np.uint32
        parts.append(np.fromfile(f, dtype=dt, offset=1024)[: h[2]])
base = np.concatenate(parts)
stream = np.resize(base, n).astype(base.dtype)
header = np.zeros(256, dtype=np.int32)
header[:3] = (20240520, 1, n) if stream.dtype == np.uint16 else (20240801, 7, n)  # llm.c: GPT-2 u16 v1, Llama 3 u32 v7
with open(dst, "wb") as f:
    f.write(header.tobytes()); f.write(stream.tobytes())
print(f"stream: {n} tokens from {len(base)} held-out tokens repeated {n / len(base):.1f} times -> {dst}")
PY
timer=(); [ -x /usr/bin/time ] && timer=(/usr/bin/time -v)  # peak memory and wall time, where GNU time is installed
if ! "${timer[@]}" "$ss" eval-stream --checkpoint "$run" --data "$out/stream.bin" --policy streaming --sinks 4 \
    --window $((W - 4)) --block 100000 --out "$out/streaming_4+$((W - 4)).nll.jsonl" 2> "$out/time.txt" |
    tee "$out/eval.txt" | tail -30; then
  echo "long_stream: eval-stream failed; the end of its errors ($out/time.txt):" >&2
  tail -5 "$out/time.txt" >&2
  exit 1
fi
{ grep -E "Maximum resident|Elapsed" "$out/time.txt" || true; } | tee -a "$out/eval.txt"
"$py" "$root/scripts/plots/plot_stream.py" "$results/long_stream.png" --smooth 100000 \
  --title "4+$((W - 4)) streaming cache over $tokens tokens" "streaming 4+$((W - 4))=$out/streaming_4+$((W - 4)).nll.jsonl"
