"""experiments/record_run.py: a trained model's record (config, metrics, per-user ranks; no
checkpoints) that compare_models takes in place of the model, on a machine without the model."""
import errno
import json
import os
import shutil
import socket
import subprocess
import sys

import pandas as pd
import pytest

from bert4rec_jax import pipeline, synthetic
from bert4rec_jax.errors import one_line
from tests.conftest import REPO, xla_flags


def run_script(script, *args, env):
  return subprocess.run([sys.executable, os.path.join(REPO, "experiments", script), *args],
                        capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def report_tables(text: str) -> str:
  """A compare_models report from its metrics on: the same for a model and for its record."""
  return text.split("## Selection on validation", 1)[1].split("Figure:", 1)[0]


def test_records_replace_their_models_in_a_comparison(tiny_config, tmp_path):
  data = tmp_path / "data"
  data.mkdir()
  df = synthetic.generate(num_users=300, num_items=60, min_length=6, max_length=20, num_strides=3, noise=0.1, seed=4)
  (data / "seqs.txt").write_text("".join(f"{u} {i}\n" for u, i in zip(df["user"], df["item"])))
  first, second, records = tmp_path / "first", tmp_path / "second", tmp_path / "records"
  names = {}
  for kind in ("bert4rec", "sasrec"):
    c = tiny_config.copy_and_resolve_references()
    c.data.format, c.data.path = "text", str(data / "seqs.txt")
    c.model.kind = kind
    c.train.num_train_steps, c.train.eval_every_steps = 80, 40
    c.eval.per_user_top_k = 5 if kind == "sasrec" else 0  # BERT4Rec's ranks not kept: record_run evaluates it
    names[kind] = pipeline.run(c, str(first), mode="all")["model_name"]
    if kind == "bert4rec":  # and a seed of it killed halfway
      c.seed = 1
      names["half"] = pipeline.run(c, str(first), mode="train", stop_at=40)["model_name"]
  env = dict(os.environ, XLA_FLAGS=xla_flags(1), BERT4REC_DATA_DIR=str(data))
  half = run_script("record_run.py", f"--workdir={first}", f"--models={names['half']}", f"--out={records}", env=env)
  assert half.returncode == 1 and "Traceback" not in half.stderr, half.stderr[-2000:]
  assert half.stderr.strip().splitlines()[-1] == (f"error: {names['half']} is partly trained (step 40 of 80): finish "
                                                  "its training (run its command again) before recording it")
  assert os.listdir(records) == []  # nothing of it kept
  both = f"{names['bert4rec']},{names['sasrec']}"

  umask = os.umask(0)
  os.umask(umask)
  made = run_script("record_run.py", f"--workdir={first}", f"--models={both}", f"--out={records}", env=env)
  assert made.returncode == 0, made.stderr[-3000:]
  assert f"{names['bert4rec']}: no per-user valid ranks yet; evaluating it first" in made.stdout
  for kind, name in ((k, names[k]) for k in ("bert4rec", "sasrec")):
    record = records / name
    assert sorted(os.listdir(record)) == ["config.json", "record.json", "test_metrics.json", "test_per_user.parquet",
                                          "valid_metrics.json", "valid_per_user.parquet"]
    assert os.stat(record).st_mode & 0o777 == 0o777 & ~umask  # a normal folder, not a temporary's 0700
    identity = json.loads((first / "models" / name / "identity.json").read_text())["identity"]
    hashes = json.loads((record / "record.json").read_text())["data"]
    assert hashes == {k: identity[k] for k in ("data.content", "data.vocab")} and all(hashes.values())
    saved = json.loads((record / "config.json").read_text())
    assert saved["config"]["data"]["path"] == "$BERT4REC_DATA_DIR/seqs.txt" and "data_dir" not in saved
    assert str(tmp_path) not in (record / "config.json").read_text()  # no folder of this machine
    ranks = pd.read_parquet(record / "test_per_user.parquet")
    assert list(ranks.columns[:3]) == ["user", "target", "rank"] and "top_items" not in ranks
    if kind == "sasrec":  # what the training run's own evaluation wrote, less the top items
      own = pd.read_parquet(first / "results" / name / "test_per_user.parquet").drop(columns=["top_items"])
      pd.testing.assert_frame_equal(ranks, own)
      assert (record / "test_metrics.json").read_bytes() == (first / "results" / name / "test_metrics.json").read_bytes()
  compared = run_script("compare_models.py", f"--workdir={first}", f"--models={both}", "--baselines",
                        "--bootstrap=200", env=env)
  assert compared.returncode == 0, compared.stderr[-3000:]

  # A recording killed midway left its staging folder: the next one clears it.
  gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
  from bert4rec_jax import io_utils
  stale = records / f"{io_utils.TMP_PREFIX}{socket.gethostname().replace('-', '_')}-{gone.stdout.strip()}-record-x1"
  (stale / "half").mkdir(parents=True)
  # Recording again: the same record, left as it is; a different one under the name: refused.
  again = run_script("record_run.py", f"--workdir={first}", f"--models={names['sasrec']}", f"--out={records}", env=env)
  assert again.returncode == 0 and "already recorded" in again.stdout, again.stderr[-2000:]
  tampered = records / names["sasrec"] / "test_per_user.parquet"
  kept = tampered.read_bytes()
  frame = pd.read_parquet(tampered)
  frame.loc[0, "rank"] += 1
  frame.to_parquet(tampered, index=False)
  other = run_script("record_run.py", f"--workdir={first}", f"--models={names['sasrec']}", f"--out={records}", env=env)
  assert other.returncode == 1 and "Traceback" not in other.stderr
  assert other.stderr.strip().splitlines()[-1].startswith(f"error: {records / names['sasrec']} holds another record")
  assert pd.read_parquet(tampered).equals(frame), "the record on disk was replaced"
  assert not [n for n in os.listdir(records) if n.startswith(".")], "a staging folder was left behind"
  tampered.write_bytes(kept)

  # The models gone (another machine, another session): their records compare as they did.
  shutil.rmtree(first)
  paths = f"{records / names['bert4rec']},{records / names['sasrec']}"
  from_records = run_script("compare_models.py", f"--workdir={second}", f"--models={paths}", "--baselines",
                            "--bootstrap=200", env=env)
  assert from_records.returncode == 0, from_records.stderr[-3000:]
  assert report_tables(from_records.stdout) == report_tables(compared.stdout)
  assert "evaluating it first" not in from_records.stdout  # a record is never re-evaluated
  # A record of a model trained on other data (the file changed under the same name): refused.
  mark = records / names["sasrec"] / "record.json"
  kept = mark.read_text()
  changed = json.loads(kept)
  changed["data"]["data.content"] = "0" * 16
  mark.write_text(json.dumps(changed))
  other_data = run_script("compare_models.py", f"--workdir={second}", f"--models={paths}", env=env)
  assert other_data.returncode != 0 and "Traceback" not in other_data.stderr, other_data.stderr[-2000:]
  assert other_data.stderr.strip().splitlines()[-1] == (f"{names['sasrec']} was trained on other data than "
                                                        f"{names['bert4rec']} (the prepared data differ): compare "
                                                        "models of one dataset")
  mark.write_text(kept)
  # One model under two names (its record and itself) is refused.
  twice = run_script("compare_models.py", f"--workdir={second}",
                     f"--models={records / names['sasrec']},{records / names['sasrec']}", env=env)
  assert twice.returncode != 0 and "is given twice" in twice.stderr


def test_a_train_val_model_is_recorded_with_its_valid_split_at_its_selected_step(tiny_config, tmp_path, monkeypatch):
  """A train_val model has only a validation split: its record holds that one. Ranks made before
  training went on are of a checkpoint the model no longer selects: evaluated again first."""
  monkeypatch.syspath_prepend(os.path.join(REPO, "experiments"))
  import record_run
  c = tiny_config.copy_and_resolve_references()
  c.task = "train_val"
  c.train.num_train_steps, c.train.eval_every_steps = 40, 20
  c.eval.per_user_top_k = 10
  name = pipeline.run(c, str(tmp_path), mode="train", stop_at=20)["model_name"]
  pipeline.run(c, str(tmp_path), mode="evaluate")  # ranks of the partly trained model (step 20)
  with pytest.raises(record_run.UserError, match="is partly trained"):
    record_run.record(str(tmp_path), name, str(tmp_path / "records"))
  pipeline.run(c, str(tmp_path), mode="train")
  target = record_run.record(str(tmp_path), name, str(tmp_path / "records"))
  assert sorted(os.listdir(target)) == ["config.json", "record.json", "valid_metrics.json", "valid_per_user.parquet"]
  held = json.loads((tmp_path / "records" / name / "valid_metrics.json").read_text())
  assert held["training_time"]["step"] == 40  # evaluated again: the ranks of the model as trained
  curve = json.loads((tmp_path / "models" / name / "selection.json").read_text())["curve"]
  assert held["checkpoint_step"] == max(curve, key=lambda e: (e["value"], -e["step"]))["step"]


def test_an_unwritable_out_is_one_line(tmp_path):
  """Where the records cannot go (a file in the way; a read-only or full disk), the command says so
  in one line, as every experiment command does (errors.one_line)."""
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  out = run_script("record_run.py", f"--workdir={tmp_path}", "--models=m", f"--out={blocker / 'records'}",
                   env=dict(os.environ))
  assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
  assert out.stderr.strip().splitlines()[-1].startswith(f"error: {blocker}")
  assert "a file stands where a folder is needed" in out.stderr
  nothing = run_script("record_run.py", f"--workdir={tmp_path}", "--models=,", f"--out={tmp_path / 'r'}",
                       env=dict(os.environ))
  assert nothing.returncode == 1 and nothing.stderr.strip().startswith("error: --models names no model")
  assert not (tmp_path / "r").exists()

  @one_line
  def read_only():
    raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "records"))
  with pytest.raises(SystemExit) as stop:
    read_only()
  assert str(stop.value).startswith(f"error: {tmp_path / 'records'}: cannot write") and "read-only" in str(stop.value)

  @one_line
  def ours():
    raise FileNotFoundError(2, "No such file or directory", "/nowhere")
  with pytest.raises(FileNotFoundError):  # not the disk's doing: the traceback stays
    ours()


