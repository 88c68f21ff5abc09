"""The CLI as a user runs it: all modes on the synthetic config, resume after a kill, Beauty."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, workdir, timeout=600, **popen):
  cmd = [sys.executable, "-m", "bert4rec_jax.main", f"--workdir={workdir}", *args]
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  if popen:
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_cli_all_modes_beat_popularity(tmp_path):
  out = cli("--config=configs/synthetic.py:tiny", workdir=tmp_path)
  assert out.returncode == 0, out.stdout + out.stderr
  log = out.stdout + out.stderr
  assert "on 4 cpu device(s)" in log
  (results,) = [os.path.join(tmp_path, "results", d) for d in os.listdir(tmp_path / "results")]
  for split in ("valid", "test"):
    with open(os.path.join(results, f"{split}_metrics.json")) as f:
      rows = json.load(f)["metrics"]
    model, pop = rows["bert4rec"], rows["popularity"]
    assert model["num_users"] == 600
    assert model["ndcg@10"] > pop["ndcg@10"] + 0.1, (split, model["ndcg@10"], pop["ndcg@10"])
    assert model["sampled_ndcg@10"] > pop["sampled_ndcg@10"] + 0.1
    for k in ("hr@1", "hr@5", "hr@10", "hr@20", "hr@50", "hr@100", "ndcg@100", "mrr", "mean_rank", "rank100",
              "rank100_percent", "sampled_hr@10"):
      assert k in model
  assert "test metrics" in out.stdout and "popularity" in out.stdout

  preds = pd.read_parquet(os.path.join(results, "predictions.parquet"))
  assert len(preds) == 600 and preds["user"].str.startswith("user_").all()
  from configs import synthetic
  from bert4rec_jax import synthetic as gen
  cfg = synthetic.get_config("tiny").data.synthetic
  data = gen.generate(seed=0, **cfg.to_dict())
  history = data.groupby("user")["item"].apply(set)
  for _, row in preds.iterrows():
    items, scores = list(row["items"]), np.asarray(row["scores"])
    assert len(items) == 10 and len(set(items)) == 10
    assert np.all(np.diff(scores) <= 0)  # rank order
    assert set(items) <= set(data["item"])  # original ids
    assert not set(items) & history[row["user"]]  # history excluded by default

  # Re-running reuses the data and the trained model.
  again = cli("--config=configs/synthetic.py:tiny", "--mode=train", workdir=tmp_path)
  assert again.returncode == 0
  assert "Reusing prepared dataset" in again.stderr and "nothing to train" in again.stderr


@pytest.mark.slow
def test_kill_and_rerun_resumes_from_checkpoint(tmp_path):
  # Killed at its first checkpoint (step 100): the 500 steps after it take seconds, the poll 0.05 s.
  args = ["--config=configs/synthetic.py:tiny", "--mode=train", "--config.train.num_train_steps=600",
          "--config.train.checkpoint_every_steps=100", "--config.train.eval_every_steps=0"]
  proc = cli(*args, workdir=tmp_path, popen=True)
  deadline = time.time() + 300
  ckpt_root = None
  while time.time() < deadline and proc.poll() is None:
    models = tmp_path / "models"
    if models.is_dir() and os.listdir(models):
      ckpt_root = models / os.listdir(models)[0] / "checkpoints"
      if ckpt_root.is_dir() and any(d.isdigit() for d in os.listdir(ckpt_root)):
        break
    time.sleep(0.2)
  assert proc.poll() is None, "training ended before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  saved = max(int(d) for d in os.listdir(ckpt_root) if d.isdigit())
  out = cli(*args, workdir=tmp_path)  # the same command again
  assert out.returncode == 0, out.stderr[-3000:]
  resumed = [line for line in out.stderr.splitlines() if "Resuming from checkpoint at step" in line]
  assert resumed and int(resumed[0].split("step ")[1].split()[0]) >= saved


def test_clear_error_for_bad_input(tmp_path):
  bad = tmp_path / "bad.txt"
  bad.write_text("1 2\n1 3\n1 4 5\n")
  out = cli("--config=configs/synthetic.py:tiny", "--config.data.format=text", f"--config.data.path={bad}",
            workdir=tmp_path)
  assert out.returncode != 0
  assert f"error: {bad}: cannot parse" in out.stderr and "line 3" in out.stderr
  assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_short_beauty_run(tmp_path, data_dir):
  path = os.path.join(data_dir, "beauty.txt")
  if not os.path.isfile(path):
    pytest.skip(f"{path} not present (set BERT4REC_DATA_DIR)")
  # configs/beauty.py follows the paper (task train_test: no validation split); the validation
  # split is asked for here so the periodic evaluation runs on the real catalogue too.
  out = cli("--config=configs/beauty.py", "--mode=train", "--config.task=train_val_test",
            "--config.train.num_train_steps=4",
            "--config.train.batch_size=64", "--config.train.eval_every_steps=2", "--config.eval.max_valid_users=300",
            "--config.wandb.mode=disabled", workdir=tmp_path)
  assert out.returncode == 0, out.stderr[-3000:]
  assert '"users": 40226' in out.stderr and '"items": 54542' in out.stderr
  (model_dir,) = [tmp_path / "models" / d for d in os.listdir(tmp_path / "models")]
  records = [json.loads(line) for line in open(model_dir / "metrics.jsonl")]
  losses = [r["train/loss"] for r in records if "train/loss" in r]
  assert losses and all(np.isfinite(losses)) and abs(losses[0] - np.log(54542)) < 1.0
  valid = [r for r in records if "valid/ndcg@10" in r]
  assert valid and valid[0]["valid/num_users"] == 300
