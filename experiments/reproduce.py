"""Reproduction of the BERT4Rec paper's results on MovieLens-1M and Amazon Beauty.

  python experiments/reproduce.py                                   # both datasets
  python experiments/reproduce.py --datasets=beauty                 # one
  python experiments/reproduce.py --evaluate_only                   # never train: report the models as they are
  python experiments/reproduce.py --time_limit_minutes=60           # train in resumable slices
  python experiments/reproduce.py --notes_only                      # only re-embed sweep tables and notes

For each dataset it trains the committed config (`configs/<dataset>.py`; resuming from its
checkpoints, or reusing a finished model), evaluates the test split under both protocols
(100 popularity-sampled negatives, the paper's; and full ranking with the history excluded),
keeps the per-user ranks (results/<model>/test_per_user.parquet), and writes
docs/reproduction.md: ours vs the published numbers for every metric, with 95% bootstrap
confidence intervals over users, the most-popular and first-order Markov-chain baselines
evaluated by the same code, training wall-clock time, steps, epochs, device and the command.
"""
import argparse
import datetime
import importlib
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(REPO, "bert4rec_jax")):  # a checkout (installed: the package is importable)
  sys.path.insert(0, REPO)

from bert4rec_jax.errors import one_line  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchmark  # noqa: E402  (a sibling script)
import compare_models  # noqa: E402  (a sibling script: training_state)
from bert4rec_jax.significance import bootstrap_ci, per_user_metrics  # noqa: E402

# What the rows below are, and are not: said at the top of the report until the honest rows exist.
HONESTY = ("**How these settings were chosen.** Every setting of `configs/ml1m.py` and `configs/beauty.py` "
           "(schedule, learning rate, dropout, next-item weight, reading, weight decay) was chosen by its score on "
           "the **test** split, one model per setting, one seed: the rows below are the paper's protocol, not an "
           "honest estimate of what these settings score on unseen users. The honest protocol (settings chosen on "
           "the validation split with `task=train_val_test`, the best validation checkpoint, early stopping, test "
           "reported once for what was chosen, 3 seeds, and SASRec with cross-entropy through the same selection) "
           "is prepared as the sweeps `ml1m_honest`, `ml1m_sasrec_honest`, `beauty_honest` and "
           "`beauty_sasrec_honest` and has not been run yet.")

# Published anchors. Sampled protocol: Sun et al., "BERT4Rec", CIKM 2019, Table 2 (100
# popularity-sampled negatives, leave-one-out). Full ranking (all items, history excluded):
# Klenitskiy & Vasilev, "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?",
# RecSys 2023, on the same preprocessed files.
PAPER = {
    "ml1m": {"sampled_hr@1": .2863, "sampled_hr@5": .5876, "sampled_hr@10": .6970, "sampled_ndcg@5": .4454,
             "sampled_ndcg@10": .4818, "sampled_mrr": .4254},
    "beauty": {"sampled_hr@1": .0953, "sampled_hr@5": .2207, "sampled_hr@10": .3025, "sampled_ndcg@5": .1599,
               "sampled_ndcg@10": .1862, "sampled_mrr": .1701},
}
KV2023 = {  # BERT4Rec and SASRec with cross-entropy loss, full ranking
    "ml1m": {"bert4rec": {"hr@10": .2843, "ndcg@10": .1537}, "sasrec_ce": {"hr@10": .3152, "ndcg@10": .1821}},
    "beauty": {"bert4rec": {"hr@10": .0338, "ndcg@10": .0187}, "sasrec_ce": {"hr@10": .0533, "ndcg@10": .0327}},
}
TARGETS = {
    "ml1m": {"sampled_hr@10": .697, "sampled_ndcg@10": .482, "hr@10": .29, "ndcg@10": .16},
    "beauty": {"sampled_hr@10": .3025, "sampled_ndcg@10": .1862, "hr@10": .055, "ndcg@10": .035},
}
METRICS = ["sampled_hr@1", "sampled_hr@5", "sampled_hr@10", "sampled_ndcg@5", "sampled_ndcg@10", "sampled_mrr",
           "hr@1", "hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr"]


