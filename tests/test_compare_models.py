"""experiments/compare_models.py and the statistics it reports."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from bert4rec_jax import pipeline, significance
from tests.conftest import REPO, xla_flags

sys.path.insert(0, os.path.join(REPO, "experiments"))
import compare_models  # noqa: E402


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


def test_holm_matches_the_step_down_procedure():
  """Against the procedure as written: sort ascending, multiply the i-th (1-based) by m - i + 1,
  never below the one before, at most 1; back in the input order."""
  rng = np.random.default_rng(3)
  for m in (1, 2, 5, 12):
    p = rng.random(m) ** 3
    p[rng.integers(m)] = p[0]  # a tie
    order = sorted(range(m), key=lambda i: p[i])
    want, running = [0.0] * m, 0.0
    for i, j in enumerate(order):
      running = max(running, min(1.0, (m - i) * p[j]))
      want[j] = running
    np.testing.assert_allclose(significance.holm(p), want)
  assert list(significance.holm([0.01, 0.04, 0.03])) == pytest.approx([0.03, 0.06, 0.06])


def test_seed_level_test_pairs_runs_by_their_seed():
  """Seeds pair on config.seed, whatever their order: a paired t-test over the common seeds of each
  seed's mean; fewer than two in common: no test."""
  a = {2: 0.40, 0: 0.31, 1: 0.52, 7: 0.9}
  b = {0: 0.28, 1: 0.49, 2: 0.35}
  got = compare_models.seed_level(a, b)
  x, y = [a[s] for s in (0, 1, 2)], [b[s] for s in (0, 1, 2)]
  assert got["pairs"] == 3 and got["diff"] == pytest.approx(np.mean(np.subtract(x, y)))
  assert got["p"] == pytest.approx(stats.ttest_rel(x, y).pvalue, rel=1e-6)
  assert got["sd"] == pytest.approx(np.std(np.subtract(x, y), ddof=1))
  assert compare_models.seed_level({0: 0.3, 1: 0.4}, {1: 0.3, 2: 0.1}) is None


def test_the_verdict_without_a_bootstrap_interval_rests_on_p():
  nan = float("nan")
  assert compare_models.verdict(-0.05, 0.001, nan, nan) == "worse"  # --bootstrap=0
  assert compare_models.verdict(0.05, 0.001, 0.01, 0.09) == "better"
  assert compare_models.verdict(0.05, 0.001, -0.01, 0.09) == "n.s."  # the interval holds 0
  assert compare_models.verdict(0.05, 0.2) == "n.s."


