#!/usr/bin/env bash
# Issue-5 work for a lent GPU machine (H100/H200, jax with CUDA preinstalled, no network), in
# stages that together stay within BUDGET seconds (default 420). From the repository root,
# with the data files in BERT4REC_DATA_DIR:
#
#   bash experiments/gpu_reproduce.sh [BUDGET [a.b=value ...]]
#   DATASETS=ml1m,beauty SWEEPS= bash experiments/gpu_reproduce.sh 480 train.num_train_steps=40000
#   DATASETS= SWEEPS="ml1m_long beauty_long" SWEEP_MODELS=ml1m_long bash experiments/gpu_reproduce.sh 540
#
#   1. python experiments/reproduce.py --datasets=$DATASETS (default ml1m, or nothing when
#      SWEEPS names sweeps; empty: skipped) with
#      the overrides: trains (resuming any checkpoint under projects/<dataset>), evaluates both
#      protocols and rewrites those sections of docs/reproduction.md, which name the device each
#      model was trained on. Training gets at most half of the budget left, shared between the
#      datasets: configs/ml1m.py's 30,000 steps took 6 minutes of an H100 shared with three
#      other runs, so a small BUDGET reports interim numbers (marked so in the report;
#      resumable: run the same command again).
#   2. the sweeps named in $SWEEPS (experiments/sweeps/<name>.py, or a sweep file's path;
#      default "ml1m_choices beauty_choices"), all at the same time, each $SWEEP_PARALLEL runs
#      at a time (default 3 with one sweep, else 2). Every run stops (with a checkpoint,
#      resumable) when the budget runs out; a run stopped short has no record, its sweep's
#      table leaves it out.
#
# What it made is packed under $OUT (default /tmp/gpu_out), to unpack at the repository root
# of a checkout: reproduce.tgz.part-* (each model's latest checkpoint, results and the report),
# sweeps.tgz.part-* (the sweeps' runs, logs, per-user results, tables and plots; not their
# models) and sweep_models.tgz.part-* (each model of the sweeps named in $SWEEP_MODELS: its
# records, its latest checkpoint and the one validation selected); unpack each with
# `cat <name>.tgz.part-* | tar -xz`. At most 8 files of 16 MiB come back from such a machine:
# a hidden-64 ML-1M model is ~4 MB a checkpoint, a Beauty one ~40 MB.
# The report is written before the sweeps run: after unpacking both here, `python
# experiments/reproduce.py --datasets=... --evaluate_only` embeds the sweep tables. Setup:
# experiments/gpu_env.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
source experiments/gpu_env.sh
budget=${1:-420}
case "$budget" in *[!0-9]*|'') echo "gpu_reproduce: BUDGET (seconds) comes first, then overrides" >&2; exit 2;; esac
shift $(( $# > 0 ? 1 : 0 ))
sets=()
for s in "$@"; do sets+=("--set=$s"); done
if [ -n "${SWEEPS-}" ]; then default_datasets=""; else default_datasets=ml1m; fi
datasets=${DATASETS-$default_datasets}
out=${OUT:-/tmp/gpu_out}
mkdir -p "$out"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # sweep runs share the card
left() { echo $(( budget - SECONDS )); }

# 1. Train and report; evaluation and the report take about a minute per dataset.
if [ -n "$datasets" ]; then
  n=$(echo "$datasets" | tr ',' '\n' | grep -c .)
  minutes=$(python3 -c "print(max(0.5, $(left) / 2 / 60 / $n))")
  if [ $(( $(left) - 30 )) -gt 0 ]; then
    timeout -k 30 $(( $(left) - 30 )) python3 experiments/reproduce.py --datasets="$datasets" --set=wandb.mode=disabled \
      ${sets[@]+"${sets[@]}"} --time_limit_minutes="$minutes"
    echo "gpu_reproduce: stage 1 ended (rc $?) at ${SECONDS}s" >&2
  else
    echo "gpu_reproduce: no time left for stage 1" >&2
  fi
fi
rm -f "$out"/*.tgz.part-*
# Each model folder under $1 as paths to pack: its files (identity, config, selection, checksums,
# times), its vocabulary, its latest checkpoint (to resume from) and the one validation selected.
latest_models() {
  for m in $(ls -d "$1"/*/ 2>/dev/null); do
    find "$m" -maxdepth 1 -type f
    echo "$m"vocab
    latest=$(ls "$m/checkpoints" 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -1)
    [ -n "$latest" ] || continue
    echo "$m"checkpoints/"$latest"
    selected=$(python3 -c "import sys; from bert4rec_jax import selection; print(selection.selected_step(sys.argv[1], int(sys.argv[2])) or '')" "$m" "$latest" 2>/dev/null)
    [ -n "$selected" ] && [ "$selected" != "$latest" ] && [ -d "$m/checkpoints/$selected" ] && echo "$m"checkpoints/"$selected"
  done
}
# Parts of at most 15 MiB: what comes back from such a machine is limited per file.
pack() {  # pack NAME PATH...
  local name=$1; shift
  [ $# -gt 0 ] || return 0
  tar -cz --ignore-failed-read "$@" 2>/dev/null | split -b 15m - "$out/$name.tgz.part-"
}
if [ -n "$datasets" ]; then
  keep=(docs/reproduction.md)
  for dataset in ${datasets//,/ }; do
    keep+=("projects/$dataset/results" $(latest_models "projects/$dataset/models"))
  done
  pack reproduce "${keep[@]}"
  ls -la "$out" >&2
fi

# 2. The sweeps, at the same time, each cut short (resumably) when the budget runs out. A sweep is
# named as in experiments/sweeps/ or given as a sweep file's path; its runs go to sweeps/<file name>.
sweeps=(${SWEEPS-ml1m_choices beauty_choices})
sweep_file() { if [ -f "$1" ]; then echo "$1"; else echo "experiments/sweeps/$1.py"; fi; }
sweep_name() { basename "$1" .py; }
parallel=${SWEEP_PARALLEL:-$(( ${#sweeps[@]} > 1 ? 2 : 3 ))}
if [ ${#sweeps[@]} -gt 0 ] && [ "$(left)" -gt 80 ]; then
  for name in "${sweeps[@]}"; do
    # A run that starts at once stops at its own time limit (with a checkpoint) before the timeout;
    # one queued behind others counts its limit from its own start, so the timeout may end it
    # first: it resumes from its last periodic checkpoint on the next call.
    timeout -k 60 $(( $(left) - 20 )) python3 experiments/sweep.py "$(sweep_file "$name")" \
      --parallel="$parallel" --set=wandb.mode=disabled \
      --set=train.training_time_limit_seconds=$(( $(left) - 90 > 30 ? $(left) - 90 : 30 )) \
      > "$out/$(sweep_name "$name").log" 2>&1 &
  done
  wait
  echo "gpu_reproduce: sweeps ended at ${SECONDS}s" >&2
  for name in "${sweeps[@]}"; do
    python3 experiments/sweep.py "$(sweep_file "$name")" --set=wandb.mode=disabled --report_only >/dev/null 2>&1
    tail -n 5 "$out/$(sweep_name "$name").log" >&2
  done
  pack sweeps --exclude='sweeps/*/models' --exclude='sweeps/*/data' --exclude='sweeps/*/models/*' \
    $(for name in "${sweeps[@]}"; do ls -d "sweeps/$(sweep_name "$name")" 2>/dev/null; done)
  models=()
  for name in ${SWEEP_MODELS-}; do models+=($(latest_models "sweeps/$(sweep_name "$name")/models")); done
  pack sweep_models ${models[@]+"${models[@]}"}
fi
ls -la "$out" >&2
