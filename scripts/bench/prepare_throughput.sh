#!/usr/bin/env bash
# Data preparation throughput of `streamsink data prepare` (issue 8): tokens/s and MB/s of text at 1 thread and at
# all cores, side by side in one run, on the demo's kind of corpus: make_corpus.py over the Python library folder
# that the set-up's Python carries (20 MiB, --quick 3 MiB; it depends on the image) and a 512-piece tokenizer, both
# made once and cached under $STREAMSINK_CACHE/bench-prepare/{full,quick} (default ~/.cache/streamsink). Prints:
#   threads=N docs=... tokens=... bytes=... seconds=... tok_s=... mb_s=... cpu_seconds=... median_seconds=... spread=...
#   speedup=... threads_hi=N threads_lo=1          (tok/s at the most threads over tok/s at the fewest)
#   identical=yes files=K runs=M    (every run's shards and manifest splits equal the first run's; "untested" if one run)
# docs and tokens come from the manifest.json each run writes (all three splits, <eos> included); bytes is the
# corpus on disk; seconds is the wall time of the whole `data prepare` process (startup_seconds, printed first, is
# what the executable takes to start and exit: LibTorch's libraries load). Each thread count runs --repeats times
# (default 3), the counts alternating and the order flipped every repeat; the figure is the best (shortest) run:
# on a shared machine a neighbour only ever adds time, so the minimum is the closest to the program's own cost.
# median_seconds and spread ((slowest - fastest) / fastest) show the noise. cpu_seconds is the best run's user + sys
# time: at 1 thread it is close to seconds when the run is CPU-bound. MB = 10^6 bytes.
# The executable is copied into the run's temporary folder first, so a rebuild during the run cannot mix binaries.
#   scripts/bench/prepare_throughput.sh [--quick] [--bin PATH] [--threads N,...] [--repeats N]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
me=prepare_throughput.sh
quick=0 bin="" threads="" repeats=3
while [ $# -gt 0 ]; do
  case $1 in --bin|--threads|--repeats) [ $# -ge 2 ] || { echo "$me: $1 needs a value" >&2; exit 2; } ;; esac
  case $1 in
    --quick) quick=1 ;;
    --bin) bin=$2; shift ;;
    --threads) threads=$2; shift ;;
    --repeats) repeats=$2; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "$me: unknown flag $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $repeats =~ ^[1-9][0-9]*$ ]] || { echo "$me: --repeats $repeats: expected a positive integer" >&2; exit 2; }
[ -n "$threads" ] || threads="1,$(nproc)"
IFS=, read -r -a tlist <<< "$threads"
for t in "${tlist[@]}"; do
  [[ $t =~ ^[1-9][0-9]*$ ]] || { echo "$me: --threads $threads: expected positive integers separated by commas" >&2; exit 2; }
done
mapfile -t tlist < <(printf '%s\n' "${tlist[@]}" | sort -n -u)

if [ -z "$bin" ]; then  # the default: build-bench's, else build's; a --bin that is not there is an error
  bin="$root/build-bench/streamsink"
  [ -x "$bin" ] || bin="$root/build/streamsink"
fi
if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
  echo "$me: $bin: no streamsink executable there (scripts/build.sh build, or --bin PATH)" >&2; exit 1
fi

# The set-up's Python: its library folder is the corpus (as in scripts/demo.sh), and it runs make_corpus.py.
env_file=$("$root/scripts/setup.sh" --print-env 2>/dev/null)
# shellcheck source=/dev/null
if [ -z "${STREAMSINK_PYTHON:-}" ] && [ -f "$env_file" ]; then source "$env_file"; fi
py=${STREAMSINK_PYTHON:-}
if [ -z "$py" ] || [ ! -x "$py" ]; then
  if [ -n "$py" ]; then why="STREAMSINK_PYTHON=$py is not an executable"; else why="$env_file is missing"; fi
  echo "$me: no Python virtual environment ($why): run scripts/setup.sh first, or set STREAMSINK_PYTHON" >&2
  exit 1
fi