def test_compare_models_end_to_end(tiny_config, tmp_path):
  names = {}
  for kind, seed in (("bert4rec", 0), ("bert4rec", 1), ("sasrec", 0)):
    c = tiny_config.copy_and_resolve_references()
    c.model.kind, c.seed = kind, seed
    c.train.num_train_steps, c.train.eval_every_steps = 120, 60  # selection on validation at steps 60 and 120
    # Little noise: 120 steps learn the planted structure from every seed (with the default noise
    # some seeds were still at most-popular's level, which the significance test below relies on).
    c.data.synthetic.noise = 0.05
    c.eval.per_user_top_k = 5 if kind == "bert4rec" else 0  # SASRec's ranks are not kept: the script evaluates it
    names[kind, seed] = pipeline.run(c, str(tmp_path), mode="all")["model_name"]
  assert not os.path.exists(tmp_path / "results" / names["sasrec", 0] / "test_per_user.parquet")
  out_md = tmp_path / "cmp.md"
  env = dict(os.environ, XLA_FLAGS=xla_flags(1))

  def compare(models, *extra):
    return subprocess.run([sys.executable, os.path.join(REPO, "experiments", "compare_models.py"),
                           f"--workdir={tmp_path}", f"--models={models}", "--bootstrap=200", *extra],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=600)

  bert = f"{names['bert4rec', 0]}+{names['bert4rec', 1]}"
  proc = compare(f"{bert},{names['sasrec', 0]}", "--baselines", f"--out={out_md}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"{names['sasrec', 0]}: no per-user test ranks yet; evaluating it first" in proc.stdout
  assert f"{names['bert4rec', 0]}: no per-user" not in proc.stdout
  text = out_md.read_text()
  figure = tmp_path / "cmp.png"  # beside the report: the metrics with their intervals
  assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"Figure: `{figure}`" in text
  for kind in ("bert4rec (reference) | 2 |", "sasrec | 1 |", "most_popular", "markov"):
    assert kind in text
  assert "## Paired tests against M0" in text and "## ndcg@10 by history length" in text
  assert "target popularity (training count quintile)" in text
  # Two seeds: the mean over seeds ± their std, from each seed's per-user ranks.
  import pandas as pd
  seed_means = [significance.per_user_metrics(pd.read_parquet(
      tmp_path / "results" / names["bert4rec", s] / "test_per_user.parquet")["rank"].to_numpy(), "ndcg@10").mean()
      for s in (0, 1)]
  row = next(line for line in text.splitlines() if line.startswith("| ndcg@10 |"))
  assert row.split(" | ")[1] == f"{np.mean(seed_means):.4f} ± {np.std(seed_means, ddof=1):.4f}"
  # Selection and cost of each trained model (each seed), as the pipeline's results files hold them.
  table = [line.split(" | ") for line in text.split("## Selection on validation and training time")[1]
           .split("## All metrics")[0].splitlines() if line.startswith("| M")]
  assert [t[1] for t in table[:3]] == [f"`{names[k]}`" for k in (("bert4rec", 0), ("bert4rec", 1), ("sasrec", 0))]
  assert [(t[0], t[1].split("_")[0]) for t in table[3:]] == [("| M2", "`most"), ("| M3", "`markov")]
  for t in table[:3]:
    name = t[1].strip("`")
    folder = next(d for d in [tmp_path / "results" / name, *sorted((tmp_path / "results" / name).glob("eval-*"))]
                  if (d / "test_per_user.parquet").exists())
    held, valid = (json.loads((folder / f"{s}_metrics.json").read_text()) for s in ("test", "valid"))
    kind = name.split("_")[0]
    assert t[2] == "ndcg@10" and t[3] == f"{held['selection']['value']:.4f} ({held['selection']['validated_users']:,} users)"
    assert held["selection"]["step"] in (60, 120) and t[6] == f"{held['checkpoint_step']:,} of 120"
    assert t[4] == f"{valid['metrics'][kind]['ndcg@10']:.4f}" and t[5] == f"{held['metrics'][kind]['ndcg@10']:.4f}"
    assert float(t[7]) == round(held["training_time"]["seconds"] / 60, 1)
    if kind == "sasrec":
      valid_sasrec = valid["metrics"][kind]["ndcg@10"]
  assert [t[2] for t in table[3:]] == ["– (fitted)"] * 2
  # On the validation split its column is given once, each row as wide as the header.
  on_valid = compare(names["sasrec", 0], "--split=valid")
  assert on_valid.returncode == 0, on_valid.stderr[-3000:]
  lines = on_valid.stdout.split("## Selection on validation and training time")[1]
  lines = lines.split("## All metrics")[0].splitlines()
  header = next(line for line in lines if line.startswith("| id |"))
  assert header == ("| id | model | selected on | periodic validation | valid ndcg@10 | selected step | "
                    "training (min) | validation share |")
  (row,) = [line for line in lines if line.startswith("| M0")]
  assert row.count("|") == header.count("|") and row.split(" | ")[4] == f"{valid_sasrec:.4f}"
  # Holm over the 3 models x 4 metrics tested against the reference; the verdict uses it.
  tests = [line.split(" | ") for line in text.splitlines() if line.startswith("| M") and " | [" not in line
           and line.count("|") == 15]
  assert len(tests) == 12
  raw = np.array([float(t[6]) for t in tests])
  # Both columns are printed to 2 significant digits: each rounding moves a value by up to 5%.
  np.testing.assert_allclose([float(t[7]) for t in tests], significance.holm(raw), rtol=0.11, atol=1e-300)
  # One seed on the other side (seed 0): no seed pairs, so the reference's spread and no seed-level test.
  assert all(t[9] == f"{np.std(seed_means, ddof=1):.4f} (reference's)" for t in tests if t[1] == "ndcg@10")
  assert all([c.strip(" |") for c in t[10:]] == ["–"] * 4 for t in tests)
  assert "verdict: these models | seed spread | seed level: t (pairs) | p | Holm p | verdict: the recipe |" in text
  # The most-popular baseline is far below a trained model on the planted structure: significant.
  rows = [t for t in tests if t[0] == "| M2" and t[1] == "ndcg@10"]
  assert rows and rows[0][8] == "worse"
  # Its ranks evaluated above (beside its own results, for the script's settings) are found again.
  again = compare(names["sasrec", 0])
  assert again.returncode == 0 and "evaluating it" not in again.stdout, again.stdout[-2000:] + again.stderr[-2000:]
  # A model another run holds (training it): refused in one line, never evaluated half-trained.
  from bert4rec_jax import io_utils
  sasrec_dir = str(tmp_path / "models" / names["sasrec", 0])
  with io_utils.lock(pipeline.model_lock(sasrec_dir, str(tmp_path)), f"model {names['sasrec', 0]}"):
    busy = compare(names["sasrec", 0], "--evaluate")
  assert busy.returncode == 1 and "Traceback" not in busy.stderr, busy.stderr[-2000:]
  last = busy.stderr.strip().splitlines()[-1]
  assert last.startswith(f"error: model {names['sasrec', 0]} ") and " is in use by " in last
  # Only seeds of one model may be joined.
  bad = compare(f"{names['bert4rec', 0]}+{names['sasrec', 0]}")
  assert bad.returncode != 0 and "differs from" in bad.stderr and "in more than config.seed" in bad.stderr


def test_stale_and_partly_trained_models_and_other_protocols(tiny_config, tmp_path, monkeypatch, capsys):
  """Ranks of a checkpoint the model no longer selects are evaluated again; a model killed before
  its last step is marked partly trained, its step shown of the planned steps; models evaluated
  on another scale are refused; --bootstrap=0 still gives verdicts."""
  c = tiny_config.copy_and_resolve_references()
  c.train.num_train_steps, c.train.eval_every_steps = 80, 40
  c.data.synthetic.noise = 0.05
  c.eval.per_user_top_k = 10  # what the script evaluates with: evaluated again, into the same folder
  name = pipeline.run(c, str(tmp_path), mode="train", stop_at=40)["model_name"]
  pipeline.run(c, str(tmp_path), mode="evaluate")  # a killed run's model, evaluated as it is
  other = c.copy_and_resolve_references()
  other.seed = 1
  second = pipeline.run(other, str(tmp_path), mode="all")["model_name"]

  def compare(*extra):
    monkeypatch.setattr("sys.argv", ["compare_models.py", f"--workdir={tmp_path}", "--bootstrap=0", *extra])
    compare_models.main()
    return capsys.readouterr().out

  def step_cell(text, model):
    table = text.split("## Selection on validation")[1].split("## All metrics")[0]
    return next(line.split(" | ")[6] for line in table.splitlines() if line.startswith("| M") and f"`{model}`" in line)

  text = compare(f"--models={name}")
  assert step_cell(text, name) == "40 of 80 (**partly trained**: at 40)"
  assert ("**Partly trained** (its training was stopped before its end; a rerun of its command goes on): "
          f"`{name}`") in text
  pipeline.run(c, str(tmp_path), mode="train")  # training goes on to its end
  text = compare(f"--models={name},{second}", "--baselines")
  stale = next(line for line in text.splitlines() if line.startswith(f"{name}: its test ranks "))
  assert stale in (f"{name}: its test ranks are of step 40, the checkpoint it selects now is step 80; evaluating it "
                   "first", f"{name}: its test ranks were made when its training had reached step 40, now step 80; "
                   "evaluating it first")
  held = json.loads((tmp_path / "results" / name / "test_metrics.json").read_text())
  assert held["training_time"]["step"] == 80 and step_cell(text, name) == f"{held['checkpoint_step']:,} of 80"
  assert "Partly trained" not in text and "--bootstrap=0: the verdict rests on the t-test alone" in text
  # Without an interval the verdict rests on p: most-popular is far below the trained model.
  row = next(line.split(" | ") for line in text.splitlines() if line.startswith("| M2 | ndcg@10 |"))
  assert row[4].endswith(" –") and row[8].strip(" |") == "worse"
  # The same results once more: nothing is stale now.
  assert "evaluating it" not in compare(f"--models={name},{second}")
  # Another model of the same name (here a copy, in another workdir, given by its path): told apart
  # by its path, its results read from its own workdir; one folder given twice is refused.
  copy = tmp_path / "elsewhere"
  for part in ("models", "results"):
    shutil.copytree(tmp_path / part, copy / part)
  text = compare(f"--models={name},{copy / 'models' / name}")
  assert f"| M1 | `{name} [{copy / 'models' / name}]` |" in text and "evaluating it" not in text
  with pytest.raises(SystemExit, match=f"{name} is given twice"):
    compare(f"--models={name},{tmp_path / 'models' / name}")
  with pytest.raises(SystemExit, match="a model folder outside a workdir's models/"):
    shutil.copytree(tmp_path / "models" / name, copy / name)
    compare(f"--models={copy / name}")
  # A model evaluated with the history in its full ranking is on another scale: refused.
  path = tmp_path / "results" / second / "test_metrics.json"
  kept = path.read_text()
  for field, value in (("eval.exclude_history", False), ("eval.num_negatives", 50)):
    changed = json.loads(kept)
    changed["settings"][field] = value
    path.write_text(json.dumps(changed))
    with pytest.raises(SystemExit) as refused:
      compare(f"--models={name},{second}")
    assert str(refused.value) == (f"{second} was evaluated with {field}={value!r}, {name} with "
                                  f"{json.loads(kept)['settings'][field]!r}: their test metrics are on other scales; "
                                  "compare models evaluated alike")
  changed = json.loads(kept)
  changed["settings"]["seed"] = 5  # the negatives' seed: the same scale
  path.write_text(json.dumps(changed))
  assert "## Paired tests" in compare(f"--models={name},{second}")
