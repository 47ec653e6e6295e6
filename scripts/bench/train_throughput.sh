#!/usr/bin/env bash
# Training throughput of `streamsink train` vs the same model in PyTorch eager (scripts/bench/reference_train.py),
# for configs tiny and small, on the same shards, batch, seq_len, precision and threads. Prints per config and
# precision:
#   config=small streamsink_tok_s=... pytorch_tok_s=... ratio=... mfu=... precision=fp32
# MFU is against this CPU's measured matmul peak in that precision (`streamsink bench-peak`).
# Both programs' tok/s are total tokens over total time after the same warm-up (the first fifth of the steps): for
# streamsink, the harmonic mean of its metrics.jsonl log windows after the first (equal tokens per window), as
# reference_train.py times its steps. Then the median over --repeats runs; the two programs alternate so a noisy
# neighbour hits both alike. (Before session 8 streamsink's figure was the median of its windows, which drops the
# slowest of four and so favoured streamsink on a loaded machine.)
#   scripts/bench/train_throughput.sh [--quick] [--data DIR] [--threads N] [--repeats N] [--bin PATH]
#                                     [--precision fp32|bf16|both]   (default fp32; bf16 = autocast in both programs)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$("$root/scripts/setup.sh" --print-env)"
quick=0 data="" threads=$(nproc) repeats=2 bin="" precisions=fp32
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1; repeats=1 ;;
    --data) data=$2; shift ;;
    --threads) threads=$2; shift ;;
    --repeats) repeats=$2; shift ;;
    --bin) bin=$2; shift ;;
    --precision) case $2 in fp32|bf16) precisions=$2 ;; both) precisions="fp32 bf16" ;;
                   *) echo "train_throughput.sh: --precision $2: expected fp32, bf16 or both" >&2; exit 2 ;; esac; shift ;;
    *) echo "train_throughput.sh: unknown flag $1" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$bin" ]; then  # the default: build-bench's, else build's; a --bin that is not there is an error
  bin="$root/build-bench/streamsink"
  [ -x "$bin" ] || bin="$root/build/streamsink"
fi
[ -x "$bin" ] || { echo "train_throughput.sh: $bin: no streamsink binary there (scripts/build.sh build-bench)" >&2; exit 1; }

if [ -z "$data" ]; then  # the kernel docs, 4096-piece tokenizer, cached
  data=${STREAMSINK_BENCH_DATA:-$HOME/.cache/streamsink/bench-data}
  if [ ! -f "$data/data/manifest.json" ]; then
    docs=/usr/share/doc/linux-doc-6.1/Documentation
    [ -d "$docs" ] || { echo "train_throughput.sh: $docs: missing; install it with scripts/setup.sh --corpus, or pass --data DIR (a prepared corpus)" >&2; exit 1; }
    mkdir -p "$data"
    "$bin" tokenizer train --input "$docs" --vocab-size 4096 --max-sentences 200000 --out "$data/tokenizer.model" >&2
    "$bin" data prepare --tokenizer "$data/tokenizer.model" --input "$docs" --out "$data/data" >&2
  fi
  data=$data/data
fi
shard=$(ls "$data"/train_*.bin | head -1)
"$bin" bench-peak --threads "$threads" --cached >/dev/null  # measured once and cached, not inside a timed run
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

# config, precision, steps, extra --set: tiny uses the kernel tokenizer's 4096 vocabulary
run_config() {
  local name=$1 prec=$2 steps=$3; shift 3
  local yaml="$root/configs/$name.yaml" ss=() py=()
  # resolved dims from the trainer's printed config
  for r in $(seq "$repeats"); do
    rm -rf "$work/run"
    "$bin" train "$yaml" --out "$work/run" --set train.data_dir="$data" --set train.steps="$steps" \
      --set train.eval_interval=0 --set train.checkpoint_interval=0 --set train.log_interval=$((steps / 5)) \
      --set train.threads="$threads" --set train.precision="$prec" "$@" > "$work/train.log" 2>&1
    ss+=("$(python3 - "$work/run/metrics.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"tok_s"' in l]
rows = rows[1:] or rows  # the first window holds the warm-up
# equal tokens per window: total tokens / total time is the harmonic mean of the windows' rates (MFU ∝ tok/s)
print(statistics.harmonic_mean(r["tok_s"] for r in rows), statistics.harmonic_mean(r["mfu"] for r in rows))
PY
)")
    read -r dim nl nh nkv hid vocab batch seq < <(python3 - "$work/run/config.yaml" "$bin" <<'PY'
import sys, re
t = open(sys.argv[1]).read()
def g(k):
    m = re.search(r"^\s*%s:\s*([0-9]+)" % k, t, re.M); return int(m.group(1))
dim = g("dim"); hid = g("hidden_dim")
if hid == 0:
    h = int(2 * 4 * dim / 3); mo = g("multiple_of"); hid = mo * ((h + mo - 1) // mo)
print(dim, g("n_layers"), g("n_heads"), g("n_kv_heads"), hid, g("vocab_size"), g("batch_size"), g("seq_len"))
PY
)
    py+=("$(python3 "$root/scripts/bench/reference_train.py" --shard "$shard" --dim "$dim" --n-layers "$nl" \
      --n-heads "$nh" --n-kv-heads "$nkv" --hidden-dim "$hid" --vocab "$vocab" --batch "$batch" --seq-len "$seq" \
      --steps $((steps * 4 / 5)) --warmup $((steps / 5)) --threads "$threads" --precision "$prec" | sed -n 's/.*pytorch_tok_s=\([0-9.]*\).*/\1/p')")
  done
  python3 - "$name" "$threads" "$batch" "$seq" "$prec" "${ss[@]}" -- "${py[@]}" <<'PY'
import statistics, sys
a = sys.argv[1:]; name, threads, batch, seq, prec = a[:5]; i = a.index("--")
ss = [tuple(map(float, x.split())) for x in a[5:i]]; py = [float(x) for x in a[i + 1:]]
s = statistics.median(x[0] for x in ss); m = statistics.median(x[1] for x in ss); p = statistics.median(py)
print(f"config={name} streamsink_tok_s={s:.0f} pytorch_tok_s={p:.0f} ratio={s / p:.2f} mfu={100 * m:.1f}% "
      f"precision={prec} threads={threads} batch={batch} seq_len={seq} runs={len(ss)} "
      f"spread_streamsink={100 * (max(x[0] for x in ss) - min(x[0] for x in ss)) / s:.0f}% "
      f"spread_pytorch={100 * (max(py) - min(py)) / p:.0f}%")
PY
}

if [ $quick = 1 ]; then tiny_steps=50 small_steps=15; else tiny_steps=150 small_steps=40; fi
echo "# $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); peak: $("$bin" bench-peak --threads "$threads" --cached); binary $bin"
for prec in $precisions; do
  run_config tiny "$prec" "$tiny_steps" --set model.vocab_size=4096
  run_config small "$prec" "$small_steps"
done
