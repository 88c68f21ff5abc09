"""Faults: signals checkpoint and stop cleanly; a damaged newest checkpoint is skipped for the one
before it; a model folder is never resumed, evaluated or overwritten under another config or
data, read-only modes write nothing under models/, two runs of one model never interleave, what a
killed run left is cleaned, and disk problems are one line."""
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pandas as pd
import pytest

from bert4rec_jax import io_utils, pipeline
from bert4rec_jax.errors import ConfigError, DataError, MissingError
from tests.conftest import REPO, xla_flags


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
                            env=dict(os.environ, XLA_FLAGS=xla_flags(1)))
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
                         text=True, env=dict(os.environ, XLA_FLAGS=xla_flags(1)))
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


def test_checkpoints_without_checksums_move_aside_only_once_an_older_one_restores(tiny_config, tmp_path, monkeypatch):
  """A checkpoint saved by a run killed before it recorded its checksums carries none: when it does
  not load, its files or the library reading them may be at fault. It is moved aside only once an
  older checkpoint restores (the library reads that one); when none does (a library that cannot
  read any), training stops in one line and moves nothing, where it used to move every checkpoint
  aside and train the model again from scratch."""
  import orbax.checkpoint as ocp
  from bert4rec_jax import model_store
  c = tiny_config
  c.train.eval_every_steps, c.train.checkpoint_every_steps, c.train.keep_checkpoints = 0, 10, 2
  c.train.num_train_steps = 30
  for name in ("damaged", "unreadable"):
    out = pipeline.run(c, str(tmp_path / name), mode="train", stop_at=20)
    assert checkpoint_steps(out["model_dir"]) == [10, 20]
    os.remove(os.path.join(out["model_dir"], model_store.CHECKSUMS_FILE))

  model = str(tmp_path / "unreadable" / "models" / os.path.basename(out["model_dir"]))
  before = snapshot(model)
  real_restore = ocp.CheckpointManager.restore

  def unreadable(self, *args, **kwargs):
    raise ValueError("checkpoint format 9 is newer than this library reads")
  monkeypatch.setattr(ocp.CheckpointManager, "restore", unreadable)
  with pytest.raises(MissingError, match=r"checkpoints: no checkpoint restores, and the one\(s\) without "
                     r"checksums \(step\(s\) 20, 10\) could be damaged or unreadable by these libraries, so they were "
                     r"not moved\. Step 20: ValueError: checkpoint format 9 is newer than this library reads\. It was "
                     r"made with the installed library versions") as e:
    pipeline.run(c, str(tmp_path / "unreadable"), mode="train")
  assert "\n" not in str(e.value) and snapshot(model) == before
  # Made with other versions (as config.json records them): the line names them.
  saved = io_utils.read_json(os.path.join(model, "config.json"))
  saved["versions"]["orbax-checkpoint"] = "0.1.0"
  io_utils.write_json(os.path.join(model, "config.json"), saved)
  before = snapshot(model)
  with pytest.raises(MissingError, match=r"It was made with orbax-checkpoint 0\.1\.0 \(installed: [0-9.]+\): install"):
    pipeline.run(c, str(tmp_path / "unreadable"), mode="train")
  assert snapshot(model) == before and not os.path.exists(os.path.join(model, "damaged_checkpoints"))
  # Step 10 failing the checksums recorded for it is damage, proven: moved (and said so); 20 stays.
  io_utils.write_json(os.path.join(model, model_store.CHECKSUMS_FILE), {"10": {"no_such_file": "0" * 64}})
  with pytest.raises(MissingError, match=r"\(step\(s\) 20\) could be .* not moved; those failing their checksums "
                                         r"were moved to damaged_checkpoints/ \(steps 10\)\. Step 20: ValueError"):
    pipeline.run(c, str(tmp_path / "unreadable"), mode="train")
  assert checkpoint_steps(model) == [20] and os.listdir(os.path.join(model, "damaged_checkpoints"))[0].startswith("10-")
  monkeypatch.setattr(ocp.CheckpointManager, "restore", real_restore)
  assert pipeline.run(c, str(tmp_path / "unreadable"), mode="train")["step"] == 30  # the library reads it again

  model = str(tmp_path / "damaged" / "models" / os.path.basename(out["model_dir"]))
  for root, _, files in os.walk(os.path.join(model, "checkpoints", "20")):
    for name in files:
      with open(os.path.join(root, name), "r+b") as f:
        f.truncate(f.seek(0, 2) // 2)
  out = pipeline.run(c, str(tmp_path / "damaged"), mode="train")
  assert out["step"] == 30  # resumed from 10, which restores: step 20's files were at fault
  (aside,) = os.listdir(os.path.join(model, "damaged_checkpoints"))
  assert aside.startswith("20-")



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
from bert4rec_jax import stop_signals
stop_signals.StopSignals.REPEAT_SECONDS = 0.5
with stop_signals.StopSignals() as stop:
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


# --- What is on disk is the user's: model identity, read-only modes, locks, leftovers, disks ---

@pytest.fixture(scope="module")
def named(tmp_path_factory):
  """A tiny model trained under an explicit name (as dvc.yaml names it) from a CSV file, evaluated
  and predicted; tests work on copies of its workdir."""
  from bert4rec_jax import synthetic as gen
  from configs import synthetic
  c = synthetic.get_config("tiny")
  c.train.num_train_steps, c.train.checkpoint_every_steps, c.train.eval_every_steps = 20, 10, 0
  c.model_name = "m"
  root = tmp_path_factory.mktemp("named")
  gen.generate(seed=0, **c.data.synthetic.to_dict()).to_csv(root / "rows.csv", index=False)
  c.data.format, c.data.path = "csv", str(root / "rows.csv")
  out = pipeline.run(c, str(root / "work"), mode="all")
  return c, root, out


def copy_of(named, tmp_path):
  """(config, workdir) of a copy of the named model's workdir and data file."""
  c, root, _ = named
  shutil.copytree(root / "work", tmp_path / "work")
  shutil.copy(root / "rows.csv", tmp_path / "rows.csv")
  c = c.copy_and_resolve_references()
  c.data.path = str(tmp_path / "rows.csv")
  return c, str(tmp_path / "work")


def snapshot(folder):
  """{path: (size, mtime, sha256)} of every file under `folder`."""
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      p = os.path.join(root, name)
      with open(p, "rb") as f:
        out[os.path.relpath(p, folder)] = (os.path.getsize(p), os.stat(p).st_mtime_ns,
                                           hashlib.sha256(f.read()).hexdigest())
  return out


def on_disk(workdir):
  return {k: snapshot(os.path.join(workdir, k)) for k in ("models", "results")}


@pytest.mark.parametrize("field,value,shown", [
    ("model.hidden_size", 16, "model.hidden_size: 32 -> 16"),
    ("train.learning_rate", 0.02, "train.learning_rate: 0.01 -> 0.02"),
    ("model.hidden_dropout_prob", 0.3, "model.hidden_dropout_prob: 0.1 -> 0.3"),
    ("masking.mode", "static", "masking.mode: 'dynamic' -> 'static'"),
])
def test_another_config_under_the_same_name_stops_before_any_work(named, tmp_path, field, value, shown):
  c, workdir = copy_of(named, tmp_path)
  section, name = field.split(".")
  c[section][name] = value
  before = on_disk(workdir)
  for mode in ("train", "all", "evaluate", "predict"):
    with pytest.raises(ConfigError, match="models/m was made by another config or data: .*" + re.escape(shown)) as e:
      pipeline.run(c, workdir, mode=mode)
    assert ("--config.train.overwrite=True" in str(e.value)) == (mode in ("train", "all"))
    assert "\n" not in str(e.value)
  assert on_disk(workdir) == before  # nothing moved aside, resumed, retrained or rewritten


def test_a_changed_data_file_under_the_same_name_stops_before_any_work(named, tmp_path):
  c, workdir = copy_of(named, tmp_path)
  rows = pd.read_csv(c.data.path)
  rows.loc[rows.index[:40], "item"] = rows["item"].iloc[0]  # other item frequencies, same users
  rows.to_csv(c.data.path, index=False)
  before = on_disk(workdir)
  for mode in ("train", "evaluate", "predict", "all"):
    with pytest.raises(ConfigError, match="models/m was made by another config or data: the input file or its data"):
      pipeline.run(c, workdir, mode=mode)
  assert on_disk(workdir) == before
  assert not os.path.exists(os.path.join(workdir, "models", "m", "damaged_checkpoints"))


def test_a_data_file_written_while_it_is_read_is_refused(named, tmp_path, monkeypatch):
  """The prepared data's folder (and the model's name) come from the file's bytes before it is
  read: rows appended between that hash and the read would be saved under the old bytes' name and
  reused for them. Refused in one line, nothing prepared; once the file is still, it trains."""
  from bert4rec_jax import dataset, sources
  c, workdir = copy_of(named, tmp_path)
  c.model_name, c.train.num_train_steps = "fresh", 2
  real_read = sources.read_interactions

  def read_then_append(data_config, *args, **kwargs):
    rows = real_read(data_config, *args, **kwargs)
    with open(data_config.path, "a") as f:
      f.write("user_new,item_new\n")
    return rows

  workdir = str(tmp_path / "other_work")  # nothing prepared yet
  monkeypatch.setattr(sources, "read_interactions", read_then_append)
  with pytest.raises(DataError, match=r"rows.csv: the file changed while it was being read; run again") as e:
    pipeline.run(c, workdir, mode="train")
  assert "\n" not in str(e.value)
  processed = os.path.join(workdir, "data", "processed")
  assert not os.path.isdir(processed) or not [n for n in os.listdir(processed) if not n.startswith(".")]
  monkeypatch.setattr(sources, "read_interactions", real_read)
  out = pipeline.run(c, workdir, mode="train")
  assert out["step"] == 2
  assert dataset.fingerprint(out["data_dir"]) == dataset.fingerprint(dataset.load(out["data_dir"]))


def test_overwrite_replaces_the_model_and_its_results(named, tmp_path):
  c, workdir = copy_of(named, tmp_path)
  c.model.hidden_size, c.train.num_train_steps, c.train.overwrite = 16, 10, True
  out = pipeline.run(c, workdir, mode="all")
  model = os.path.join(workdir, "models", "m")
  assert out["step"] == 10 and not os.path.exists(os.path.join(model, "damaged_checkpoints"))
  assert checkpoint_steps(model) == [10]
  with open(os.path.join(model, "config.json")) as f:
    assert json.load(f)["config"]["model"]["hidden_size"] == 16  # describes the weights it holds
  with open(os.path.join(model, "identity.json")) as f:
    assert json.load(f)["identity"]["model.hidden_size"] == 16
  with open(os.path.join(out["results_dir"], "test_metrics.json")) as f:
    assert json.load(f)["checkpoint_step"] == 10
  c.train.overwrite = False  # the same config now resumes (nothing to train) without consent
  assert pipeline.run(c, workdir, mode="train")["step"] == 10


def test_an_overwrite_stopped_while_removing_leaves_whole_folders_or_none(named, tmp_path, monkeypatch):
  """A kill while the old model and its results are being deleted: under their names there is each
  folder whole (the old model's, refused as before) or nothing, never some of the old results
  beside a folder that made none of them; the next run with the overwrite removes what the
  stopped one left and trains the new model."""
  c, workdir = copy_of(named, tmp_path)
  c.model.hidden_size, c.train.num_train_steps, c.train.overwrite = 16, 10, True
  real_rmtree = shutil.rmtree

  def stopped(path, *args, **kwargs):
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs)
    os.remove(files[len(files) // 2])  # some files are gone when the kill comes
    raise KeyboardInterrupt

  # The stopped runs' process is this one, alive: its temporaries count as a stopped run's.
  monkeypatch.setattr(io_utils, "_alive", lambda host, pid: pid != os.getpid())
  for parent in ("results", "models"):  # stopped in the results' removal, then in the model folder's
    def rmtree(p, *args, parent=parent, **kwargs):
      where = os.path.basename(os.path.dirname(os.path.abspath(p)))
      return stopped(p) if where == parent and p.endswith("-removed") else real_rmtree(p, *args, **kwargs)
    monkeypatch.setattr(io_utils.shutil, "rmtree", rmtree)
    with pytest.raises(KeyboardInterrupt):
      pipeline.run(c, workdir, mode="all")
    monkeypatch.setattr(io_utils.shutil, "rmtree", real_rmtree)
    results, model = os.path.join(workdir, "results", "m"), os.path.join(workdir, "models", "m")
    assert not os.path.exists(results)
    assert os.path.exists(model) == (parent == "results")
    if parent == "results":  # the old model, whole: refused without the overwrite, as before
      c.train.overwrite = False
      with pytest.raises(ConfigError, match="models/m was made by another config or data"):
        pipeline.run(c, workdir, mode="train")
      c.train.overwrite = True
  assert any(n.startswith(io_utils.TMP_PREFIX) for n in os.listdir(os.path.join(workdir, "models")))
  out = pipeline.run(c, workdir, mode="all")
  assert out["step"] == 10
  for parent in ("models", "results"):  # what the stopped runs were removing is gone
    assert os.listdir(os.path.join(workdir, parent)) == ["m"]
  with open(os.path.join(out["results_dir"], "test_metrics.json")) as f:
    assert json.load(f)["checkpoint_step"] == 10


def test_speed_and_logging_switches_keep_the_same_model(named, tmp_path):
  c, workdir = copy_of(named, tmp_path)
  c.train.donate_buffers, c.train.compact_targets, c.train.log_every_steps, c.train.prefetch = False, False, 7, 0
  c.wandb.name, c.eval.max_valid_users = "other", 10
  before = snapshot(os.path.join(workdir, "models"))
  assert pipeline.run(c, workdir, mode="train")["step"] == 20  # already trained: nothing to do
  assert snapshot(os.path.join(workdir, "models")) == before


def test_read_only_modes_never_write_under_models(named, tmp_path, caplog):
  """evaluate, predict, test and inference read the model and write nothing under models/, not
  even to move a damaged checkpoint aside; when the model's checkpoint is damaged they refuse in
  one line (no other step's numbers pass for the model's) and write nothing under results/
  either; training then moves it aside and trains it again, and they work."""
  c, workdir = copy_of(named, tmp_path)
  model = os.path.join(workdir, "models", "m")
  for root, _, files in os.walk(os.path.join(model, "checkpoints", "20")):
    for name in files:
      with open(os.path.join(root, name), "r+b") as f:
        f.truncate(f.seek(0, 2) // 2)
  before = snapshot(os.path.join(workdir, "models")), snapshot(os.path.join(workdir, "results"))
  refused = (r"the (selected|newest) checkpoint \(step 20\) cannot be restored \(damaged, or unreadable by these "
             r"library versions\), and no other step's results pass")
  for mode in ("evaluate", "predict"):
    with pytest.raises(MissingError, match=refused):
      pipeline.run(c, workdir, mode=mode)
  for task in ("test", "inference"):
    t = c.copy_and_resolve_references()
    t.task = task
    with pytest.raises(MissingError, match=refused):
      pipeline.run(t, workdir, mode="all")
  assert (snapshot(os.path.join(workdir, "models")), snapshot(os.path.join(workdir, "results"))) == before
  out = pipeline.run(c, workdir, mode="train")  # a writable run moves the damaged one aside and retrains it
  assert out["step"] == 20 and len(os.listdir(os.path.join(model, "damaged_checkpoints"))) == 1
  out = pipeline.run(c, workdir, mode="evaluate")
  assert out["checkpoint_step"] == 20 and out["test_metrics"] == named[2]["test_metrics"]


def test_a_flipped_byte_in_a_checkpoint_fails_its_checksum(named, tmp_path, caplog):
  """Damage that leaves every file readable and of the same size is caught by the checksums
  recorded when the checkpoint was saved: evaluation refuses it (no other step passes for the model)."""
  c, workdir = copy_of(named, tmp_path)
  step_dir = os.path.join(workdir, "models", "m", "checkpoints", "20")
  largest = max((os.path.join(r, f) for r, _, fs in os.walk(step_dir) for f in fs), key=os.path.getsize)
  with open(largest, "r+b") as f:
    f.seek(os.path.getsize(largest) // 2)
    byte = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([byte[0] ^ 0x10]))
  with caplog.at_level(logging.WARNING), pytest.raises(MissingError, match=r"checkpoint \(step 20\) cannot be restored"):
    pipeline.run(c, workdir, mode="evaluate")
  assert "fails its checksum" in caplog.text


def test_a_checkpoint_of_another_shape_is_a_config_error_not_corruption(named, tmp_path):
  from bert4rec_jax import model_store, trainer
  c, workdir = copy_of(named, tmp_path)
  folder = model_store.Folder(os.path.join(workdir, "models", "m"))
  other = c.copy_and_resolve_references()
  other.model.hidden_size = 16
  before = snapshot(folder.path)
  manager = model_store.checkpoint_manager(folder, keep=2)
  try:
    with pytest.raises(ConfigError, match=r"holds parameters of another model \(.*: \(2, 16\) saved, \(2, 8\) in this config\)"):
      model_store.restore_latest(manager, trainer.create_state(other, c.data.synthetic.num_items))
  finally:
    manager.close()
  assert snapshot(folder.path) == before


def test_a_second_run_of_the_same_model_refuses_while_the_first_holds_it(named, tmp_path):
  from bert4rec_jax import io_utils
  from bert4rec_jax.errors import InUseError
  c, workdir = copy_of(named, tmp_path)
  c.train.num_train_steps = 30  # another model: the refusal must come from the lock, before the identity check
  c.model_name = "m"
  before = on_disk(workdir)
  with io_utils.lock(os.path.join(workdir, "locks", "m.lock"), "model m"):
    for mode in ("train", "all", "evaluate", "predict"):
      with pytest.raises(InUseError, match=f"model m .* is in use by the run of pid {os.getpid()}"):
        pipeline.run(c, workdir, mode=mode)
  assert on_disk(workdir) == before  # metrics.jsonl never gets a second run's lines
  # Readers share: test and inference run beside each other, but not beside a run that writes.
  inference = c.copy_and_resolve_references()
  inference.task, inference.train.num_train_steps = "inference", 20
  with io_utils.lock(os.path.join(workdir, "locks", "m.lock"), "model m", shared=True):
    pipeline.run(inference, workdir, mode="all")  # takes its own shared lock beside this one
    with pytest.raises(InUseError, match="in use by a run that reads it \\(test or inference\\)"):
      pipeline.run(c, workdir, mode="train")
  with io_utils.lock(os.path.join(workdir, "locks", "m.lock"), "model m"):
    with pytest.raises(InUseError, match="model m is in use by the run of pid"):
      pipeline.run(inference, workdir, mode="all")


def test_a_baseline_never_takes_a_trained_models_name(named, tmp_path):
  c, workdir = copy_of(named, tmp_path)
  c.model.kind = "most_popular"
  before = on_disk(workdir)
  for mode in ("all", "evaluate"):
    with pytest.raises(ConfigError, match="models/m holds a trained model: a most_popular baseline needs another"):
      pipeline.run(c, workdir, mode=mode)
  assert on_disk(workdir) == before


def test_results_from_before_settings_were_recorded_are_never_overwritten(named, tmp_path):
  c, workdir = copy_of(named, tmp_path)
  root = os.path.join(workdir, "results", "m")
  os.remove(os.path.join(root, "settings.json"))  # as a version that kept none left them
  before = snapshot(root)
  out = pipeline.run(c, workdir, mode="evaluate")
  assert os.path.dirname(out["results_dir"]) == root
  assert {k: v for k, v in snapshot(root).items() if os.sep not in k} == before


def test_a_run_stopped_before_its_outputs_claims_no_settings_for_them(tiny_config, tmp_path, monkeypatch):
  """settings.json says which settings made the outputs beside it: a run stopped in training, or
  whose checkpoint fails to load, made none, so the next run's outputs (other settings) go there."""
  import orbax.checkpoint as ocp
  c = tiny_config
  c.train.num_train_steps, c.train.eval_every_steps, c.train.checkpoint_every_steps = 30, 0, 10
  workdir = str(tmp_path)
  out = pipeline.run(c, workdir, mode="all", stop_at=10)
  assert out["step"] == 10 and not out["finished"]
  root = os.path.join(workdir, "results", out["model_name"])
  assert not os.path.exists(os.path.join(root, "settings.json"))
  original = ocp.CheckpointManager.restore

  def no_memory(self, *args, **kwargs):
    raise RuntimeError("RESOURCE_EXHAUSTED: device ran out of memory while restoring")
  monkeypatch.setattr(ocp.CheckpointManager, "restore", no_memory)
  with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
    pipeline.run(c, workdir, mode="evaluate")
  assert not os.path.exists(os.path.join(root, "settings.json"))
  monkeypatch.setattr(ocp.CheckpointManager, "restore", original)
  c.eval.ks = (1, 5)  # other settings than the runs above: still the first outputs, so the folder's own
  out = pipeline.run(c, workdir, mode="all")
  assert out["finished"] and out["results_dir"] == root
  assert json.load(open(os.path.join(root, "settings.json")))["eval"]["eval.ks"] == [1, 5]
  assert sorted(f for f in os.listdir(root) if f.endswith("_metrics.json")) == ["test_metrics.json",
                                                                                "valid_metrics.json"]


def test_intact_checkpoints_that_fail_to_restore_stop_the_run_and_stay(named, tmp_path, monkeypatch):
  """Only damaged files move a checkpoint aside: when its files pass their checksums, a failed
  restore (here: no device memory) is the run's problem, raised, and nothing is moved."""
  import orbax.checkpoint as ocp
  c, workdir = copy_of(named, tmp_path)
  before = snapshot(os.path.join(workdir, "models"))

  def no_memory(self, *args, **kwargs):
    raise RuntimeError("RESOURCE_EXHAUSTED: device ran out of memory while restoring")
  monkeypatch.setattr(ocp.CheckpointManager, "restore", no_memory)
  with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
    pipeline.run(c, workdir, mode="train")
  assert snapshot(os.path.join(workdir, "models")) == before


def test_leftovers_of_killed_runs_are_removed_and_live_ones_kept(named, tmp_path):
  import socket
  c, workdir = copy_of(named, tmp_path)
  dead = subprocess.Popen(["true"])
  dead.wait()
  host = socket.gethostname().replace("-", "_")
  places = [os.path.join(workdir, "data", "processed"), os.path.join(workdir, "data"),
            os.path.join(workdir, "results", "m")]
  for p in places:
    os.makedirs(os.path.join(p, f".tmp-{host}-{dead.pid}-dataset-abc"))
    with open(os.path.join(p, f".tmp-{host}-{dead.pid}-predictions.parquet-xyz.tmp"), "w") as f:
      f.write("half")
  alive = os.path.join(places[0], f".tmp-{host}-{os.getpid()}-dataset-live")
  os.makedirs(alive)
  model = os.path.join(workdir, "models", "m")
  with open(os.path.join(model, f".tmp-{host}-{dead.pid}-identity.json-abc.tmp"), "w") as f:
    f.write("{half")
  # A folder holding nothing but a killed run's temporary is a folder to make, not someone else's.
  os.makedirs(os.path.join(workdir, "models", "fresh"))
  with open(os.path.join(workdir, "models", "fresh", f".tmp-{host}-{dead.pid}-identity.json-abc.tmp"), "w") as f:
    f.write("{half")
  from bert4rec_jax import model_store
  assert not model_store.Folder(os.path.join(workdir, "models", "fresh")).exists
  c.data.drop_duplicates = True  # another dataset to prepare
  c.model_name = ""
  pipeline.run(c, workdir, mode="prepare")
  c.model_name = "m"
  c.data.drop_duplicates = False
  pipeline.run(c, workdir, mode="evaluate")
  for p in places:
    assert not [x for x in os.listdir(p) if x.startswith(".tmp-") and str(dead.pid) in x], p
  assert os.path.isdir(alive)  # a running process's temporary is never touched
  assert any(x.startswith(".tmp-") for x in os.listdir(model))  # evaluate writes nothing under models/ ...
  pipeline.run(c, workdir, mode="train")  # ... a training run cleans it
  assert not any(x.startswith(".tmp-") for x in os.listdir(model))


def test_only_temporaries_named_as_earlier_versions_named_them_are_removed_by_age(tmp_path):
  """A temporary of an earlier version (no owner recorded in its name) is removed once a day old;
  a dot-file or folder of the user's that merely looks like one is kept, however old."""
  old = time.time() - 3 * 24 * 3600
  ours = [".tmp-k2j_x9ab", ".buckets-0a1b2c3d", ".predictions.parquet.q7_w2e4r.tmp"]
  users = [".notes.tmp", ".tmp-scratch", ".tmp-cache_folder", ".buckets-of-mine", ".backup.tmp", "x.abcdefgh.tmp",
           ".predictions.parquet.Q7W2E4RX.tmp"]
  for name in ours + users + [".tmp-fresh123"]:
    path = tmp_path / name
    path.mkdir() if name.startswith((".tmp-", ".buckets-")) else path.write_text("mine")
    if name != ".tmp-fresh123":
      os.utime(path, (old, old))
  assert io_utils.clean_leftovers(str(tmp_path)) == len(ours)
  assert sorted(os.listdir(tmp_path)) == sorted(users + [".tmp-fresh123"])  # a day not yet passed: kept too


def test_written_files_have_the_usual_permissions(named):
  _, root, out = named
  umask = os.umask(0)
  os.umask(umask)
  for folder in (out["results_dir"], out["data_dir"], out["model_dir"]):
    for dirpath, dirs, files in os.walk(folder):
      if "checkpoints" in dirpath:
        continue  # Orbax's own
      for name in files:
        assert os.stat(os.path.join(dirpath, name)).st_mode & 0o777 == 0o666 & ~umask, os.path.join(dirpath, name)
  assert os.stat(out["data_dir"]).st_mode & 0o777 == 0o777 & ~umask


def test_task_test_on_the_training_file_gives_the_training_runs_own_test_metrics(named, tmp_path):
  c, root, out = named
  t = c.copy_and_resolve_references()
  t.task = "test"
  t.seed = 5  # the model's own seed draws the sampled protocol's negatives, as in its training run
  res = pipeline.run(t, str(root / "work"), mode="all")
  assert res["test_metrics"]["bert4rec"] == out["test_metrics"]["bert4rec"]


def test_a_damaged_prepared_dataset_is_one_clear_error(named, tmp_path):
  c, workdir = copy_of(named, tmp_path)
  data_dir = os.path.join(workdir, "data", "processed", os.path.basename(named[2]["data_dir"]))
  with open(os.path.join(data_dir, "items.npy"), "r+b") as f:
    f.truncate(f.seek(0, 2) // 2)
  with pytest.raises(DataError, match=re.escape(os.path.join(data_dir, "items.npy")) +
                     ": the prepared dataset is damaged .*; delete " + re.escape(data_dir)):
    pipeline.run(c, workdir, mode="evaluate")


INJECT = """
import builtins, errno, os, sys
root, code = sys.argv[1], getattr(errno, sys.argv[2])
real_open = builtins.open
def failing_open(file, mode="r", *args, **kwargs):
  if isinstance(file, (str, os.PathLike)) and str(file).startswith(root) and any(m in mode for m in "wax+"):
    raise OSError(code, os.strerror(code), str(file))
  return real_open(file, mode, *args, **kwargs)
builtins.open = failing_open
from bert4rec_jax import main
sys.argv = ["bert4rec_jax.main", "--config=configs/synthetic.py:tiny", "--workdir=" + root, "--mode=prepare"]
main.run_cli()
"""


@pytest.mark.parametrize("code,hint", [("ENOSPC", "the disk is full: free space there"),
                                       ("EROFS", "the file system is read-only: choose a writable --workdir"),
                                       ("EACCES", "permission denied"),
                                       ("EMFILE", "too many files are open at once; raise the open-file limit")])
def test_a_full_or_read_only_disk_is_one_line(tmp_path, code, hint):
  out = subprocess.run([sys.executable, "-c", INJECT, str(tmp_path), code], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
  lines = [x for x in out.stderr.splitlines() if x.startswith("error:")]
  assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
  assert len(lines) == 1 and str(tmp_path) in lines[0] and hint in lines[0], out.stderr[-3000:]


def test_more_buckets_than_files_may_be_open_is_refused_in_one_line(tmp_path):
  """Chunked reading keeps a file open per bucket: more buckets than the open-file limit allows is
  refused before any reading, naming the field and the most allowed; within it, it prepares."""
  import resource
  (tmp_path / "rows.txt").write_text("".join(f"{u} {i}\n" for u in range(30) for i in range(5)))
  limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))  # noqa: E731
  args = [sys.executable, "-m", "bert4rec_jax.main", "--config=configs/synthetic.py:tiny", "--mode=prepare",
          "--workdir=" + str(tmp_path / "work"), "--config.data.format=text",
          "--config.data.path=" + str(tmp_path / "rows.txt"), "--config.data.chunk_rows=50"]
  out = subprocess.run(args + ["--config.data.num_buckets=1000"], cwd=REPO, capture_output=True, text=True,
                       timeout=300, preexec_fn=limit)
  lines = [x for x in out.stderr.splitlines() if x.startswith("error:")]
  assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
  assert len(lines) == 1 and "config.data.num_buckets=1000" in lines[0] and "at most 192" in lines[0], lines
  out = subprocess.run(args + ["--config.data.num_buckets=100"], cwd=REPO, capture_output=True, text=True,
                       timeout=300, preexec_fn=limit)
  assert out.returncode == 0, out.stderr[-3000:]


def test_storage_problems_are_found_inside_library_errors():
  from bert4rec_jax.errors import storage_problem
  try:
    try:
      raise RuntimeError("tensorstore: writing /data/x/checkpoints/5/d/abc: No space left on device [OS error 28]")
    except RuntimeError as inner:
      raise ValueError("async save failed") from inner
  except ValueError as e:
    assert storage_problem(e).startswith("/data/x/checkpoints/5/d/abc: cannot write (No space left on device)")
  assert storage_problem(ValueError("shapes differ")) is None
  assert storage_problem(FileNotFoundError(2, "No such file or directory", "/x")) is None


OUT_OF_MEMORY = """
import sys
import jax
from bert4rec_jax import main
real = jax.block_until_ready
def exhausted(x):
  if sys.argv[-1] == "--mode=train":
    raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 61145389224 bytes.")
  return real(x)
jax.block_until_ready = exhausted
sys.argv = ["bert4rec_jax.main", "--config=configs/synthetic.py:tiny", "--workdir=" + sys.argv[1], sys.argv[2]]
main.run_cli()
"""


def test_memory_run_out_is_one_line_and_the_model_trains_after(tmp_path):
  """The device (or host) out of memory at the first training step, as XLA reports it: one line
  that quotes it and names the settings to lower, no traceback; the model folder is left as
  anything else would leave it: the same command trains it when memory allows."""
  out = subprocess.run([sys.executable, "-c", OUT_OF_MEMORY, str(tmp_path), "--mode=train"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
  lines = [x for x in out.stderr.splitlines() if x.startswith("error:")]
  assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
  assert lines == ["error: out of memory (RESOURCE_EXHAUSTED: Out of memory allocating 61,145,389,224 bytes.): "
                   "lower train.batch_size or model.max_seq_length (training), eval.batch_size or "
                   "eval.item_chunk_size (evaluation), predict.batch_size (inference)"], out.stderr[-3000:]
  again = subprocess.run([sys.executable, "-c", OUT_OF_MEMORY, str(tmp_path), "--mode=all"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-3000:]
  assert len(os.listdir(tmp_path / "models")) == 1


def test_memory_problems_are_found_inside_other_errors():
  from bert4rec_jax.errors import environment_problem, memory_problem
  try:
    try:
      raise MemoryError()
    except MemoryError as inner:
      raise RuntimeError("while building the batch") from inner
  except RuntimeError as e:
    assert memory_problem(e).startswith("out of memory (MemoryError): lower train.batch_size")
  assert memory_problem(ValueError("shapes differ")) is None
  assert environment_problem(OSError(28, "No space left on device", "/x/y")).startswith("/x/y: cannot write")
  assert environment_problem(ValueError("shapes differ")) is None


def test_our_own_bugs_keep_their_traceback(tmp_path):
  script = ("import sys\nfrom bert4rec_jax import main, pipeline\n"
            "def broken(*a, **k):\n  raise FileNotFoundError(2, 'No such file or directory', '/nowhere/ours')\n"
            "pipeline.run = broken\n"
            f"sys.argv = ['m', '--config=configs/synthetic.py:tiny', '--workdir={tmp_path}']\nmain.run_cli()\n")
  out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 1 and "Traceback" in out.stderr and "FileNotFoundError" in out.stderr, out.stderr[-2000:]


def test_scripts_stopped_by_a_signal_say_so_in_one_line(capsys):
  """Every script's main (errors.one_line: sweeps' runs, reproduce, time_to_quality, ...) ends a
  training stopped by SIGTERM / SIGINT as the CLI does: the line that says the checkpoint is saved,
  status 128 + the signal, no traceback."""
  from bert4rec_jax import errors

  @errors.one_line
  def script():
    raise errors.Interrupted("SIGTERM", 7, int(signal.SIGTERM))

  with pytest.raises(SystemExit) as stopped:
    script()
  assert stopped.value.code == 128 + signal.SIGTERM
  assert capsys.readouterr().err.strip() == ("stopped by SIGTERM at step 7; the checkpoint is saved: run the same "
                                             "command again to continue")


@pytest.mark.parametrize("call", [1, 2])
def test_a_stop_request_in_the_last_step_or_the_last_save_is_honoured(tiny_config, tmp_path, monkeypatch, call):
  """A SIGTERM that lands in training's last step (call 1: while its checkpoint is started) or while
  its last checkpoint is written (call 2) is not lost: training stops there with the checkpoint saved
  (Interrupted: status 143 from the CLI), where it went on to evaluate, or died mid-write; a rerun
  evaluates the model."""
  from bert4rec_jax import errors, model_store, pipeline
  caught = []
  previous = signal.signal(signal.SIGTERM, lambda *a: caught.append("outside training"))
  record = model_store.record_checksums
  calls = []

  def record_and_signal(*args):
    calls.append(1)
    if len(calls) == call:
      os.kill(os.getpid(), signal.SIGTERM)
    return record(*args)

  monkeypatch.setattr(model_store, "record_checksums", record_and_signal)
  c = tiny_config
  c.train.num_train_steps, c.train.eval_every_steps, c.train.checkpoint_every_steps = 40, 40, 1000
  try:
    with pytest.raises(errors.Interrupted, match="stopped by SIGTERM at step 40"):
      pipeline.run(c, str(tmp_path), mode="all")
  finally:
    signal.signal(signal.SIGTERM, previous)
  assert caught == [] and len(calls) == 2
  monkeypatch.setattr(model_store, "record_checksums", record)
  out = pipeline.run(c, str(tmp_path), mode="all")
  assert out["finished"] and out["checkpoint_step"] == 40 and "test_metrics" in out
