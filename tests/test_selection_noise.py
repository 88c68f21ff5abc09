"""experiments/selection_noise.py: what choosing a checkpoint on a few validation users costs,
measured on validation users the choice never saw."""
import json
import os
import subprocess
import sys

import numpy as np

from bert4rec_jax import pipeline
from tests.conftest import REPO, xla_flags

sys.path.insert(0, os.path.join(REPO, "experiments"))
import selection_noise  # noqa: E402


def slow_choose(values, patience):
  """Training's choice, written out: walk the curve, keep the first best, stop after `patience` without one."""
  best_value, best_index, without = None, None, 0
  for i, v in enumerate(values):
    if best_value is None or v > best_value:
      best_value, best_index, without = v, i, 0
    else:
      without += 1
    if patience and without == patience:
      break
  return best_index


def test_choose_is_trainings_choice():
  rng = np.random.default_rng(0)
  for _ in range(500):
    values = rng.integers(0, 5, size=rng.integers(1, 12)).astype(float)  # ties are common
    patience = int(rng.integers(0, 4))
    assert selection_noise.choose(values, patience) == slow_choose(values, patience), (values, patience)


def test_analyse_against_a_written_out_halving():
  rng = np.random.default_rng(1)
  scores = rng.random((6, 40)) * (rng.random((6, 40)) < 0.3)
  got = selection_noise.analyse(scores, [3, 10, 25], draws=7, patience=2, seed=5)
  assert list(got) == ["3", "10", "half"]  # 25 is more than half of the 40 users
  replay = np.random.default_rng(5)
  regrets = {n: [] for n in (3, 10, 20)}
  for _ in range(7):
    order = replay.permutation(40)
    held = [scores[s, order[20:]].mean() for s in range(6)]
    for n in regrets:
      means = [scores[s, order[:n]].mean() for s in range(6)]
      regrets[n].append(max(held) - held[slow_choose(means, 2)])
  for n, label in ((3, "3"), (10, "10"), (20, "half")):
    assert got[label]["users"] == n
    assert np.isclose(got[label]["mean_regret"], np.mean(regrets[n]))
    assert sum(got[label]["chosen_index_counts"]) == 7
  # a checkpoint best for every user is always chosen: no regret at any size
  clear = np.tile(np.linspace(0.1, 0.2, 6)[:, None], (1, 40))
  clear[4] = 0.5
  for row in selection_noise.analyse(clear, [1, 5], draws=20, patience=0).values():
    assert row["mean_regret"] == 0.0 and row["chosen_index_counts"][4] == 20


def test_the_script_scores_every_validated_checkpoint(tiny_config, tmp_path):
  c = tiny_config.copy_and_resolve_references()
  c.train.num_train_steps, c.train.eval_every_steps, c.train.checkpoint_every_steps = 60, 15, 15
  c.eval.max_valid_users = 40
  env = dict(os.environ, XLA_FLAGS=xla_flags(1))
  script = os.path.join(REPO, "experiments", "selection_noise.py")

  c.train.keep_checkpoints = 2  # the default: the validated checkpoints are gone
  short = pipeline.run(c, str(tmp_path / "short"), mode="train")["model_name"]
  refused = subprocess.run([sys.executable, script, f"--workdir={tmp_path / 'short'}", f"--model={short}"],
                           capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
  assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
  assert "are not on disk: train with train.keep_checkpoints" in refused.stderr.strip().splitlines()[-1]

  c.train.keep_checkpoints = 10
  workdir = tmp_path / "kept"
  name = pipeline.run(c, str(workdir), mode="train")["model_name"]
  # a run killed after recording a validation and before its checkpoint: the curve stops at the newest checkpoint
  record = workdir / "models" / name / "selection.json"
  kept = record.read_text()
  killed = json.loads(kept)
  killed["curve"].append(dict(killed["curve"][-1], step=75))
  record.write_text(json.dumps(killed))
  out = tmp_path / "noise.json"
  done = subprocess.run([sys.executable, script, f"--workdir={workdir}", f"--model={name}", "--sizes=10,20,1000",
                         "--draws=50", f"--out={out}"], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "--sizes [1000]: more than half of the" in done.stderr
  result = json.loads(out.read_text())
  assert result == json.loads(done.stdout)
  record.write_text(kept)
  saved = json.loads(kept)
  assert result["steps"] == [e["step"] for e in saved["curve"]] == [15, 30, 45, 60]
  # the run's own periodic curve, on its 40 users, recomputed from the per-user scores of all of them
  assert result["periodic"]["users"] == 40 and result["periodic"]["recomputed_max_abs_difference"] < 1e-6
  assert result["periodic"]["chosen_step"] == max(saved["curve"], key=lambda e: (e["value"], -e["step"]))["step"]
  assert len(result["full_split"]["curve"]) == 4 and result["validation_users"] > 40
  assert set(result["halvings"]) == {"10", "20", "half"}  # 1,000 users: more than half of the split
  assert all(r["mean_regret"] >= 0 for r in result["halvings"].values())
  assert not list((workdir / "results").glob("**/test_*"))  # test never read

  # values training never recorded on these users (another data file, other settings, other checkpoints): refused
  wrong = json.loads(kept)
  wrong["curve"][1]["value"] += 0.01
  record.write_text(json.dumps(wrong))
  refused = subprocess.run([sys.executable, script, f"--workdir={workdir}", f"--model={name}", "--draws=5"],
                           capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
  assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
  assert "away from the validations training recorded" in refused.stderr.strip().splitlines()[-1]
