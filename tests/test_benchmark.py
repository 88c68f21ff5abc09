"""experiments/benchmark.py's validation suite run as a user runs it: what periodic validation
costs against training, for a shipped config, and a row for data that is not there."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_validation_suite_measures_the_share_of_a_run(tmp_path):
  env = dict(os.environ, BERT4REC_DATA_DIR=str(tmp_path), JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  done = subprocess.run([sys.executable, "experiments/benchmark.py", "--only=validation", "--repeats=1",
                         "--train_steps=3", "--validation_configs=synthetic:tiny,default@absent.txt",
                         f"--out={tmp_path / 'out.json'}"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  rows = json.loads((tmp_path / "out.json").read_text())["validation"]
  assert rows["default@absent.txt"] == {"skipped": f"no data file {tmp_path / 'absent.txt'} (set BERT4REC_DATA_DIR)"}
  row = rows["synthetic:tiny"]
  # The tiny config: 300 steps, validated every 100 (the last step is one of them).
  assert (row["num_train_steps"], row["eval_every_steps"], row["validations"]) == (300, 100, 3)
  assert row["step_seconds"] > 0 and row["validation_seconds"] > 0
  valid = row["validations"] * row["validation_seconds"]
  assert row["validation_share"] == pytest.approx(valid / (row["num_train_steps"] * row["step_seconds"] + valid),
                                                  abs=2e-3)
  assert 0 < row["validation_share"] < 1 and 0 < row["validation_share_incl_compilation"] < 1