work=$(mktemp -d /tmp/streamsink-prepare-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
cp "$bin" "$work/streamsink"
ss=$work/streamsink
"$ss" --version >/dev/null 2>&1 || { echo "$me: $bin does not run (a copy in $work failed: --version)" >&2; exit 1; }

# ---- the corpus and the tokenizer, made once per mode and reused ----
if [ $quick = 1 ]; then mode=quick cap_mb=3; else mode=full cap_mb=20; fi
cache=${STREAMSINK_CACHE:-$HOME/.cache/streamsink}/bench-prepare/$mode
src=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
stamp="source=$src cap_mb=$cap_mb vocab=512 make_corpus=$(sha1sum < "$root/scripts/experiments/make_corpus.py" | cut -c1-12)"
if [ ! -f "$cache/tokenizer.model" ] || [ "$(cat "$cache/stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "# making the corpus ($cap_mb MiB from $src) and its 512-piece tokenizer in $cache (once)" >&2
  rm -rf "$cache" && mkdir -p "$cache"
  # the same flags as scripts/demo.sh, and the same tokenizer training
  "$py" "$root/scripts/experiments/make_corpus.py" "$src" --out "$cache/corpus.tmp" --cap-mb "$cap_mb" --min-bytes 1 >&2
  mv "$cache/corpus.tmp" "$cache/corpus"
  "$ss" tokenizer train --input "$cache/corpus" --vocab-size 512 --max-sentences 300000 \
    --out "$cache/tokenizer.tmp.model" > "$work/tokenizer.log" 2>&1 || {
    tail -20 "$work/tokenizer.log" >&2; echo "$me: tokenizer train failed" >&2; exit 1; }
  mv "$cache/tokenizer.tmp.model" "$cache/tokenizer.model"
  rm -f "$cache/tokenizer.tmp.vocab" "$cache/tokenizer.tmp.model.vocab"
  echo "$stamp" > "$cache/stamp"
fi
corpus=$cache/corpus
bytes=$(find "$corpus" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
files=$(find "$corpus" -type f | wc -l)
cat "$corpus"/* > /dev/null  # the first timed run should not be the only one reading from the disk

echo "# $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); binary $bin;" \
     "corpus $corpus ($files files, $bytes bytes); threads ${tlist[*]}; best of $repeats"
starts=()
for r in 1 2 3; do  # the executable's own start and exit (best of 3), for scale: part of every run's seconds
  s=$(date +%s.%N); "$ss" data prepare --help > /dev/null; e=$(date +%s.%N)
  starts+=("$(echo "$e - $s" | bc)")
done
echo "startup_seconds=$(printf '%s\n' "${starts[@]}" | sort -g | head -1 | xargs printf '%.3f')"

# ---- the timed runs: thread counts alternating, the order flipped every repeat ----
: > "$work/times"
ref=""
TIMEFORMAT='%3R %3U %3S'
for r in $(seq "$repeats"); do
  if [ $((r % 2)) = 1 ]; then order=("${tlist[@]}"); else mapfile -t order < <(printf '%s\n' "${tlist[@]}" | sort -n -r); fi
  for t in "${order[@]}"; do
    out=$work/out-$r-$t
    if ! { time "$ss" data prepare --tokenizer "$cache/tokenizer.model" --input "$corpus" --out "$out" \
             --threads "$t" > "$work/prepare.log" 2>&1; } 2> "$work/time"; then
      tail -20 "$work/prepare.log" >&2; echo "$me: data prepare --threads $t failed (repeat $r)" >&2; exit 1
    fi
    read -r real user sys < "$work/time"
    # docs and tokens from the manifest the run wrote
    counts=$("$py" - "$out/manifest.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["splits"]
print(sum(s[k]["docs"] for k in s), sum(s[k]["tokens"] for k in s))
PY
) || { echo "$me: $out/manifest.json: no docs and tokens to read" >&2; exit 1; }
    read -r docs tokens <<< "$counts"
    echo "$t $real $user $sys $docs $tokens" >> "$work/times"
    # prepare promises the same bytes whatever the thread count: every run against the first
    if [ -z "$ref" ]; then ref=$out; continue; fi
    "$py" - "$ref" "$out" <<'PY' || { echo "identical=no"; echo "$me: the shards of --threads $t (repeat $r) differ from those of the first run: data prepare's output depends on the thread count" >&2; exit 1; }
import filecmp, json, os, sys
a, b = sys.argv[1:]
shards = lambda d: sorted(f for f in os.listdir(d) if f.endswith(".bin"))
splits = lambda d: json.load(open(os.path.join(d, "manifest.json")))["splits"]
if shards(a) != shards(b):
    sys.exit(f"shard files differ: {shards(a)} against {shards(b)}")
for f in shards(a):
    if not filecmp.cmp(os.path.join(a, f), os.path.join(b, f), shallow=False):
        sys.exit(f"{f} differs")
if splits(a) != splits(b):
    sys.exit("manifest.json's splits differ")
PY
    rm -rf "$out"
  done
done
shard_files=$(find "$ref" -name '*.bin' | wc -l)

"$py" - "$work/times" "$bytes" "$repeats" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
nbytes, repeats = int(sys.argv[2]), int(sys.argv[3])
by = {}
for t, real, user, sys_, docs, tokens in rows:
    by.setdefault(int(t), []).append((float(real), float(user) + float(sys_), int(docs), int(tokens)))
best = {}
for t in sorted(by):
    runs = by[t]
    docs, tokens = runs[0][2], runs[0][3]
    if any((r[2], r[3]) != (docs, tokens) for r in runs):
        sys.exit(f"threads={t}: runs disagree on docs/tokens: {runs}")
    secs = [r[0] for r in runs]
    b = min(runs, key=lambda r: r[0])
    best[t] = tokens / b[0]
    print(f"threads={t} docs={docs} tokens={tokens} bytes={nbytes} seconds={b[0]:.3f} tok_s={tokens / b[0]:.0f} "
          f"mb_s={nbytes / 1e6 / b[0]:.2f} cpu_seconds={b[1]:.3f} median_seconds={statistics.median(secs):.3f} "
          f"spread={100 * (max(secs) - min(secs)) / min(secs):.0f}% runs={len(runs)}")
lo, hi = min(best), max(best)
if hi != lo:
    print(f"speedup={best[hi] / best[lo]:.2f} threads_hi={hi} threads_lo={lo}")
PY
runs=$(wc -l < "$work/times")
if [ "$runs" -gt 1 ]; then echo "identical=yes files=$shard_files runs=$runs"; else echo "identical=untested runs=1"; fi
