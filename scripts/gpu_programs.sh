# Sourced, not run, on a GPU machine (by scripts/gpu_lease.sh, or in a device call before other scripts): exports
# STREAMSINK_BIN, TEST_CUDA and DECODE_LATENCY, and the LD_LIBRARY_PATH that runs them against this machine's own
# torch (python3's) and the libraries carried in .devdeps/ (scripts/pack_gpu_deps.sh), and sets STREAMSINK_PROGRAMS
# to a line saying where they came from:
#  - the bundle carried in .devdeps/bin, when its source hash matches this tree and it starts here;
#  - else a build here with all cores (scripts/gpu_build.sh into $WORK/build, at most BUILD_LIMIT_S seconds,
#    default 300; its log in $OUT/gpu_check.log).
# Returns non-zero (and sets STREAMSINK_PROGRAMS to why) when neither gives a working streamsink.
#   source scripts/gpu_programs.sh
_gp_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_gp_work=${WORK:-$_gp_root/runs/gpu}
_gp_out=${OUT:-$_gp_work/out}
mkdir -p "$_gp_work" "$_gp_out"
_gp_torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$_gp_torch_lib:$_gp_root/.devdeps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
_gp_bundle=$_gp_root/.devdeps/bin
_gp_want=$("$_gp_root/scripts/source_hash.sh" "$_gp_root")
_gp_have=$(sed -n 's/^source_hash //p' "$_gp_bundle/BUNDLE" 2>/dev/null)
# ...and built against this machine's torch version: another one can start (the libraries load lazily) and fail later.
_gp_torch_here=$(python3 -c 'import torch; print(torch.__version__)' 2>/dev/null)
_gp_torch_built=$(sed -n 's/^libtorch //p' "$_gp_bundle/BUNDLE" 2>/dev/null)
if [ "$_gp_torch_here" != "$_gp_torch_built" ]; then _gp_have="$_gp_have (torch ${_gp_torch_built:-?}, here $_gp_torch_here)"; fi
if [ "$_gp_have" = "$_gp_want" ] && "$_gp_bundle/streamsink" --version > "$_gp_work/version.txt" 2>&1; then
  export STREAMSINK_BIN=$_gp_bundle/streamsink TEST_CUDA=$_gp_bundle/test_cuda DECODE_LATENCY=$_gp_bundle/decode_latency
  STREAMSINK_PROGRAMS="carried ($(sed -n 's/^built //p' "$_gp_bundle/BUNDLE"))"
else
  STREAMSINK_PROGRAMS="built here (carried bundle: ${_gp_have:-missing}, this tree: $_gp_want$(
    [ "$_gp_have" = "$_gp_want" ] && echo "; it did not start: $(tail -1 "$_gp_work/version.txt")"))"
  if timeout --kill-after=10 "${BUILD_LIMIT_S:-300}" "$_gp_root/scripts/gpu_build.sh" "$_gp_work/build" \
      "$_gp_out/gpu_check.log"; then
    export STREAMSINK_BIN=$_gp_work/build/streamsink TEST_CUDA=$_gp_work/build/tests/test_cuda
    export DECODE_LATENCY=$_gp_work/build/scripts/bench/decode_latency
  else
    STREAMSINK_PROGRAMS="$STREAMSINK_PROGRAMS; the build failed (log: $_gp_out/gpu_check.log)"
    false
  fi
fi
