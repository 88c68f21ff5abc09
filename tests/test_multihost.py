"""Two processes x 2 CPU devices (jax.distributed on loopback) against one process x 4 devices:
the same global batches, the same parameters, the same metrics over all users, and predictions
as one Parquet part per process."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import xla_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["--config=configs/synthetic.py:tiny", "--config.train.num_train_steps=60",
        "--config.train.log_every_steps=10", "--config.train.eval_every_steps=30",
        "--config.train.checkpoint_every_steps=30", "--config.eval.per_user_top_k=5", "--config.wandb.mode=disabled"]


def free_loopback_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(workdir, devices: int, *extra):
  env = dict(os.environ, PYTHONUNBUFFERED="1", XLA_FLAGS=xla_flags(devices))
  return subprocess.Popen([sys.executable, "-m", "bert4rec_jax.main", f"--workdir={workdir}", *ARGS, *extra],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, timeout=600):
  try:
    out, _ = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    out, _ = proc.communicate()
    pytest.fail(f"timed out:\n{out[-3000:]}")
  assert proc.returncode == 0, out[-4000:]
  return out


def model_params(workdir):
  from bert4rec_jax import pipeline, io_utils
  import ml_collections
  (name,) = os.listdir(workdir / "models")
  model_dir = workdir / "models" / name
  config = ml_collections.ConfigDict(io_utils.read_json(model_dir / "config.json")["config"])
  num_items = len(pd.read_parquet(model_dir / "vocab" / "items.parquet"))
  return name, pipeline.load_params(config, str(model_dir), num_items)


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
  one = finish(launch(tmp_path / "one", 4))

  def two_processes(*extra):
    port = free_loopback_port()
    address = f"127.0.0.1:{port}"
    procs = [launch(tmp_path / "two", 2, f"--config.distributed.coordinator_address={address}",
                    f"--config.distributed.coordinator_bind_address={address}", "--config.distributed.num_processes=2",
                    f"--config.distributed.process_id={i}", *extra) for i in range(2)]
    return [finish(p) for p in procs]
  # First stopped early (the time limit passes during compilation; the processes agree to stop at
  # the first logging step, 10, and checkpoint it together), then resumed from that checkpoint.
  stopped = two_processes("--config.train.training_time_limit_seconds=1", "--mode=train")
  assert all("training_time_limit_seconds=1 reached" in out for out in stopped), stopped[1][-3000:]
  two = two_processes()
  assert all("Resuming from checkpoint at step 10" in out for out in two), two[1][-3000:]
  assert "on 4 cpu device(s)" in one
  assert "on 4 cpu device(s) in 2 processes" in two[0], two[0][-3000:]

  name_one, params_one = model_params(tmp_path / "one")
  name_two, params_two = model_params(tmp_path / "two")
  assert name_one == name_two  # the process layout is not part of the model
  import jax
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(params_one), jax.tree.leaves(params_two)):
    name = jax.tree_util.keystr(path)
    if "['key']['bias']" in name:
      # The attention key bias adds the same q.b to every logit of a query, which the softmax
      # ignores: its exact gradient is zero, so its value is rounding noise that Adam scales up
      # (about 1e-5 here, of either sign), and another reduction order gives other noise.
      assert np.abs(a).max() < 1e-4 and np.abs(b).max() < 1e-4, name
      continue
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5, err_msg=name)

  results_one, results_two = (tmp_path / d / "results" / name_one for d in ("one", "two"))
  for split in ("valid", "test"):
    m1 = json.loads((results_one / f"{split}_metrics.json").read_text())["metrics"]
    m2 = json.loads((results_two / f"{split}_metrics.json").read_text())["metrics"]
    assert m1["bert4rec"]["num_users"] == m2["bert4rec"]["num_users"] == 600
    for k, v in m1["bert4rec"].items():
      assert m2["bert4rec"][k] == pytest.approx(v, rel=1e-3, abs=1e-3), (split, k)
    u1 = pd.read_parquet(results_one / f"{split}_per_user.parquet")
    u2 = pd.read_parquet(results_two / f"{split}_per_user.parquet")
    np.testing.assert_array_equal(u1["user"], u2["user"])  # every user, once, in order
    assert (u1["rank"] == u2["rank"]).mean() > 0.95  # ranks of near-identical models

  # Metrics logged during training: only process 0 writes them.
  log_two = [json.loads(line) for line in open(tmp_path / "two" / "models" / name_two / "metrics.jsonl")]
  assert sum("train/loss" in r for r in log_two) == 6  # steps 10 (first run), 20, ..., 60
  loss_one = [json.loads(line)["train/loss"] for line in open(tmp_path / "one" / "models" / name_one / "metrics.jsonl")
              if "train/loss" in line]
  np.testing.assert_allclose([r["train/loss"] for r in log_two if "train/loss" in r], loss_one, rtol=1e-4)

  parts = sorted(os.listdir(results_two / "predictions.parquet"))
  assert parts == ["part-00000.parquet", "part-00001.parquet"]
  p1, p2 = pd.read_parquet(results_one / "predictions.parquet"), pd.read_parquet(results_two / "predictions.parquet")
  np.testing.assert_array_equal(p1["user"], p2["user"])
  assert np.mean([a[0] == b[0] for a, b in zip(p1["items"], p2["items"])]) > 0.95


def test_a_process_block_of_the_training_batch_is_that_block_of_the_whole(tiny_config):
  """What each process builds (its rows only, and lengths from offsets alone) equals the
  corresponding part of the single-process batch."""
  from bert4rec_jax import input_pipeline
  from tests.test_preprocess import random_interactions
  from bert4rec_jax import preprocess
  seqs = preprocess.prepare(random_interactions(50, num_items=30), drop_duplicates=False,
                            min_seq_length=1).sequences
  for static in (0, 3):
    stream = input_pipeline.TrainStream(seqs, 12, 6, seed=3, prop_sliding_window=0.5, static_copies=static)
    for step in (0, 7, 55):
      whole = stream.batch(step)
      np.testing.assert_array_equal(stream.lengths(step), (whole["item_ids"] != 0).sum(1))
      for block in (slice(0, 6), slice(6, 12), slice(4, 8)):
        part = stream.batch(step, block)
        for k in whole:
          np.testing.assert_array_equal(part[k], whole[k][block], err_msg=f"{k} {static} {step} {block}")


def test_process_blocks_cover_the_users_in_order():
  from bert4rec_jax import parallel
  for n in (0, 1, 7, 600):
    assert parallel.process_block(n) == slice(0, n)  # one process: everything
    x = np.arange(n)
    np.testing.assert_array_equal(parallel.gather_blocks(x[parallel.process_block(n)], n), x)
  bounds = parallel._block_bounds(10, 3)
  assert list(bounds) == [0, 3, 6, 10]
