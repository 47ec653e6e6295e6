#!/usr/bin/env bash
# When does an attention sink emerge? (issue 7) Trains vanilla models (`sink: none`) that differ in one factor each
# (model size, tokens, tokenizer, learning rate, weight decay), one after the other, each for the same wall-clock
# budget, evaluating often; collects the trainer's sink metrics over training (first-position attention per layer,
# validation loss past W with window attention vs 4 sinks + window) into results/emergence.csv, a verdict per run
# into results/emergence.md and the curves into results/emergence.png, and prints the summary.
#
#   scripts/experiments/emergence.sh [CONF]     (default scripts/experiments/emergence.conf)
#
# CONF is a shell fragment (see emergence.conf): TOKENIZERS and RUNS tables, BUDGET_S or STEPS, EVALS, ... . With
# BUDGET_S, each run's steps are sized from a probe of its model shape's tokens/s (as gpu_run.sh does) and
# train.max_seconds stops it at CAP_PCT% of BUDGET_S (default 125; a run stopped so has no evaluation at its last
# step, the report says so); a run whose flags hold --set train.steps=N trains N steps.
# Environment: OUT (run folders), RESULTS (csv/md/png), STREAMSINK_BIN (a built executable: nothing is built),
# ONLY="name ..." (train only these runs; the report still covers every run of the conf that has started),
# DEADLINE (epoch seconds: no run trains past DEADLINE - REPORT_S, default 45, and a run that would get less than
# 20 s is skipped, so the report is always written in time), DRY_RUN=1 (print the resolved settings and stop).
# A run whose folder holds a finished run is reused; an interrupted one resumes (delete OUT/NAME to retrain) with
# what is left of its time cap: the seconds earlier invocations trained it count, so a rerun never exceeds it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
conf=${1:-$here/emergence.conf}
[ -f "$conf" ] || { echo "emergence.sh: no config file $conf" >&2; exit 2; }
conf=$(cd "$(dirname "$conf")" && pwd)/$(basename "$conf")
source "$here/common.sh"
# shellcheck disable=SC1090
source "$conf"

die() { echo "emergence.sh: $conf: $*" >&2; exit 2; }
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$root/$1" ;; esac; }
trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; echo "${s%"${s##*[![:space:]]}"}"; }

# ---- settings (the conf's, overridable from the environment where it says so) ----
out=$(abspath "${OUT:?set OUT in $conf}")
results=$(abspath "${RESULTS:-$root/results}")
budget_s=${BUDGET_S:-0}          # wall seconds of training per run; steps are sized from a short probe
steps_fixed=${STEPS:-0}          # or a fixed number of steps per run (then BUDGET_S only caps the time)
evals=${EVALS:-15}               # evaluations per run
eval_sequences=${EVAL_SEQUENCES:-16}  # validation windows per evaluation (train.eval_sequences)
threads=${THREADS:-2}
warmup_pct=${WARMUP_PCT:-10}     # warm-up, % of the steps
probe_steps=${PROBE_STEPS:-12}
max_steps=${MAX_STEPS:-0}        # an upper bound on the probe-sized steps (0 = none)
cap_pct=${CAP_PCT:-125}          # train.max_seconds = CAP_PCT% of BUDGET_S (0 = no time cap)
share_ratio=${SHARE_RATIO:-5}    # the verdict's criteria (scripts/plots/emergence_plot.py --help)
loss_gap=${LOSS_GAP:-0.01}
deadline=${DEADLINE:-0}          # epoch seconds (0 = none)
report_s=${REPORT_S:-45}         # kept before DEADLINE for the last evaluation, the checkpoint and the report
[ "$budget_s" -gt 0 ] || [ "$steps_fixed" -gt 0 ] || die "set BUDGET_S (seconds per run) or STEPS (steps per run)"
[ "$evals" -gt 0 ] || die "EVALS must be > 0"

# TOKENIZERS: "name | vocab | data root | corpus" lines; RUNS: "name | config | tokenizer | --set flags" lines.
declare -A tok_vocab tok_root tok_corpus
tok_names=()
while IFS= read -r line; do
  line=$(trim "${line%%#*}"); [ -n "$line" ] || continue
  IFS='|' read -r n v d c extra <<< "$line"
  n=$(trim "$n"); v=$(trim "$v"); d=$(trim "$d"); c=$(trim "${c:-}")
  [ -z "${extra:-}" ] && [ -n "$c" ] || die "TOKENIZERS line '$line': want 'name | vocab | data root | corpus'"
  [[ "$v" =~ ^[0-9]+$ ]] || die "TOKENIZERS line '$line': vocab '$v' is not a number"
  [ -z "${tok_vocab[$n]:-}" ] || die "TOKENIZERS: '$n' twice"
  tok_names+=("$n"); tok_vocab[$n]=$v; tok_root[$n]=$(abspath "$d"); tok_corpus[$n]=$c
done <<< "${TOKENIZERS:?set TOKENIZERS in $conf}"

run_names=(); declare -A run_config run_tok run_sets
while IFS= read -r line; do
  line=$(trim "${line%%#*}"); [ -n "$line" ] || continue
  IFS='|' read -r n cfg t sets extra <<< "$line"
  n=$(trim "$n"); cfg=$(trim "$cfg"); t=$(trim "$t"); sets=$(trim "${sets:-}")
  [ -z "${extra:-}" ] && [ -n "$t" ] || die "RUNS line '$line': want 'name | config | tokenizer | --set flags'"
  [[ "$n" =~ ^[A-Za-z0-9._-]+$ ]] || die "RUNS line '$line': name '$n' may hold only letters, digits, . _ -"
  [ -z "${run_config[$n]:-}" ] || die "RUNS: '$n' twice"
  [ -f "$(abspath "$cfg")" ] || die "RUNS line '$line': no config file $(abspath "$cfg")"
  [ -n "${tok_vocab[$t]:-}" ] || die "RUNS line '$line': tokenizer '$t' is not in TOKENIZERS (${tok_names[*]})"
  [[ " $sets " != *" --set model.sink="* ]] || die "RUNS line '$line': every run is vanilla (sink: none)"
  run_names+=("$n"); run_config[$n]=$(abspath "$cfg"); run_tok[$n]=$t; run_sets[$n]=$sets
done <<< "${RUNS:?set RUNS in $conf}"
for n in ${ONLY:-}; do [ -n "${run_config[$n]:-}" ] || die "ONLY names '$n', which is not in RUNS"; done

echo "# emergence study: $conf"
echo "#   binary $ss | python $py | threads $threads"
echo "#   runs in $out | results in $results"
if [ "$steps_fixed" -gt 0 ]; then echo "#   budget: $steps_fixed steps per run"
else echo "#   budget: ${budget_s}s of training per run, steps sized by a ${probe_steps}-step probe per model shape$(
               [ "$max_steps" -gt 0 ] && echo " (at most $max_steps)")"; fi
