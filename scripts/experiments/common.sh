# Shared by the experiment scripts (sourced): the built executable, the Python with plotting, and the default
# corpus prepared once (the Linux kernel docs, 4096-piece tokenizer) under $DATA_ROOT (default runs/kernel-docs).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
"$root/scripts/setup.sh" --corpus >/dev/null
"$root/scripts/build.sh" "$root/build" >/dev/null
source "$("$root/scripts/setup.sh" --print-env)"
ss="$root/build/streamsink"
py="$STREAMSINK_PYTHON"

# prepare_corpus DIR: tokenizer + shards of the kernel docs in DIR/data (reused when complete).
prepare_corpus() {
  local dir=$1 corpus=/usr/share/doc/linux-doc-6.1/Documentation
  if [ -f "$dir/data/manifest.json" ]; then return; fi
  mkdir -p "$dir"
  "$ss" tokenizer train --input "$corpus" --vocab-size 4096 --max-sentences 200000 --out "$dir/tokenizer.model" 2>&1 |
    grep -v "LOG(INFO)" | tail -2
  "$ss" data prepare --tokenizer "$dir/tokenizer.model" --input "$corpus" --out "$dir/data" 2>&1 | tail -2
  cp "$dir/tokenizer.model" "$dir/data/tokenizer.model"
}
