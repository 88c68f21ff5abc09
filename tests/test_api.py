"""The Python API (bert4rec_jax/api.py): training from a DataFrame, and a loaded model that ranks,
embeds and lists its items exactly as the pipeline's batch inference and a NumPy reference do."""
import logging
import os

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import bert4rec_jax
from bert4rec_jax import Recommender, model as model_lib, synthetic
from bert4rec_jax.errors import ConfigError, DataError, MissingError

STEPS = 60


def frame(seed: int = 0) -> pd.DataFrame:
  """Interactions as a user would have them: string item ids, a timestamp column, rows shuffled."""
  df = synthetic.generate(num_users=300, num_items=40, min_length=5, max_length=16, num_strides=2, noise=0.1,
                          seed=seed)
  df["item"] = "sku-" + df["item"].astype(str)
  df["timestamp"] = df.groupby("user").cumcount() * 60 + 1_700_000_000
  return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def histories_of(df: pd.DataFrame) -> dict:
  return {u: list(g.sort_values("timestamp", kind="stable")["item"]) for u, g in df.groupby("user", sort=False)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A model trained through `bert4rec_jax.train` from a DataFrame (mode all: test metrics and
  every user's predictions, with embeddings, written by the pipeline)."""
  from configs import synthetic as synthetic_config
  workdir = str(tmp_path_factory.mktemp("api"))
  config = synthetic_config.get_config("tiny")
  config.wandb.mode = "disabled"
  df = frame()
  result = bert4rec_jax.train(config, data=df, workdir=workdir, overrides={
      "train.num_train_steps": STEPS, "train.eval_every_steps": 30, "train.checkpoint_every_steps": 30,
      "predict.with_embeddings": True, "predict.top_k": 7})
  return {"workdir": workdir, "df": df, "result": result, "config": config}


def test_training_from_a_dataframe_runs_the_whole_pipeline(trained):
  result = trained["result"]
  assert result["finished"] and result["step"] == STEPS
  assert result["test_metrics"]["bert4rec"]["num_users"] == 300
  inputs = os.listdir(os.path.join(trained["workdir"], "data", "inputs"))
  assert len(inputs) == 1 and inputs[0].startswith("frame-")
  # The same frame again (rows in another order are another input: the order is data) finds the
  # same model, finished: nothing is trained again.
  again = bert4rec_jax.train(trained["config"], data=trained["df"], workdir=trained["workdir"], mode="train",
                             overrides={"train.num_train_steps": STEPS, "train.eval_every_steps": 30,
                                        "train.checkpoint_every_steps": 30})
  assert again["model_dir"] == result["model_dir"] and again["step"] == STEPS
  assert len(os.listdir(os.path.join(trained["workdir"], "data", "inputs"))) == 1


def test_a_frame_write_stopped_part_way_is_cleaned_by_the_next(tmp_path, tiny_config):
  """A DataFrame is saved under data/inputs through a temporary: one a stopped process left (its
  pid gone) is removed when the next frame is saved; one of a live process is left alone."""
  import socket
  import subprocess
  import sys
  from bert4rec_jax import io_utils
  gone = subprocess.Popen([sys.executable, "-c", "pass"])
  gone.wait()  # a pid no process has now
  inputs = tmp_path / "data" / "inputs"
  inputs.mkdir(parents=True)
  host = socket.gethostname().replace("-", "_")
  stale = inputs / f"{io_utils.TMP_PREFIX}{host}-{gone.pid}-frame.parquet-abc.tmp"
  live = inputs / f"{io_utils.TMP_PREFIX}{host}-{os.getpid()}-frame.parquet-def.tmp"
  stale.write_bytes(b"half a frame")
  live.write_bytes(b"being written")
  bert4rec_jax.train(tiny_config, data=frame(), workdir=str(tmp_path), mode="prepare")
  assert not stale.exists() and live.exists()
  assert [n for n in os.listdir(inputs) if n.startswith("frame-")]


def test_a_bad_dataframe_is_one_error_naming_it(tmp_path, tiny_config):
  bad = frame().rename(columns={"item": "product"})
  with pytest.raises(DataError, match=r"data \(the DataFrame\)"):
    bert4rec_jax.train(tiny_config, data=bad, workdir=str(tmp_path), mode="prepare")
  with pytest.raises(DataError, match="pandas DataFrame"):
    bert4rec_jax.train(tiny_config, data={"user": [1]}, workdir=str(tmp_path), mode="prepare")
  with pytest.raises(ConfigError, match="did you mean train.num_train_steps"):
    bert4rec_jax.train(tiny_config, workdir=str(tmp_path), overrides={"train.num_train_step": 3})


def test_recommendations_are_the_pipelines_batch_inference(trained):
  """Every user's whole history, through the API, gives the items and scores the pipeline's
  inference wrote (which tests/test_predict_and_tracking.py checks against the model's logits)."""
  rec = Recommender.load(trained["result"]["model_dir"])
  assert rec.step == trained["result"]["checkpoint_step"]  # the checkpoint validation selected
  written = pd.read_parquet(trained["result"]["predictions"])
  with open(os.path.join(os.path.dirname(trained["result"]["predictions"]), "predictions_meta.json")) as f:
    assert __import__("json").load(f)["checkpoint_step"] == rec.step  # which checkpoint made them
  hist = histories_of(trained["df"])
  users = list(written["user"])
  out = rec.recommend([hist[u] for u in users], k=7)
  assert len(out) == len(users)
  for u, items, scores, row in zip(users, out, out.scores, written.itertuples()):
    assert items == list(row.items), u
    np.testing.assert_allclose(scores, row.scores, rtol=1e-5, atol=1e-6)
    assert not set(items) & set(hist[u])  # the history is excluded
  np.testing.assert_allclose(rec.embed([hist[u] for u in users]), np.stack(written["embedding"]), atol=1e-5)
  assert not out.unknown.any() and not out.fallback.any()


def test_recommend_matches_a_numpy_reference_without_exclusion(trained):
  rec = Recommender.load(trained["workdir"], os.path.basename(trained["result"]["model_dir"]))
  hist = list(histories_of(trained["df"]).values())[:5]
  out = rec.recommend(hist, k=40, exclude_history=False)  # the whole catalogue, in order
  L = rec.max_seq_length
  tokens = [rec.vocab.encode(np.array(h, dtype=object)) for h in hist]
  inputs = np.stack([np.concatenate([np.zeros(max(0, L - 1 - len(t)), np.int32), t[-(L - 1):], [rec.vocab.mask_id]])
                     for t in tokens]).astype(np.int32)
  model = model_lib.from_config(rec.config.model, rec.vocab.num_items)
  logits, _ = model.apply({"params": rec._params[0]}, jnp.asarray(inputs), jnp.full((len(inputs), 1), L - 1))
  for row, items, scores in zip(np.asarray(logits[:, 0]), out, out.scores):
    np.testing.assert_allclose(np.sort(scores)[::-1], np.sort(row)[::-1], rtol=1e-5, atol=1e-5)
    assert list(np.asarray(items)[np.argsort(-scores, kind="stable")]) == items  # best first
    np.testing.assert_allclose(scores, row[rec.vocab.encode(np.array(items, dtype=object)) - 1], rtol=1e-5,
                               atol=1e-5)


def test_unknown_items_are_dropped_and_counted(trained, caplog):
  rec = Recommender.load(trained["result"]["model_dir"])
  hist = list(histories_of(trained["df"]).values())[0]
  with caplog.at_level(logging.WARNING):
    out = rec.recommend([hist + ["nope-1"], ["nope-2", "nope-3"], [], hist], k=5)
  assert list(out.unknown) == [1, 2, 0, 0]
  assert list(out.fallback) == [False, True, True, False]
  assert out[0] == out[3]  # an unknown item changes nothing
  training = [item for items in histories_of(trained["df"]).values() for item in items[:-2]]  # valid, test held out
  counts = pd.Series(training).value_counts().reindex(rec.items, fill_value=0).to_numpy()
  np.testing.assert_array_equal(rec.popularity, counts)
  popular = list(rec.items[np.argsort(-counts, kind="stable")[:5]])
  assert out[1] == out[2] == popular  # no known item: training popularity
  assert "3 item(s) in 2 of 4 histories are unknown" in caplog.text
  frame_ = out.to_frame()
  assert list(frame_.columns) == ["items", "scores", "unknown", "fallback"] and len(frame_) == 4


def test_inputs_of_every_kind(trained):
  rec = Recommender.load(trained["result"]["model_dir"])
  hist = list(histories_of(trained["df"]).values())[1]
  expected = rec.recommend([hist], k=3)[0]
  ro = np.array(hist, dtype=object)
  ro.setflags(write=False)  # arrays from Arrow / pandas are often read-only
  assert rec.recommend([ro], k=3)[0] == expected
  assert rec.recommend((pd.Series(hist),), k=3)[0] == expected
  assert rec.recommend([tuple(hist)] * 300, k=3)[299] == expected  # more than one batch
  assert rec.recommend([], k=3) == [] and rec.embed([]).shape == (0, rec.config.model.hidden_size)
  with pytest.raises(DataError, match="for one user"):
    rec.recommend(hist, k=3)  # one history without its outer list
  with pytest.raises(DataError, match="missing id"):
    rec.recommend([[hist[0], None]], k=3)
  with pytest.raises(ConfigError, match="positive"):
    rec.recommend([hist], k=0)
  for unordered in ({hist[0], hist[1]}, dict.fromkeys(hist)):
    with pytest.raises(DataError, match="no order"):
      rec.recommend([unordered], k=3)
  with pytest.raises(DataError, match="no order"):
    rec.recommend({tuple(hist)}, k=3)
  # Ids as the readers read a field: spaces around one are layout; UTF-8 bytes are its text.
  assert rec.recommend([[f" {x} " for x in hist]], k=3)[0] == expected
  assert rec.recommend([[x.encode() for x in hist]], k=3)[0] == expected
  many = rec.recommend([hist], k=10_000)[0]  # more than the catalogue: every item left, once
  assert len(many) == rec.vocab.num_items - len(set(hist)) and len(set(many)) == len(many)
  with pytest.raises(DataError, match=r"shape \(\)"):
    rec.recommend([np.array(5)], k=3)  # a 0-d array is one id, not a history
  for unclear in (None, "no", 0):  # exclusion is asked for in so many words, never guessed from a value
    with pytest.raises(ConfigError, match="exclude_history"):
      rec.recommend([hist], k=3, exclude_history=unclear)
  assert rec.recommend([hist], k=3, exclude_history=np.bool_(True))[0] == expected


def test_item_embeddings_are_the_models_table(trained):
  rec = Recommender.load(trained["result"]["model_dir"])
  ids, vectors = rec.item_embeddings()
  assert list(ids) == list(rec.items) and vectors.shape == (40, rec.config.model.hidden_size)
  table = np.asarray(rec._params[0]["item_embedding"]["embedding"])
  np.testing.assert_array_equal(vectors[3], table[rec.vocab.encode(np.array([ids[3]], dtype=object))[0]])
  ids[0] = "changed"
  assert rec.item_embeddings()[0][0] != "changed"  # a copy: the model's vocabulary is not the caller's


def test_query_vectors_and_output_table_give_the_scores(trained):
  """query_vectors(h) @ output_table().T is the score recommend ranks by (histories with known
  items, and one without any: the popularity fallback's column)."""
  rec = Recommender.load(trained["result"]["model_dir"])
  hist = list(histories_of(trained["df"]).values())[:6] + [["nope"]]
  out = rec.recommend(hist, k=40, exclude_history=False)
  ids, table = rec.output_table()
  scores = rec.query_vectors(hist) @ table.T
  for row, items, values in zip(scores, out, out.scores):
    order = np.argsort(-row, kind="stable")
    assert list(ids[order]) == items
    np.testing.assert_allclose(row[order], values, rtol=1e-5, atol=1e-4)
  assert rec.query_vectors([]).shape == (0, table.shape[1])


def test_a_damaged_or_foreign_model_folder_is_one_line(trained, tmp_path):
  """config.json, identity.json or the vocabulary damaged, or another vocabulary put in: one line
  naming the file, before any checkpoint is read; a folder without its user list still predicts."""
  import shutil
  src = trained["result"]["model_dir"]
  for name, damage, error, match in (
      ("config.json", lambda p: open(p, "w").write("{"), DataError, "config.json cannot be read"),
      ("identity.json", lambda p: open(p, "w").write("[]"), DataError, "identity.json cannot be read"),
      ("vocab/items.parquet", lambda p: open(p, "wb").write(b"PAR1 nothing"), DataError, "items.parquet cannot be read"),
      ("vocab/items.parquet", os.remove, MissingError, "items.parquet: missing from the model folder"),
      ("vocab/items.parquet", lambda p: pd.read_parquet(p).iloc[::-1].to_parquet(p, index=False), DataError,
       "not the vocabulary this model was trained with")):
    copy = str(tmp_path / "models" / os.path.basename(src))
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(src, copy)
    damage(os.path.join(copy, name))
    with pytest.raises(error, match=match) as e:
      Recommender.load(copy)
    assert "\n" not in str(e.value)
  shutil.rmtree(copy)
  shutil.copytree(src, copy)
  os.remove(os.path.join(copy, "vocab", "users.parquet"))
  assert Recommender.load(copy).recommend([["nope"]], k=2)[0]


def _edited_copy(src, dst, edit, file="config.json"):
  import json
  import shutil
  shutil.rmtree(dst, ignore_errors=True)
  shutil.copytree(src, dst)
  path = os.path.join(dst, file)
  with open(path) as f:
    saved = json.load(f)
  saved = edit(saved) or saved
  with open(path, "w") as f:
    json.dump(saved, f)
  return dst


def _set(path, value):
  def edit(saved):
    *parents, last = path.split(".")
    d = saved["config"]
    for p in parents:
      d = d[p]
    if value is _set:
      del d[last]
    else:
      d[last] = value
  return edit


def test_an_edited_config_is_refused_not_served(trained, tmp_path):
  """config.json describes the network the weights are built into: edited (another kind, activation,
  head count, data cleaning, a field gone or retyped, no config at all), the folder is refused in one
  line naming config.json, by the API and by the test and inference tasks alike, and never serves
  another model's recommendations under the old name. Fields that do not make the model (its name, its
  reading) stay free to change (tests/test_tasks.py)."""
  from configs import synthetic as synthetic_config
  from bert4rec_jax import pipeline
  src = trained["result"]["model_dir"]
  df = trained["df"]
  inputs = tmp_path / "inference.csv"
  df[df["user"].isin(df["user"].unique()[:3])].to_csv(inputs, index=False)
  for edit, match in (
      (_set("model.kind", "sasrec"), r"model.kind: 'bert4rec' -> 'sasrec'"),
      (_set("model.kind", "gpt"), "model.kind"),
      (_set("model.hidden_act", "relu"), r"model.hidden_act: 'gelu' -> 'relu'"),
      (_set("model.num_attention_heads", 3), "model.num_attention_heads"),
      (_set("model.max_seq_length", "16"), "model.max_seq_length"),
      (_set("model.max_seq_length", _set), "model.max_seq_length"),
      (_set("data.drop_duplicates", True), "data.drop_duplicates"),
      (_set("model", _set), "holds no model config|model"),
      (lambda saved: dict(saved, config=[1, 2]), "holds no model config"),
      (lambda saved: dict(saved, identity=None), "identity.json holds no identity")):
    copy = _edited_copy(src, str(tmp_path / "models" / "edited"), edit,
                        file="identity.json" if "identity" in match else "config.json")
    with pytest.raises(DataError, match=match) as e:
      Recommender.load(copy)
    assert ("identity.json" if "identity" in match else "config.json") in str(e.value) and "\n" not in str(e.value)
    config = synthetic_config.get_config("tiny")
    config.wandb.mode, config.task, config.model_name = "disabled", "inference", copy
    config.data.format, config.data.path = "csv", str(inputs)
    with pytest.raises(DataError, match="identity.json" if "identity" in match else "config.json"):
      pipeline.run(config, str(tmp_path / "work"), mode="all")
  assert not (tmp_path / "work" / "results").exists()
  # What only training reads is not compared: an identity written before a rule about such a setting was
  # added (eval.exclude_history under periodic validation, since 2026-12-03) lacks it, and the model serves.
  for edit in (_set("eval.exclude_history", False), _set("train.learning_rate", 0.5)):
    copy = _edited_copy(src, str(tmp_path / "models" / "edited"), edit)
    assert Recommender.load(copy).recommend([["sku-1"]], k=2)[0]


def test_a_failure_building_a_checked_model_is_ours_and_keeps_its_traceback(trained, monkeypatch):
  """With identity.json confirming config.json, a failure building the model is a bug of ours (a
  library upgrade, say), never passed off as a damaged config."""
  from bert4rec_jax import trainer

  def broken(*args, **kwargs):
    raise AssertionError("a bug of ours")
  monkeypatch.setattr(trainer, "create_state", broken)
  with pytest.raises(AssertionError, match="a bug of ours"):
    Recommender.load(trained["result"]["model_dir"])


def test_a_folder_without_its_identity_still_names_what_is_wrong(trained, tmp_path, caplog):
  """Without identity.json (a folder from before identities, or one it was taken from) nothing can
  check the vocabulary or the config against what made the model: loading says so, and a config that
  builds no model, or one the weights do not fit, is still one line naming the folder's fault."""
  src = trained["result"]["model_dir"]
  copy = _edited_copy(src, str(tmp_path / "models" / "plain"), lambda saved: None)
  os.remove(os.path.join(copy, "identity.json"))
  with caplog.at_level(logging.WARNING):
    rec = Recommender.load(copy)
  assert "cannot be checked" in caplog.text and rec.recommend([["sku-1"]], k=2)[0]
  for edit, error, match in (
      (_set("model.kind", "gpt"), DataError, r"config.json describes no model .*model.kind='gpt'"),
      (_set("model.max_seq_length", _set), DataError, "config.json holds no model config"),
      (_set("model.hidden_size", 16), Exception, "not the model its folder's config describes")):
    _edited_copy(src, copy, edit)
    os.remove(os.path.join(copy, "identity.json"))
    with pytest.raises(error, match=match) as e:
      Recommender.load(copy)
    assert "\n" not in str(e.value) and "another config.model_name" not in str(e.value)  # nothing to rename


def test_damaged_training_counts_are_refused(trained, tmp_path):
  """vocab/train_counts.npy ranks the fallback (histories with no known item): unreadable, or holding
  counts that are not finite non-negative numbers (which would drop items from every list or rank
  nothing), it is one line naming it."""
  src = trained["result"]["model_dir"]
  copy = _edited_copy(src, str(tmp_path / "models" / "counts"), lambda saved: None)
  path = os.path.join(copy, "vocab", "train_counts.npy")
  n = len(np.load(path))
  for damage in (lambda f: f.write(b"garbage"), lambda f: None, lambda f: np.savez(f, counts=np.ones(n)),
                 lambda f: np.save(f, np.full(n, np.nan)),
                 lambda f: np.save(f, np.r_[np.ones(n - 1), np.inf]), lambda f: np.save(f, -np.ones(n)),
                 lambda f: np.save(f, np.array(["1"] * n))):
    with open(path, "wb") as f:
      damage(f)
    with pytest.raises(DataError, match="train_counts.npy") as e:
      Recommender.load(copy)
    assert "\n" not in str(e.value)


def test_the_lock_is_the_folders_however_it_is_reached(trained, tmp_path):
  """A model reached through a link to its models/ folder, or a link to its workdir, is locked as
  itself: a run training it (an exclusive lock) keeps every spelling out."""
  from bert4rec_jax import io_utils, pipeline
  from bert4rec_jax.errors import InUseError
  src = trained["result"]["model_dir"]
  workdir = os.path.dirname(os.path.dirname(src))
  os.symlink(workdir, tmp_path / "linked_workdir")
  os.symlink(os.path.join(workdir, "models"), tmp_path / "linked_models")
  spellings = [src, str(tmp_path / "linked_workdir" / "models" / os.path.basename(src)),
               str(tmp_path / "linked_models" / os.path.basename(src)),
               os.path.relpath(src)]
  assert len({pipeline.model_lock(p, "elsewhere") for p in spellings}) == 1
  with io_utils.lock(pipeline.model_lock(src), "training"):
    for path in spellings:
      with pytest.raises(InUseError):
        Recommender.load(path)


def test_load_errors_say_what_to_do(trained, tmp_path):
  with pytest.raises(MissingError, match="pass the model's name too"):
    Recommender.load(trained["workdir"])
  with pytest.raises(MissingError, match="no trained model"):
    Recommender.load(str(tmp_path))
  name = os.path.basename(trained["result"]["model_dir"])
  with pytest.raises(MissingError, match=f"the models of .*{name}"):  # a misspelt name: the names there
    Recommender.load(trained["workdir"], name[:-1])
  with pytest.raises(ConfigError, match="read_last"):
    Recommender.load(trained["result"]["model_dir"], read_last="sideways")
  causal = Recommender.load(trained["result"]["model_dir"], read_last="causal")
  assert causal.read_last == "causal" and "causal" in repr(causal)


def test_the_readme_example_runs_as_written(tmp_path):
  """The README's Python API example, exactly as printed there, in a fresh process and folder."""
  import re
  import subprocess
  import sys
  readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")).read()
  section = readme[readme.index("### Python API"):]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  assert out.returncode == 0, out.stderr[-3000:]
  ndcg, first = out.stdout.splitlines()[-2:]  # after the run's own tables
  assert 0 < float(ndcg) <= 1
  assert first.startswith("['sku-") and "[0 1]" in first  # five ids; the unknown item counted
  assert os.path.isdir(tmp_path / "projects" / "api_demo" / "models")


def test_histories_are_cleaned_as_the_pipeline_cleans_its_data(trained):
  """With data.drop_duplicates, consecutive repeats go first, on the ids as given, and unknown items
  after (as preparation does): [a, unknown, a] keeps both a's; [a, a, b] keeps one a."""
  from bert4rec_jax import preprocess
  rec = Recommender.load(trained["result"]["model_dir"])
  rec._drop_duplicates = True
  a, b = rec.items[0], rec.items[1]
  histories = [[a, "nope", a], [a, a, b], [b, "nope", "nope", a, a], []]
  seqs, unknown = rec._encode(histories)
  users = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
  groups = preprocess.group_users(users, np.array([x for h in histories for x in h], dtype=object),
                                  drop_duplicates=True, min_seq_length=0)
  expected = rec.vocab.encode(groups.items)
  bounds = np.concatenate([[0], np.cumsum(groups.lengths)])
  for row, user in enumerate(groups.users):
    mine = list(seqs[int(user)])
    reference = [t for t in expected[bounds[row]:bounds[row + 1]] if t != 0]
    assert mine == reference, (histories[int(user)], mine, reference)
  assert list(unknown) == [1, 0, 1, 0] and list(seqs.lengths) == [2, 2, 2, 0]


def test_ids_are_read_as_the_readers_read_them():
  from bert4rec_jax import api
  assert api._id(3.0, 0) == 3 and isinstance(api._id(np.int64(3), 0), int) and api._id(2.5, 0) == 2.5
  assert api._id("007", 0) == "007"
  for missing in (None, float("nan"), pd.NA, pd.NaT, np.nan):
    with pytest.raises(DataError, match="missing id"):
      api._id(missing, 0)
  with pytest.raises(DataError, match="boolean"):
    api._id(True, 0)


def test_loading_a_model_again_compiles_nothing_new(trained):
  first = Recommender.load(trained["result"]["model_dir"])
  second = Recommender.load(trained["result"]["model_dir"])
  assert first._scorer is second._scorer  # the jitted functions' static argument: one compile per shape
  huge = 2 ** 70  # beyond 64 bits: a label, unknown here, never an OverflowError
  assert list(second.recommend([[huge]], k=2).unknown) == [1]


def _memory_maps() -> int:
  with open("/proc/self/maps") as f:
    return sum(1 for _ in f)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="counts Linux memory mappings")
def test_training_again_and_again_in_one_process_leaves_nothing_compiled_behind(tmp_path):
  """An ablation loop in one process: each run compiles new programs (another width), and before
  the pipeline released them each run left ~1,300 memory mappings behind, until the process hit
  Linux's 65,530 and XLA segfaulted. Now the count stays where the first run left it."""
  from configs import synthetic as synthetic_config
  df = frame(seed=1)
  counts = []
  for width in (16, 24, 32):
    config = synthetic_config.get_config("tiny")
    config.wandb.mode = "disabled"
    result = bert4rec_jax.train(config, data=df, workdir=str(tmp_path / f"w{width}"), mode="train", overrides={
        "model.hidden_size": width, "train.num_train_steps": 4, "train.eval_every_steps": 4,
        "train.checkpoint_every_steps": 4})
    assert result["step"] == 4
    counts.append(_memory_maps())
  assert counts[2] - counts[0] < 300, counts
