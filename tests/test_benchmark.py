"""experiments/benchmark.py's suites run as a user runs them: what periodic validation costs
against training for a shipped config (and a row for data that is not there), the recipe's steps
against its estimate, and the output layer alone."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import xla_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _suite(tmp_path, suite, *args):
  """experiments/benchmark.py --only=<suite> with data files in tmp_path, one device, one repeat:
  the suite's rows from the JSON it writes."""
  env = dict(os.environ, BERT4REC_DATA_DIR=str(tmp_path), JAX_PLATFORMS="cpu",
             XLA_FLAGS=xla_flags(1))
  done = subprocess.run([sys.executable, "experiments/benchmark.py", f"--only={suite}", "--repeats=1", *args,
                         f"--out={tmp_path / 'out.json'}"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads((tmp_path / "out.json").read_text())[suite]


def test_validation_suite_measures_the_share_of_a_run(tmp_path):
  rows = _suite(tmp_path, "validation", "--train_steps=3", "--validation_configs=synthetic:tiny,default@absent.txt")
  assert rows["default@absent.txt"] == {"skipped": f"no data file {tmp_path / 'absent.txt'} (set BERT4REC_DATA_DIR)"}
  row = rows["synthetic:tiny"]
  # The tiny config: 300 steps, validated every 100 (the last step is one of them).
  assert (row["num_train_steps"], row["eval_every_steps"], row["validations"]) == (300, 100, 3)
  assert row["step_seconds"] > 0 and row["validation_seconds"] > 0
  valid = row["validations"] * row["validation_seconds"]
  assert row["validation_share"] == pytest.approx(valid / (row["num_train_steps"] * row["step_seconds"] + valid),
                                                  abs=2e-3)
  assert 0 < row["validation_share"] < 1 and 0 < row["validation_share_incl_compilation"] < 1


def test_recipe_cost_suite_sets_the_measured_steps_beside_the_recipes_estimate(tmp_path):
  """The recipe on a small file, BERT4Rec and SASRec: the timed steps, the estimate for the same
  steps' widths, the budget the recipe chose and its line; a missing file is a row that says so."""
  import numpy as np
  rng = np.random.default_rng(0)
  with open(tmp_path / "small.txt", "w") as f:
    for user in range(1, 301):
      for _ in range(rng.integers(5, 30)):
        f.write(f"{user} {rng.integers(1, 200)}\n")
  rows = _suite(tmp_path, "recipe_cost", "--train_steps=2", "--recipe_cost_data=small.txt,small.txt:sasrec,absent.txt")
  assert rows["absent.txt"] == {"skipped": f"no data file {tmp_path / 'absent.txt'} (set BERT4REC_DATA_DIR)"}
  bert, sas = rows["small.txt"], rows["small.txt:sasrec"]
  assert (bert["kind"], sas["kind"]) == ("bert4rec", "sasrec") and bert["num_items"] == sas["num_items"] <= 199
  for row in (bert, sas):
    assert row["step_seconds"] > 0 and row["estimated_step_seconds"] > 0 and row["timed_steps"] == 2
    assert row["measured_over_estimated"] == pytest.approx(row["step_seconds"] / row["estimated_step_seconds"], rel=0.02)
    assert row["budget_line"].startswith(f"train.budget_per_interaction={row['budget_per_interaction']:g}: ")
    assert row["estimated_encoder_gflop_per_step"] + row["estimated_output_gflop_per_step"] == pytest.approx(
        row["estimated_gflop_per_step"], abs=0.02)
    assert row["target_slots_per_step"] > 0
  # the same windows cost BERT4Rec (two passes, two losses) more than SASRec
  assert bert["estimated_gflop_per_step"] > sas["estimated_gflop_per_step"]
  assert bert["target_slots_per_step"] > sas["target_slots_per_step"]
  # and the page of benchmarks shows them as a table, a row per data and model
  table = subprocess.run([sys.executable, "experiments/benchmark_table.py", str(tmp_path / "out.json")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
  assert table.returncode == 0, table.stderr[-3000:]
  assert "### The recipe's steps against its time estimate" in table.stdout
  row = next(x for x in table.stdout.splitlines() if x.startswith("| small.txt | sasrec |"))
  assert f"| {sas['budget_per_interaction']:g} | {sas['num_train_steps']:,} |" in row
  assert "| absent.txt | no data file" in table.stdout


def _fit(tmp_path, rows):
  path = tmp_path / "rows.json"
  path.write_text(json.dumps({"recipe_cost": rows}))
  return subprocess.run([sys.executable, "experiments/fit_step_rates.py", str(path)], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


def test_the_step_rates_are_fitted_to_measured_rows(tmp_path):
  """experiments/fit_step_rates.py recovers the rates that made the rows' step times (encoder
  20 GFLOP/s, output layer 60, 0.05 s a step) and refuses rows that cannot separate them."""
  work = [(10, 1), (2, 30), (40, 40), (1, 1), (5, 80)]  # (encoder, output) GFLOP a step
  rows = {f"r{i}": {"step_seconds": e / 20 + o / 60 + 0.05, "estimated_encoder_gflop_per_step": e,
                    "estimated_output_gflop_per_step": o} for i, (e, o) in enumerate(work)}
  done = _fit(tmp_path, rows)
  assert done.returncode == 0, done.stderr[-2000:]
  out = json.loads(done.stdout)
  assert out["fitted"] == {"encoder_gflop_per_second": pytest.approx(20, rel=1e-3),
                           "output_gflop_per_second": pytest.approx(60, rel=1e-3),
                           "step_seconds": pytest.approx(0.05, rel=1e-3)}
  assert all(r["measured_over_estimated_fitted"] == pytest.approx(1, abs=1e-3) for r in out["rows"].values())
  # rows whose times only a negative cost per step explains (faster than their work at any rates): no
  # fit. (Made exactly by -0.3 s a step; rows that fix a term at 0 only up to rounding would pass or fail
  # by the machine's arithmetic.)
  less = {f"r{i}": {"step_seconds": e / 20 + o / 60 - 0.3, "estimated_encoder_gflop_per_step": e,
                    "estimated_output_gflop_per_step": o} for i, (e, o) in enumerate(work) if e / 20 + o / 60 > 0.5}
  assert len(less) == 4
  bad = _fit(tmp_path, less)
  assert bad.returncode != 0 and "non-positive" in bad.stderr
  assert "rerun" in _fit(tmp_path, {"old": {"step_seconds": 1.0, "estimated_gflop_per_step": 3}}).stderr
  (tmp_path / "rows.json").write_text("{not json")
  for path in (tmp_path / "rows.json", tmp_path / "absent.json"):
    done = subprocess.run([sys.executable, "experiments/fit_step_rates.py", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.startswith(f"error: {path}: ") and "Traceback" not in done.stderr


def test_softmax_suite_times_the_output_layer_by_rows_and_by_columns(tmp_path):
  """Two shapes, one with more rows than columns (backward by blocks of rows), one with fewer
  (by blocks of columns): each timed, its GFLOP/s from the seconds; and a table on the page."""
  rows = _suite(tmp_path, "softmax", "--softmax_shapes=300x40,40x300")
  assert list(rows) == ["300x40", "40x300"]
  for shape, row in rows.items():
    t, n = (int(x) for x in shape.split("x"))
    assert (row["rows"], row["columns"], row["hidden"]) == (t, n, 64) and row["seconds"] > 0
    assert row["gflop_per_second"] == pytest.approx(6 * t * n * 64 / row["seconds"] / 1e9, rel=0.05, abs=0.051)
  table = subprocess.run([sys.executable, "experiments/benchmark_table.py", str(tmp_path / "out.json")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
  assert table.returncode == 0, table.stderr[-3000:]
  assert "### The output layer alone" in table.stdout and "| 40 | 300 |" in table.stdout
  # the document says whether the checkout differed from its commit, and the page says so when it did
  doc = json.loads((tmp_path / "out.json").read_text())
  if shutil.which("git") and os.path.isdir(os.path.join(REPO, ".git")):
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                             text=True).stdout.strip() != ""
    assert doc["uncommitted_changes"] is changed and doc["git_commit"]
    assert (" with uncommitted changes" in table.stdout) is changed
  else:
    assert doc["uncommitted_changes"] is False
