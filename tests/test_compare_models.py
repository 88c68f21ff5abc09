"""experiments/compare_models.py and the statistics it reports."""
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from bert4rec_jax import pipeline, significance
from tests.conftest import REPO


def test_paired_t_test_matches_the_textbook_formula_and_scipy():
  rng = np.random.default_rng(1)
  a = rng.random(300)
  b = a - 0.02 + 0.1 * rng.normal(size=300)
  got = significance.paired_t_test(a, b)
  d = a - b
  t = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
  assert got["t"] == pytest.approx(t) and got["df"] == 299
  assert got["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-6)
  assert significance.paired_t_test(a, a)["p"] == 1.0


def test_bootstrap_interval_of_a_paired_difference_covers_it():
  rng = np.random.default_rng(2)
  d = 0.05 + rng.normal(size=4000) * 0.3
  lo, hi = significance.bootstrap_ci(d, 1000)
  se = d.std(ddof=1) / np.sqrt(len(d))
  assert lo < d.mean() < hi
  assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)  # normal theory


def test_compare_models_end_to_end(tiny_config, tmp_path):
  names = {}
  for kind in ("bert4rec", "sasrec"):
    c = tiny_config
    c.model.kind = kind
    c.train.num_train_steps, c.train.eval_every_steps = 120, 0
    c.eval.per_user_top_k = 5 if kind == "bert4rec" else 0  # SASRec's ranks are not kept: the script evaluates it
    names[kind] = pipeline.run(c, str(tmp_path), mode="all")["model_name"]
  assert not os.path.exists(tmp_path / "results" / names["sasrec"] / "test_per_user.parquet")
  out_md = tmp_path / "cmp.md"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  proc = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "compare_models.py"),
                         f"--workdir={tmp_path}", f"--models={names['bert4rec']},{names['sasrec']}", "--baselines",
                         "--bootstrap=200", f"--out={out_md}"], capture_output=True, text=True, cwd=REPO, env=env,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"{names['sasrec']}: no per-user test ranks yet; evaluating it first" in proc.stdout
  assert f"{names['bert4rec']}: no per-user" not in proc.stdout
  text = out_md.read_text()
  for kind in ("bert4rec (reference)", "sasrec", "most_popular", "markov"):
    assert kind in text
  assert "## Paired tests against M0" in text and "## ndcg@10 by history length" in text
  assert "target popularity (training count quintile)" in text
  # The most-popular baseline is far below a trained model on the planted structure: significant.
  rows = [line for line in text.splitlines() if line.startswith("| M2 | ndcg@10 |")]
  assert rows and rows[0].rstrip().endswith("| worse |")
