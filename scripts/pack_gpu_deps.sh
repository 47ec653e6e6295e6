#!/usr/bin/env bash
# Packs what a GPU lease needs into .devdeps/ (git-ignored) for a device run to `carry`:
#  - the Debian libraries the GPU machine lacks: ../shared/device/pack-deps.sh's set (yaml-cpp, sentencepiece,
#    GoogleTest) plus the header-only and small libraries streamsink also needs (nlohmann-json, CLI11, gloo
#    headers, libpng, zlib headers), so that scripts/gpu_build.sh can build there;
#  - a bundle of the programs built here (DEST/bin: streamsink, test_cuda, decode_latency, and the source hash they
#    were built from). The venv's LibTorch is the same 2.11.0+cu130 as the GPU machine's python3 torch, so these
#    run there as they are, against that machine's libtorch, and a lease spends no device time compiling;
#    scripts/gpu_lease.sh falls back to building there when the hash does not match or the programs do not start.
#   scripts/pack_gpu_deps.sh [DEST]     (default .devdeps; BUILD_DIR, default build/, is built first)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=$(realpath -m "${1:-$root/.devdeps}")
shared=$root/../shared/device/pack-deps.sh
[ -x "$shared" ] || shared=$root/shared/device/pack-deps.sh
if [ -x "$shared" ]; then "$shared" "$dest" >/dev/null; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pkgs=(libyaml-cpp-dev libyaml-cpp0.7 libsentencepiece-dev libsentencepiece0 libgtest-dev libgmock-dev googletest
      nlohmann-json3-dev libcli11-dev libgloo-dev libpng-dev libpng16-16 zlib1g-dev)
(cd "$work" && apt-get download "${pkgs[@]}" >/dev/null 2>&1) || {
  apt-get update -qq >/dev/null 2>&1
  (cd "$work" && apt-get download "${pkgs[@]}" >/dev/null)
}
mkdir -p "$dest"
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$dest"; done
rm -rf "$dest/usr/share/doc" "$dest/usr/share/man" "$dest/usr/src/googletest/googletest/docs"
# Links to absolute paths point into this machine's /lib (libz.so -> /lib/x86_64-linux-gnu/libz.so.1.2.13): on the
# GPU machine they dangle, or name another system's file. Without them a fallback build there links the packed
# static libz.a (found first through CMAKE_PREFIX_PATH), or that machine's own libz.
find "$dest" -type l -lname '/*' -delete

build=${BUILD_DIR:-$root/build}
"$root/scripts/build.sh" "$build" >/dev/null
rm -rf "$dest/bin" && mkdir -p "$dest/bin"
cp "$build/streamsink" "$build/tests/test_cuda" "$build/scripts/bench/decode_latency" "$dest/bin/"
strip --strip-debug "$dest"/bin/*
source "$("$root/scripts/setup.sh" --print-env)"
{ echo "source_hash $("$root/scripts/source_hash.sh" "$root")"
  echo "libtorch $("$STREAMSINK_PYTHON" -c 'import torch; print(torch.__version__)')"
  echo "built $(date -u +%FT%TZ) on $(uname -m) from $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(
    git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"; } > "$dest/bin/BUNDLE"
cat "$dest/bin/BUNDLE"
du -sh "$dest"
