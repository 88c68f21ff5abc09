"""The reproduction report's per-user metrics and bootstrap intervals."""
import importlib.util
import os

import numpy as np

from bert4rec_jax import metrics

_spec = importlib.util.spec_from_file_location(
    "reproduce", os.path.join(os.path.dirname(__file__), "..", "experiments", "reproduce.py"))
reproduce = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reproduce)


def test_per_user_metrics_average_to_the_summary():
  ranks = np.random.default_rng(0).integers(0, 300, 5000)
  summary = metrics.summarize(ranks, (1, 5, 10, 20))
  for name in ("hr@1", "hr@10", "ndcg@5", "ndcg@20", "mrr", "sampled_hr@5", "sampled_ndcg@10"):
    assert np.isclose(reproduce.per_user_metrics(ranks, name).mean(), summary[name.replace("sampled_", "")])


def test_bootstrap_interval_matches_normal_theory():
  values = (np.random.default_rng(1).random(4000) < 0.3).astype(float)  # a hit rate of about 0.3
  lo, hi = reproduce.bootstrap_ci(values, resamples=2000)
  se = values.std() / np.sqrt(len(values))
  assert lo < values.mean() < hi
  assert np.isclose(hi - lo, 2 * 1.96 * se, rtol=0.15)
  assert reproduce.bootstrap_ci(values, resamples=2000) == (lo, hi)  # seeded: a re-run reports the same interval


def test_report_end_to_end_on_synthetic_data(tmp_path, monkeypatch):
  out = tmp_path / "reproduction.md"
  out.write_text("# old header\n" + reproduce.MARKER.format("ml1m") + "\n## MovieLens-1M\n\nOLD ML-1M SECTION\n")
  argv = ["reproduce.py", "--datasets=synthetic", f"--workdir={tmp_path}", f"--out={out}", "--bootstrap=50",
          "--set=train.num_train_steps=30", "--set=data.synthetic.num_users=300", "--set=wandb.mode=disabled",
          "--set=train.eval_every_steps=10", "--set=train.log_every_steps=10", f"--sweeps={tmp_path}/sweeps",
          "--set=train.next_item_loss_weight=1.0",
          "--set=train.select_metric=hr@1000"]  # every item in the top 1000: equal values, the first one selected
  monkeypatch.setattr("sys.argv", argv)
  reproduce.main()
  monkeypatch.setattr("sys.argv", argv + ["--evaluate_only"])
  reproduce.main()  # re-reporting replaces the dataset's section, keeps the others
  text = out.read_text()
  assert text.count("OLD ML-1M SECTION") == 1 and text.count("## synthetic") == 1
  assert text.index("OLD ML-1M SECTION") < text.index("## synthetic") and "# old header" not in text
  assert "Choices, measured: not run yet" in text and "--evaluate_only`." in text
  # A finished run that selected an earlier step: not interim; its training time is to its end.
  assert "step 10 of 30, selected on validation among the 30 steps trained (" in text
  assert "Training not finished" not in text and "| ndcg@10 |" in text and "| sampled_hr@10 |" in text
  from bert4rec_jax import model_store
  model_dir = next((tmp_path / "synthetic" / "models").iterdir())
  minutes = text.split(" minutes of training wall-clock")[0].rsplit(" ", 1)[1]
  assert minutes == f"{model_store.training_seconds(str(model_dir), 30) / 60:.1f}"
  for row in ("| masked-item loss |", "| next-item loss |"):  # both losses, logged every 10 steps
    assert len(next(line for line in text.splitlines() if line.startswith(row)).split("|")) == 3 + 3
  row = next(line for line in text.splitlines() if line.startswith("| ndcg@10 |"))
  ours = row.split("|")[3]  # "mean [lo, hi]"
  mean, lo, hi = (float(x) for x in ours.replace("[", " ").replace("]", " ").replace(",", " ").split())
  assert lo <= mean <= hi
  # The Markov chain learns the synthetic data's stride walks from transition counts alone.
  assert float(row.split("|")[7]) > 0.3


