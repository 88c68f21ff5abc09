"""experiments/gpu_reproduce.sh, run here on the CPU as it runs on a lent GPU machine (a copy of
the checkout, no install step): a sweep given by its file trains within the budget, its runs and
models are packed into parts under $OUT, and unpacked in another folder they are enough to record
the models (experiments/record_run.py) and to resume them."""
import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from tests.conftest import REPO, xla_flags

SWEEP = '''"""Test sweep for the GPU script."""
CONFIG = "configs/synthetic.py:tiny"
SETTINGS = {"task": "train_val_test", "train.num_train_steps": 40, "train.eval_every_steps": 10,
            "train.checkpoint_every_steps": 20, "train.patience": 0, "eval.batch_size": 128,
            "eval.per_user_top_k": 10}
SEEDS = (0,)


def sweep(add):
  for kind in ("bert4rec", "sasrec"):
    add(**{"model.kind": kind})
'''


@pytest.fixture
def checkout(tmp_path):
  """The parts of a checkout the script uses, in a folder of its own (it writes beside itself)."""
  root = tmp_path / "checkout"
  root.mkdir()
  for part in ("bert4rec_jax", "configs", "experiments"):
    shutil.copytree(os.path.join(REPO, part), root / part, ignore=shutil.ignore_patterns("__pycache__"))
  return root


def unpack(parts_dir, name, into):
  parts = sorted(glob.glob(os.path.join(parts_dir, f"{name}.tgz.part-*")))
  assert parts, f"no {name} parts in {os.listdir(parts_dir)}"
  with open(into / f"{name}.tgz", "wb") as whole:
    for part in parts:
      with open(part, "rb") as f:
        whole.write(f.read())
  with tarfile.open(into / f"{name}.tgz") as tar:
    tar.extractall(into, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
  os.remove(into / f"{name}.tgz")


def test_gpu_reproduce_packs_sweep_models_that_record_and_resume_elsewhere(checkout, tmp_path):
  (tmp_path / "tiny_sweep.py").write_text(SWEEP)
  out, back = tmp_path / "out", tmp_path / "back"
  back.mkdir()
  bin_dir = tmp_path / "bin"  # python3 is this environment's interpreter, as the image's is there
  bin_dir.mkdir()
  (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
  (bin_dir / "python3").chmod(0o755)
  env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", OUT=str(out), DATASETS="",
             SWEEPS=str(tmp_path / "tiny_sweep.py"), SWEEP_MODELS="tiny_sweep",
             XLA_FLAGS=xla_flags(1), MPLCONFIGDIR=str(tmp_path / "mpl"),
             WANDB_DIR=str(tmp_path / "wandb"), WANDB_CACHE_DIR=str(tmp_path / "wandb_cache"))
  env.pop("PYTHONPATH", None)
  done = subprocess.run(["bash", str(checkout / "experiments" / "gpu_reproduce.sh"), "400"], capture_output=True,
                        text=True, cwd=tmp_path, env=env, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "sweeps ended" in done.stderr, done.stderr[-3000:]
  assert (out / "tiny_sweep.log").is_file()

  unpack(out, "sweeps", back)
  unpack(out, "sweep_models", back)
  work = back / "sweeps" / "tiny_sweep"
  runs = [json.loads(p.read_text()) for p in sorted((work / "runs").glob("*.json"))]
  assert sorted(run["point"]["model.kind"] for run in runs) == ["bert4rec", "sasrec"]
  assert not (work / "data").exists()
  for run in runs:
    folder = work / "models" / run["model_name"]
    for name in ("identity.json", "config.json", "selection.json", "checksums.json", "train_time.json"):
      assert (folder / name).is_file(), (run["model_name"], name)
    # The latest checkpoint (to resume from) and the one validation selected, nothing else.
    assert sorted(int(s) for s in os.listdir(folder / "checkpoints")) == sorted({40, run["selection"]["step"]})

  # Recorded elsewhere from what came back, without evaluating again ...
  rec_env = dict(env, PYTHONPATH=str(checkout))
  recorded = subprocess.run([sys.executable, str(checkout / "experiments" / "record_run.py"), f"--workdir={work}",
                             f"--models={','.join(run['model_name'] for run in runs)}",
                             f"--out={back / 'records'}"], capture_output=True, text=True, cwd=checkout,
                            env=rec_env, timeout=600)
  assert recorded.returncode == 0, recorded.stderr[-3000:]
  assert "evaluating it first" not in recorded.stdout
  for run in runs:
    record = back / "records" / run["model_name"]
    assert json.loads((record / "record.json").read_text())["data"], "the record names the data it was trained on"
    kind = run["point"]["model.kind"]
    assert json.loads((record / "test_metrics.json").read_text())["metrics"][kind] == run["test"]

  # ... and each model folder is whole: run again without its record and results, the sweep finds
  # its training done and evaluates its selected checkpoint to the same figures.
  for run in runs:
    os.remove(next(p for p in (work / "runs").glob("*.json") if json.loads(p.read_text())["run"] == run["run"]))
  shutil.rmtree(work / "results")
  again = subprocess.run([sys.executable, str(checkout / "experiments" / "sweep.py"), str(tmp_path / "tiny_sweep.py"),
                          f"--workdir={work}"], capture_output=True, text=True, cwd=checkout, env=rec_env,
                         timeout=900)
  assert again.returncode == 0, again.stderr[-3000:]
  rerun = {json.loads(p.read_text())["run"]: json.loads(p.read_text()) for p in (work / "runs").glob("*.json")}
  for run in runs:
    assert rerun[run["run"]]["steps_trained"] == 40
    assert rerun[run["run"]]["selection"]["step"] == run["selection"]["step"]
    assert rerun[run["run"]]["test"] == pytest.approx(run["test"])