def load_config(dataset: str, overrides):
  from bert4rec_jax.errors import UserError
  try:  # a checkout's configs/ or the installed ones
    module = importlib.import_module(f"bert4rec_jax.configs.{dataset}")
  except ModuleNotFoundError as e:
    if e.name != f"bert4rec_jax.configs.{dataset}":
      raise
    raise UserError(f"--datasets: no shipped config named {dataset!r} (configs/{dataset}.py); "
                    "give shipped configs' names, e.g. ml1m,beauty") from None
  c = module.get_config()
  benchmark.apply_overrides(c, overrides)
  c.eval.per_user_top_k = max(c.eval.per_user_top_k, 10)  # keeps per-user ranks for the intervals
  c.eval.ks = tuple(sorted(set(c.eval.ks) | {1, 5, 10, 20}))
  return c


def baselines_for(config, prepared, train_seqs, test):
  """Most-popular and Markov-chain test ranks, by the same evaluator and negatives as the model."""
  from bert4rec_jax import baselines, evaluate, parallel
  ev = evaluate.Evaluator(test, prepared.vocab, eval_config=config.eval, max_seq_length=config.model.max_seq_length,
                          devices=parallel.local_devices(0), seed=config.seed)
  return {name: baselines.split_ranks(kind, ev, train_seqs, prepared.vocab.num_items, config.eval.exclude_history)
          for name, kind in (("most_popular", "most_popular"), ("markov_chain", "markov"))}


def summarize(ranks: dict, resamples: int) -> dict:
  row = {}
  for name in METRICS:
    key = "sampled" if name.startswith("sampled_") else "full"
    if key not in ranks:
      continue
    v = per_user_metrics(ranks[key], name)
    row[name] = (float(v.mean()),) + (bootstrap_ci(v, resamples) if resamples else (None, None))
  row["users"] = len(ranks["full"])
  return row


def fmt(cell) -> str:
  if cell is None:
    return "–"
  if isinstance(cell, tuple):
    mean, lo, hi = cell
    return f"{mean:.4f}" + (f" [{lo:.4f}, {hi:.4f}]" if lo is not None else "")
  return f"{cell:.4f}"


SECTION_START = "<!-- reproduce.py section: "
MARKER = SECTION_START + "{} -->"


def report_sections(text: str) -> dict:
  """{dataset: the body of its section} of a report written by this script."""
  parts = text.split(SECTION_START)[1:]  # each part: "<dataset> -->" + body
  return dict(part.split(" -->", 1) for part in parts)


def merge_sections(old_text: str, new_sections: dict, order) -> list:
  """The report's dataset sections: the new ones, plus those of an existing report for datasets
  not re-run this time (each section carries the command that made it)."""
  kept = {name: MARKER.format(name) + body.rstrip() + "\n" for name, body in report_sections(old_text).items()}
  kept.update({k: MARKER.format(k) + "\n" + v for k, v in new_sections.items()})
  return [kept[k] for k in list(order) + sorted(set(kept) - set(order)) if k in kept]


# The sweeps embedded in each dataset's section, when they have been run (experiments/sweeps/).
SWEEPS = (("{}_choices", "Choices, measured (each against the first row at one short, equal budget of steps)"),
          ("{}_long", "Longer schedules and other models, measured (each row a full run)"),
          ("{}_levers", "Other levers, measured (each row a full run of the committed schedule with one change)"),
          ("{}_next_item", "The next-item auxiliary loss, measured (against the first row; each run's steps in"
           " its row)"),
          ("{}_hybrid", "Levers on top of the next-item loss, measured (each row's changes to the config its"
           " sweep file pins, steps and reading in its row)"))


def embeds_sweep(line: str, name: str) -> bool:
  """Whether a report line is the caption of sweep `name`'s table ("<caption>, `<name>`: ...")."""
  return line.partition(": ")[0].endswith(f", `{name}`")


def embedded_table(previous: str, name: str) -> list:
  """The block of an earlier report that embeds sweep `name` (its caption line, whatever the
  caption's wording was then, through the end of its table), or [] when the report has none."""
  lines = previous.splitlines()
  first = next((i for i, line in enumerate(lines) if embeds_sweep(line, name)), None)
  if first is None:
    return []
  end, in_table = first + 1, False
  while end < len(lines) and not (in_table and not lines[end].startswith("|")):
    in_table = in_table or lines[end].startswith("|")
    end += 1
  return lines[first:end] + [""] if in_table else []