@pytest.mark.parametrize("same", [True, False])
def test_two_recordings_of_one_model_at_once(tmp_path, monkeypatch, capsys, same):
  """The other recording renames its record into place between this one's check and its rename:
  an identical record is left as it is, a different one refused; nothing half-written either way."""
  monkeypatch.syspath_prepend(os.path.join(REPO, "experiments"))
  import record_run

  def files(workdir, name, staging):
    for folder, text in ((staging, "mine"), (os.path.join(tmp_path, "out", "m"), "mine" if same else "theirs")):
      os.makedirs(folder, exist_ok=True)
      with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(text)
      with open(os.path.join(folder, record_run.RECORD_MARK), "w") as f:
        f.write('{"model_name": "m"}')
  monkeypatch.setattr(record_run, "record_files", files)
  real_exists = os.path.exists
  monkeypatch.setattr(record_run.os.path, "exists",
                      lambda p: False if p == os.path.join(tmp_path, "out", "m") else real_exists(p))
  if same:
    assert record_run.record(str(tmp_path), "m", str(tmp_path / "out")) == str(tmp_path / "out" / "m")
    assert "already recorded" in capsys.readouterr().out
  else:
    with pytest.raises(record_run.UserError, match="holds another record of m"):
      record_run.record(str(tmp_path), "m", str(tmp_path / "out"))
  assert (tmp_path / "out" / "m" / "config.json").read_text() == ("mine" if same else "theirs")
  assert os.listdir(tmp_path / "out") == ["m"]


def test_a_data_file_outside_the_data_folder_is_recorded_as_it_is_with_a_warning(tmp_path, monkeypatch, capsys):
  monkeypatch.syspath_prepend(os.path.join(REPO, "experiments"))
  import record_run
  monkeypatch.setattr(record_run, "data_dir", lambda: str(tmp_path / "data"))
  inside, outside = str(tmp_path / "data" / "seqs.txt"), str(tmp_path / "elsewhere" / "seqs.txt")
  assert record_run.portable_path(inside) == "$BERT4REC_DATA_DIR/seqs.txt"
  assert capsys.readouterr().err == ""
  assert record_run.portable_path(outside) == outside  # kept, and said
  assert capsys.readouterr().err.startswith(f"warning: {outside} is outside the data folder {tmp_path / 'data'}")
  assert record_run.portable_path("seqs.txt") == "seqs.txt" and capsys.readouterr().err == ""
