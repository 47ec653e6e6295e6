#!/usr/bin/env bash
# The kernels that decide the project's figures, under Google Benchmark (scripts/bench/kernels.cpp says what each
# one measures): attention forward + backward and the training step per sink variant at tiny/small shapes, the
# streaming decode step (S=4 + W at W = 252, 1020, 4092; just full and at position 1M), the KV cache's
# bookkeeping alone, and Loader::next. 1 intra-op thread unless --threads. Prints a table of medians over the
# repetitions (interleaved at random, so a noisy neighbour hits every benchmark alike) and key=value lines:
#   config=small zero_over_none_train=... logit_over_none_train=... zero_over_none_attention=... ...
#   window=4092 decode_step_us=... decode_step_pos1M_over_posW=... kvcache_us=... kvcache_share=...
#   loader_tok_s=... loader_over_train_small=...
# Ratios are of time per token (> 1: slower), from the benchmark thread's CPU time with 1 thread (the work itself,
# not a neighbour's share of the core), from wall time with more. The training ones (X_over_none_train) and the
# decode step's position ratio come from the paired benchmarks (train_pair, decode_pair: the two alternate, each call
# timed; the median over the repetitions of their median ratio), the rest from the medians of separate benchmarks.
#   scripts/bench/kernels.sh [--quick] [--threads N] [--json FILE] [-- extra kernels / --benchmark_* flags]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${STREAMSINK_BENCH_BUILD:-$root/build-bench}
timing=(--benchmark_min_time=0.3 --benchmark_min_warmup_time=0.2 --benchmark_repetitions=5
        --benchmark_enable_random_interleaving=true)
threads=1
json=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) timing=(--benchmark_min_time=0.05 --benchmark_min_warmup_time=0.02 --benchmark_repetitions=1) ;;
    --threads) threads=$2; shift ;;
    --json) json=$2; shift ;;
    --) shift; break ;;
    *) echo "kernels.sh: unknown flag $1" >&2; exit 2 ;;
  esac
  shift
done
bin=$build/scripts/bench/kernels
if [ ! -x "$bin" ]; then
  [ -f "$build/CMakeCache.txt" ] || "$root/scripts/build.sh" "$build" >/dev/null
  cmake "$build" >/dev/null
  if ! cmake --build "$build" --target help | grep -q '^\.\.\. kernels$'; then
    echo "kernels.sh: $build has no target kernels: Google Benchmark was not found when it was configured" \
         "(Debian: apt-get install libbenchmark-dev, or scripts/setup.sh), then run this again" >&2
    exit 1
  fi
  cmake --build "$build" -j2 --target kernels >/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=${json:-$tmp/kernels.json}
echo "# $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" --threads "$threads" --configs "$root/configs" "${timing[@]}" --benchmark_out="$out" \
  --benchmark_out_format=json "$@" > "$tmp/console.txt" 2>&1 || { cat "$tmp/console.txt" >&2; exit 1; }
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out" "$threads" <<'PY'
import json, sys
from collections import defaultdict

doc = json.load(open(sys.argv[1]))
threads = int(sys.argv[2])
runs = defaultdict(list)  # benchmark -> its repetitions (iteration entries)
for b in doc["benchmarks"]:
    if b.get("run_type", "iteration") != "iteration" or b.get("error_occurred"):
        continue
    runs[b["run_name"].removesuffix("/real_time")].append(b)
runs = dict(sorted(runs.items(), key=lambda kv: (kv[1][0]["family_index"], kv[1][0]["per_family_instance_index"])))

def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])

SCALE = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}  # to microseconds
def stat(name):
    rs = runs[name]
    rate = [r["items_per_second"] for r in rs]
    return {
        "wall_us": median([r["real_time"] * SCALE[r["time_unit"]] for r in rs]),
        "cpu_us": median([r["cpu_time"] * SCALE[r["time_unit"]] for r in rs]),
        "tok_s": median(rate),
        "spread": (max(rate) - min(rate)) / median(rate) if len(rate) > 1 else 0.0,
        "reps": len(rs),
        "pos": min((int(r["pos"]) for r in rs if "pos" in r), default=None),
        "paired": [r["b_over_a"] for r in rs if "b_over_a" in r],
    }