def choices_table(sweep_dir: str, dataset: str, previous: str = "") -> list:
  """The tables of the dataset's sweeps in SWEEPS that have been run, each with its description
  and command. A sweep whose results are not in `sweep_dir` (a fresh clone keeps no runs) keeps
  its table from `previous`, the dataset's section of the earlier report; a `_choices` sweep
  in neither is named as not run yet."""
  lines = []
  for pattern, caption in SWEEPS:
    name = pattern.format(dataset)
    path = os.path.join(sweep_dir, name, "results.md")
    command = f"python experiments/sweep.py experiments/sweeps/{name}.py"
    if not os.path.exists(path):
      kept = embedded_table(previous, name)
      lines += kept
      if not kept and name.endswith("_choices"):
        lines += ["Choices, measured: not run yet (`" + command + "`).", ""]
      continue
    with open(path) as f:
      text = f.read()
    paragraphs = [p.strip() for p in text.split("\n\n")]
    # results.md: a title, the sweep file's description (its first paragraph says what it asks), the
    # command, then what the columns are (which split, ranked or not), then the table
    description = next((p for p in paragraphs[1:] if p and not p.startswith(("#", "Made by", "|"))), "")
    made_by = next((i for i, p in enumerate(paragraphs) if p.startswith("Made by")), None)
    about = paragraphs[made_by + 1] if made_by is not None and made_by + 1 < len(paragraphs) else ""
    about = [] if not about or about.startswith("|") else [" ".join(about.split()), ""]
    table = [line for line in text.splitlines() if line.startswith("|")]
    lines += ([f"{caption}, `{name}`: " + " ".join(description.split()), ""]
              + ([paragraphs[made_by], ""] if made_by is not None else []) + about + table + [""])
  return lines


def section(dataset, info, ours, base, command="", choices=()) -> str:
  paper, kv, targets = PAPER.get(dataset, {}), KV2023.get(dataset, {}), TARGETS.get(dataset, {})
  trained = info.get("trained", info["step"])
  how = []  # where training ended, when not at the selected step after all its steps
  if info["step"] != trained:
    how.append(f"selected on validation among the {trained:,} steps trained")
  if info.get("ended") in ("stopped early", "time bound"):
    how.append("training stopped early" if info["ended"] == "stopped early" else
               "training ended at its time bound (train.max_training_minutes)")
  lines = [f"## {info['title']}", "", f"Made by `{command}`.", "",
           f"Model `{info['model_name']}`: step {info['step']:,} of {info['num_train_steps']:,}"
           + "".join(f", {h}" for h in how) +
           f" ({info['epochs']:.0f} epochs of {info['examples_per_epoch']:,} training examples),"
           f" {info['train_minutes']:.1f} minutes of training wall-clock (validation included, to the end of"
           f" training) on {info['device']}."
           + ("" if info["finished"] else " **Training not finished: interim numbers.**"), "",
           f"Config: `{info['config']}`.", "",
           "| metric | published BERT4Rec | ours [95% CI] | target | met | most popular | Markov chain |",
           "|---|---:|---:|---:|:---:|---:|---:|"]
  for name in METRICS:
    if name not in ours:
      continue
    published = paper.get(name, kv.get("bert4rec", {}).get(name))
    target = targets.get(name)
    met = "" if target is None else ("yes" if ours[name][0] >= target else f"no ({ours[name][0] - target:+.4f})")
    lines.append(f"| {name} | {fmt(published)} | {fmt(ours[name])} | {fmt(target)} | {met} |"
                 f" {fmt(base['most_popular'].get(name, (None,))[0])} | {fmt(base['markov_chain'].get(name, (None,))[0])} |")
  lines += ["", "Full-ranking rows exclude the user's history."]
  if kv:
    lines[-1] += (f" SASRec with cross-entropy (Klenitskiy & Vasilev 2023) reaches HR@10 {kv['sasrec_ce']['hr@10']:.4f},"
                  f" NDCG@10 {kv['sasrec_ce']['ndcg@10']:.4f} on this set.")
  lines += ["", f"Users evaluated: {ours['users']:,}.", ""]
  if info["curve"]:
    lines += ["Validation during training (full ranking, NDCG@10 on a fixed subset of users, the second-to-last"
              " item):", "", "| step | " + " | ".join(f"{s:,}" for s, _ in info["curve"]) + " |",
              "|---|" + "---:|" * len(info["curve"]),
              "| NDCG@10 | " + " | ".join(f"{v:.4f}" for _, v in info["curve"]) + " |", ""]
  if info.get("loss_curve"):
    next_item = all(n is not None for _, (_, n) in info["loss_curve"])
    lines += [f"Training loss (masked-item cross-entropy{', and the next-item one' if next_item else ''},"
              " mean over the logging window):", "",
              "| step | " + " | ".join(f"{s:,}" for s, _ in info["loss_curve"]) + " |",
              "|---|" + "---:|" * len(info["loss_curve"]),
              "| masked-item loss | " + " | ".join(f"{m:.3f}" for _, (m, _) in info["loss_curve"]) + " |"]
    if next_item:
      lines.append("| next-item loss | " + " | ".join(f"{n:.3f}" for _, (_, n) in info["loss_curve"]) + " |")
    lines.append("")
  lines += list(choices)
  lines += notes(dataset)
  return "\n".join(lines)


