#!/usr/bin/env bash
# One prepared, self-contained check for a lent GPU machine (H100/H200, jax with CUDA
# preinstalled, no network). From the repository root:
#
#   bash experiments/gpu_check.sh
#
# It prints the benchmark JSON (experiments/benchmark.py) for the ML-1M-like and Beauty-like
# shapes in float32 and bfloat16, including model TFLOP/s (setup: experiments/gpu_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/gpu_env.sh
out=${OUT:-/tmp}
for dtype in float32 bfloat16; do
  python3 experiments/benchmark.py --only=train,eval --repeats=3 --train_steps=50 \
    --set=train.compute_dtype=$dtype --out="$out/gpu_$dtype.json"
done
