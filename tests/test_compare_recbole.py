"""experiments/compare_recbole.py: the headline questions on hand-made curves, and the whole
invocation as a user runs it, with RecBole's environment replaced by a stand-in that prints a
made-up RecBole result (RecBole and torch are never installed by the tests)."""
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import xla_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "experiments"))
import compare_recbole  # noqa: E402


def _ours(points, popular=0.012, markov=0.03):
  return {"curve": [{"train_seconds": t, "ndcg@10": v} for t, v in points],
          "baselines": {"most_popular": {"ndcg@10": popular}, "markov": {"ndcg@10": markov}}}


def test_headline_on_hand_made_curves():
  recbole = [{"train_seconds": 100.0, "ndcg@10": 0.010, "hr@10": 0.02},
             {"train_seconds": 200.0, "ndcg@10": 0.020, "hr@10": 0.04},
             {"train_seconds": 300.0, "ndcg@10": 0.020, "hr@10": 0.05},  # level with its best, later: not "best"
             {"train_seconds": 400.0, "ndcg@10": 0.015, "hr@10": 0.03}]
  # Ours crosses .020 at 10 s, dips below it at 20 s, holds it from 30 s; reaches Markov's .03 at
  # 50 s, dips at 60 s, holds it from 70 s.
  ours = _ours([(5, 0.005), (10, 0.021), (20, 0.019), (30, 0.020), (50, 0.031), (60, 0.029), (70, 0.03), (80, 0.04)])
  rows, head = compare_recbole.time_to_quality(recbole, ours)
  a, b = head["recbole_best"], head["markov"]
  assert (a["ndcg@10"], a["recbole_train_seconds"], a["recbole_budget_seconds"]) == (0.020, 200.0, 400.0)
  assert (a["ours_train_seconds"], a["ours_held_from_seconds"]) == (10, 30)
  assert (a["speedup"], a["speedup_held"]) == (20.0, 6.7)
  assert a["above_most_popular"] and a["most_popular_ndcg@10"] == 0.012
  assert (b["ndcg@10"], b["ours_train_seconds"], b["ours_held_from_seconds"]) == (0.03, 50, 70)
  assert not b["recbole_reaches"] and b["recbole_train_seconds"] is None
  assert head["ours_horizon_seconds"] == 80
  assert [(r["ours_train_seconds"], r["ours_held_from_seconds"]) for r in rows] == [(10, 10), (10, 30), (10, 30),
                                                                                    (10, 10)]
  assert rows[0]["speedup"] == 10.0 and rows[3]["speedup_held"] == 40.0

  # RecBole below most-popular, reaching a weak Markov chain; ours ends below RecBole's best.
  recbole = [{"train_seconds": 60.0, "ndcg@10": 0.008, "hr@10": 0.01}, {"train_seconds": 120.0, "ndcg@10": 0.011, "hr@10": 0.02}]
  rows, head = compare_recbole.time_to_quality(recbole, _ours([(5, 0.009), (10, 0.012), (15, 0.010)], popular=0.012,
                                                              markov=0.008))
  a, b = head["recbole_best"], head["markov"]
  assert not a["above_most_popular"]
  assert (a["ours_train_seconds"], a["ours_held_from_seconds"], a["speedup_held"]) == (10, None, None)
  assert b["recbole_reaches"] and b["recbole_train_seconds"] == 60.0 and b["ours_held_from_seconds"] == 5


def _fake_recbole_venv(venv):
  """A stand-in for RecBole's environment: complete (marker file), its python prints a made-up
  RecBole result in recbole_runner.py's format whatever it is asked to run."""
  curve = [{"train_seconds": 30.0, "sequences": 512, "epochs": 0.1, "ndcg@10": 0.001, "hr@10": 0.002},
           {"train_seconds": 60.0, "sequences": 1024, "epochs": 0.2, "ndcg@10": 0.002, "hr@10": 0.004}]
  result = {"recbole": {"recbole_version": "1.2.1", "torch": "stand-in", "torch_threads": 1, "prepare_seconds": 1.0,
                        "train_seconds": 60.0, "sequences": 1024, "batches": 64, "training_examples_per_epoch": 5000,
                        "epochs": 0.2, "sequences_per_second": 17.1, "tokens_per_second": 342, "real_tokens_per_second": 200,
                        "num_items": 41, "mask_slots_per_sequence": 4, "final": curve[-1], "curve": curve,
                        "peak_rss_mb": 900, "last_loss": 3.0}}
  os.makedirs(venv / "bin")
  python = venv / "bin" / "python"
  progress = json.dumps({"recbole_progress": dict(curve[0])})
  python.write_text("#!/bin/sh\n"
                    f"echo '{progress}'\n"
                    f"echo '{json.dumps(result)}'\n")
  python.chmod(python.stat().st_mode | stat.S_IXUSR)
  (venv / ".recbole-complete").write_text("stand-in\n")
  return curve