NOTES_DIR = os.path.join(REPO, "docs", "reproduction_notes")


def notes(dataset: str) -> list:
  """docs/reproduction_notes/<dataset>.md (written by hand: what was tried, what is next), when present."""
  path = os.path.join(NOTES_DIR, f"{dataset}.md")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [NOTES_HEADING, "", f.read().strip(), "",
            f"(From `docs/reproduction_notes/{dataset}.md`.)", ""]


NOTES_HEADING = "### What was tried, and what is next"


def refresh_section(body: str, dataset: str, sweep_dir: str) -> str:
  """A dataset section of an earlier report with its measured part (everything before the
  sweep tables) unchanged, and its sweep tables and notes written anew: for --notes_only, which
  needs no trained model."""
  lines = body.strip("\n").splitlines()
  names = [pattern.format(dataset) for pattern, _ in SWEEPS]
  cut = next((i for i, line in enumerate(lines)
              if line == NOTES_HEADING or line.startswith("Choices, measured: not run yet")
              or any(embeds_sweep(line, n) for n in names)), len(lines))
  head = lines[:cut]
  while head and not head[-1]:
    head.pop()
  return "\n".join(head + [""] + choices_table(sweep_dir, dataset, body) + notes(dataset))


@one_line
def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--datasets", default="ml1m,beauty")
  ap.add_argument("--workdir", default="projects", help="models and results go to <workdir>/<dataset>/")
  ap.add_argument("--set", action="append", default=[], help="config override a.b=value (repeatable, every dataset)")
  ap.add_argument("--evaluate_only", action="store_true", help="never train; report the latest checkpoints")
  ap.add_argument("--notes_only", action="store_true",
                  help="evaluate nothing: rewrite only the sweep tables and notes of the report's existing sections")
  ap.add_argument("--time_limit_minutes", type=float, default=0, help="train at most this long per dataset, then report")
  ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples over users (0 = no intervals)")
  ap.add_argument("--out", default=os.path.join(REPO, "docs", "reproduction.md") if os.path.isdir(
      os.path.join(REPO, "docs")) else "reproduction.md", help="the report (default: docs/reproduction.md of a "
                  "checkout; reproduction.md here for an installed package)")
  ap.add_argument("--sweeps", default="sweeps", help="where experiments/sweep.py wrote the <dataset>_{choices,long,levers,next_item} sweeps")
  args = ap.parse_args()

  import pandas as pd
  from bert4rec_jax import dataset as dataset_lib, input_pipeline, io_utils, model_store, pipeline

  command = "python experiments/reproduce.py " + " ".join(sys.argv[1:])
  old_text = ""
  if os.path.exists(args.out):
    with open(args.out) as f:
      old_text = f.read()
  previous = report_sections(old_text)
  sections = {}
  for dataset in args.datasets.split(",") if args.notes_only else ():
    if dataset not in previous:
      raise SystemExit(f"--notes_only: {args.out} has no {dataset} section yet; run without it first")
    sections[dataset] = refresh_section(previous[dataset], dataset, args.sweeps)
  for dataset in () if args.notes_only else args.datasets.split(","):
    c = load_config(dataset, args.set)
    if args.time_limit_minutes:
      c.train.training_time_limit_seconds = int(args.time_limit_minutes * 60)
    workdir = os.path.join(args.workdir, dataset)
    t0 = time.time()
    if not args.evaluate_only:
      pipeline.run(c, workdir, mode="train")
    out = pipeline.run(c, workdir, mode="evaluate")
    print(f"{dataset}: trained/evaluated in {time.time() - t0:.0f} s", flush=True)
    per_user = pd.read_parquet(os.path.join(out["results_dir"], "test_per_user.parquet"))
    ranks = {"full": per_user["rank"].to_numpy()}
    if "sampled_rank" in per_user:
      ranks["sampled"] = per_user["sampled_rank"].to_numpy()
    ours = summarize(ranks, args.bootstrap)
    prepared, _ = dataset_lib.load_or_prepare(c.data, workdir, pipeline.min_seq_length(c))
    train_seqs, splits = pipeline.task_splits(c.task, prepared.sequences)
    test = splits["test"]
    base = {k: summarize(v, 0) for k, v in baselines_for(c, prepared, train_seqs, test).items()}
    model_dir = out["model_dir"]
    step = out["checkpoint_step"]
    # How training ended, from the model folder (its resolved config): not the selected step, which
    # may be an earlier one of a finished run.
    state = compare_models.training_state(model_dir, model_store.Folder(model_dir).saved_config())
    examples = input_pipeline.make_stream(c, train_seqs).num_examples
    curve, loss_curve = [], []
    if os.path.exists(os.path.join(model_dir, "metrics.jsonl")):
      with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
      curve = sorted({r["step"]: r["valid/ndcg@10"] for r in records if "valid/ndcg@10" in r and "step" in r}.items())
      losses = sorted({r["step"]: (r["train/loss"], r.get("train/next_item_loss"))
                       for r in records if "train/loss" in r and "step" in r}.items())
      loss_curve = [losses[i] for i in np.unique(np.linspace(0, len(losses) - 1, min(len(losses), 10)).round().astype(int))] \
          if losses else []
    info = {"curve": curve, "loss_curve": loss_curve, "title": {"ml1m": "MovieLens-1M", "beauty": "Amazon Beauty"}.get(dataset, dataset),
            "model_name": out["model_name"], "step": step, "num_train_steps": state["planned"],
            "trained": state["newest"], "ended": state["how"], "finished": state["how"] != "partly trained",
            "epochs": step * c.train.batch_size / examples, "examples_per_epoch": examples,
            "train_minutes": model_store.training_seconds(model_dir, state["newest"]) / 60,
            "device": " then ".join(model_store.training_devices(model_dir, state["newest"])) or "unrecorded devices",
            "config": f"configs/{dataset}.py" + "".join(f" --config.{s}" for s in args.set)}
    sections[dataset] = section(dataset, info, ours, base, command,
                                choices_table(args.sweeps, dataset, previous.get(dataset, "")))

  header = ["# Reproduction of BERT4Rec's published results", "",
            f"Written by `experiments/reproduce.py` (last on {datetime.date.today().isoformat()}) from real runs; each"
            " section names the command that made it, and re-running that command re-evaluates the same models"
            " and must agree within the intervals. `--evaluate_only` reports trained models; without it the"
            " same command trains them first (resuming from checkpoints).", "",
            "Sampled protocol: the target and 100 negatives drawn by popularity (never the user's history), as in",
            "the paper (Sun et al., CIKM 2019, Table 2). Full ranking: every item, the user's history excluded, ties",
            "counted against the target. 95% intervals: percentile bootstrap over users"
            f" ({args.bootstrap} resamples). The test item is each user's last; models and baselines learn from",
            "everything before it (`task=train_test`, the paper's protocol: a fixed number of steps, no model",
            "selection on held-out data). The Markov chain scores items by transition counts from the user's last",
            "item and orders equal counts by training popularity.", "",
            HONESTY, ""]
  merged = merge_sections(old_text, sections, ["ml1m", "beauty"])
  with io_utils.atomic_path(args.out) as tmp:
    with open(tmp, "w") as f:
      f.write("\n".join(header) + "\n" + "\n".join(merged))
  print(f"report -> {args.out}")


if __name__ == "__main__":
  main()
