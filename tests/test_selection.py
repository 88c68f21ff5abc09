"""Selection on validation: the best checkpoint, early stopping, test once on the selected
checkpoint, the same selection after a resume, schedules in epochs."""
import json
import math
import os
import re
import shutil

import numpy as np
import orbax.checkpoint as ocp
import pytest

from bert4rec_jax import dataset, evaluate, model as model_lib, model_store, pipeline, selection, trainer
from bert4rec_jax.errors import ConfigError, DataError, MissingError


def test_selection_picks_the_best_earliest_and_counts_patience(tmp_path):
  s = selection.Selection("ndcg@10", patience=2)
  assert s.best is None and not s.should_stop
  assert s.add(10, {"ndcg@10": 0.3})
  assert s.add(20, {"ndcg@10": 0.5})
  assert not s.add(30, {"ndcg@10": 0.5})  # a tie is no improvement: the earlier step stays selected
  assert s.best["step"] == 20 and s.since_best == 1 and not s.should_stop
  assert not s.add(40, {"ndcg@10": 0.4})
  assert s.should_stop
  s.save(str(tmp_path))
  # A run resuming from step 30 forgets what came after it (it will train those steps again).
  again = selection.load(str(tmp_path), "ndcg@10", 2, up_to_step=30)
  assert [e["step"] for e in again.curve] == [10, 20, 30] and not again.should_stop
  assert selection.stopped_early(str(tmp_path), 40) and not selection.stopped_early(str(tmp_path), 30)
  assert selection.selected_step(str(tmp_path), 40) == 20 and selection.selected_step(str(tmp_path), 15) == 10
  (tmp_path / selection.SELECTION_FILE).write_text('{"metric": "ndcg@10", "curve": [{"st')  # damaged
  for read in (selection.recorded, lambda d: selection.selected_step(d, 40)):  # never another checkpoint instead
    with pytest.raises(DataError, match="selection.json cannot be read .*which checkpoint validation selected"):
      read(str(tmp_path))
  assert s.record()["curve"] == [[10, 0.3], [20, 0.5], [30, 0.5], [40, 0.4]]


@pytest.mark.parametrize("name,problem", [("ndcg@10", None), ("sampled_hr@5", None), ("mrr", None), ("", None),
                                          ("sampled_hr@200", "k=100"), ("sampled_ndcg@10", "num_negatives"),
                                          ("loss", "higher"), ("mean_rank", "higher")])
def test_selectable_metrics(name, problem):
  found = selection.metric_problem(name, 0 if name.startswith("sampled_ndcg") else 100)
  assert (found is None) if problem is None else problem in found


def _config(c, **train):
  c.train.num_train_steps, c.train.eval_every_steps, c.train.checkpoint_every_steps = 2000, 40, 1000
  c.train.patience, c.train.keep_checkpoints = 2, 1
  c.eval.max_valid_users = 300
  c.eval.popularity_baseline = False
  for k, v in train.items():
    c.train[k] = v
  return c


def _restore(c, model_dir, step, num_items):
  state = trainer.create_state(c, num_items)
  with ocp.CheckpointManager(os.path.join(model_dir, "checkpoints"),
                             options=ocp.CheckpointManagerOptions(read_only=True)) as m:
    return m.restore(step, args=ocp.args.StandardRestore(state)).params


