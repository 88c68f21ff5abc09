#!/usr/bin/env bash
# One prepared, self-contained check for a lent GPU machine (H100/H200, jax with CUDA
# preinstalled, no network). From the repository root:
#
#   bash experiments/gpu_check.sh
#
# It prints the benchmark JSON (experiments/benchmark.py) for the ML-1M-like and Beauty-like
# shapes in float32 and bfloat16, including model TFLOP/s. ml-collections is the one project
# dependency such an image lacks: carry its wheel in .whl/ (see the device notes in
# docs/benchmarks.md); W&B is not needed (the benchmark runs with tracking disabled).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import ml_collections" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "gpu_check: ml_collections is not installed and there is no .whl/ folder of wheels" >&2
    exit 1
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
python3 -c "import jax; print('devices:', jax.devices())" >&2
out=${OUT:-/tmp}
for dtype in float32 bfloat16; do
  python3 experiments/benchmark.py --only=train,eval --repeats=3 --train_steps=50 \
    --set=train.compute_dtype=$dtype --out="$out/gpu_$dtype.json"
done
