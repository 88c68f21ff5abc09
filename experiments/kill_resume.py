"""Kills training with SIGKILL at random moments, re-running the same command after each kill,
and checks that the final model, its selection on validation (the selected step and the whole
curve; early stopping on) and the metrics equal those of an uninterrupted run.

  python experiments/kill_resume.py                 # 20 kills of the synthetic tiny config (~3 min)
  python experiments/kill_resume.py --kills=5 --config=configs/synthetic.py

A kill can land anywhere: during compilation, a training step, a checkpoint write (Orbax
writes to a temporary folder and renames it when complete), validation or evaluation. Prints
one JSON document; exit status 1 when the resumed run differs.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(REPO, "bert4rec_jax")):  # a checkout (installed: the package is importable)
  sys.path.insert(0, REPO)


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--config", default="configs/synthetic.py:tiny")
  ap.add_argument("--steps", type=int, default=1000, help="training steps of the run")
  ap.add_argument("--checkpoint_every", type=int, default=25)
  ap.add_argument("--kills", type=int, default=20)
  ap.add_argument("--eval_every", type=int, default=50, help="validation period (every validation is a candidate)")
  ap.add_argument("--patience", type=int, default=2,
                  help="early stopping after this many validations without gain (2: the tiny config stops early)")
  ap.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
  ap.add_argument("--workdir", default="", help="default: a temporary folder, removed afterwards")
  args = ap.parse_args()

  work = args.workdir or tempfile.mkdtemp(prefix="kill_resume_")
  from bert4rec_jax import parallel
  env = dict(os.environ, WANDB_MODE="disabled", XLA_FLAGS=parallel.host_device_flags(1, os.environ.get("XLA_FLAGS", "")))
  common = [f"--config={args.config}", f"--config.train.num_train_steps={args.steps}",
            f"--config.train.checkpoint_every_steps={args.checkpoint_every}",
            f"--config.train.eval_every_steps={args.eval_every}", f"--config.train.patience={args.patience}",
            "--config.train.log_every_steps=5",
            "--config.wandb.mode=disabled", "--mode=all"]

  def command(folder):
    return [sys.executable, "-m", "bert4rec_jax.main", f"--workdir={folder}"] + common

  t0 = time.time()
  reference = subprocess.run(command(os.path.join(work, "straight")), cwd=REPO, env=env, capture_output=True,
                             text=True)
  if reference.returncode:
    sys.exit("the uninterrupted run failed:\n" + reference.stderr[-3000:])
  full_seconds = time.time() - t0
  # Kill moments spread over the whole run (up to where the uninterrupted one ended): attempt i
  # waits until training has logged step targets[i] (drawn uniformly, sorted), then a random 0-1.5 s more, so the kill lands in
  # whatever is happening then (a step, a checkpoint write, validation, startup of the next).
  rng = random.Random(args.seed)
  trained = max(_logged_step(os.path.join(work, "straight")), 1)  # early stopping may end it before --steps
  targets = sorted(rng.randrange(0, trained) for _ in range(args.kills))
  killed_at = []
  for target in targets:
    jitter = rng.uniform(0.0, 1.5)
    proc = subprocess.Popen(command(os.path.join(work, "killed")), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while proc.poll() is None and _logged_step(os.path.join(work, "killed")) < target:
      time.sleep(0.05)
    time.sleep(jitter)
    killed = proc.poll() is None
    if killed:
      proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at.append({"after_step": target, "plus_s": round(jitter, 2), "killed": killed,
                      "checkpoints_then": _checkpoints(os.path.join(work, "killed"))})
  final = subprocess.run(command(os.path.join(work, "killed")), cwd=REPO, env=env, capture_output=True, text=True)
  if final.returncode:
    sys.exit("the resumed run failed:\n" + final.stderr[-3000:])

  import jax
  import numpy as np
  from bert4rec_jax import io_utils, pipeline
  results = {}
  for name in ("straight", "killed"):
    (model,) = os.listdir(os.path.join(work, name, "models"))
    saved = io_utils.read_json(os.path.join(work, name, "models", model, "config.json"))
    import ml_collections
    config = ml_collections.ConfigDict(saved["config"])
    params = pipeline.load_params(config, os.path.join(work, name, "models", model), _num_items(work, name))
    metrics = {split: {k: io_utils.read_json(os.path.join(work, name, "results", model, f"{split}_metrics.json"))[k]
                       for k in ("metrics", "checkpoint_step", "selection")} for split in ("valid", "test")}
    results[name] = (params, metrics)
  diffs = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
                                       results["straight"][0], results["killed"][0]))
  same_metrics = results["straight"][1] == results["killed"][1]
  out = {"kills": sum(k["killed"] for k in killed_at), "attempts": len(killed_at), "kill_moments": killed_at,
         "uninterrupted_seconds": round(full_seconds, 1), "max_param_difference": max(diffs),
         "selected_step": results["straight"][1]["test"]["checkpoint_step"],
         "stopped_early": results["straight"][1]["test"]["selection"]["stopped_early"],
         "identical_metrics": same_metrics, "identical": same_metrics and max(diffs) <= 1e-5}
  print(json.dumps(out, indent=2))
  if not args.workdir:
    shutil.rmtree(work, ignore_errors=True)
  sys.exit(0 if out["identical"] else 1)


def _logged_step(folder) -> int:
  """The last step training logged in this run's folder (-1 before any)."""
  models = os.path.join(folder, "models")
  last = -1
  for model in (os.listdir(models) if os.path.isdir(models) else []):
    path = os.path.join(models, model, "metrics.jsonl")
    if os.path.exists(path):
      with open(path) as f:
        for line in f:
          try:
            last = max(last, json.loads(line).get("step", -1))
          except ValueError:  # a line being written
            pass
  return last


def _checkpoints(folder):
  models = os.path.join(folder, "models")
  out = []
  for model in (os.listdir(models) if os.path.isdir(models) else []):
    root = os.path.join(models, model, "checkpoints")
    out += sorted(os.listdir(root)) if os.path.isdir(root) else []
  return out


def _num_items(work, name):
  from bert4rec_jax import dataset
  (folder,) = os.listdir(os.path.join(work, name, "data", "processed"))
  return dataset.load(os.path.join(work, name, "data", "processed", folder)).vocab.num_items


if __name__ == "__main__":
  main()