def test_whole_invocation_with_a_stand_in_for_recbole(tmp_path):
  # 60 users walking a ring of 40 items with a little noise: the Markov chain has something to find.
  rng = np.random.default_rng(0)
  lines = []
  for u in range(60):
    item = rng.integers(40)
    for _ in range(rng.integers(8, 16)):
      lines.append(f"{u + 1} {item + 1}")
      item = (item + 1) % 40 if rng.random() < 0.8 else rng.integers(40)
  data = tmp_path / "ring.txt"
  data.write_text("\n".join(lines) + "\n")
  recbole_curve = _fake_recbole_venv(tmp_path / "venv")
  out = tmp_path / "out.json"
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(1))
  done = subprocess.run([sys.executable, "experiments/compare_recbole.py", f"--data={data}", "--max_seq_length=20",
                         "--batch_size=16", "--ours_minutes=0.01", f"--workdir={tmp_path / 'work'}",
                         f"--venv={tmp_path / 'venv'}", f"--out={out}"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  doc = json.loads(out.read_text())
  assert doc == json.loads(done.stdout)
  assert doc["data"] == {"file": "ring.txt", "users": 60, "items": len({x.split()[1] for x in lines}),
                         "interactions": len(lines)}
  # RecBole's input: every interaction, in the file's order, its position in the user's sequence as time.
  inter = (tmp_path / "work" / "data" / "data_all" / "data_all.inter").read_text().splitlines()
  assert inter[0] == "user_id:token\titem_id:token\ttimestamp:float" and len(inter) == len(lines) + 1
  assert inter[1].split("\t") == ["1", lines[0].split()[1], "0"] and inter[2].split("\t")[2] == "1"

  args = doc["args"]  # every argument, defaults included, and no folder of this machine
  assert args["data"] == "ring.txt" and args["ours_settings"] == "recipe" and "recbole_minutes" in args
  assert not ({"workdir", "venv", "out"} & set(args)) and str(tmp_path) not in json.dumps(args)
  ours = doc["ours"]
  settings = ours["settings"]
  assert settings["config"] == "recipe" and settings["next_item_loss_weight"] == 10.0
  assert settings["read_last"] == "causal" and any(x.startswith("train.num_train_steps=") for x in settings["from_the_data"])
  assert len(ours["curve"]) >= 1
  for kind in ("most_popular", "markov"):  # history excluded: fewer competitors, never a worse rank
    b = doc["baselines"][kind]
    assert 0 <= b["ndcg@10"] <= b["ndcg@10_history_excluded"] <= 1 and 0 <= b["hr@10"] <= b["hr@10_history_excluded"]
  assert doc["baselines"]["markov"]["hr@10"] > doc["baselines"]["most_popular"]["hr@10"]

  # The headline, recomputed here from the two curves.
  a, b = doc["headline"]["recbole_best"], doc["headline"]["markov"]
  assert (a["ndcg@10"], a["recbole_train_seconds"]) == (0.002, 60.0)
  first = [r["train_seconds"] for r in ours["curve"] if r["ndcg@10"] >= 0.002]
  assert a["ours_train_seconds"] == (first[0] if first else None)
  assert a["above_most_popular"] == (0.002 > doc["baselines"]["most_popular"]["ndcg@10"])
  markov = doc["baselines"]["markov"]["ndcg@10"]
  assert b["recbole_reaches"] == any(p["ndcg@10"] >= markov for p in recbole_curve)
  assert [r["recbole_ndcg@10"] for r in doc["time_to_quality"]] == [0.001, 0.002]
  assert "(a) RecBole's best" in done.stderr and "(b) the Markov chain's" in done.stderr

  # docs/benchmarks.md's section for it.
  table = subprocess.run([sys.executable, "experiments/benchmark_table.py", str(out)], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
  assert table.returncode == 0, table.stderr[-3000:]
  assert "RecBole 1 min, ours with configs/default.py's recipe" in table.stdout
  assert f"| Markov chain | {markov:.4f} (" in table.stdout
  assert "(a) RecBole's best test NDCG@10 in its 1 min: 0.0020, first reached at 60 s" in table.stdout


def test_a_missing_data_file_is_one_line(tmp_path):
  done = subprocess.run([sys.executable, "experiments/compare_recbole.py", f"--data={tmp_path / 'none.txt'}",
                         f"--workdir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert done.returncode == 1 and done.stderr.strip().splitlines() == [
      f"{tmp_path / 'none.txt'} not found: set BERT4REC_DATA_DIR or pass --data"]


@pytest.mark.parametrize("bad", ["--recbole_minutes=0", "--ours_minutes=-1", "--max_seq_length=1",
                                 "--set=train.nope=1", "--set=train.batch_size=abc"])
def test_absurd_settings_are_refused_before_anything_runs(tmp_path, bad):
  done = subprocess.run([sys.executable, "experiments/compare_recbole.py", bad, f"--workdir={tmp_path}"],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
  last = done.stderr.strip().splitlines()[-1]
  assert done.returncode == 2 and ("must be" in last or "no such setting 'nope'" in last or "invalid literal" in last)
  assert not os.listdir(tmp_path)


def test_ours_alone_on_the_validation_split_for_choosing_settings(tmp_path):
  # Every user: item 1, some of items 2..40, item 1 again (the validation target), one more (test).
  # Item 1 is the most popular training item, so most-popular ranks the validation target first.
  rng = np.random.default_rng(1)
  lines = []
  for u in range(60):
    seq = [1] + list(rng.integers(2, 41, size=rng.integers(6, 12))) + [1, int(rng.integers(2, 41))]
    lines += [f"{u + 1} {i}" for i in seq]
  data = tmp_path / "valid.txt"
  data.write_text("\n".join(lines) + "\n")
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(1))
  docs = {}
  for split in ("valid", "test"):
    out = tmp_path / f"{split}.json"
    done = subprocess.run([sys.executable, "experiments/compare_recbole.py", "--ours_only", f"--split={split}",
                           f"--data={data}", "--max_seq_length=20", "--batch_size=16", "--ours_minutes=0.01",
                           f"--workdir={tmp_path / 'work'}", f"--venv={tmp_path / 'venv'}", f"--out={out}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    docs[split] = json.loads(out.read_text())
    assert docs[split]["split"] == docs[split]["ours"]["split"] == split and docs[split]["ours"]["curve"]
    assert "headline" not in docs[split] and docs[split]["ours"]["identical_shapes"] is None
    assert f"{split} NDCG@10" in done.stderr
  assert not (tmp_path / "venv").exists() and not (tmp_path / "work").exists()  # RecBole never set up
  assert docs["valid"]["ours"]["baselines"]["most_popular"]["ndcg@10"] == 1.0
  assert docs["test"]["ours"]["baselines"]["most_popular"]["ndcg@10"] < 0.5
  # docs/benchmarks.md's section for it: the curve, on the split it was measured on.
  table = subprocess.run([sys.executable, "experiments/benchmark_table.py", str(tmp_path / "valid.json")], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
  assert table.returncode == 0, table.stderr[-3000:]
  assert "## Ours alone on the valid split" in table.stdout and "| training (s) | step | valid NDCG@10 |" in table.stdout
  assert table.stdout.count("\n| ") - 1 == len(docs["valid"]["ours"]["curve"])  # header + one row per evaluation
  assert "most-popular 1.0000" in table.stdout
  assert f"Peak RSS of the whole run {docs['valid']['ours']['peak_rss_mb']:,} MB" in table.stdout


def test_the_validation_split_is_only_for_our_side_alone(tmp_path):
  done = subprocess.run([sys.executable, "experiments/compare_recbole.py", "--split=valid", f"--workdir={tmp_path}"],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
  assert done.returncode == 2 and "--split=valid needs --ours_only" in done.stderr.strip().splitlines()[-1]
  assert not os.listdir(tmp_path)
