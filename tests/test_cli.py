"""The command line off the main path: --help, --fields, shipped configs by name from any folder,
the console's short metric table, where the outputs went, and log lines that keep out of the
progress bar."""
import logging
import os
import re
import shutil
import subprocess
import sys

from tqdm import tqdm

from bert4rec_jax import config_files, main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, cwd, module=True, unset=()):
  cmd = ([sys.executable, "-m", "bert4rec_jax.main"] if module else [_console_script()]) + list(args)
  env = {k: v for k, v in os.environ.items() if k not in unset}
  return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env=dict(env, PYTHONUNBUFFERED="1"))


def _console_script():
  here = os.path.join(os.path.dirname(sys.executable), "bert4rec-jax")
  return here if os.path.exists(here) else shutil.which("bert4rec-jax")


def test_help_shows_the_flags_and_how_to_list_the_fields(tmp_path):
  for module in (True, False):  # python -m bert4rec_jax.main and the console script
    out = run("--help", cwd=tmp_path, module=module)
    assert out.returncode == 0, out.stderr
    for text in ("--config", "--mode", "--workdir", "--[no]all_metrics", "--fields", "bert4rec-jax --fields",
                 ", ".join(config_files.names())):
      assert text in out.stdout, (module, text, out.stdout)


def test_fields_lists_every_field_with_its_default_and_doc(tmp_path):
  out = run("--fields", cwd=tmp_path)
  assert out.returncode == 0, out.stderr
  from bert4rec_jax.configs import default
  listed = {line.split(" = ")[0]: line for line in out.stdout.splitlines()}
  flat = config_files._flatten(default.base().to_dict())
  assert set(listed) == set(flat)
  for field, line in listed.items():
    assert re.search(r"  # \S", line), f"{field} has no doc: {line}"
  assert listed["train.learning_rate"].startswith("train.learning_rate = 0.001") and "Peak" in listed[
      "train.learning_rate"]
  one = run("--fields=masking", cwd=tmp_path)
  assert one.returncode == 0 and all(x.startswith("masking.") for x in one.stdout.splitlines())
  bad = run("--fields=trian", cwd=tmp_path)
  assert bad.returncode == 1 and bad.stderr.startswith("error: --fields=trian: no such section") and not bad.stdout


def test_a_shipped_config_by_name_from_any_folder(tmp_path, monkeypatch):
  """--config=<name> finds the shipped config outside a checkout; a bad name says what exists."""
  out = run("--config=synthetic:tiny", f"--workdir={tmp_path / 'w'}", "--mode=prepare", cwd=tmp_path)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "data:    " + str(tmp_path / "w" / "data") in out.stdout
  monkeypatch.chdir(tmp_path)  # outside a checkout: configs/<name>.py is no file here
  for spec in ("synthetic.py:tiny", "configs/synthetic.py:tiny"):
    assert config_files.resolve(spec) == os.path.join(config_files.shipped_dir(), "synthetic.py:tiny")
  bad = run("--config=synthetic_typo", f"--workdir={tmp_path / 'w'}", cwd=tmp_path)
  errors = [x for x in bad.stderr.splitlines() if x.startswith("error:")]
  assert bad.returncode == 1 and len(errors) == 1 and "no such file" in errors[0] and "synthetic" in errors[0]


