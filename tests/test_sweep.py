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
  assert "| masking.masked_lm_prob | eval.exclude_history | seeds | steps | valid ndcg@10 | test ndcg@10 |" in table
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
  assert "| masking.masked_lm_prob | seeds | valid ndcg@10 | test ndcg@10 | test hr@10 |" in table
  unvalidated = frame.drop(columns=["valid/ndcg@10"])
  unvalidated.attrs["task"] = "train_test"
  table = sweep_lib.markdown(unvalidated, ["masking.masked_lm_prob"], sweep, "cmd")
  assert "No validation split (task train_test): the points are listed, not ranked" in table
  assert "Chosen" not in table and "valid ndcg@10" not in table
  assert [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| 0.")] == ["| 0.2", "| 0.4", "| 0.6"]


def table_frame(seeds=(0, 1)):
  """Three points whose validation and test orders disagree, with both protocols' NDCG@10."""
  rows = []
  for seed in seeds:
    for p, valid, test in ((0.2, 0.30, 0.50), (0.4, 0.35, 0.40), (0.6, 0.25, 0.60)):
      rows.append({"run": f"{p}-{seed}", "seed": seed, "masking.masked_lm_prob": p, "valid/ndcg@10": valid + seed / 100,
                   "valid/sampled_ndcg@10": valid, "test/ndcg@10": test + seed / 100, "test/sampled_ndcg@10": 1 - test})
  return pd.DataFrame(rows)


def test_one_seed_shows_no_spread_and_uneven_seeds_choose_nothing():
  """A point of one seed has no std (not 0); points with different numbers of finished seeds
  (a failed or killed run) are not chosen among."""
  one = sweep_lib.markdown(table_frame(seeds=(0,)), ["masking.masked_lm_prob"], {"description": "Test."}, "cmd")
  assert "| 0.4 | 1 | 0.3500 ± – | 0.4000 ± – |" in one and "± 0.0000" not in one
  assert "Chosen by validation ndcg@10: masking.masked_lm_prob=0.4" in one  # every point has its one seed
  frame = table_frame()
  uneven = frame[~((frame["masking.masked_lm_prob"] == 0.2) & (frame["seed"] == 1))]  # one run missing
  table = sweep_lib.markdown(uneven, ["masking.masked_lm_prob"], {"description": "Test."}, "cmd")
  assert "Chosen" not in table
  assert "No point is chosen: the points have different numbers of finished seeds (1 to 2)" in table


def test_a_sweep_that_chooses_nothing_and_the_test_split_name_no_point():
  """A sweep file with CHOOSE = False gets no chosen point; on the test split (no validation) the
  protocol comparison names no best point either."""
  declared = {"description": "Three models, rows of one table.", "choose": False}
  table = sweep_lib.markdown(table_frame(), ["masking.masked_lm_prob"], declared, "cmd")
  assert "Chosen" not in table and "Nothing is chosen (as the sweep file says)" in table
  frame = table_frame().drop(columns=["valid/ndcg@10", "valid/sampled_ndcg@10"])
  frame.attrs["task"] = "train_test"
  table = sweep_lib.markdown(frame, ["masking.masked_lm_prob"], {"description": "Test."}, "cmd")
  tau = next(line for line in table.splitlines() if line.startswith("Sampled vs full ranking"))
  assert tau.startswith("Sampled vs full ranking (test split") and "best point" not in tau and "=" not in tau[-20:]
  assert "| masking.masked_lm_prob | seeds | test ndcg@10 | test sampled_ndcg@10 |" in table
  assert "every metric column is the test split's" in table


def test_steps_trained_of_planned_and_the_command_that_made_them():
  """The steps each point trained, of those planned, marked where a time bound ended them (how many
  then depends on the machine and on --parallel, which the command names)."""
  records = []
  for seed, steps in ((0, 30), (1, 30)):
    for p, trained in ((0.2, 30), (0.4, 11 + seed)):
      records.append({"run": f"{p}-{seed}", "seed": seed, "test": {"ndcg@10": 0.1}, "valid": {"ndcg@10": p},
                      "train_seconds": 1.0, "model_name": "m", "steps_trained": trained, "steps_planned": steps,
                      "selection": {"step": trained, "stopped_early": False}, "parallel": 2})
  records.append({**records[0], "run": "old"})  # a record from before the planned steps were kept
  del records[-1]["steps_planned"]
  values = {r["run"]: {"masking.masked_lm_prob": float(r["run"].split("-")[0]) if r["run"] != "old" else 0.2}
            for r in records}
  frame = sweep_lib.results_frame(records, values, {r["run"]: 30 for r in records})
  assert list(frame["ended_by"]) == ["all steps", "time bound", "all steps", "time bound", "all steps"]
  table = sweep_lib.markdown(frame, ["masking.masked_lm_prob"], {"description": "Test."}, "cmd")
  assert "| 0.4 | 2 | 11–12 of 30 (time bound) |" in table and "| 0.2 | 3 | 30 of 30 |" in table
  assert "A run marked time bound ended at train.max_training_minutes" in table
  import argparse
  args = argparse.Namespace(sweep="s.py", config="", set=["a=1"], seeds="", workdir="")
  assert sweep_lib.made_by(args, records) == ("python experiments/sweep.py s.py --set=a=1 --parallel=2", "")
  records[0]["parallel"] = 1
  assert sweep_lib.made_by(args, records) == ("python experiments/sweep.py s.py --set=a=1",
                                              " (its runs made at --parallel=1 and 2)")


TRAIN_VAL = '''"""Train-val sweep: one run to its last step, one ended by its time bound."""
CONFIG = "configs/synthetic.py:tiny"
SETTINGS = {"task": "train_val", "data.format": "text", "data.path": %r, "train.num_train_steps": 20,
            "train.eval_every_steps": 0, "train.checkpoint_every_steps": 10, "eval.batch_size": 128}
SEEDS = (0,)


def sweep(add):
  add(**{"train.max_training_minutes": 0.0})
  add(**{"train.max_training_minutes": 1e-5, "train.learning_rate": 0.009})  # another model: the bound is no part of it
'''


def test_a_sweep_refuses_records_made_with_other_settings_or_data(tmp_path):
  """A train_val sweep (no test split) runs and tables its steps; its records keep what made them,
  and a command that would give a run other settings (--set) or other data (the file rewritten)
  is refused in one line, the records left as they are; records from before this was kept are
  refused, or adopted when the user says this command made them."""
  from bert4rec_jax import synthetic
  data = tmp_path / "seqs.txt"
  df = synthetic.generate(num_users=200, num_items=40, min_length=6, max_length=16, num_strides=2, noise=0.1, seed=3)
  data.write_text("".join(f"{u} {i}\n" for u, i in zip(df["user"], df["item"])))
  path = tmp_path / "tv.py"
  path.write_text(TRAIN_VAL % str(data))
  work = tmp_path / "out"
  made = run_sweep(path, work, "--parallel=2")
  assert made.returncode == 0, made.stderr[-3000:]
  table = (work / "results.md").read_text()
  assert f"Made by `python experiments/sweep.py {path} --workdir={work} --parallel=2`" in table
  assert "\n| train.max_training_minutes | train.learning_rate | seeds | steps | valid ndcg@10 |\n" in table
  assert "| 0.0 | 0.01 | 1 | 20 of 20 |" in table
  bounded = next(line for line in table.splitlines() if line.startswith("| 1e-05 |"))
  assert bounded.split(" | ")[3].endswith(" of 20 (time bound)")
  records = sorted((work / "runs").glob("*.json"))
  before = {r: r.read_bytes() for r in records}
  import json
  made_by = json.loads(records[0].read_text())["determined_by"]
  assert made_by["train.num_train_steps"] == 20 and made_by["task"] == "train_val" and made_by["data.input"]

  def refused(proc, *wanted):
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(w in last for w in wanted), last
    assert {r: r.read_bytes() for r in sorted((work / "runs").glob("*.json"))} == before  # kept as they were

  refused(run_sweep(path, work, "--set=train.num_train_steps=25"), "train.num_train_steps 20 then, 25 now",
          "seed 0", "give this sweep another --workdir")
  kept = data.read_text()
  data.write_text(kept + "999999 1\n999999 2\n999999 3\n")  # the same file, other data
  refused(run_sweep(path, work, "--report_only"), "the input data")
  data.write_text(kept)
  old = json.loads(records[0].read_text())
  del old["determined_by"]
  records[0].write_text(json.dumps(old))
  before[records[0]] = records[0].read_bytes()
  refused(run_sweep(path, work, "--report_only"), "1 run record(s) from before records kept the settings",
          "--adopt_old_records")
  adopted = run_sweep(path, work, "--report_only", "--adopt_old_records")
  assert adopted.returncode == 0 and "adopted 1 record(s)" in adopted.stdout, adopted.stderr[-3000:]
  assert json.loads(records[0].read_text())["determined_by"] == made_by


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
