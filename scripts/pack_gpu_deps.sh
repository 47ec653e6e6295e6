#!/usr/bin/env bash
# Packs the Debian libraries the GPU machine lacks into .devdeps/ (git-ignored) for a device run to `carry`:
# ../shared/device/pack-deps.sh's set (yaml-cpp, sentencepiece, GoogleTest) plus the header-only and small
# libraries streamsink also needs (nlohmann-json, CLI11, gloo headers, libpng, zlib headers).
#   scripts/pack_gpu_deps.sh [DEST]     (default .devdeps)
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
du -sh "$dest"
