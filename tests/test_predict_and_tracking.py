"""Predictions carry the right embeddings and ids; W&B offline writes only where it is told."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from bert4rec_jax import evaluate, input_pipeline, model as model_lib, parallel, predict, preprocess, tracking, trainer
from bert4rec_jax.errors import ConfigError
from bert4rec_jax.tracking import Tracker
from tests.test_preprocess import random_interactions


def test_predictions_and_embeddings_match_the_model(tiny_config, tmp_path):
  p = preprocess.prepare(random_interactions(12, num_rows=1500, num_users=90, num_items=70),
                         drop_duplicates=False, min_seq_length=3)
  c = tiny_config
  c.predict.with_embeddings, c.predict.top_k, c.predict.batch_size = True, 5, 32
  state = trainer.create_state(c, p.vocab.num_items)
  model = model_lib.from_config(c.model, p.vocab.num_items)
  path = str(tmp_path / "preds.parquet")
  n = predict.predict(evaluate.model_scorer(model), state.params, p.sequences, p.users, p.vocab, predict_config=c.predict,
                      max_seq_length=c.model.max_seq_length, devices=parallel.local_devices(4), path=path)
  df = pd.read_parquet(path)
  assert n == len(df) == len(p.users)
  assert list(df["user"]) == list(p.users)
  L = c.model.max_seq_length
  inputs = input_pipeline.right_aligned(p.sequences, np.arange(len(p.users)), L, append=p.vocab.mask_id)
  logits, hidden = model.apply({"params": state.params}, jnp.asarray(inputs), jnp.full((len(inputs), 1), L - 1))
  logits, hidden = np.asarray(logits[:, 0]), np.asarray(hidden[:, 0])
  for u in range(len(p.users)):
    np.testing.assert_allclose(np.asarray(df["embedding"][u]), hidden[u], atol=1e-5)
    scores = logits[u].copy()
    scores[np.asarray(p.sequences[u]) - 1] = -np.inf  # history excluded
    best = np.argsort(-scores, kind="stable")[:5]
    np.testing.assert_allclose(np.asarray(df["scores"][u]), scores[best], rtol=1e-5, atol=1e-6)
    assert list(df["items"][u]) == list(p.vocab.ids[best])  # decoded to original ids, not shifted


def test_wandb_offline_run_stays_in_the_model_folder(tiny_config, tmp_path, monkeypatch):
  monkeypatch.setenv("WANDB_MODE", "offline")
  c = tiny_config
  c.wandb.mode = "offline"
  model_dir = tmp_path / "model"
  t = Tracker(c, str(model_dir), "run-name")
  t.log({"train/loss": 1.5}, step=3)
  t.summary({"test/ndcg@10": 0.5})
  t.close()
  records = [json.loads(line) for line in open(model_dir / "metrics.jsonl")]
  assert records[0]["train/loss"] == 1.5 and records[0]["step"] == 3
  runs = os.listdir(model_dir / "wandb")
  assert any(r.startswith("offline-run-") for r in runs), runs


def test_the_environments_wandb_mode_wins_over_the_config(tiny_config, tmp_path, monkeypatch):
  """WANDB_MODE=disabled turns W&B off whatever the config says (nothing written but
  metrics.jsonl); unset, the config decides; a value W&B does not know is one clear error."""
  c = tiny_config
  c.wandb.mode = "offline"
  monkeypatch.setenv("WANDB_MODE", "disabled")
  t = Tracker(c, str(tmp_path / "off"), "run-name")
  t.log({"train/loss": 1.5}, step=3)
  t.close()
  assert os.listdir(tmp_path / "off") == ["metrics.jsonl"]
  monkeypatch.setenv("WANDB_MODE", "dryrun")  # W&B's old name for offline
  assert tracking.wandb_mode("disabled") == "offline"
  monkeypatch.delenv("WANDB_MODE")
  assert tracking.wandb_mode("online") == "online"
  monkeypatch.setenv("WANDB_MODE", "loud")
  with pytest.raises(ConfigError, match="WANDB_MODE='loud': use one of online, offline, disabled"):
    Tracker(c, str(tmp_path / "bad"), "run-name")


def test_predictions_in_parts_are_the_single_file_split(tiny_config, tmp_path):
  p = preprocess.prepare(random_interactions(3, num_rows=800, num_users=70, num_items=50),
                         drop_duplicates=False, min_seq_length=1)
  c = tiny_config
  c.predict.batch_size = 8
  state = trainer.create_state(c, p.vocab.num_items)
  scorer = evaluate.model_scorer(model_lib.from_config(c.model, p.vocab.num_items))

  def run(path):
    return predict.predict(scorer, state.params, p.sequences, p.users, p.vocab, predict_config=c.predict,
                           max_seq_length=c.model.max_seq_length, devices=parallel.local_devices(2), path=path)
  path = str(tmp_path / "preds.parquet")
  run(path)
  whole = pd.read_parquet(path)
  c.predict.users_per_part = 30
  assert run(path) == len(p.users)  # the earlier single file is replaced by the folder
  assert sorted(os.listdir(path)) == [f"part-00000-0000{k}.parquet" for k in range(3)]
  assert [len(pd.read_parquet(os.path.join(path, f))) for f in sorted(os.listdir(path))] == [30, 30, len(p.users) - 60]
  pd.testing.assert_frame_equal(pd.read_parquet(path), whole)


def test_top_k_beyond_the_items_left_returns_fewer_never_repeated_or_excluded(tiny_config, tmp_path):
  """A 6-item catalogue, users who have seen 1, 1 and 5 distinct items, top_k = 6: each user gets exactly
  the items outside their history, once each, best first (the popularity order); a NaN-scored
  item is never recommended either."""
  seqs = preprocess.Sequences(offsets=np.array([0, 1, 3, 8]), items=np.array([1, 2, 2, 1, 2, 3, 4, 5], np.int32))
  vocab = preprocess.ItemVocab(ids=np.array([11, 12, 13, 14, 15, 16]), counts=np.array([6, 5, 4, 3, 2, 1]))
  c = tiny_config
  c.predict.top_k, c.predict.item_chunk_size = 6, 4  # two chunks: the merge of chunks must not pad either
  for scores, dropped in ((np.array([6, 5, 4, 3, 2, 1], np.float32), set()),
                          (np.array([6, 5, 4, 3, np.nan, 1], np.float32), {15})):
    path = str(tmp_path / "p.parquet")
    predict.predict(evaluate.popularity_scorer, scores, seqs, np.array(["a", "b", "c"]), vocab,
                    predict_config=c.predict, max_seq_length=4, devices=parallel.local_devices(1), path=path)
    df = pd.read_parquet(path)
    for u, history in enumerate(([11], [12], [11, 12, 13, 14, 15])):
      want = [i for i in vocab.ids if i not in history and i not in dropped]
      assert list(df["items"][u]) == want and len(df["scores"][u]) == len(want)
      assert np.isfinite(df["scores"][u]).all()


def test_baselines_predict_fewer_items_when_few_are_left(tiny_config, tmp_path):
  from bert4rec_jax import pipeline
  c = tiny_config
  c.predict.top_k = 1000  # more than the catalogue
  for kind in ("markov", "most_popular"):
    c.model.kind = kind
    out = pipeline.run(c, str(tmp_path / kind), mode="predict")
    df = pd.read_parquet(out["predictions"])
    prepared = __import__("bert4rec_jax.dataset", fromlist=["x"]).load(out["data_dir"])
    for u in range(len(df)):
      items, history = list(df["items"][u]), set(prepared.vocab.decode(prepared.sequences[u]))
      assert len(items) == len(set(items)) == prepared.vocab.num_items - len(history), kind
      assert not set(items) & history, kind


def _tensorboard_scalars(folder):
  """{(tag, step): value} from the TFRecord event files in `folder`: each record is a length
  (uint64), its masked CRC, the Event proto bytes and their masked CRC."""
  import glob
  import struct
  from tensorboardX.proto import event_pb2
  out = {}
  for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4
      for value in event.summary.value:
        out[value.tag, event.step] = value.simple_value
  return out


def test_tensorboard_event_files_hold_what_wandb_gets(tiny_config, tmp_path, caplog):
  c = tiny_config
  c.tracking.tensorboard = True
  t = Tracker(c, str(tmp_path), "run-name")
  t.log({"train/loss": 1.5, "train/learning_rate": 0.01}, step=3)
  t.log({"valid/ndcg@10": 0.25, "valid/num_users": 600, "note": "text is not a scalar"}, step=10)
  t.log({"test/ndcg@10": 0.5})  # the final evaluation: no step of its own
  t.close()
  scalars = _tensorboard_scalars(str(tmp_path / "tensorboard"))
  # TensorBoard's tag rules write "@" as "_": valid/ndcg@10 is the tag valid/ndcg_10.
  assert scalars == pytest.approx({("train/loss", 3): 1.5, ("train/learning_rate", 3): 0.01,
                                   ("valid/ndcg_10", 10): 0.25, ("valid/num_users", 10): 600.0,
                                   ("test/ndcg_10", 10): 0.5})
  assert "illegal" not in caplog.text  # tags are written TensorBoard's way, not renamed with a log line each
  c.tracking.tensorboard = False
  Tracker(c, str(tmp_path / "off"), "run").close()
  assert not os.path.exists(tmp_path / "off" / "tensorboard")
