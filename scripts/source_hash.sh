#!/usr/bin/env bash
# Prints one SHA-1 over every file that goes into the compiled programs (sources, tests, benchmarks, CMake), so that
# binaries built on one machine can be matched to the tree they were built from (scripts/pack_gpu_deps.sh records
# it; scripts/gpu_lease.sh uses carried binaries only when it matches).
#   scripts/source_hash.sh [ROOT]
set -euo pipefail
root=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$root"
find CMakeLists.txt cmake app common data infer model train tests scripts/bench scripts/fuzz -type f \
    \( -name '*.cpp' -o -name '*.h' -o -name '*.in' -o -name '*.cmake' -o -name 'CMakeLists.txt' \) -print0 |
  LC_ALL=C sort -z | xargs -0 sha1sum | sha1sum | cut -d' ' -f1
