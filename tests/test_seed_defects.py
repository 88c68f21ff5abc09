"""One guard per defect of the TF2 pipeline this project replaces (SEED.md, "Defects").

Guards that live next to the code they check:
  dropout passed as keep-prob        test_model_and_masking.py::test_dropout_is_a_drop_rate
  target read from the batch's row 0 test_evaluate.py::test_evaluator_matches_reference (per-row targets)
  rank 0 skipped (hit@1 always 0)    test_metrics.py::test_first_place_gives_hit_at_1_and_ties_rank_last
  decoded item ids shifted by one    test_predict_and_tracking.py::test_predictions_and_embeddings_match_the_model
  embeddings at the wrong position / misaligned with users: the same test
  unknown items shift the masked position: test_tasks.py::test_inference_drops_unknown_items_without_shifting_positions
  test-time preparation overwrites the vocabulary: test_tasks.py::test_test_task_uses_the_models_vocab_and_reports_unknowns
  unseeded worker RNGs               test_tasks.py::test_static_masking_same_seed_same_examples,
                                     test_preprocess.py::test_train_stream_is_a_function_of_seed_and_step
  crashes without a GPU              the whole suite runs on CPU
The rest are here.
"""
import hashlib
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np

from bert4rec_jax import input_pipeline, metrics, preprocess  # noqa: F401
from tests.test_preprocess import random_interactions

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_rank100_counts_the_100th_item():
  """The seed's "rank100" was really top-99."""
  ranks = np.array([0, 98, 99, 100, 250])  # 0-based: 99 is the 100th place
  s = metrics.summarize(ranks, [100])
  assert s["rank100"] == 3 and s["hr@100"] == 0.6 and s["rank100_percent"] == 60.0


def test_special_tokens_are_never_ranked(tiny_config):
  """PAD and MASK were ranked as items. The output table has rows for the N real items only,
  and history PAD tokens exclude nothing."""
  from bert4rec_jax import evaluate, model as model_lib, trainer
  n = 20
  m = model_lib.from_config(tiny_config.model, n)
  params = trainer.create_state(tiny_config, n).params
  assert m.apply({"params": params}, method=m.output_table).shape[0] == n
  scores = jnp.array([[0.0, 0.0, 0.0, 0.0, 1.0]])
  out = evaluate.scan_catalogue(scores, jnp.eye(5), chunk=5, targets=jnp.array([4]),
                                history=jnp.array([[0, 0, 0]]), top_k=5)
  assert int(out["full"][0]) == 0 and sorted(np.asarray(out["top_items"][0]).tolist()) == [1, 2, 3, 4, 5]


def test_validation_never_runs_on_training_data():
  """The seed's "validation" ran on training data. Held-out items are not in the training
  sequences at their positions: training is a strict prefix that ends before them."""
  p = preprocess.prepare(random_interactions(13), drop_duplicates=False, min_seq_length=3)
  train, valid, test = preprocess.leave_one_out(p.sequences)
  assert np.all(train.lengths == p.sequences.lengths - 2)
  assert np.all(valid.history.lengths == train.lengths)  # validation input = exactly the training data
  assert np.all(test.history.lengths == p.sequences.lengths - 1)


def _prepare_in_subprocess(workdir, hash_seed):
  code = ("import sys; from configs import default; from bert4rec_jax import dataset;"
          "c = default.base().data; c.format = 'csv'; c.path = sys.argv[1];"
          "print(dataset.load_or_prepare(c, sys.argv[2], 3)[1])")
  env = dict(os.environ, PYTHONHASHSEED=str(hash_seed))
  out = subprocess.run([sys.executable, "-c", code, str(workdir / "in.csv"), str(workdir / f"w{hash_seed}")],
                       cwd=REPO, env=env, capture_output=True, text=True, check=True)
  folder = out.stdout.strip().splitlines()[-1]
  return {f: hashlib.sha256(open(os.path.join(folder, f), "rb").read()).hexdigest()
          for f in ("items.parquet", "users.parquet", "offsets.npy", "items.npy", "last_item_known.npy")}, os.path.basename(folder)


def test_vocabulary_and_special_tokens_do_not_depend_on_hash_order(tmp_path):
  """Special-token ids depended on hash order. String ids, two different hash seeds: byte-identical."""
  df = random_interactions(14, string_users=True)
  df["item"] = "sku-" + df["item"].astype(str)
  df.to_csv(tmp_path / "in.csv", index=False)
  assert _prepare_in_subprocess(tmp_path, 1) == _prepare_in_subprocess(tmp_path, 2)


def test_static_copies_are_not_held_in_memory():
  """All masked copies were held in memory. Here a stream of 10,000 copies per window stores
  only the windows; the copies exist one batch at a time."""
  p = preprocess.prepare(random_interactions(15), drop_duplicates=False, min_seq_length=1)
  stream = input_pipeline.TrainStream(p.sequences, batch_size=64, max_seq_length=20, seed=0, static_copies=10_000)
  assert stream.num_examples == len(p.sequences) * 10_001
  stored = sum(a.nbytes for a in (stream.window_rows, stream.window_ends))
  assert stored <= 16 * len(p.sequences)
  assert stream.batch(12_345)["item_ids"].shape == (64, 20)


def test_runs_from_any_directory_and_writes_only_its_workdir(tmp_path):
  """Paths were only valid from the repo root, and runs kept global state in text files."""
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  config = os.path.join(REPO, "configs", "synthetic.py") + ":tiny"
  out = subprocess.run([sys.executable, "-m", "bert4rec_jax.main", f"--config={config}", "--mode=prepare",
                        f"--workdir={tmp_path / 'work'}"], cwd=elsewhere, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  assert os.listdir(elsewhere) == []  # nothing in the working directory
  assert sorted(os.listdir(tmp_path / "work")) == ["data", "locks"]
