#!/usr/bin/env bash
# Issue-22 rows for a lent GPU machine (H100/H200, jax with CUDA preinstalled, no network): quality
# against seconds of training (experiments/time_to_quality.py) on ML-1M, then Beauty, each row alone
# on the card. From the repository root, with the data files in BERT4REC_DATA_DIR:
#
#   bash experiments/gpu_time_to_quality.sh [BUDGET_SECONDS_PER_ROW]          # default 60
#   ML1M_ROWS=all BEAUTY_ROWS= bash experiments/gpu_time_to_quality.sh 60
#
# The default rows fit one 10-minute call (each row: its budget, about 15 s of evaluations, the
# data once per dataset: two ML-1M rows took 165 s on an H200); ML1M_ROWS / BEAUTY_ROWS name
# others (comma-separated; "all"; empty: that dataset is skipped). Beauty's length-bucket row is
# not a default: it compiles a step per window width (4), 10-20 s each there. Writes
# $OUT/time_to_quality_<dataset>_<device kind>.json (default OUT /tmp/gpu_out) for docs/benchmarks/, and the logs
# beside them. Setup: experiments/gpu_env.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
source experiments/gpu_env.sh
budget=${1:-60}
case "$budget" in *[!0-9.]*|'') echo "gpu_time_to_quality: BUDGET_SECONDS_PER_ROW is a number" >&2; exit 2;; esac
out=${OUT:-/tmp/gpu_out}
mkdir -p "$out"
kind=$(python3 -c "import jax; print(jax.devices()[0].device_kind.replace(' ', '_').lower())")
rc=0
for pair in "ml1m:${ML1M_ROWS-paper,b1024_bf16,next_item_b1024_bf16,seq_warmup_next_item_b1024_bf16}" \
            "beauty:${BEAUTY_ROWS-paper,b1024_bf16}"; do
  dataset=${pair%%:*}; rows=${pair#*:}
  [ -n "$rows" ] || continue
  python3 experiments/time_to_quality.py --dataset="$dataset" --rows="$rows" --budget_seconds="$budget" \
    --workdir=/tmp/ttq_work --out="$out/time_to_quality_${dataset}_${kind}.json" 2> "$out/time_to_quality_$dataset.log" \
    > /dev/null || rc=$?
  tail -n 3 "$out/time_to_quality_$dataset.log" >&2
done
ls -la "$out" >&2
exit $rc
