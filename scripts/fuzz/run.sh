#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -fsanitize=fuzzer,address,undefined) into build-fuzz/ and runs each for
# SECONDS (default 600) on a seeded corpus kept in build-fuzz/corpus/<target>. Crashes land in
# build-fuzz/artifacts/<target>/; the script exits non-zero when any target found one.
#   scripts/fuzz/run.sh [SECONDS] [TARGET...]      TARGET: config shard safetensors (default all)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
secs=${1:-600}; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(config shard safetensors)
build=${STREAMSINK_FUZZ_BUILD:-$root/build-fuzz}
source "$("$root/scripts/setup.sh" --print-env)" || exit 1

# clang with the libFuzzer runtime (Debian: clang-14 + libclang-rt-14-dev).
cxx=$(command -v clang++-14 || command -v clang++ || true)
rt=$(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a 2>/dev/null | head -1)
if [ -z "$cxx" ] || [ -z "$rt" ]; then
  echo "fuzz: installing clang-14 and libclang-rt-14-dev" >&2
  sudo_=${SUDO:-$( [ "$(id -u)" = 0 ] || echo sudo )}
  $sudo_ apt-get install -y clang-14 libclang-rt-14-dev >&2 ||
    { $sudo_ apt-get update -q >&2 && $sudo_ apt-get install -y clang-14 libclang-rt-14-dev >&2; } || exit 1
  cxx=$(command -v clang++-14)
fi

export CCACHE_BASEDIR=$root CCACHE_NOHASHDIR=1
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root/scripts/fuzz" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" \
    -DSTREAMSINK_PYTHON="$STREAMSINK_PYTHON" >/dev/null || exit 1
fi
cmake --build "$build" -j "${STREAMSINK_JOBS:-$(nproc)}" || exit 1

# Seeds: the repository's configs, and small valid shards and safetensors files.
mkdir -p "$build/corpus"/{config,shard,safetensors}
cp "$root"/configs/*.yaml "$build/corpus/config/" 2>/dev/null
# Inputs that once crashed a target (fixed since) are seeds too, so every run replays them first.
for t in config shard safetensors; do
  [ -d "$root/scripts/fuzz/regressions/$t" ] && cp "$root/scripts/fuzz/regressions/$t"/* "$build/corpus/$t/"
done
python3 - "$build/corpus" <<'PY'
import json, os, struct, sys
out = sys.argv[1]
def shard(name, magic, toks, fmt):
    with open(os.path.join(out, "shard", name), "wb") as f:
        f.write(struct.pack("<256i", magic, 1, len(toks), *([0] * 253)))
        f.write(struct.pack("<%d%s" % (len(toks), fmt), *toks))
shard("u16.bin", 20240520, [1, 2, 3, 65535, 0, 7], "H")
shard("u32.bin", 20240801, [1, 2, 3, 70000], "I")
shard("empty.bin", 20240520, [], "H")
def st(name, tensors, meta=None):
    header, data = {}, b""
    if meta: header["__metadata__"] = meta
    for n, (dt, shape, raw) in tensors.items():
        header[n] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(out, "safetensors", name), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)
st("two.safetensors", {"a": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)), "b": ("I64", [1], struct.pack("<q", 5))},
   {"format": "pt"})
st("scalar.safetensors", {"s": ("BF16", [], b"\x80\x3f"), "e": ("F16", [0, 3], b"")})
st("empty.safetensors", {})
PY
cat > "$build/config.dict" <<'D'
"model:"
"train:"
"vocab_size: "
"dim: "
"n_layers: "
"n_heads: "
"n_kv_heads: "
"hidden_dim: "
"context_length: "
"sink: "
"token"
"sink_tokens: "
"data_dir: "
"steps: "
"seq_len: "
"batch_size: "
"schedule: "
"nan_policy: "
"lr: "
"{"
"["
"!!"
"&a"
"*a"
"~"
"\x0a  "
D
cat > "$build/safetensors.dict" <<'D'
"\"dtype\""
"\"shape\""
"\"data_offsets\""
"\"__metadata__\""
"\"F32\""
"\"F16\""
"\"BF16\""
"\"I64\""
"\"I32\""
"\"F64\""
"\"U8\""
D

status=0
summary=""
for t in "${targets[@]}"; do
  # This run's findings only: an earlier run's (fixed since, or still open) move to artifacts/<t>.earlier-<time>/.
  if [ -n "$(ls -A "$build/artifacts/$t" 2>/dev/null)" ]; then
    mv "$build/artifacts/$t" "$build/artifacts/$t.earlier-$(date +%Y%m%d-%H%M%S)"
  fi
  mkdir -p "$build/artifacts/$t"
  dict=()
  [ -f "$build/$t.dict" ] && dict=(-dict="$build/$t.dict")
  log="$build/fuzz_$t.log"
  echo "== fuzz_$t: ${secs}s" >&2
  # LibTorch and yaml-cpp are not instrumented and keep allocations until exit: no leak checking.
  ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:protect_shadow_gap=0:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$build/fuzz_$t" "$build/corpus/$t" "${dict[@]}" -max_total_time="$secs" -max_len=4096 -timeout=10 \
      -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$build/artifacts/$t/" >"$log" 2>&1
  rc=$?
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
  crashes=$(ls "$build/artifacts/$t" | wc -l)
  line="fuzz_$t: exit $rc, ${runs:-?} executions in ${secs}s, ${cov:-cov ?}, corpus $(ls "$build/corpus/$t" | wc -l), artifacts $crashes"
  echo "$line" >&2
  summary+="$line"$'\n'
  if [ "$rc" != 0 ] || [ "$crashes" != 0 ]; then status=1; tail -40 "$log" >&2; fi
done
printf '\n%s' "$summary"
exit $status
