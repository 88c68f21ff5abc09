"""The seed pipeline's tasks and knobs: train_val, test, inference, windows, static masking,
per-user files, time limit."""
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from bert4rec_jax import dataset, input_pipeline, masking, pipeline, preprocess
from bert4rec_jax.errors import ConfigError, MissingError


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A tiny model trained with task train_val_test, and the data it was trained on."""
  from configs import synthetic
  c = synthetic.get_config("tiny")
  c.train.num_train_steps = 150
  c.eval.per_user_top_k = 3
  c.eval.ks = (1, 5, 20)  # no 10: periodic validation (step 100) reports the nearest cut-off
  workdir = tmp_path_factory.mktemp("trained")
  out = pipeline.run(c, str(workdir), mode="all")
  from bert4rec_jax import synthetic as gen
  data = gen.generate(seed=0, **c.data.synthetic.to_dict())
  return c, str(workdir), out, data


def trained_model_config(c, task, path, model_name):
  c = c.copy_and_resolve_references()
  c.task, c.model_name = task, model_name
  c.data.format, c.data.path = "csv", str(path)
  return c


def test_per_user_files_agree_with_metrics(trained):
  c, _, out, data = trained
  with open(os.path.join(out["results_dir"], "test_metrics.json")) as f:
    metrics = json.load(f)["metrics"]["bert4rec"]
  per_user = pd.read_parquet(os.path.join(out["results_dir"], "test_per_user.parquet"))
  assert list(per_user.columns) == ["user", "target", "rank", "sampled_rank", "top_items"]
  assert len(per_user) == metrics["num_users"] == 600
  assert np.mean(per_user["rank"] < 20) == pytest.approx(metrics["hr@20"])
  assert np.mean(per_user["sampled_rank"] < 5) == pytest.approx(metrics["sampled_hr@5"])
  last = data.groupby("user")["item"].last()
  assert (per_user["target"].to_numpy() == last[per_user["user"]].to_numpy()).all()  # original ids, aligned
  for _, row in per_user.iterrows():  # rank 0 <=> the target is the first item shown
    assert (row["rank"] == 0) == (row["top_items"][0] == row["target"])


def test_the_test_task_on_the_training_input_repeats_the_runs_own_test_metrics(trained, tmp_path):
  """Task test on the file the model was trained from gives the training run's test numbers, the
  popularity row included: it ranks by the training sequences' counts (kept with the model), not
  by counts that include the held-out items."""
  c, workdir, out, data = trained
  vocab = dataset.load_vocab(os.path.join(out["model_dir"], "vocab"))
  kept = np.load(os.path.join(out["model_dir"], "vocab", "train_counts.npy"))
  training = [item for items in data.groupby("user", sort=False)["item"].apply(list) for item in items[:-2]]
  want = pd.Series(training).value_counts().reindex(vocab.ids, fill_value=0).to_numpy()
  np.testing.assert_array_equal(kept, want)
  path = tmp_path / "same.csv"
  data.to_csv(path, index=False)
  res = pipeline.run(trained_model_config(c, "test", path, out["model_name"]), workdir, mode="all")
  for row in ("bert4rec", "popularity"):
    assert set(res["test_metrics"][row]) == set(out["test_metrics"][row])
    for metric, value in out["test_metrics"][row].items():
      assert res["test_metrics"][row][metric] == pytest.approx(value, abs=1e-6), (row, metric)


def test_an_input_with_nothing_to_evaluate_is_refused_and_leaves_no_output(trained, tmp_path):
  c, workdir, out, data = trained
  path = tmp_path / "unknown.csv"
  pd.DataFrame({"user": [1, 1, 2, 2], "item": [91_001, 91_002, 91_003, 91_004]}).to_csv(path, index=False)
  before = sorted(os.listdir(out["results_dir"]))
  with pytest.raises(ConfigError, match="no user's last item is known to the model: nothing to evaluate"):
    pipeline.run(trained_model_config(c, "test", path, out["model_name"]), workdir, mode="all")
  assert sorted(os.listdir(out["results_dir"])) == before


def test_test_task_uses_the_models_vocab_and_reports_unknowns(trained, tmp_path):
  c, workdir, out, data = trained
  vocab_dir = os.path.join(out["model_dir"], "vocab")
  before = {f: (os.path.getmtime(os.path.join(vocab_dir, f)), dataset.file_sha256(os.path.join(vocab_dir, f)))
            for f in os.listdir(vocab_dir)}
  rows = data.copy()
  rows.loc[rows.index[::7], "item"] = 99_999  # unknown items inside histories
  known = data["item"].iloc[:2].tolist()
  extra = pd.DataFrame({"user": ["new_1", "new_1", "new_2", "new_2"], "item": [known[0], 55_555, 77_777, known[1]]})
  path = tmp_path / "eval.csv"
  pd.concat([rows, extra]).to_csv(path, index=False)
  res = pipeline.run(trained_model_config(c, "test", path, out["model_name"]), workdir, mode="all")
  stats = res["stats"]
  assert stats["users_unseen_in_training"] == 2
  assert stats["unknown_items"] == 3
  assert stats["unknown_item_interactions_dropped"] == (rows["item"] == 99_999).sum() + 2
  # new_2's last item is known but its history is not: evaluated by popularity, flagged.
  assert stats["users_without_known_history"] >= 1
  assert stats["users_evaluated"] == 600 + 2 - stats["users_whose_last_item_is_unknown"]
  assert os.path.dirname(res["results_dir"]) == out["results_dir"]  # beside the model's own results
  assert os.path.basename(res["results_dir"]).startswith("test-eval-")
  with open(os.path.join(res["results_dir"], "test_metrics.json")) as f:
    written = json.load(f)
  assert written["data_stats"]["unknown_items"] == 3
  assert written["metrics"]["bert4rec"]["num_users"] == stats["users_evaluated"]
  after = {f: (os.path.getmtime(os.path.join(vocab_dir, f)), dataset.file_sha256(os.path.join(vocab_dir, f)))
           for f in os.listdir(vocab_dir)}
  assert after == before  # test-time preparation never touches the training vocabulary


def test_inference_drops_unknown_items_without_shifting_positions(trained, tmp_path):
  c, workdir, out, data = trained
  users = data[data["user"].isin(["user_000003", "user_000004"])]
  clean = tmp_path / "clean.csv"
  users.to_csv(clean, index=False)
  noisy_rows = []
  for u, g in users.groupby("user", sort=False):  # an unknown item after every known one
    for item in g["item"]:
      noisy_rows += [(u, item), (u, 123_456_789)]
  noisy = tmp_path / "noisy.csv"
  pd.DataFrame(noisy_rows, columns=["user", "item"]).to_csv(noisy, index=False)
  both = tmp_path / "cold.csv"
  pd.DataFrame({"user": ["cold"], "item": [987_654]}).to_csv(both, index=False)
  preds = {}
  for name, path in (("clean", clean), ("noisy", noisy), ("cold", both)):
    res = pipeline.run(trained_model_config(c, "inference", path, out["model_name"]), workdir, mode="all")
    preds[name] = pd.read_parquet(res["predictions"])
  a, b = preds["clean"], preds["noisy"]
  for col in ("items", "scores"):  # same known history -> same input window -> same predictions
    for x, y in zip(a[col], b[col]):
      np.testing.assert_allclose(np.asarray(x, float), np.asarray(y, float), rtol=1e-6)
  cold = preds["cold"].iloc[0]
  assert bool(cold["popularity_fallback"])
  vocab = dataset.load_vocab(os.path.join(out["model_dir"], "vocab"))
  trained_counts = np.load(os.path.join(out["model_dir"], "vocab", "train_counts.npy"))
  most_popular = vocab.ids[np.argsort(-trained_counts, kind="stable")[:10]]  # in training, held-out items not counted
  np.testing.assert_array_equal(np.asarray(cold["items"]), most_popular)


def test_inference_stopped_while_writing_parts_leaves_no_partial_predictions(trained, tmp_path, monkeypatch):
  """Predictions in parts: a run stopped after some parts are written leaves neither those parts
  under predictions.parquet (which would read as every user's predictions) nor the record that says
  they are done; earlier complete predictions and their record stay until the new ones are all
  written, and the same command then writes them all."""
  import pyarrow.parquet as pq
  from bert4rec_jax import predict
  c, workdir, out, data = trained
  path = tmp_path / "users.csv"
  data[data["user"].isin([f"user_{u:06d}" for u in range(40)])].to_csv(path, index=False)
  cc = trained_model_config(c, "inference", path, out["model_name"])
  cc.predict.users_per_part, cc.predict.batch_size = 10, 8
  first = pipeline.run(cc, workdir, mode="all")
  preds, meta = first["predictions"], os.path.join(first["results_dir"], "predictions_meta.json")
  whole = pd.read_parquet(preds)
  assert len(whole) == 40 and os.path.isfile(meta) and len(os.listdir(preds)) == 4
  shutil.rmtree(preds)
  os.remove(meta)  # as if never run: the stopped run below is the first
  real_write, calls = pq.ParquetWriter.write_table, []

  def stop_in_the_third_part(self, table, *args, **kwargs):
    calls.append(1)
    if len(calls) == 5:  # batches of 8 in parts of 10: the fifth batch is the third part's first
      raise KeyboardInterrupt
    return real_write(self, table, *args, **kwargs)

  monkeypatch.setattr(pq.ParquetWriter, "write_table", stop_in_the_third_part)
  with pytest.raises(KeyboardInterrupt):
    pipeline.run(cc, workdir, mode="all")
  assert not os.path.exists(preds) and not os.path.exists(meta)
  assert len(os.listdir(predict.staging_folder(preds))) == 2  # the finished parts, out of the way
  monkeypatch.setattr(pq.ParquetWriter, "write_table", real_write)
  again = pipeline.run(cc, workdir, mode="all")
  assert again["predictions"] == preds and os.path.isfile(meta)
  assert not os.path.exists(predict.staging_folder(preds))
  pd.testing.assert_frame_equal(pd.read_parquet(preds), whole)
  recorded = open(meta).read()
  calls.clear()
  monkeypatch.setattr(pq.ParquetWriter, "write_table", stop_in_the_third_part)
  with pytest.raises(KeyboardInterrupt):  # a stopped rerun: the complete predictions stay as they were
    pipeline.run(cc, workdir, mode="all")
  pd.testing.assert_frame_equal(pd.read_parquet(preds), whole)
  assert open(meta).read() == recorded


def test_a_model_ended_by_its_time_bound_is_not_read_as_partly_trained(tmp_path, caplog):
  """train.max_training_minutes ends training for good (as the recipe's bound does): the test and
  inference tasks read that model as finished, as evaluation does, never as partly trained."""
  import logging
  from configs import synthetic
  from bert4rec_jax import synthetic as gen
  c = synthetic.get_config("tiny")
  c.train.num_train_steps, c.train.max_training_minutes, c.model_name = 100_000, 0.05, "bounded"
  data = tmp_path / "rows.csv"
  gen.generate(seed=0, **c.data.synthetic.to_dict()).to_csv(data, index=False)
  c.data.format, c.data.path = "csv", str(data)
  out = pipeline.run(c, str(tmp_path / "work"), mode="train")
  assert out["finished"] and out["step"] < 100_000
  caplog.set_level(logging.INFO)
  for task in ("test", "inference"):
    pipeline.run(trained_model_config(c, task, data, "bounded"), str(tmp_path / "work"), mode="all")
  assert "Using a partly trained model" not in caplog.text


def test_the_longest_model_name_with_a_file_named_in_another_script(trained, tmp_path):
  """A model name of the most bytes allowed and an input named in a script of several bytes a
  letter: every file named after both (the results lock, the output folder) stays under 255 bytes."""
  c, workdir, out, data = trained
  name = "m" * 150
  copy = os.path.join(workdir, "models", name)
  shutil.copytree(out["model_dir"], copy)
  with open(os.path.join(copy, "config.json")) as f:
    saved = json.load(f)
  with open(os.path.join(copy, "config.json"), "w") as f:
    json.dump(dict(saved, model_name=name), f)  # as if trained under this name
  path = tmp_path / ("推荐用户历史数据" * 6 + ".csv")
  data[data["user"].isin(["user_000003", "user_000004"])].to_csv(path, index=False)
  res = pipeline.run(trained_model_config(c, "inference", path, name), workdir, mode="all")
  assert len(pd.read_parquet(res["predictions"])) == 2 and os.path.basename(os.path.dirname(res["results_dir"])) == name
  for folder in (os.path.join(workdir, "locks"), os.path.dirname(res["results_dir"])):
    assert max(len(n.encode()) for n in os.listdir(folder)) <= 255
  shutil.rmtree(copy)  # the module's workdir as the other tests expect it
  shutil.rmtree(os.path.dirname(res["results_dir"]))


def test_train_val_task_validates_on_the_last_item(tmp_path, tiny_config):
  c = tiny_config
  c.task, c.train.num_train_steps = "train_val", 30
  out = pipeline.run(c, str(tmp_path), mode="all")
  assert sorted(os.listdir(out["results_dir"])) == ["predictions.parquet", "predictions_meta.json", "settings.json",
                                                    "valid_metrics.json"]
  assert out["valid_metrics"]["bert4rec"]["num_users"] == 600


def test_train_test_task_trains_on_all_but_the_last_item_without_validation(tmp_path, tiny_config):
  c = tiny_config
  c.task, c.train.num_train_steps, c.eval.per_user_top_k = "train_test", 30, 2
  out = pipeline.run(c, str(tmp_path), mode="all")
  assert sorted(os.listdir(out["results_dir"])) == ["predictions.parquet", "predictions_meta.json", "settings.json",
                                                    "test_metrics.json", "test_per_user.parquet"]
  assert "valid_metrics" not in out and out["test_metrics"]["bert4rec"]["num_users"] == 600
  with open(os.path.join(out["model_dir"], "metrics.jsonl")) as f:
    assert not any(k.startswith("valid/") for line in f for k in json.loads(line))  # nothing held out but the test
  prepared, _ = dataset.load_or_prepare(c.data, str(tmp_path), pipeline.min_seq_length(c))
  train_seqs, splits = pipeline.task_splits("train_test", prepared.sequences)
  per_user = pd.read_parquet(os.path.join(out["results_dir"], "test_per_user.parquet"))
  for u in range(len(prepared.sequences)):
    seq = prepared.sequences[u]
    np.testing.assert_array_equal(train_seqs[u], seq[:-1])
    assert splits["test"].targets[u] == seq[-1]
  assert (prepared.vocab.decode(splits["test"].targets) == per_user["target"].to_numpy()).all()


def test_tasks_reject_modes_and_missing_models(tiny_config, tmp_path):
  tiny_config.task = "inference"
  with pytest.raises(ConfigError, match="does not apply to task 'inference'"):
    pipeline.run(tiny_config, str(tmp_path), mode="train")
  with pytest.raises(ConfigError, match="needs the trained model's folder name"):
    pipeline.run(tiny_config, str(tmp_path), mode="all")
  tiny_config.model_name = "nope"
  with pytest.raises(MissingError, match="no trained model there"):
    pipeline.run(tiny_config, str(tmp_path), mode="all")
  tiny_config.task = "tran_val"
  with pytest.raises(ConfigError, match="config.task='tran_val'"):
    pipeline.run(tiny_config, str(tmp_path), mode="all")
  tiny_config.task = "train_val_test"
  for mode in ("evaluate", "predict"):  # nothing trained under that name: nothing made either
    with pytest.raises(MissingError, match="no trained model there; train it first"):
      pipeline.run(tiny_config, str(tmp_path), mode=mode)
  assert not os.path.exists(os.path.join(tmp_path, "models"))


def reference_windows(seq, length, prop):
  """The seed's sliding windows, written out plainly."""
  if prop <= 0 or len(seq) <= length:
    return [seq[-length:]]
  step = max(1, int(prop * length))
  starts = list(range(len(seq) - length, 0, -step)) + [0]
  return [seq[b:b + length] for b in starts]


@pytest.mark.parametrize("prop", [-1.0, 0.5, 0.1, 1.0])
def test_sliding_windows_match_reference(prop):
  rng = np.random.default_rng(0)
  lists = [list(rng.integers(1, 50, size=n)) for n in rng.integers(1, 60, size=40)]
  seqs = preprocess.Sequences(offsets=np.cumsum([0] + [len(x) for x in lists]).astype(np.int64),
                              items=np.concatenate(lists).astype(np.int32))
  L = 12
  rows, ends = input_pipeline.sliding_windows(seqs, L, prop)
  windows = input_pipeline.right_aligned(seqs, rows, L, ends=ends)
  got = {}
  for r, w in zip(rows, windows):
    got.setdefault(int(r), []).append([int(x) for x in w if x])
  for r, seq in enumerate(lists):
    assert sorted(got[r]) == sorted([int(x) for x in w] for w in reference_windows(seq, L, prop))


def test_static_masking_same_seed_same_examples():
  rng = np.random.default_rng(1)
  lists = [list(rng.integers(1, 30, size=n)) for n in rng.integers(3, 25, size=20)]
  seqs = preprocess.Sequences(offsets=np.cumsum([0] + [len(x) for x in lists]).astype(np.int64),
                              items=np.concatenate(lists).astype(np.int32))
  dupe = 3
  mk = lambda seed: input_pipeline.TrainStream(seqs, batch_size=8, max_seq_length=10, seed=seed,
                                               prop_sliding_window=0.5, static_copies=dupe)
  a, b = mk(7), mk(7)
  assert a.num_examples == len(a.window_rows) * (dupe + 1)
  import jax
  from configs import default
  mc = default.base().masking
  mc.mode, mc.masked_lm_prob, mc.max_predictions_per_seq = "static", 0.4, 4
  kw = masking.masking_kwargs(mc, num_items=30)
  key = jax.random.PRNGKey(0)

  def masked(batch):
    return [np.asarray(x) for x in masking.mask_batch(key, batch["item_ids"], batch["example_ids"],
                                                      batch["only_last"], **kw)]

  seen = {}
  per_epoch = -(-a.num_examples // 8)
  for step in range(3 * per_epoch):  # three epochs: each static example is masked identically every time
    ba, bb = a.batch(step), b.batch(step)
    for k in ba:
      np.testing.assert_array_equal(ba[k], bb[k])
    ma = masked(ba)
    for j, ex in enumerate(ba["example_ids"]):
      sig = tuple(np.concatenate([m[j].ravel() for m in ma]).tolist())
      assert seen.setdefault(int(ex), sig) == sig
  assert len(seen) == a.num_examples
  # Exactly one mask-last copy per window.
  last = [e for e in seen if e % (dupe + 1) == dupe]
  assert len(last) == len(a.window_rows)


def test_time_limit_stops_and_resumes(tiny_config, tmp_path):
  c = tiny_config
  c.train.num_train_steps, c.train.training_time_limit_seconds, c.train.eval_every_steps = 100_000, 2, 0
  out = pipeline.run(c, str(tmp_path), mode="all")
  assert 0 < out["step"] < 100_000 and "test_metrics" not in out
  steps = sorted(int(d) for d in os.listdir(os.path.join(out["model_dir"], "checkpoints")) if d.isdigit())
  assert steps[-1] == out["step"]  # checkpointed where it stopped
  again = pipeline.run(c, str(tmp_path), mode="train")
  assert again["step"] > out["step"]


def test_inference_reads_the_history_as_this_run_says(trained, tmp_path):
  """model.read_last set by this run wins: the same model served with read_last=causal scores
  each user's history read causally (SASRec's reading of the same weights, computed here
  directly), and differs from the bidirectional read with [MASK] last; the two outputs are kept
  apart. Unset, the model is read as it was trained (its saved config)."""
  import jax.numpy as jnp
  from bert4rec_jax import model as model_lib
  c, workdir, out, data = trained
  users = data[data["user"].isin([f"user_{i:06d}" for i in range(20)])]
  path = tmp_path / "users.csv"
  users.to_csv(path, index=False)
  preds = {}
  for read in ("mask", "causal"):
    cc = trained_model_config(c, "inference", path, out["model_name"])
    cc.model.read_last = read
    preds[read] = pd.read_parquet(pipeline.run(cc, workdir, mode="all")["predictions"])
  assert not all(np.allclose(x, y, rtol=1e-3, atol=1e-4) for x, y in zip(preds["mask"]["scores"], preds["causal"]["scores"]))
  # A copy of the model whose training run read causally: served with read_last unset, read causally.
  causal_copy = os.path.join(tmp_path, "causal_model")
  shutil.copytree(out["model_dir"], causal_copy)
  with open(os.path.join(causal_copy, "config.json")) as f:
    saved = json.load(f)
  saved["config"]["model"]["read_last"] = "causal"
  with open(os.path.join(causal_copy, "config.json"), "w") as f:
    json.dump(saved, f)
  cc = trained_model_config(c, "inference", path, causal_copy)
  cc.model.read_last = ""
  inherited = pd.read_parquet(pipeline.run(cc, str(tmp_path / "w"), mode="all")["predictions"])
  for x, y in zip(inherited["scores"], preds["causal"]["scores"]):
    np.testing.assert_allclose(x, y, rtol=1e-6)
  vocab = dataset.load_vocab(os.path.join(out["model_dir"], "vocab"))
  params = pipeline.load_params(c, out["model_dir"], vocab.num_items)
  model, L = model_lib.from_config(c.model, vocab.num_items), c.model.max_seq_length
  for _, row in preds["causal"].iterrows():
    history = vocab.encode(users[users["user"] == row["user"]]["item"].to_numpy())
    window = np.zeros((1, L), np.int32)
    window[0, L - 1 - len(history[-(L - 1):]):L - 1] = history[-(L - 1):]  # right-aligned, [MASK] slot last (never read)
    logits, _ = model.apply({"params": params}, jnp.asarray(window), jnp.asarray([[L - 1]]), causal=True)
    scores = np.array(logits[0, 0])
    scores[history - 1] = -np.inf  # the whole history excluded
    best = np.argsort(-scores, kind="stable")[:len(row["items"])]
    assert list(row["items"]) == list(vocab.ids[best])
    # Served from a window cut to the histories' width (other shapes, other float32 sums): within
    # 1e-4, where the bidirectional reading differs by over 1e-3 (asserted above).
    np.testing.assert_allclose(row["scores"], scores[best], rtol=1e-4, atol=1e-5)


def test_test_and_inference_outputs_are_keyed_by_the_whole_input(trained, tmp_path):
  """users.jan.txt and users.feb.txt, or a/users.csv and b/users.csv: four inputs, four outputs,
  none overwriting another; the same input again finds its own output folder."""
  c, workdir, out, data = trained
  users = sorted(data["user"].unique())
  inputs = {"users.jan.csv": users[:30], "users.feb.csv": users[30:60], "a/users.csv": users[60:90],
            "b/users.csv": users[90:120]}
  seen = {}
  for task in ("inference", "test"):
    for name, chosen in list(inputs.items())[:4 if task == "inference" else 2]:
      path = tmp_path / name
      path.parent.mkdir(exist_ok=True)
      data[data["user"].isin(chosen)].to_csv(path, index=False)
      res = pipeline.run(trained_model_config(c, task, path, out["model_name"]), workdir, mode="all")
      seen[task, name] = res["results_dir"]
      if task == "inference":
        assert sorted(pd.read_parquet(res["predictions"])["user"]) == chosen
      else:
        assert res["test_metrics"]["bert4rec"]["num_users"] == 30
    assert len({v for (t, _), v in seen.items() if t == task}) == (4 if task == "inference" else 2)
  for name, chosen in inputs.items():  # every output still holds its own input's users
    assert sorted(pd.read_parquet(os.path.join(seen["inference", name], "predictions.parquet"))["user"]) == chosen
  again = pipeline.run(trained_model_config(c, "inference", tmp_path / "users.jan.csv", out["model_name"]), workdir,
                       mode="all")
  assert again["results_dir"] == seen["inference", "users.jan.csv"]


def test_evaluation_with_other_settings_never_overwrites_the_models_results(trained, tmp_path):
  c, workdir, out, data = trained
  with open(os.path.join(out["results_dir"], "test_metrics.json")) as f:
    first = f.read()
  other = c.copy_and_resolve_references()
  other.eval.ks, other.eval.num_negatives, other.eval.per_user_top_k = (1, 3), 0, 45  # more than are left
  res = pipeline.run(other, workdir, mode="evaluate")
  assert os.path.dirname(res["results_dir"]) == out["results_dir"] and res["results_dir"] != out["results_dir"]
  assert set(res["test_metrics"]["bert4rec"]) >= {"hr@3", "ndcg@3"}
  per_user = pd.read_parquet(os.path.join(res["results_dir"], "test_per_user.parquet"))
  histories = data.groupby("user")["item"].apply(lambda s: set(s.iloc[:-1]))
  for _, row in per_user.iterrows():  # every item left, once each, none from the history
    shown = list(row["top_items"])
    assert len(shown) == len(set(shown)) and not set(shown) & (histories[row["user"]] - {row["target"]})
  with open(os.path.join(out["results_dir"], "test_metrics.json")) as f:
    assert f.read() == first
  again = pipeline.run(c, workdir, mode="evaluate")  # the model's own settings: its own folder
  assert again["results_dir"] == out["results_dir"]


def test_sampled_protocol_records_users_with_fewer_negatives_than_asked(trained):
  """eval.num_negatives=30 of a 40-item catalogue: users with long histories have fewer eligible
  negatives; the results say how many, counted here from the data."""
  c, workdir, out, data = trained
  c = c.copy_and_resolve_references()
  c.eval.num_negatives = 30
  res = pipeline.run(c, workdir, mode="evaluate")
  with open(os.path.join(res["results_dir"], "test_metrics.json")) as f:
    recorded = json.load(f)["sampled_negatives"]
  num_items = dataset.load(out["data_dir"]).vocab.num_items
  eligible = []
  for _, g in data.groupby("user"):
    eligible.append(num_items - len(set(g["item"])))  # history and target blocked
  eligible = np.minimum(np.array(eligible), 30)
  assert recorded == {"asked": 30, "fewest": int(eligible.min()), "mean": pytest.approx(float(eligible.mean())),
                      "users_with_fewer": int((eligible < 30).sum())}
  assert recorded["users_with_fewer"] > 0


def test_static_masking_trains_resumes_and_keeps_each_copy(tiny_config, tmp_path):
  """The seed's masking: dupe_factor fixed copies of each window plus one mask-last copy, each
  masked the same way in every epoch; it trains, and a resumed run reaches the same model."""
  from bert4rec_jax import trainer
  c = tiny_config
  c.masking.mode, c.masking.dupe_factor = "static", 2
  c.train.num_train_steps, c.train.checkpoint_every_steps, c.train.eval_every_steps = 16, 100, 0
  straight = pipeline.run(c, str(tmp_path / "straight"), mode="train")
  pipeline.run(c, str(tmp_path / "resumed"), mode="train", stop_at=7)
  resumed = pipeline.run(c, str(tmp_path / "resumed"), mode="train")
  n = c.data.synthetic.num_items
  a = pipeline.load_params(c, straight["model_dir"], n)
  b = pipeline.load_params(c, resumed["model_dir"], n)
  import jax
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-6), a, b)
  # The step's static key (one for every step): each window's mask-last copy masks its last item only.
  prepared, _ = dataset.load_or_prepare(c.data, str(tmp_path / "straight"), pipeline.min_seq_length(c))
  train_seqs, _ = pipeline.task_splits(c.task, prepared.sequences)
  stream = input_pipeline.make_stream(c, train_seqs)
  assert stream.copies == 3
  batch = stream.batch(0)
  import jax.numpy as jnp
  key = jax.random.fold_in(jax.random.PRNGKey(c.seed), trainer.STATIC_MASK_STREAM)
  kw = masking.masking_kwargs(c.masking, n)
  masked = masking.mask_batch(key, jnp.asarray(batch["item_ids"]), jnp.asarray(batch["example_ids"]),
                              jnp.asarray(batch["only_last"]), **kw)
  last = np.asarray(batch["only_last"])
  assert last.any() and not last.all()
  w = np.asarray(masked.weights)
  assert (w[last].sum(1) == 1).all() and (np.asarray(masked.positions)[last, 0] == c.model.max_seq_length - 1).all()
