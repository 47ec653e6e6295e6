#!/usr/bin/env bash
# Configures and builds streamsink into BUILD_DIR (default build/), against the LibTorch of the set-up's venv.
#   scripts/build.sh [BUILD_DIR] [extra cmake -D options...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}; shift || true
source "$("$root/scripts/setup.sh" --print-env)"
export CCACHE_BASEDIR=$root CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_NOHASHDIR=1
jobs=${STREAMSINK_JOBS:-$(nproc)}
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSTREAMSINK_PYTHON="$STREAMSINK_PYTHON" "$@" >/dev/null
fi
cmake --build "$build" -j "$jobs"
