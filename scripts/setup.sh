#!/usr/bin/env bash
# Installs what streamsink needs, and only what is missing (run it as often as you like):
#   - Debian packages: compilers, CMake, ccache, yaml-cpp, sentencepiece, nlohmann-json, CLI11, libpng, Gloo's
#     headers, GoogleTest, Google Benchmark (apt, only for the missing ones; a clear message where apt cannot run;
#     Google Benchmark only builds scripts/bench/kernels, which nothing else needs);
#   - a Python virtual environment with the pinned torch wheel (LibTorch) and the plotting libraries, in a per-user
#     cache that every clone reuses: $STREAMSINK_CACHE (default ~/.cache/streamsink)/venv.
#   - with --corpus: the default corpus, the Linux kernel documentation (Debian's linux-doc-6.1).
# Prints the environment line to source: `source "$(scripts/setup.sh --print-env)"`.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${STREAMSINK_CACHE:-$HOME/.cache/streamsink}
venv=$cache/venv
want_corpus=0
for a in "$@"; do
  case "$a" in
    --corpus) want_corpus=1 ;;
    --print-env)  # the file to source; a note on stderr when the set-up has not run here yet
      [ -f "$cache/env.sh" ] || echo "setup.sh: $cache/env.sh is missing: run scripts/setup.sh first" >&2
      echo "$cache/env.sh"; exit 0 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
say() { echo "[setup] $*"; }

# ---- Debian packages ----
pkgs=(g++ cmake make ccache python3-venv libyaml-cpp-dev libsentencepiece-dev nlohmann-json3-dev libcli11-dev libgloo-dev zlib1g-dev
      libpng-dev libgtest-dev libgmock-dev libbenchmark-dev)
[ $want_corpus = 1 ] && pkgs+=(linux-doc-6.1)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  if ! command -v apt-get >/dev/null; then
    echo "setup.sh: these packages are missing and there is no apt-get here: ${missing[*]}" >&2
    echo "          install their equivalents by hand, then run this again." >&2; exit 1
  fi
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      echo "setup.sh: not root and no password-less sudo; ask an administrator to run:" >&2
      echo "          apt-get install -y ${missing[*]}" >&2; exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${missing[@]}" >/dev/null; }
else
  say "Debian packages: all present"
fi

# ---- Python virtual environment with the pinned torch ----
if [ ! -x "$venv/bin/python" ]; then
  say "creating the virtual environment $venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
fi
stamp=$venv/.streamsink-requirements
if ! cmp -s "$here/requirements.txt" "$stamp" 2>/dev/null; then
  say "installing $(grep -v '^#' "$here/requirements.txt" | tr '\n' ' ')(torch is gigabytes: minutes)"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$stamp"
else
  say "Python packages: all present ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
fi

# The pinned wheel's LibTorch is CUDA-enabled, and its CMake files stop a configure that finds no CUDA toolkit
# ("uses CUDA but I cannot find the CUDA libraries"), GPU or none: say so here, before a build fails on it.
if [ "$("$venv/bin/python" -c 'import torch; print(torch.version.cuda is not None)')" = True ] &&
   ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ] && [ ! -x "${CUDA_HOME:-/nonexistent}/bin/nvcc" ]; then
  echo "setup.sh: the torch wheel is CUDA-enabled, and building against its LibTorch needs the CUDA toolkit (nvcc)" \
       "at configure time, even without a GPU; none was found (PATH, /usr/local/cuda, \$CUDA_HOME). Install it" \
       "(NVIDIA's cuda-toolkit, or Debian's nvidia-cuda-toolkit) and run this again." >&2
  exit 1
fi

cat > "$cache/env.sh" <<ENV
export STREAMSINK_PYTHON="$venv/bin/python"
export PATH="$venv/bin:\$PATH"
ENV
if command -v ccache >/dev/null; then
  # Different build folders and clones share one cache: paths are made relative to the checkout.
  ccache --max-size=5G >/dev/null 2>&1 || true
fi
say "done"
