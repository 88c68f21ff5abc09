# Sourced by the gpu_*.sh scripts: makes the project importable on a lent GPU machine whose
# image has jax (CUDA), flax, optax, orbax-checkpoint, numpy, pandas, pyarrow, absl-py and tqdm
# but not ml-collections. Carry its wheel in .whl/ (README.md, "On a GPU", says how);
# W&B is not needed: the scripts run with config.wandb.mode=disabled.
if ! python3 -c "import ml_collections" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "gpu: ml_collections is not installed and there is no .whl/ folder of wheels" >&2
    exit 1
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
# Compiled programs kept on disk: a resumed run, or another one with the same shapes, skips them.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jax_compilation_cache}
python3 -c "import jax; print('devices:', jax.devices())" >&2