def test_sweep_tables_embedded_in_order_with_their_descriptions(tmp_path):
  def results(name, description, row):
    (tmp_path / name).mkdir()
    (tmp_path / name / "results.md").write_text(
        f"# Sweep results\n\n{description}\nsecond line.\n\n  python experiments/sweep.py x.py\n\n"
        f"Made by `cmd {name}`, trained on 1 x gpu.\n\nTest split, mean.\n\n| a | ndcg@10 |\n|---|---|\n{row}\n")
  assert reproduce.choices_table(str(tmp_path), "d") == [
      "Choices, measured: not run yet (`python experiments/sweep.py experiments/sweeps/d_choices.py`).", ""]
  results("d_levers", "Levers asked.", "| 1 | 0.2 |")
  results("d_long", "Long asked.", "| 2 | 0.3 |")
  results("d_choices", "Choices asked.", "| 3 | 0.1 |")
  results("e_long", "Another dataset's.", "| 9 | 0.9 |")
  text = "\n".join(reproduce.choices_table(str(tmp_path), "d"))
  assert "not run yet" not in text and "Another dataset" not in text
  order = [text.index(s) for s in ("`d_choices`: Choices asked. second line.", "Made by `cmd d_choices`", "| 3 | 0.1 |",
                                   "`d_long`: Long asked.", "| 2 | 0.3 |", "`d_levers`: Levers asked.", "| 1 | 0.2 |")]
  assert order == sorted(order)
  assert "python experiments/sweep.py x.py" not in text
  # What the columns are (which split) stays with the table: between its command and the table.
  assert text.index("Made by `cmd d_choices`") < text.index("Test split, mean.") < text.index("| 3 | 0.1 |")
  assert text.count("Test split, mean.") == 3
  # Without the runs (a fresh clone), each table comes from the earlier report's section, unchanged.
  previous = "## D\n\n| metric | ours |\n|---|---|\n\n" + text + "\n### What was tried\n\n- notes\n"
  empty = tmp_path / "fresh"
  empty.mkdir()
  assert "\n".join(reproduce.choices_table(str(empty), "d", previous)) == text
  partial = previous.replace("`d_long`", "`d_other`")  # an earlier report without d_long: it is left out
  kept = "\n".join(reproduce.choices_table(str(empty), "d", partial))
  assert "Long asked" not in kept and "| 3 | 0.1 |" in kept and "| 1 | 0.2 |" in kept


def test_notes_only_rewrites_sweep_tables_and_notes_and_keeps_the_measured_part(tmp_path, monkeypatch):
  notes_dir = tmp_path / "notes"
  notes_dir.mkdir()
  (notes_dir / "d.md").write_text("- new notes\n")
  monkeypatch.setattr(reproduce, "NOTES_DIR", str(notes_dir))
  measured = "## D\n\nMade by `python experiments/reproduce.py`.\n\n| metric | ours |\n|---|---|\n| ndcg@10 | 0.1 |\n"
  table = ("Choices, measured (old caption), `d_choices`: Asked.\n\nMade by `cmd`.\n\n| a | ndcg@10 |\n|---|---|\n"
           "| 3 | 0.1 |\n")
  body = f"\n{measured}\n{table}\n{reproduce.NOTES_HEADING}\n\n- old notes\n\n(From `docs/reproduction_notes/d.md`.)\n"
  got = reproduce.refresh_section(body, "d", str(tmp_path / "no_sweeps"))
  assert got.startswith(measured) and table in got  # no runs on disk: the table is kept as it was
  assert "- new notes" in got and "old notes" not in got and got.count(reproduce.NOTES_HEADING) == 1
  assert reproduce.refresh_section(got, "d", str(tmp_path / "no_sweeps")) == got  # idempotent
