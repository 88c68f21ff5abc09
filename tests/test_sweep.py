"""experiments/sweep.py: runs a sweep file end to end, resumes it, tabulates and plots it."""
import itertools
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO, xla_flags

sys.path.insert(0, os.path.join(REPO, "experiments"))
import sweep as sweep_lib  # noqa: E402

SWEEP = '''"""Test sweep."""
CONFIG = "configs/synthetic.py:tiny"
SETTINGS = {"train.num_train_steps": 30, "train.eval_every_steps": 0, "eval.batch_size": 128}
SEEDS = (0, 1)


def sweep(add):
  for p in (0.2, 0.5):
    add(**{"masking.masked_lm_prob": p})
  add(**{"masking.masked_lm_prob": 0.5, "eval.exclude_history": False})  # shares a model with a point above
'''


def sweep_command(path, workdir, *extra):
  return [sys.executable, os.path.join(REPO, "experiments", "sweep.py"), str(path), f"--workdir={workdir}", *extra]


ENV = dict(os.environ, XLA_FLAGS=xla_flags(1))


def run_sweep(path, workdir, *extra):
  return subprocess.run(sweep_command(path, workdir, *extra), capture_output=True, text=True, cwd=REPO, env=ENV,
                        timeout=900)


def test_sweep_runs_resumes_and_reports(tmp_path):
  path = tmp_path / "masks.py"
  path.write_text(SWEEP)
  work = tmp_path / "out"
  # Killed (SIGKILL, no chance to clean up) once its first run has finished ...
  proc = subprocess.Popen(sweep_command(path, work), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
                          env=ENV)
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None and not list((work / "runs").glob("*.json")):
    time.sleep(0.2)
  assert proc.poll() is None, "the sweep ended before it could be killed"
  proc.kill()
  proc.wait()
  time.sleep(2)
  children = subprocess.run(["pgrep", "-f", str(work)], capture_output=True, text=True).stdout.split()
  assert not children, "a killed sweep left runs behind"
  done = len(list((work / "runs").glob("*.json")))
  assert 1 <= done < 6
  # ... and run again: only the missing runs execute.
  first = run_sweep(path, work)
  assert first.returncode == 0, first.stderr[-3000:]
  assert f"3 points x 2 seeds = 6 runs; {done} finished, {6 - done} to run" in first.stdout
  frame = pd.read_csv(work / "results.csv")
  assert len(frame) == 6 and set(frame["seed"]) == {0, 1}
  # eval.exclude_history does not change the model: those runs reuse the trained one.
  shared = frame[frame["masking.masked_lm_prob"] == 0.5].groupby("seed")["model_name"].nunique()
  assert (shared == 1).all()
  assert len(set(frame["model_name"])) == 4
  table = (work / "results.md").read_text()
  assert "| masking.masked_lm_prob | eval.exclude_history | seeds | valid ndcg@10 | ndcg@10 |" in table
  assert "Kendall's tau" in table
  # Ranked and chosen by validation (each run's selected checkpoint), the test number beside it.
  means = frame.groupby(["masking.masked_lm_prob", "eval.exclude_history"])["valid/ndcg@10"].mean()
  p, ex = means.idxmax()
  assert f"Chosen by validation ndcg@10: masking.masked_lm_prob={p}, eval.exclude_history={ex} " in table
  assert frame["selected_step"].eq(30).all()  # validated at the last step only (eval_every_steps=0)
  assert len(list((work / "plots").glob("*.png"))) == 2 * len(sweep_lib.METRICS)
  # An interrupted sweep: one run's record is missing; only that run executes again.
  victim = sorted((work / "runs").glob("*.json"))[0]
  before = victim.read_text()
  victim.unlink()
  second = run_sweep(path, work)
  assert second.returncode == 0, second.stderr[-3000:]
  assert "5 finished, 1 to run" in second.stdout
  assert victim.exists() and pd.read_csv(work / "results.csv").shape[0] == 6
  import json
  assert json.loads(victim.read_text())["test"] == json.loads(before)["test"]  # the trained model was reused
  # SIGTERM (what `timeout` and schedulers send): no new run starts, the running one stops, the
  # sweep exits. Three records removed, one run at a time, the signal once the first is back.
  victims = sorted((work / "runs").glob("*.json"))[:3]
  for v in victims:
    v.unlink()
  proc = subprocess.Popen(sweep_command(path, work, "--parallel=1"), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, cwd=REPO, env=ENV)
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None and not any(v.exists() for v in victims):
    time.sleep(0.1)
  assert proc.poll() is None, "the sweep ended before it could be stopped"
  proc.terminate()
  proc.wait(timeout=120)
  time.sleep(1)
  assert not subprocess.run(["pgrep", "-f", str(work)], capture_output=True, text=True).stdout.split()
  assert 1 <= sum(v.exists() for v in victims) <= 2, "runs started after the sweep was told to stop"
  for log in (work / "logs").glob("*.log"):  # a run told to stop says so in one line, no traceback
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def test_the_table_ranks_and_chooses_by_validation_never_by_test():
  """Validation and test disagree on purpose: the table follows validation; without a validation
  split nothing is ranked or chosen."""
  rows = []
  for seed in (0, 1):
    for p, valid, test in ((0.2, 0.30, 0.50), (0.4, 0.35, 0.40), (0.6, 0.25, 0.60)):
      rows.append({"run": f"{p}-{seed}", "seed": seed, "masking.masked_lm_prob": p, "valid/ndcg@10": valid + seed / 100,
                   "test/ndcg@10": test + seed / 100, "test/hr@10": 0.5})
  frame = pd.DataFrame(rows)
  sweep = {"description": "Test."}
  table = sweep_lib.markdown(frame, ["masking.masked_lm_prob"], sweep, "cmd")
  body = [line for line in table.splitlines() if line.startswith("| 0.")]
  assert [line.split(" | ")[0] for line in body] == ["| 0.4", "| 0.2", "| 0.6"]  # by validation, best first
  assert "Chosen by validation ndcg@10: masking.masked_lm_prob=0.4 (0.3550); its test ndcg@10 0.4050" in table
  assert "| masking.masked_lm_prob | seeds | valid ndcg@10 | ndcg@10 | hr@10 |" in table
  unvalidated = frame.drop(columns=["valid/ndcg@10"])
  unvalidated.attrs["task"] = "train_test"
  table = sweep_lib.markdown(unvalidated, ["masking.masked_lm_prob"], sweep, "cmd")
  assert "No validation split (task train_test): the points are listed, not ranked" in table
  assert "Chosen" not in table and "valid ndcg@10" not in table
  assert [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| 0.")] == ["| 0.2", "| 0.4", "| 0.6"]


def test_kendall_tau_matches_pair_counting():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=9), rng.normal(size=9)
  pairs = list(itertools.combinations(range(9), 2))
  want = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i, j in pairs) / len(pairs)
  assert sweep_lib.kendall_tau(list(a), list(b)) == pytest.approx(want)
  assert sweep_lib.kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_sweep_files_define_valid_points():
  """Every shipped sweep builds a config for each of its points (unknown fields would fail)."""
  folder = os.path.join(REPO, "experiments", "sweeps")
  for name in sorted(os.listdir(folder)):
    if name.endswith(".py") and not name.startswith("_"):
      sweep = sweep_lib.load_sweep(os.path.join(folder, name))
      assert sweep["description"], name
      for point in sweep["points"]:
        c = sweep_lib.build_config(sweep, point, 0, "", [], name)
        from bert4rec_jax import config_checks
        config_checks.validate(c, "all", 1)