def test_the_console_table_is_short_unless_asked_and_the_end_says_where_outputs_are(tmp_path):
  args = ["--config=configs/synthetic.py:tiny", f"--workdir={tmp_path}", "--config.train.num_train_steps=20",
          "--config.train.eval_every_steps=0"]
  out = run(*args, cwd=REPO)
  assert out.returncode == 0, out.stderr[-3000:]
  table = out.stdout[out.stdout.index("test metrics"):]
  assert re.search(r"^ndcg@10 ", table, re.M) and not re.search(r"^(ndcg@50|mean_rank) ", table, re.M)
  (name,) = os.listdir(tmp_path / "models")
  assert name.startswith("bert4rec_hs32_msl16_")
  assert f"model:   {tmp_path / 'models' / name}" in out.stdout
  assert f"results: {tmp_path / 'results' / name}" in out.stdout
  full = run(*args, "--mode=evaluate", "--all_metrics", "--config.wandb.mode=offline",
             "--config.tracking.tensorboard=True", cwd=REPO, unset=("WANDB_MODE",))  # the tests' WANDB_MODE would win
  assert full.returncode == 0, full.stderr[-3000:]
  events = os.listdir(tmp_path / "results" / name / "tensorboard")  # TensorBoard beside the W&B run
  assert any(e.startswith("events.out.tfevents.") for e in events)
  assert re.search(r"^ndcg@50 ", full.stdout, re.M) and re.search(r"^mean_rank ", full.stdout, re.M)
  run_dir = re.search(r"^W&B run \(offline\): (\S+)$", full.stdout, re.M).group(1)
  assert os.path.isdir(run_dir) and run_dir.startswith(str(tmp_path / "results" / name))
  assert f"upload it with: wandb sync {run_dir}" in full.stdout


def test_a_log_line_never_lands_inside_the_progress_bar(capsys):
  console = main._Console()
  logger = logging.getLogger("bert4rec_jax.test_cli")
  logger.addHandler(console)
  logger.propagate = False
  try:
    bar = tqdm(total=10, desc="train", file=sys.stderr, mininterval=0)
    bar.update(3)
    logger.warning("a line of its own")
    bar.update(3)
    bar.close()
  finally:
    logger.removeHandler(console)
  err = capsys.readouterr().err
  pieces = [p for p in re.split(r"[\r\n]", err) if "a line of its own" in p]
  assert pieces and all(re.fullmatch(r"\d\d:\d\d:\d\d WARNING: a line of its own", p.strip()) for p in pieces), err


def test_one_command_plots_the_curves(tmp_path):
  args = ["--config=configs/synthetic.py:tiny", f"--workdir={tmp_path}", "--config.train.num_train_steps=40",
          "--config.train.eval_every_steps=20", "--config.train.log_every_steps=10", "--mode=train"]
  assert run(*args, cwd=REPO).returncode == 0
  (name,) = os.listdir(tmp_path / "models")
  with open(tmp_path / "models" / name / "metrics.jsonl", "a") as f:
    f.write('{"train/loss": 1.0, "st')  # a line a killed run cut short
  out = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "plot_curves.py"),
                        str(tmp_path / "models" / name), f"--out={tmp_path / 'c.png'}"], capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr
  assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "line" in out.stderr
  from experiments import plot_curves
  curves = plot_curves.read_curves(str(tmp_path / "models" / name), "ndcg@10")
  assert [s for s, _ in curves["train"]] == [10, 20, 30, 40] and [s for s, _ in curves["valid"]] == [20, 40]
  assert curves["selected"] in (20, 40)
  missing = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "plot_curves.py"), str(tmp_path)],
                           capture_output=True, text=True, timeout=300)
  assert missing.returncode == 1 and missing.stderr.startswith("error:") and "metrics.jsonl" in missing.stderr


def test_the_migration_guide_names_every_argument_of_the_tf2_pipeline():
  text = open(os.path.join(REPO, "docs", "migration.md")).read()
  for argument in ("vocab_exist", "pool_size", "short_seq_prob", "vocab_filename", "batch_size_train", "batch_size_val",
                   "fast_eval", "save_predictions_file", "is_embeddings", "is_items_preds", "dupe_factor",
                   "masked_lm_prob", "max_predictions_per_seq", "prop_sliding_window", "drop_duplicates",
                   "training_time_limit_seconds", "predictions_per_user"):
    assert f"`{argument}`" in text, argument


def test_a_config_path_with_a_colon_in_its_name(tmp_path):
  folder = tmp_path / "2024-01-01T10:00"
  folder.mkdir()
  (folder / "cfg.py").write_text("from bert4rec_jax.configs import synthetic\n\ndef get_config(v=''):\n"
                                 "  c = synthetic.get_config(v)\n  c.project = 'colon' + v\n  return c\n")
  assert config_files.load(str(folder / "cfg.py")).project == "colon"
  assert config_files.load(str(folder / "cfg.py") + ":tiny").project == "colontiny"
