#!/usr/bin/env bash
# Builds streamsink and its tests with AddressSanitizer + UndefinedBehaviorSanitizer (GCC) into build-asan/ and runs
# the fast suites (ctest -LE 'slow|cuda'; STREAMSINK_ASAN_EXCLUDE=cuda runs the whole suite); extra arguments go to
# ctest (e.g. -R BadInput).
#   scripts/sanitize.sh [ctest options...]
#   STREAMSINK_ASAN_EXCLUDE=cuda scripts/sanitize.sh                                         (every CPU test)
#   STREAMSINK_ASAN_TARGETS="streamsink test_bad_input" scripts/sanitize.sh -R BadInput   (a quicker, partial run)
# LibTorch itself is not instrumented: leak checking is off (it keeps allocations until exit), and
# protect_shadow_gap=0 lets the CUDA libraries of a CUDA LibTorch map what they need. Only our code is checked.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${STREAMSINK_ASAN_BUILD:-$root/build-asan}
source "$("$root/scripts/setup.sh" --print-env)"
export CCACHE_BASEDIR=$root CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_NOHASHDIR=1
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -fno-sanitize=vptr"
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTREAMSINK_PYTHON="$STREAMSINK_PYTHON" \
    -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
    >/dev/null
fi
targets=()
for t in ${STREAMSINK_ASAN_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j "${STREAMSINK_JOBS:-$(nproc)}" "${targets[@]}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:protect_shadow_gap=0:abort_on_error=1:detect_odr_violation=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build"
ctest --output-on-failure -j "${STREAMSINK_TEST_JOBS:-2}" -LE "${STREAMSINK_ASAN_EXCLUDE:-slow|cuda}" "$@"
