"""Faults during training: signals checkpoint and stop cleanly; a damaged newest checkpoint is
skipped for the one before it."""
import logging
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from bert4rec_jax import pipeline
from tests.conftest import REPO


def checkpoint_steps(model_dir):
  root = os.path.join(model_dir, "checkpoints")
  return sorted(int(d) for d in os.listdir(root) if d.isdigit()) if os.path.isdir(root) else []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_exits_cleanly(tmp_path, sig):
  args = [sys.executable, "-m", "bert4rec_jax.main", f"--workdir={tmp_path}", "--config=configs/synthetic.py:tiny",
          "--mode=train", "--config.train.num_train_steps=100000", "--config.train.checkpoint_every_steps=100000",
          "--config.train.eval_every_steps=0", "--config.train.log_every_steps=5"]
  log = tmp_path / "log.txt"
  with open(log, "w") as f:
    proc = subprocess.Popen(args, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                            env=dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1"))
  deadline = time.time() + 300
  metrics = None
  while time.time() < deadline and proc.poll() is None:
    found = list(tmp_path.glob("models/*/metrics.jsonl"))
    if found and found[0].read_text().count("train/loss") >= 3:  # training, well past compilation
      metrics = found[0]
      break
    time.sleep(0.2)
  assert metrics is not None and proc.poll() is None, log.read_text()[-3000:]
  proc.send_signal(sig)
  assert proc.wait(timeout=120) == 128 + sig, log.read_text()[-3000:]
  text = log.read_text()
  assert f"stopped by {signal.Signals(sig).name} at step" in text and "Traceback" not in text
  step = int(text.split(f"stopped by {signal.Signals(sig).name} at step ")[1].split(";")[0])
  model_dir = metrics.parent
  assert checkpoint_steps(model_dir) == [step] and step >= 15  # saved where it stopped, not at a period
  # The same command continues it (a time limit, not part of the model's identity, ends it).
  again = subprocess.run(args + ["--config.train.training_time_limit_seconds=1"], cwd=REPO, capture_output=True,
                         text=True, env=dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1"))
  assert f"Resuming from checkpoint at step {step}" in again.stderr


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tiny_config, tmp_path, caplog):
  c = tiny_config
  c.train.eval_every_steps, c.train.checkpoint_every_steps, c.train.keep_checkpoints = 0, 10, 2
  c.train.num_train_steps = 30
  straight = pipeline.run(c, str(tmp_path / "straight"), mode="train")
  out = pipeline.run(c, str(tmp_path / "damaged"), mode="train", stop_at=20)
  assert checkpoint_steps(out["model_dir"]) == [10, 20]
  newest = os.path.join(out["model_dir"], "checkpoints", "20")
  damaged = 0
  for root, _, files in os.walk(newest):
    for name in files:
      with open(os.path.join(root, name), "r+b") as f:  # truncated to half: as a full disk would leave it
        size = f.seek(0, 2)
        f.truncate(size // 2)
        damaged += 1
  assert damaged
  with caplog.at_level(logging.WARNING):
    out = pipeline.run(c, str(tmp_path / "damaged"), mode="train")
  assert "Checkpoint at step 20" in caplog.text and "cannot be restored" in caplog.text
  assert out["step"] == 30
  (aside,) = os.listdir(os.path.join(out["model_dir"], "damaged_checkpoints"))
  assert aside.startswith("20-")  # kept for inspection, out of the way of the new step 20
  a = pipeline.load_params(c, straight["model_dir"], num_items=c.data.synthetic.num_items)
  b = pipeline.load_params(c, out["model_dir"], num_items=c.data.synthetic.num_items)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-6), a, b)  # resumed from 10: same model



@pytest.mark.slow
def test_kill_resume_script_reports_identical(tmp_path):
  proc = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "kill_resume.py"), "--kills=2",
                         "--steps=80", "--checkpoint_every=10", f"--workdir={tmp_path}"], cwd=REPO,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  import json
  out = json.loads(proc.stdout)
  assert out["identical"] and out["attempts"] == 2 and out["max_param_difference"] <= 1e-5


STOP_SIGNALS_PROBE = """
import os, signal, sys, time
from bert4rec_jax import train
train.StopSignals.REPEAT_SECONDS = 0.5
with train.StopSignals() as stop:
  os.kill(os.getpid(), signal.SIGTERM)
  time.sleep(float(sys.argv[1]))
  os.kill(os.getpid(), signal.SIGTERM)
  time.sleep(0.1)
print("still running after", stop.received)
"""


@pytest.mark.parametrize("gap,survives", [(0.0, True), (1.0, False)])
def test_one_stop_request_delivered_twice_is_one_request(gap, survives):
  """`timeout`, schedulers and the sweep runner may each deliver the same SIGTERM: a repeat within
  REPEAT_SECONDS must not skip the checkpoint; a later second signal still exits at once."""
  out = subprocess.run([sys.executable, "-c", STOP_SIGNALS_PROBE, str(gap)], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
  if survives:
    assert out.returncode == 0 and "still running after SIGTERM" in out.stdout, out.stderr[-2000:]
  else:
    assert out.returncode == 128 + signal.SIGTERM, (out.returncode, out.stderr[-2000:])