def test_training_selects_on_validation_stops_early_and_tests_the_selected_checkpoint(tiny_config, tmp_path):
  c = _config(tiny_config)
  out = pipeline.run(c, str(tmp_path), mode="all")
  with open(os.path.join(out["model_dir"], "metrics.jsonl")) as f:
    logged = [json.loads(line) for line in f]
  curve = [(r["step"], r["valid/ndcg@10"]) for r in logged if "valid/ndcg@10" in r and "step" in r]
  values = [v for _, v in curve]
  best = curve[int(np.argmax(values))][0]  # np.argmax: the first of equal values
  # Early stopping: two validations without improvement after the best, far before step 2000.
  assert out["step"] == curve[-1][0] == best + 2 * 40 < 2000
  assert [s for s, _ in curve] == list(range(40, out["step"] + 1, 40))
  with open(os.path.join(out["results_dir"], "test_metrics.json")) as f:
    test = json.load(f)
  chosen = test["selection"]
  assert test["checkpoint_step"] == out["checkpoint_step"] == chosen["step"] == best
  assert chosen["metric"] == "ndcg@10" and chosen["stopped_early"] and chosen["validated_users"] == 300
  assert chosen["curve"] == [[s, pytest.approx(v)] for s, v in curve]
  assert chosen["value"] == pytest.approx(max(values))
  # The selected checkpoint and the newest are on disk (keep_checkpoints=1 keeps the newest only).
  assert sorted(int(d) for d in os.listdir(os.path.join(out["model_dir"], "checkpoints")) if d.isdigit()) == [
      best, out["step"]]
  # Test was evaluated on the selected checkpoint: an independent evaluation of it gives the same numbers.
  num_items = c.data.synthetic.num_items
  prepared, _ = dataset.load_or_prepare(c.data, str(tmp_path), pipeline.min_seq_length(c))
  _, splits = pipeline.task_splits(c.task, prepared.sequences)
  import jax
  ev = evaluate.Evaluator(splits["test"], prepared.vocab, eval_config=c.eval, max_seq_length=c.model.max_seq_length,
                          devices=jax.local_devices(), seed=c.seed)
  c.model.read_last = "mask"
  scorer = evaluate.model_scorer(model_lib.from_config(c.model, num_items))
  mine = ev.metrics(scorer, _restore(c, out["model_dir"], best, num_items))
  assert mine["ndcg@10"] == pytest.approx(test["metrics"]["bert4rec"]["ndcg@10"], abs=1e-6)
  last = ev.metrics(scorer, _restore(c, out["model_dir"], out["step"], num_items))
  assert last["ndcg@10"] != mine["ndcg@10"]  # the test can tell the two checkpoints apart
  # A rerun has nothing to train (it stopped early, not short of its steps) and evaluates the same checkpoint.
  again = pipeline.run(c, str(tmp_path), mode="all")
  assert again["step"] == out["step"] and again["test_metrics"] == out["test_metrics"]
  # Evaluating a trained model, and task=test on its training file, use the selected checkpoint too.
  ev_only = pipeline.run(c, str(tmp_path), mode="evaluate")
  assert ev_only["checkpoint_step"] == best and ev_only["selection"]["step"] == best
  # A damaged selected checkpoint: evaluation refuses (another step's numbers would pass for the
  # model's), writes nothing and moves nothing.
  results = {f: open(os.path.join(out["results_dir"], f), "rb").read() for f in sorted(os.listdir(out["results_dir"]))
             if os.path.isfile(os.path.join(out["results_dir"], f))}
  for root, _, files in os.walk(os.path.join(out["model_dir"], "checkpoints", str(best))):
    for name in files:
      with open(os.path.join(root, name), "r+b") as f:
        f.truncate(f.seek(0, 2) // 2)
  for mode in ("evaluate", "all"):
    with pytest.raises(MissingError, match=rf"the selected checkpoint \(step {best}\) cannot be restored \(damaged, or "
                       r"unreadable by these library versions\), and no other step's results pass for the model's"):
      pipeline.run(c, str(tmp_path), mode=mode)
  assert results == {f: open(os.path.join(out["results_dir"], f), "rb").read() for f in results}
  assert os.path.isdir(os.path.join(out["model_dir"], "checkpoints", str(best)))
  # The way out the error names (the selected step is not the newest): trained anew after the
  # user removed the folders, the same model and numbers (training is deterministic).
  shutil.rmtree(out["model_dir"])
  shutil.rmtree(out["results_dir"])
  anew = pipeline.run(c, str(tmp_path), mode="all")
  assert anew["checkpoint_step"] == best and anew["test_metrics"] == out["test_metrics"]


def test_the_recorded_training_seconds_hold_the_validation_they_record(tiny_config, tmp_path, monkeypatch):
  """A checkpoint's record of training seconds ends after the validation of its step, whose
  seconds its validation record holds: validation's share is of the same seconds (the record used
  to end before that validation, reading the share high, above 1 where validation dominates).
  Each validation here takes 1000 s on training's clock."""
  import time
  import types
  clock = {"ahead": 0.0}
  monkeypatch.setattr(trainer, "time", types.SimpleNamespace(perf_counter=lambda: time.perf_counter() + clock["ahead"]))
  real_metrics = evaluate.Evaluator.metrics

  def slow_metrics(self, *args, **kwargs):
    out = real_metrics(self, *args, **kwargs)
    clock["ahead"] += 1000.0
    return out
  monkeypatch.setattr(evaluate.Evaluator, "metrics", slow_metrics)
  c = _config(tiny_config, num_train_steps=4, eval_every_steps=2, patience=0)
  out = pipeline.run(c, str(tmp_path), mode="train")
  timing = model_store.training_time(out["model_dir"])
  assert timing["step"] == 4 and 2000 <= timing["validation_seconds"] < 2100
  assert timing["validation_seconds"] < timing["seconds"] < timing["validation_seconds"] + 600
  assert 0.8 < timing["validation_share"] < 1


def test_resuming_keeps_the_same_selection(tiny_config, tmp_path):
  """Killed between validations, and killed after a validation was recorded but before its
  checkpoint was saved: the resumed run selects the same step and reports the same test numbers."""
  c = _config(tiny_config, patience=3)
  straight = pipeline.run(c, str(tmp_path / "straight"), mode="all")
  first = pipeline.run(c, str(tmp_path / "resumed"), mode="all", stop_at=100)
  assert first["step"] == 100 and "test_metrics" not in first
  # The curve file is written before the checkpoint of its step: a kill in between leaves an entry
  # (here an unbeatable one) for a step that has no checkpoint; the resumed run must forget it.
  path = os.path.join(first["model_dir"], selection.SELECTION_FILE)
  with open(path) as f:
    record = json.load(f)
  assert [e["step"] for e in record["curve"]] == [40, 80]
  record["curve"].append({"step": 120, "value": 2.0, "metrics": {"ndcg@10": 2.0}})
  with open(path, "w") as f:
    json.dump(record, f)
  before = model_store.training_time(first["model_dir"])
  assert before["step"] == 100 and 0 < before["validation_seconds"] < before["seconds"]
  resumed = pipeline.run(c, str(tmp_path / "resumed"), mode="all")
  assert resumed["step"] == straight["step"] and resumed["checkpoint_step"] == straight["checkpoint_step"]
  assert resumed["selection"] == straight["selection"]
  # What training cost, summed over both invocations: periodic validation's part of it too.
  timing = resumed["training_time"]
  assert timing["step"] == resumed["step"] and timing["seconds"] > before["seconds"]
  assert before["validation_seconds"] < timing["validation_seconds"] < timing["seconds"]
  assert timing["validation_share"] == pytest.approx(timing["validation_seconds"] / timing["seconds"], abs=1e-4)
  with open(os.path.join(resumed["results_dir"], "test_metrics.json")) as f:
    assert json.load(f)["training_time"] == timing
  # A model trained before validation was timed: its share is unknown, never counted as zero.
  os.remove(os.path.join(straight["model_dir"], model_store.VALID_TIME_FILE))
  old = pipeline.run(c, str(tmp_path / "straight"), mode="evaluate")
  assert old["training_time"]["seconds"] > 0 and old["training_time"]["validation_seconds"] is None
  assert old["training_time"]["validation_share"] is None
  for split in ("valid_metrics", "test_metrics"):
    for k, v in straight[split]["bert4rec"].items():
      assert resumed[split]["bert4rec"][k] == pytest.approx(v, abs=1e-6), (split, k)
  # A damaged selection record: no other checkpoint passes for the selected one, in any reader.
  with open(os.path.join(straight["model_dir"], selection.SELECTION_FILE), "w") as f:
    f.write("{")
  from bert4rec_jax import Recommender
  with pytest.raises(DataError, match="selection.json cannot be read"):
    Recommender.load(straight["model_dir"])
  with pytest.raises(DataError, match="selection.json cannot be read"):
    pipeline.run(c, str(tmp_path / "straight"), mode="train")


def test_a_resume_that_would_validate_otherwise_is_refused(tiny_config, tmp_path, caplog):
  """Without early stopping the validated users and the reading of the history are not part of the
  model (they do not change its weights), but they set the scale of its validation curve: a resume
  that changes one is refused in one line, nothing moved; with the settings back it resumes."""
  c = _config(tiny_config, patience=0)
  c.train.num_train_steps = 160
  workdir = str(tmp_path)
  first = pipeline.run(c, workdir, mode="train", stop_at=100)
  path = os.path.join(first["model_dir"], selection.SELECTION_FILE)
  with open(path) as f:
    recorded = f.read()
  assert json.loads(recorded)["validated_users"] == 300 and json.loads(recorded)["read_last"] == "mask"
  for field, value, shown in (("eval.max_valid_users", 200, "users validated (eval.max_valid_users): 300 -> 200"),
                              ("model.read_last", "causal", "model.read_last: mask -> causal")):
    other = c.copy_and_resolve_references()
    section, name = field.split(".")
    other[section][name] = value
    with pytest.raises(ConfigError, match=re.escape(shown) + ".*resume with the settings it validated with") as e:
      pipeline.run(other, workdir, mode="train")
    assert "\n" not in str(e.value)
    with open(path) as f:
      assert f.read() == recorded
  resumed = pipeline.run(c, workdir, mode="all")
  assert resumed["step"] == 160 and [s for s, _ in resumed["selection"]["curve"]] == [40, 80, 120, 160]
  # Finished: nothing is trained or validated on, so other settings evaluate it as it is.
  other = c.copy_and_resolve_references()
  other.eval.max_valid_users = 200
  import logging
  with caplog.at_level(logging.WARNING):
    again = pipeline.run(other, workdir, mode="all")
  assert again["step"] == 160 and again["checkpoint_step"] == resumed["checkpoint_step"]
  # ... and says so: the choice was made under the settings it validated with, not these.
  assert "300 -> 200" in caplog.text and "its checkpoint is the one selected as it validated" in caplog.text
  assert again["selection"]["validated_users"] == 300


def test_without_a_validation_split_the_last_checkpoint_is_used(tiny_config, tmp_path):
  c = tiny_config
  c.task, c.train.num_train_steps = "train_test", 60
  out = pipeline.run(c, str(tmp_path), mode="all")
  assert out["checkpoint_step"] == 60 and "selection" not in out
  assert not os.path.exists(os.path.join(out["model_dir"], selection.SELECTION_FILE))
  c.train.patience = 2
  with pytest.raises(ConfigError, match="train_test' has no validation split"):
    pipeline.run(c, str(tmp_path), mode="all")


def test_select_metric_off_evaluates_the_last_checkpoint(tiny_config, tmp_path):
  c = tiny_config
  c.train.num_train_steps, c.train.select_metric = 120, ""
  out = pipeline.run(c, str(tmp_path), mode="all")
  assert out["checkpoint_step"] == 120 and "selection" not in out


def test_schedule_in_epochs(tiny_config, tmp_path):
  c = tiny_config
  c.train.num_epochs, c.train.num_warmup_epochs, c.train.eval_every_epochs = 1.5, 0.25, 0.5
  c.train.num_train_steps = 99_999  # replaced by the epochs
  out = pipeline.run(c, str(tmp_path), mode="train")
  prepared, _ = dataset.load_or_prepare(c.data, str(tmp_path), pipeline.min_seq_length(c))
  train_seqs, _ = pipeline.task_splits(c.task, prepared.sequences)
  from bert4rec_jax import input_pipeline
  per_epoch = input_pipeline.make_stream(c, train_seqs).num_examples / c.train.batch_size
  assert out["step"] == out["num_train_steps"] == math.ceil(1.5 * per_epoch)  # the resolved count (a sweep's message)
  assert c.train.num_train_steps == 99_999  # the caller's config is left as it was
  assert out["model_name"].startswith("bert4rec_hs32_msl16_mpps4_ne1.5_lr0.01_")
  with open(os.path.join(out["model_dir"], "config.json")) as f:
    saved = json.load(f)["config"]["train"]
  assert saved["num_train_steps"] == out["step"] and saved["num_warmup_steps"] == round(0.25 * per_epoch)
  assert saved["eval_every_steps"] == round(0.5 * per_epoch)
  with open(os.path.join(out["model_dir"], "metrics.jsonl")) as f:
    steps = [r["step"] for r in map(json.loads, f) if "valid/ndcg@10" in r and "step" in r]
  assert steps == [s for s in range(1, out["step"] + 1) if s % saved["eval_every_steps"] == 0] + (
      [] if out["step"] % saved["eval_every_steps"] == 0 else [out["step"]])
  # The step counts a schedule in epochs replaces are not part of the model: the same run resumes.
  c.train.num_train_steps = 5
  assert pipeline.run(c, str(tmp_path), mode="train")["step"] == out["step"]


def test_the_time_bound_ends_training_for_good_and_is_not_in_the_name(tiny_config, tmp_path, caplog):
  """train.max_training_minutes (the recipe's bound on any machine): counted over the invocations
  that made the model, it ends training like early stopping (the step it ends at validated, the
  best checkpoint evaluated, a rerun trains no more), and raising it trains the same model on."""
  import logging
  c = _config(tiny_config, patience=0)
  c.train.checkpoint_every_steps = 20
  # A first invocation stopped short (as a kill would), then one bounded a little above what the
  # first spent (compiling alone takes seconds): the bound counts both.
  first = pipeline.run(c, str(tmp_path), mode="train", stop_at=20)
  assert not first["finished"] and first["step"] == 20
  bound_s = model_store.training_seconds(first["model_dir"], 20) + 5
  c.train.max_training_minutes = bound_s / 60
  out = pipeline.run(c, str(tmp_path), mode="all")
  assert out["finished"] and 20 < out["step"] < 2000
  spent = model_store.training_seconds(out["model_dir"], out["step"])
  assert bound_s <= spent < bound_s + 30
  chosen = out["selection"]
  assert chosen["curve"][-1][0] == out["step"]  # the step it ended at was validated
  assert out["checkpoint_step"] == chosen["step"] and not chosen["stopped_early"]
  # A rerun has nothing to train, and nothing reads the model as partly trained.
  caplog.set_level(logging.INFO)
  again = pipeline.run(c, str(tmp_path), mode="all")
  assert again["step"] == out["step"] and again["test_metrics"] == out["test_metrics"]
  assert "train.max_training_minutes" in caplog.text and "partly trained" not in caplog.text
  # Not part of the model's identity: a larger bound (or none) is the same model, trained on.
  c.train.max_training_minutes = 0
  more = pipeline.run(c, str(tmp_path), mode="train", stop_at=out["step"] + 10)
  assert more["model_name"] == out["model_name"] and more["step"] == out["step"] + 10


class _Clock:
  """A training clock that moves only where the test says: each validation takes 100 s, anything
  else a microsecond a reading (so a time bound falls inside a validation, deterministically)."""

  def __init__(self):
    self.now = 0.0

  def perf_counter(self):
    self.now += 1e-6
    return self.now


def test_the_time_bound_spent_by_a_validation_ends_there_and_a_resume_agrees(tiny_config, tmp_path, monkeypatch):
  """A validation that spends the bound ends training at its step (validated), and that step's
  checkpoint records the time that decided it: steps before it record less than the bound, so a run
  killed anywhere and resumed ends at the same step, with the same selection and test numbers."""
  clock = _Clock()
  monkeypatch.setattr(trainer, "time", clock)
  metrics = evaluate.Evaluator.metrics

  def slow_metrics(self, *args, **kwargs):
    clock.now += 100.0
    return metrics(self, *args, **kwargs)

  monkeypatch.setattr(evaluate.Evaluator, "metrics", slow_metrics)
  c = _config(tiny_config, patience=0)
  c.train.max_training_minutes = 250 / 60  # the third validation (step 120) reaches it
  straight = pipeline.run(c, str(tmp_path / "straight"), mode="all")
  assert straight["finished"] and straight["step"] == 120
  assert straight["selection"]["curve"][-1][0] == 120  # the step it ended at was validated
  with open(os.path.join(straight["model_dir"], model_store.TRAIN_TIME_FILE)) as f:
    recorded = {int(k): v for k, v in json.load(f).items()}
  assert sorted(recorded) == [40, 80, 120]
  assert recorded[40] < recorded[80] < 250 <= recorded[120]
  assert straight["training_time"]["step"] == 120 and straight["training_time"]["seconds"] == recorded[120]
  for stop_at in (60, 80, 120):  # killed between validations, at one, at the last
    workdir = str(tmp_path / f"stopped_{stop_at}")
    first = pipeline.run(c, workdir, mode="train", stop_at=stop_at)
    assert first["step"] == stop_at and first["finished"] == (stop_at == 120)
    resumed = pipeline.run(c, workdir, mode="all")
    assert resumed["step"] == 120 and resumed["selection"] == straight["selection"], stop_at
    assert resumed["test_metrics"] == straight["test_metrics"]


def test_a_record_written_before_its_checkpoint_is_not_the_models_time(tiny_config, tmp_path):
  """A step's time is recorded just before its checkpoint is saved: a kill in between leaves a record
  for a step with no checkpoint. The model's training time is that of its newest checkpoint, and a
  resumed run forgets the record."""
  c = _config(tiny_config, patience=0)
  c.train.num_train_steps = 120
  first = pipeline.run(c, str(tmp_path), mode="train", stop_at=80)
  path = os.path.join(first["model_dir"], model_store.TRAIN_TIME_FILE)
  with open(path) as f:
    record = json.load(f)
  record["100"] = 1e6  # the kill's leftover: no checkpoint 100 on disk
  with open(path, "w") as f:
    json.dump(record, f)
  assert model_store.training_time(first["model_dir"])["step"] == 80
  assert model_store.training_seconds(first["model_dir"], 80) == record["80"]
  out = pipeline.run(c, str(tmp_path), mode="all")
  with open(path) as f:
    after = {int(k): v for k, v in json.load(f).items()}
  assert sorted(after) == [40, 80, 120] and after[120] < 1e6
  assert out["training_time"]["step"] == 120 and out["training_time"]["seconds"] == after[120]
