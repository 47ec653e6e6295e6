#!/usr/bin/env bash
# Builds streamsink on the GPU machine against that machine's own PyTorch (python3's torch) and the Debian
# libraries packed by scripts/pack_gpu_deps.sh into .devdeps/ (carried with the run).
#   scripts/gpu_build.sh BUILD_DIR [LOG]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:?usage: gpu_build.sh BUILD_DIR [LOG]}
log=${2:-/dev/stderr}
if [ ! -d "$root/.devdeps/usr" ]; then
  echo "gpu_build: $root/.devdeps missing: run scripts/pack_gpu_deps.sh where apt works and carry .devdeps" >&2
  exit 1
fi
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$root/.devdeps/usr;$torch_prefix" -DTORCH_CUDA_ARCH_LIST=9.0 >> "$log" 2>&1
# Only what the lease runs: the executable, the cuda tests and the decode benchmark (not the other test suites).
cmake --build "$build" -j "$(nproc)" --target streamsink test_cuda decode_latency >> "$log" 2>&1 ||
  { tail -60 "$log" >&2; exit 1; }
