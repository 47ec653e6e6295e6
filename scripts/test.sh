#!/usr/bin/env bash
# The README's test command: set up (installs only what is missing), build from whatever is there, run every test.
#   scripts/test.sh [ctest options...]      e.g. scripts/test.sh -L slow   or   scripts/test.sh -LE slow
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
start=$(date +%s)
"$root/scripts/setup.sh"
"$root/scripts/build.sh" "$root/build"
source "$("$root/scripts/setup.sh" --print-env)"
cd "$root/build"
ctest --output-on-failure -j "${STREAMSINK_TEST_JOBS:-2}" "$@"
echo "[test] done in $(( $(date +%s) - start )) s"
