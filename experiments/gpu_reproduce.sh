#!/usr/bin/env bash
# Issue-5 work for a lent GPU machine (H100/H200, jax with CUDA preinstalled, no network), in
# stages that together stay within BUDGET seconds (default 420). From the repository root,
# with the data files in BERT4REC_DATA_DIR:
#
#   bash experiments/gpu_reproduce.sh [BUDGET [a.b=value ...]]
#   DATASETS=ml1m,beauty SWEEPS= bash experiments/gpu_reproduce.sh 480 train.num_train_steps=40000
#
#   1. python experiments/reproduce.py --datasets=$DATASETS (default ml1m) with the overrides:
#      trains (resuming any checkpoint under projects/<dataset>), evaluates both protocols and
#      rewrites those sections of docs/reproduction.md, which name the device each model was
#      trained on. Training gets at most half of the budget left, shared between the datasets.
#   2. the choice sweeps named in $SWEEPS (default "ml1m beauty";
#      experiments/sweeps/<name>_choices.py), 3 runs at a time.
#
# What it made is packed under $OUT (default /tmp/gpu_out), to unpack at the repository root
# of a checkout: reproduce.tgz.part-* (each model's latest checkpoint, results and the report)
# and choices.tgz.part-* (the sweeps' runs, logs, tables and plots; not their models); unpack
# with `cat reproduce.tgz.part-* | tar -xz`. A stage cut short by the budget keeps what it finished: training
# saves a checkpoint when its time limit is reached and sweeps resume finished runs. The report
# is written before the sweeps run: after unpacking both here, `python experiments/reproduce.py
# --datasets=... --evaluate_only` embeds the sweep tables. Setup: experiments/gpu_env.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
source experiments/gpu_env.sh
budget=${1:-420}
case "$budget" in *[!0-9]*|'') echo "gpu_reproduce: BUDGET (seconds) comes first, then overrides" >&2; exit 2;; esac
shift $(( $# > 0 ? 1 : 0 ))
sets=()
for s in "$@"; do sets+=("--set=$s"); done
datasets=${DATASETS:-ml1m}
out=${OUT:-/tmp/gpu_out}
mkdir -p "$out"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # sweep runs share the card
left() { echo $(( budget - SECONDS )); }

# 1. Train and report; evaluation and the report take about a minute per dataset.
n=$(echo "$datasets" | tr ',' '\n' | grep -c .)
minutes=$(python3 -c "print(max(0.5, $(left) / 2 / 60 / $n))")
if [ $(( $(left) - 30 )) -gt 0 ]; then
  timeout -k 30 $(( $(left) - 30 )) python3 experiments/reproduce.py --datasets="$datasets" --set=wandb.mode=disabled \
    ${sets[@]+"${sets[@]}"} --time_limit_minutes="$minutes"
  echo "gpu_reproduce: stage 1 ended (rc $?) at ${SECONDS}s" >&2
else
  echo "gpu_reproduce: no time left for stage 1" >&2
fi
keep=(docs/reproduction.md)
for dataset in ${datasets//,/ }; do
  keep+=("projects/$dataset/results")
  for m in $(ls -d projects/"$dataset"/models/*/ 2>/dev/null); do
    latest=$(ls "$m/checkpoints" 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -1)
    keep+=("$m"config.json "$m"metrics.jsonl "$m"train_time.json "$m"train_devices.json "$m"vocab)
    [ -n "$latest" ] && keep+=("$m"checkpoints/"$latest")
  done
done
# Parts of at most 15 MiB: what comes back from such a machine is limited per file.
rm -f "$out"/reproduce.tgz.part-* "$out"/choices.tgz.part-*
tar -cz --ignore-failed-read "${keep[@]}" 2>/dev/null | split -b 15m - "$out/reproduce.tgz.part-"
ls -la "$out" >&2

# 2. The choice sweeps, each cut short (resumably) when the budget runs out.
for name in ${SWEEPS-ml1m beauty}; do
  [ "$(left)" -gt 80 ] || break
  timeout -k 60 $(( $(left) - 20 )) python3 experiments/sweep.py experiments/sweeps/${name}_choices.py \
    --parallel=3 --set=wandb.mode=disabled
  echo "gpu_reproduce: ${name}_choices ended (rc $?) at ${SECONDS}s" >&2
  python3 experiments/sweep.py experiments/sweeps/${name}_choices.py --set=wandb.mode=disabled \
    --report_only >/dev/null 2>&1
  rm -f "$out"/choices.tgz.part-*
  tar -cz --exclude='sweeps/*/models' --exclude='sweeps/*/data' --ignore-failed-read \
    $(ls -d sweeps/*_choices 2>/dev/null) 2>/dev/null | split -b 15m - "$out/choices.tgz.part-"
done
ls -la "$out" >&2