ctx = doc.get("context", {})
print(f"# intra-op threads {ctx.get('intra_op_threads', threads)}; tiny: {ctx.get('tiny', '?')}; "
      f"small: {ctx.get('small', '?')}")
print(f"# medians over {max((len(v) for v in runs.values()), default=0)} repetition(s); tok/s per "
      f"{'CPU second of the benchmark thread' if threads == 1 else 'wall second'}; "
      "spread = (max - min) / median of tok/s")
print()
print("| benchmark | wall / iter | CPU / iter | tokens/s | spread | paired b/a (min-max) | first position |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
def fmt_us(us):
    return f"{us / 1e3:.2f} ms" if us >= 1e3 else f"{us:.2f} us"
def fmt_rate(r):
    return f"{r / 1e6:.1f}M" if r >= 1e6 else f"{r / 1e3:.2f}k" if r >= 1e4 else f"{r:.0f}"
stats = {name: stat(name) for name in runs}
for name, s in stats.items():
    pos = "" if s["pos"] is None else f"{s['pos']:,}"
    p = s["paired"]
    paired = f"{median(p):.3f} ({min(p):.3f}-{max(p):.3f})" if p else ""
    print(f"| {name} | {fmt_us(s['wall_us'])} | {fmt_us(s['cpu_us'])} | {fmt_rate(s['tok_s'])} | "
          f"{100 * s['spread']:.0f}% | {paired} | {pos} |")
print()

def per_token(name):  # time per token, from the rate Google Benchmark computed (CPU or wall, as the run chose)
    return 1.0 / stats[name]["tok_s"] if name in stats else None
def ratio(a, b):
    ta, tb = per_token(a), per_token(b)
    return f"{ta / tb:.3f}" if ta and tb else "n/a"
def paired(name, fallback_a, fallback_b):  # the side-by-side ratio where it ran, else the ratio of the two medians
    p = stats.get(name, {}).get("paired")
    return f"{median(p):.3f}" if p else ratio(fallback_a, fallback_b)

for config in ("tiny", "small"):
    base = f"train_step/{config}/none"
    if base not in stats:
        continue
    line = [f"config={config}", f"train_none_tok_s={stats[base]['tok_s']:.0f}"]
    for sink in ("token", "zero", "logit"):
        line.append(f"{sink}_over_none_train="
                    f"{paired(f'train_pair/{config}/{sink}', f'train_step/{config}/{sink}', base)}")
    for sink in ("token", "zero", "logit"):
        line.append(f"{sink}_over_none_attention="
                    f"{ratio(f'attention/{config}/{sink}', f'attention/{config}/none')}")
    print(" ".join(line))
for w in (252, 1020, 4092):
    full = f"decode_step/W={w}/pos=full"
    if full not in stats:
        continue
    line = [f"window={w}", f"decode_step_us={1e6 * per_token(full):.1f}"]
    for long_ in (n for n in stats if n.startswith(f"decode_step/W={w}/pos=") and n != full):
        p = long_.rsplit("=", 1)[1]  # 1M (kernels --long-position)
        line += [f"decode_step_pos{p}_us={1e6 * per_token(long_):.1f}",
                 f"decode_step_pos{p}_over_posW={paired(f'decode_pair/W={w}', long_, full)}"]
    kv = f"kvcache/W={w}"
    if kv in stats:
        line += [f"kvcache_us={1e6 * per_token(kv):.1f}", f"kvcache_share={ratio(kv, full)}"]
    print(" ".join(line))
if "loader/small" in stats:
    line = [f"loader_tok_s={stats['loader/small']['tok_s']:.0f}"]
    if "train_step/small/none" in stats:
        train = stats["train_step/small/none"]["tok_s"]
        line.append(f"loader_over_train_small={stats['loader/small']['tok_s'] / train:.0f}")
    print(" ".join(line))
PY
