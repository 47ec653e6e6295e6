# Shared by the experiment scripts (sourced): the built executable, the Python with plotting, and the default
# corpus prepared once (the Linux kernel docs, 4096-piece tokenizer) under $DATA_ROOT (default runs/kernel-docs).
# STREAMSINK_BIN=PATH uses an already built executable: no set-up, no build (build/ is left alone); the Python is
# then $STREAMSINK_PYTHON, else the set-up's venv if there is one, else python3.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [ -n "${STREAMSINK_BIN:-}" ]; then
  [ -x "$STREAMSINK_BIN" ] || { echo "common.sh: STREAMSINK_BIN=$STREAMSINK_BIN is not an executable" >&2; exit 1; }
  ss=$STREAMSINK_BIN
  if [ -z "${STREAMSINK_PYTHON:-}" ] && [ -f "$("$root/scripts/setup.sh" --print-env 2>/dev/null)" ]; then
    source "$("$root/scripts/setup.sh" --print-env)"
  fi
  py=${STREAMSINK_PYTHON:-python3}
else
  # shellcheck disable=SC2086
  "$root/scripts/setup.sh" ${SETUP_ARGS-"--corpus"} >/dev/null  # SETUP_ARGS="" skips the kernel docs (the demo)
  "$root/scripts/build.sh" "$root/build" >/dev/null
  source "$("$root/scripts/setup.sh" --print-env)"
  ss="$root/build/streamsink"
  py="$STREAMSINK_PYTHON"
fi

# prepare_corpus DIR [VOCAB]: tokenizer (VOCAB pieces, default 4096) + shards in DIR/data (reused when complete).
# The text: $CORPUS, one or more files or folders separated by white space (default: the kernel docs);
# $SPLIT_FRACTION of the documents (default 0.005) go to each of val and test.
prepare_corpus() {
  local dir=$1 vocab=${2:-4096} split=${SPLIT_FRACTION:-0.005} c
  local -a corpus
  read -r -d '' -a corpus <<< "${CORPUS:-/usr/share/doc/linux-doc-6.1/Documentation}" || true
  if [ -f "$dir/data/manifest.json" ]; then return; fi
  for c in "${corpus[@]}"; do
    [ -e "$c" ] || { echo "prepare_corpus: corpus path $c does not exist (scripts/setup.sh --corpus installs the" \
                          "kernel docs; or set CORPUS)" >&2; return 1; }
  done
  mkdir -p "$dir"
  "$ss" tokenizer train --input "${corpus[@]}" --vocab-size "$vocab" --max-sentences 200000 --out "$dir/tokenizer.model" 2>&1 |
    tail -2
  "$ss" data prepare --tokenizer "$dir/tokenizer.model" --input "${corpus[@]}" --out "$dir/data" \
    --val-fraction "$split" --test-fraction "$split" 2>&1 | tail -2  # the data folder gets its copy of the tokenizer
}

# check_run_budget RUN STEPS: a run folder is resumed or reused only with the step budget it was started with (the
# trainer allows a longer one, but its schedule would then change part-way, and a script's figures would describe
# neither budget). Exits naming the folder otherwise.
check_run_budget() {
  local run=$1 steps=$2 have
  [ -f "$run/config.yaml" ] || return 0
  have=$(sed -n 's/^  steps: *\([0-9]*\).*/\1/p' "$run/config.yaml" | head -1)
  if [ -n "$have" ] && [ "$have" != "$steps" ]; then
    echo "$(basename "$0"): $run was trained for $have steps, not $steps: move it away (or set OUT) to train afresh" >&2
    exit 1
  fi
}

# json_get FILE KEY...: the values (0 when missing); json_set FILE KEY=VALUE...: merged into FILE (made if missing).
json_get() {
  "$py" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(*(j.get(k, 0) for k in sys.argv[2:]))' "$@"
}
json_set() {
  "$py" - "$@" <<'PY'
import json, os, sys
path, j = sys.argv[1], {}
if os.path.exists(path):
    j = json.load(open(path))
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    try:
        j[k] = json.loads(v)  # numbers stay numbers
    except ValueError:
        j[k] = v
json.dump(j, open(path, "w"), indent=1)
PY
}