cap=$(( (budget_s * cap_pct + 99) / 100 ))  # train.max_seconds, 0 = none
[ "$cap" = 0 ] || echo "#   time cap: train.max_seconds = ${cap}s per run"
echo "#   $evals evaluations per run ($eval_sequences validation windows each), warm-up ${warmup_pct}% of the steps"
echo "#   verdict: a layer > ${share_ratio}x the uniform first-position share AND window loss > 4-sink loss by a" \
     "relative > $loss_gap"
for t in "${tok_names[@]}"; do
  read -r -d '' -a words <<< "${tok_corpus[$t]}" || true
  corpus_text=${tok_corpus[$t]}
  [ ${#words[@]} -le 3 ] || corpus_text="${words[0]} ${words[1]} ... ${words[-1]} (${#words[@]} paths)"
  echo "#   tokenizer $t: ${tok_vocab[$t]} pieces, data ${tok_root[$t]}/data, corpus $corpus_text"
done
for n in "${run_names[@]}"; do
  skip=""; [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $n "* ]] || skip=" (not trained: ONLY)"
  echo "#   run $n: ${run_config[$n]#"$root/"} | ${run_tok[$n]} | ${run_sets[$n]:-defaults}$skip"
done

if [ "${DRY_RUN:-0}" = 1 ]; then exit 0; fi

mkdir -p "$out" "$results"
start=$(date +%s)
say() { echo "=== [$(( $(date +%s) - start ))s] $*"; }

# ---- data, once per tokenizer (common.sh's prepare_corpus; reused when complete) ----
for t in "${tok_names[@]}"; do
  need=0  # only for the tokenizers of the runs to train
  for n in ${ONLY:-${run_names[*]}}; do if [ "${run_tok[$n]}" = "$t" ]; then need=1; fi; done
  [ $need = 1 ] || continue
  if [ ! -f "${tok_root[$t]}/data/manifest.json" ]; then say "prepare data for tokenizer $t in ${tok_root[$t]}"; fi
  CORPUS=${tok_corpus[$t]} prepare_corpus "${tok_root[$t]}" "${tok_vocab[$t]}"
  got=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokenizer"]["vocab_size"])' \
        "${tok_root[$t]}/data/manifest.json")
  [ "$got" = "${tok_vocab[$t]}" ] ||
    die "tokenizer $t: ${tok_root[$t]}/data holds a $got-piece tokenizer, the conf says ${tok_vocab[$t]}" \
        "(point its data root elsewhere)"
done

# The --set flags every run and probe shares; the per-run flags come last, so they win.
base_sets() {  # NAME
  local t=${run_tok[$1]}
  echo "--set train.data_dir=${tok_root[$t]}/data --set model.vocab_size=${tok_vocab[$t]} --set model.sink=none" \
       "--set train.threads=$threads --set train.eval_sequences=$eval_sequences --set train.checkpoint_interval=0"
}

# probe NAME: sets probe_tok_s, probe_per_step and probe_mfu, the training tokens/s, tokens per step and MFU of the
# run's model shape, from a few steps (cached per shape).
declare -A probed
probe() {
  local n=$1 key dir
  local shape='--set (model\.[^ ]+|train\.(batch_size|seq_len|grad_accum|precision|device)=[^ ]+)'
  key="${run_config[$n]}|${run_tok[$n]}|$({ grep -oE -- "$shape" <<< "${run_sets[$n]}" || true; } | tr '\n' ' ')"
  if [ -z "${probed[$key]:-}" ]; then
    say "probe the throughput of $n's shape ($probe_steps steps)"
    dir="$out/.probe-$n"
    rm -rf "$dir"
    # shellcheck disable=SC2046,SC2086
    "$ss" train "${run_config[$n]}" $(base_sets "$n") ${run_sets[$n]} --set train.steps="$probe_steps" \
      --set train.warmup_steps=1 --set train.log_interval=$(( probe_steps / 2 > 0 ? probe_steps / 2 : 1 )) \
      --set train.eval_interval=0 --set train.eval_sequences=1 --set train.max_seconds=0 --out "$dir" > "$dir.log" 2>&1 ||
      { tail -5 "$dir.log" >&2; die "run $n: the throughput probe failed (log above, $dir.log)"; }
    probed[$key]=$("$py" -c 'import json,sys
r=[json.loads(l) for l in open(sys.argv[1]) if "tok_s" in l][-1]
print(r["tok_s"], r["tokens_seen"] // r["step"], round(100 * r["mfu"], 1))' "$dir/metrics.jsonl")
    rm -rf "$dir" "$dir.log"
  fi
  read -r probe_tok_s probe_per_step probe_mfu <<< "${probed[$key]}"
  echo "    probe: ${probe_tok_s%.*} tokens/s, MFU ${probe_mfu}%"
  # A busy machine (another job on the cores) slows multi-threaded training many times over; the sizing follows.
  if "$py" -c "import sys; sys.exit(0 if $probe_mfu < 10 else 1)"; then
    echo "    emergence.sh: warning: MFU ${probe_mfu}% looks like a busy machine" \
         "($(uptime | sed 's/.*load/load/')); this run's steps are sized from it" >&2
  fi
}

# finished RUN STEPS: true when RUN's metrics hold the evaluation of its last step.
finished() {
  [ -f "$1/metrics.jsonl" ] && "$py" -c 'import json,sys
evals = [j["step"] for j in map(json.loads, open(sys.argv[1])) if "val_loss" in j]
sys.exit(0 if int(sys.argv[2]) in evals else 1)' "$1/metrics.jsonl" "$2"
}

# ---- train, one run after the other ----
failed=()
for n in "${run_names[@]}"; do
  [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $n "* ]] || continue
  if [ "$deadline" != 0 ] && [ $(( deadline - report_s - $(date +%s) )) -lt 20 ]; then
    echo "emergence.sh: DEADLINE: under 20 s left before the report; run $n not (re)started" >&2
    continue
  fi
  run="$out/$n"
  mkdir -p "$run"
  # The sizing is fixed when a run starts, so a resumed run keeps its schedule.
  if [ ! -f "$run/emergence.json" ]; then
    pinned=$({ grep -oE -- '--set train\.steps=[0-9]+' <<< "${run_sets[$n]}" || true; } | tail -1 | cut -d= -f2)
    if [ -n "$pinned" ]; then steps=$pinned; probe_tok_s=0; probe_per_step=0
    elif [ "$steps_fixed" -gt 0 ]; then steps=$steps_fixed; probe_tok_s=0; probe_per_step=0
    else
      probe "$n"
      # 90% of the budget at the probe's rate, the rest for evaluations and start-up (as gpu_run.sh)
      steps=$("$py" -c "s = max(2 * $evals, int($budget_s * $probe_tok_s * 0.9 / $probe_per_step))
print(min(s, $max_steps) if $max_steps > 0 else s)")
    fi
    json_set "$run/emergence.json" steps="$steps" probe_tok_s="$probe_tok_s" tokens_per_step="$probe_per_step" \
      budget_s="$budget_s"
  fi
  # What the report says about the run (config, tokenizer, overrides), refreshed from the conf each time.
  json_set "$run/emergence.json" config="${run_config[$n]#"$root/"}" tokenizer="${run_tok[$n]}" \
    data_dir="${tok_root[${run_tok[$n]}]}/data" sets="${run_sets[$n]}"
  read -r steps per_step < <(json_get "$run/emergence.json" steps tokens_per_step)
  if finished "$run" "$steps"; then say "$n: finished earlier ($steps steps), reused"; continue; fi
  run_cap=$cap  # train.max_seconds for this invocation: what is left of the cap, and of the time to DEADLINE
  if [ "$cap" != 0 ]; then
    spent=$(json_get "$run/emergence.json" train_wall_s)
    run_cap=$(( cap - spent ))
    if [ "$run_cap" -le 0 ]; then
      say "$n: its time cap (${cap}s) was spent by earlier invocations (${spent}s of training): not resumed"
      continue
    fi
  fi
  if [ "$deadline" != 0 ]; then
    left=$(( deadline - report_s - $(date +%s) ))
    if [ "$left" -lt 20 ]; then
      echo "emergence.sh: DEADLINE: ${left}s left before the report (the probe took the rest); run $n not started" >&2
      continue
    fi
    if [ "$run_cap" = 0 ] || [ "$left" -lt "$run_cap" ]; then run_cap=$left; fi
  fi
  interval=$(( steps / evals > 0 ? steps / evals : 1 ))
  warmup=$(( steps * warmup_pct / 100 > 0 ? steps * warmup_pct / 100 : 1 ))
  plan="$steps steps"
  [ "$per_step" = 0 ] || plan+=" x $per_step = $(( steps * per_step )) tokens"
  [ "$run_cap" = 0 ] || plan+=", time cap ${run_cap}s"
  say "train $n: $plan, eval every $interval steps"
  t_run=$(date +%s)
  set +e
  # shellcheck disable=SC2046,SC2086
  "$ss" train "${run_config[$n]}" $(base_sets "$n") --set train.steps="$steps" --set train.warmup_steps="$warmup" \
    --set train.eval_interval="$interval" --set train.max_seconds="$run_cap" ${run_sets[$n]} --out "$run" \
    --resume auto 2>&1 |
    tee -a "$run/train.log" | { grep --line-buffered -E '^(# model|\[eval\]|\[train\] (done|stopped|more))' || true; }
  rc=${PIPESTATUS[0]}
  set -e
  json_set "$run/emergence.json" \
    train_wall_s=$(( $(json_get "$run/emergence.json" train_wall_s) + $(date +%s) - t_run ))
  if [ "$rc" != 0 ]; then
    echo "emergence.sh: run $n failed (exit $rc): $run/train.log" >&2
    failed+=("$n")
  fi
done

# ---- report ----
say "report"
specs=()
for n in "${run_names[@]}"; do
  if [ -f "$out/$n/config.yaml" ]; then specs+=("$n=$out/$n")
  else echo "emergence.sh: run $n has not started ($out/$n)" >&2; fi
done
[ ${#specs[@]} -gt 0 ] || { echo "emergence.sh: no run has started in $out" >&2; exit 1; }
if [ "${COPY_METRICS:-0}" = 1 ]; then
  # Each run's metrics.jsonl and emergence.json beside the report, as one archive (a remote machine returns at
  # most 8 files): emergence-metrics.tar.gz holds NAME/metrics.jsonl and NAME/emergence.json.
  metrics_dir=$(mktemp -d)
  for spec in "${specs[@]}"; do
    mkdir -p "$metrics_dir/${spec%%=*}"
    cp "${spec#*=}/metrics.jsonl" "$metrics_dir/${spec%%=*}/"
    cp "${spec#*=}/emergence.json" "$metrics_dir/${spec%%=*}/" 2>/dev/null || true
  done
  mkdir -p "$results"
  tar -czf "$results/emergence-metrics.tar.gz" -C "$metrics_dir" .
  rm -rf "$metrics_dir"
fi
"$py" "$root/scripts/plots/emergence_plot.py" "${specs[@]}" --csv "$results/emergence.csv" \
  --md "$results/emergence.md" --png "$results/emergence.png" --share-ratio "$share_ratio" --loss-gap "$loss_gap" \
  --command "scripts/experiments/emergence.sh ${conf#"$root/"}" --conf "$conf"
echo "emergence done in $(( $(date +%s) - start )) s: $results/emergence.{md,csv,png}"
if [ ${#failed[@]} -gt 0 ]; then echo "emergence.sh: failed runs: ${failed[*]}" >&2; exit 1; fi
