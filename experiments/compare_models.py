"""Compare trained models on the same split: what each was selected on and what it cost, every
metric under both protocols, paired significance tests against a reference model, and
per-segment breakdowns.

  python experiments/compare_models.py --workdir=projects/beauty \\
      --models=<bert4rec model>,<sasrec model> --baselines --out=docs/beauty_comparison.md

Models are names of folders in <workdir>/models (or paths to them), or paths to records of
models (experiments/record_run.py: a model's config, metrics and per-user ranks, kept without its
checkpoints, from this or another machine); all must be trained on the same data and evaluated the
same way (the history exclusion and, where both have sampled ranks, the sampled negatives: anything
else is refused). Each model's per-user ranks come from <workdir>/results/<model>/<split>_per_user.parquet;
a model without that file (evaluated without eval.per_user_top_k, or not yet), or whose file is of
another checkpoint than the one the model now selects (training went on after it was evaluated), is
evaluated first (its per-user file then lies in the folder beside its results that the pipeline
names for those settings, where later comparisons find it), and --evaluate re-evaluates every model;
a record's ranks are used as recorded. A model given by its folder's path is evaluated in the
workdir that folder lies in; two models of one name (a record and a model, or two workdirs') are
told apart in the report by their paths. A model whose training is not over (killed before its
last step, its early stop or its time bound) is compared, marked partly trained. --baselines adds
most-popular and the first-order Markov chain, run by the pipeline on the reference model's data and evaluation settings (model.kind).

For each model and metric: the mean; against the reference (default: the first model) the
mean paired difference, its 95% bootstrap interval over users, and a two-sided paired t-test,
with Holm's correction over every (model, metric) test against the reference (the verdict uses
the corrected p, and the interval when --bootstrap > 0). That test is about these trained models
on these users. Several seeds of one model are given joined by "+" (--models=a_s0+a_s1+a_s2,
b_s0+b_s1+b_s2; they must differ only in config.seed): its per-user values are the means over its
seeds; beside the user-level test stand the seed spread and, where both sides have at least two
seeds in common (paired by config.seed, whatever their order in --models), a paired t-test over
seeds of each seed's mean difference (Holm-corrected over those tests): that one is about the
recipe, whether training again with another seed would be expected to differ.
Segments: users grouped by history length and by the training popularity of their target
(quintiles), NDCG@10 per group. Users are matched by user id and must have the same targets.
"""
import argparse
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if os.path.isdir(os.path.join(REPO, "bert4rec_jax")):  # a checkout (installed: the package is importable)
  sys.path.insert(0, REPO)
sys.path.insert(0, HERE)  # record_run, a sibling script

from bert4rec_jax.errors import one_line  # noqa: E402

TABLE_METRICS = ("hr@1", "hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr",
                 "sampled_hr@1", "sampled_hr@5", "sampled_hr@10", "sampled_ndcg@5", "sampled_ndcg@10", "sampled_mrr")
HISTORY_EDGES = (1, 5, 10, 20, 50, 100, 200)


def model_folder(workdir: str, name: str) -> str:
  return name if os.path.isdir(os.path.join(name, "checkpoints")) or os.path.isfile(os.path.join(name, "config.json")) \
      else os.path.join(workdir, "models", name)


def saved_config(folder: str):
  import ml_collections
  from bert4rec_jax import io_utils
  path = os.path.join(folder, "config.json")
  if not os.path.isfile(path):
    raise SystemExit(f"{folder}: no trained model there (no config.json)")
  saved = io_utils.read_json(path)
  config = ml_collections.ConfigDict(saved["config"])
  if is_record(folder):  # its data file named portably ($BERT4REC_DATA_DIR/<file>)
    import record_run
    config.data.path = record_run.local_path(config.data.path)
  return config, saved["model_name"]


RECORD_MARK = "record.json"
DATA_HASHES = {"data.content": "the prepared data", "data.vocab": "the item vocabulary"}


def data_hashes(folder: str) -> dict:
  """The content hashes of the data a model was trained on, as far as its folder (identity.json)
  or record (record.json) knows them."""
  from bert4rec_jax import io_utils, model_store
  if is_record(folder):
    known = io_utils.read_json(os.path.join(folder, RECORD_MARK)).get("data", {})
  else:
    path = os.path.join(folder, model_store.IDENTITY_FILE)
    known = io_utils.read_json(path).get("identity", {}) if os.path.isfile(path) else {}
  return {k: known[k] for k in DATA_HASHES if known.get(k)}


def is_record(folder: str) -> bool:
  """A model's record (experiments/record_run.py): its config, metrics and per-user ranks, no checkpoints."""
  return os.path.isfile(os.path.join(folder, RECORD_MARK))


def with_per_user_files(config):
  """The model's config as compare_models evaluates it: per-user files kept (their top 10 at least)."""
  config = config.copy_and_resolve_references()
  config.eval.per_user_top_k = max(config.eval.per_user_top_k, 10)
  config.wandb.mode = "disabled"
  return config


def evaluate_model(config, workdir: str):
  """Runs the pipeline's evaluation with per-user files; returns (model name, results folder): the
  model's own, or the one beside it for these evaluation settings."""
  from bert4rec_jax import pipeline
  out = pipeline.run(with_per_user_files(config), workdir, mode="evaluate")
  return out["model_name"], out["results_dir"]


def model_workdir(folder: str) -> str:
  """The workdir a trained model's folder lies in (<workdir>/models/<name>), its results beside it."""
  folder = os.path.abspath(folder)
  if os.path.basename(os.path.dirname(folder)) != "models":
    raise SystemExit(f"{folder}: a model folder outside a workdir's models/ (and not a record): give it by its "
                     "name with --workdir, or record it (experiments/record_run.py)")
  return os.path.dirname(os.path.dirname(folder))


def current_results(results_root: str, config, split: str, model_dir: str, state: dict):
  """(results folder, why it is stale or ""): the model's own results folder when its ranks describe
  the model as it is now, else the one the pipeline names for compare_models' own evaluation settings
  (an earlier comparison's) when that one does; the folder to evaluate into otherwise."""
  from bert4rec_jax import pipeline
  why = stale(results_root, split, model_dir, state)
  if why:
    beside = pipeline.output_dir(results_root, "eval", with_per_user_files(config))
    if beside != results_root and not stale(beside, split, model_dir, state):
      return beside, ""
  return results_root, why


def training_state(model_dir: str, config) -> dict:
  """Where a model folder's training stands now: {"newest": its newest checkpoint's step, "selected":
  the step an evaluation reads (validation's choice, else the newest, as model_store.load_params),
  "planned": config.train.num_train_steps, "how": "all steps", "stopped early", "time bound" (its
  training is over, as model_store.training_ended decides) or "partly trained" (a rerun goes on)}."""
  from bert4rec_jax import model_store, selection, trainer
  folder = model_store.Folder(model_dir)
  newest = 0
  if os.path.isdir(folder.checkpoints):
    manager = model_store.checkpoint_manager(folder, writable=False)
    try:
      newest = manager.latest_step() or 0
    finally:
      manager.close()
  planned = config.train.num_train_steps
  if not model_store.training_ended(model_dir, newest, planned, trainer.time_bound_seconds(config)):
    how = "partly trained"
  elif newest >= planned:
    how = "all steps"
  else:
    how = "stopped early" if selection.stopped_early(model_dir, newest) else "time bound"
  selected = selection.selected_step(model_dir, newest)
  return {"newest": newest, "selected": newest if selected is None else selected, "planned": planned, "how": how}


def recorded_state(held: dict, config) -> dict:
  """training_state of a record's model, from its metrics file (record_run keeps only models whose
  training is over)."""
  newest = (held.get("training_time") or {}).get("step", held.get("checkpoint_step"))
  planned = config.train.num_train_steps
  how = ("all steps" if newest is None or newest >= planned else
         "stopped early" if (held.get("selection") or {}).get("stopped_early") else "time bound")
  return {"newest": newest, "selected": held.get("checkpoint_step"), "planned": planned, "how": how}


def stale(results_dir: str, split: str, model_dir: str, state: dict) -> str:
  """Why the evaluation in `results_dir` does not describe the model as it is now ("" when it does):
  no per-user ranks, or ranks of another checkpoint than the one the model selects now, or made
  before training went on (the selection, its early stop and the training time would be stale)."""
  from bert4rec_jax import io_utils, model_store
  if not os.path.isfile(os.path.join(results_dir, f"{split}_per_user.parquet")):
    return f"no per-user {split} ranks yet"
  path = os.path.join(results_dir, f"{split}_metrics.json")
  held = io_utils.read_json(path) if os.path.isfile(path) else {}
  if held.get("checkpoint_step") != state["selected"]:
    return f"its {split} ranks are of step {held.get('checkpoint_step')}, the checkpoint it selects now is step " \
        f"{state['selected']}"
  then, now = (held.get("training_time") or {}).get("step"), (model_store.training_time(model_dir) or {}).get("step")
  if then != now:
    return f"its {split} ranks were made when its training had reached step {then}, now step {now}"
  return ""


# Evaluation settings that change what a metric measures: full ranking's history exclusion, and the
# sampled protocol's negatives (compared where both models have sampled ranks). The others (cut-offs,
# per-user files, the popularity row, the seed of the negatives) leave the scale alone.
PROTOCOL = ("eval.exclude_history",)
SAMPLED_PROTOCOL = ("eval.num_negatives", "eval.negative_sampling")


def evaluated_with(results_dir: str, split: str, name: str) -> dict:
  """The evaluation settings recorded in a model's `<split>_metrics.json`."""
  from bert4rec_jax import io_utils
  held = io_utils.read_json(os.path.join(results_dir, f"{split}_metrics.json"))
  if "settings" not in held:
    raise SystemExit(f"{name}: its {split} results record no evaluation settings (an older version's): evaluate it "
                     "again (--evaluate; a record: record the model again)")
  return held["settings"]


def protocol_difference(mine: dict, theirs: dict, fields=()):
  """(field, mine, theirs) of the first evaluation setting in which two models' results differ so
  that their metrics are on other scales, None when none: PROTOCOL, SAMPLED_PROTOCOL where both
  have sampled ranks, and `fields`."""
  both_sampled = bool(mine.get("eval.num_negatives")) and bool(theirs.get("eval.num_negatives"))
  for field in PROTOCOL + (SAMPLED_PROTOCOL if both_sampled else ()) + tuple(fields):
    if mine.get(field) != theirs.get(field):
      return field, mine.get(field), theirs.get(field)
  return None


def seed_level(a: dict, b: dict):
  """Paired t-test over seeds of two models' per-seed means ({config.seed: mean}), paired by seed:
  {'pairs', 'diff', 'sd', 't', 'df', 'p'}, or None with fewer than 2 seeds in common."""
  from bert4rec_jax import significance
  common = sorted(set(a) & set(b))
  if len(common) < 2:
    return None
  x, y = np.array([a[s] for s in common]), np.array([b[s] for s in common])
  return {"pairs": len(common), "sd": float(np.std(x - y, ddof=1)), **significance.paired_t_test(x, y)}


def verdict(diff: float, p: float, lo: float = float("nan"), hi: float = float("nan")) -> str:
  """better / worse: p < 0.05 and, where a bootstrap interval was drawn, it excludes 0 on that side."""
  if not p < 0.05:
    return "n.s."
  side = "better" if diff > 0 else "worse"
  if math.isnan(lo) or (lo > 0 if diff > 0 else hi < 0):
    return side
  return "n.s."


def load_ranks(results_dir: str, name: str, split: str):
  import pandas as pd
  path = os.path.join(results_dir, f"{split}_per_user.parquet")
  if not os.path.isfile(path):
    raise SystemExit(f"{path} is missing after evaluating {name}: does its task have a {split} split? "
                     "(task=train_test has only test)")
  return pd.read_parquet(path, columns=None).drop(columns=["top_items"], errors="ignore")


def segments(config, workdir: str, split: str):
  """Per user id: history length and training count of the target, for the split's users."""
  import pandas as pd
  from bert4rec_jax import dataset, pipeline
  prepared, _ = dataset.load_or_prepare(config.data, workdir, pipeline.min_seq_length(config))
  train_seqs, splits = pipeline.task_splits(config.task, prepared.sequences)
  if split not in splits:
    raise SystemExit(f"task {config.task!r} has no {split} split (it has: {', '.join(splits)})")
  held = splits[split]
  counts = train_seqs.token_counts(prepared.vocab.num_items + 2)
  return pd.DataFrame({"user": prepared.users[held.rows], "history_length": held.history.lengths,
                       "target_count": counts[held.targets]})


def bucket_labels(values: np.ndarray, edges) -> np.ndarray:
  edges = list(edges) + [np.inf]
  labels = np.empty(len(values), object)
  for lo, hi in zip(edges[:-1], edges[1:]):
    labels[(values >= lo) & (values < hi)] = f"{lo}-{hi - 1}" if np.isfinite(hi) else f"{lo}+"
  return labels


def popularity_labels(counts: np.ndarray, quantiles: int = 5) -> np.ndarray:
  """Quintiles of users by their target's training count (ties kept together)."""
  edges = np.unique(np.quantile(counts, np.linspace(0, 1, quantiles + 1)[1:-1]))
  group = np.searchsorted(edges, counts, side="right")
  bounds = [counts[group == g] for g in range(len(edges) + 1)]
  names = [f"Q{g + 1}: {int(b.min())}-{int(b.max())}" if len(b) else "" for g, b in enumerate(bounds)]
  return np.array([names[g] for g in group], object)


def selection_table(names, seeds, short, dirs, split, states):
  """Report lines: per trained model (each seed), what the pipeline selected on validation and
  what it cost, from the metrics files of the evaluation compared here (nothing recomputed), and
  how its training ended (`states`: training_state or recorded_state per model)."""
  from bert4rec_jax import io_utils

  def read(folder, which):
    path = os.path.join(folder, f"{which}_metrics.json")
    return io_utils.read_json(path) if os.path.isfile(path) else None

  def metric(saved, name):
    if not saved:
      return "–"
    own = [v for k, v in saved["metrics"].items() if k != "popularity"]  # the model's, not the popularity reference
    return f"{own[0][name]:.4f}" if own and name in own[0] else "–"

  saved = {m: (read(dirs[m], split), read(dirs[m], "valid")) for n in names for m in seeds[n]}
  trained = {m: held for m, (held, _) in saved.items() if held and held.get("checkpoint_step") is not None}
  if not trained:
    return []
  select = next((h["selection"]["metric"] for h in trained.values() if h.get("selection")), "ndcg@10")
  held_column = split != "valid"  # the compared split's column, beside validation's when it is another
  rows = []
  for n in names:
    for m in seeds[n]:
      held, valid = saved[m]
      if m not in trained:  # a baseline: fitted, not trained
        rows.append(f"| {short[n]} | `{m}` | – (fitted) | – | {metric(valid, select)} | "
                    + (f"{metric(held, select)} | " if held_column else "") + "– | – | – |")
        continue
      chosen, timing, state = held.get("selection") or {}, held.get("training_time") or {}, states[m]
      ended = {"all steps": "", "stopped early": f" (stopped early at {state['newest']:,})",
               "time bound": f" (time bound reached at {state['newest']:,})",
               "partly trained": f" (**partly trained**: at {state['newest']:,})"}[state["how"]]
      step = f"{held['checkpoint_step']:,} of {state['planned']:,}{ended}"
      users = chosen.get("validated_users")
      periodic = "–" if "value" not in chosen else f"{chosen['value']:.4f}" + (f" ({users:,} users)" if users else "")
      on = chosen.get("metric", "– (the last step)")
      minutes = f"{timing['seconds'] / 60:.1f}" if timing.get("seconds") is not None else "–"
      share = f"{100 * timing['validation_share']:.1f}%" if timing.get("validation_share") is not None else "–"
      rows.append(f"| {short[n]} | `{m}` | {on} | {periodic} | {metric(valid, select)} | "
                  + (f"{metric(held, select)} | " if held_column else "") + f"{step} | {minutes} | {share} |")
  partial = [f"`{m}`" for m in trained if states[m]["how"] == "partly trained"]
  return ["", "## Selection on validation and training time", "",
          "Per model (each seed): the metric a trained model was selected on and its value at the selected "
          f"checkpoint over the users validated during training; {select} over the whole validation split"
          + (f" and over the {split} split" if held_column else "")
          + "; the selected step of the planned steps (and where training ended when it ended before them); "
          "the training wall-clock (minutes, periodic validation included) and periodic validation's share of it. "
          "From the pipeline's results files.", "",
          *([f"**Partly trained** (its training was stopped before its end; a rerun of its command goes on): "
             f"{', '.join(partial)}. Its numbers are interim.", ""] if partial else []),
          f"| id | model | selected on | periodic validation | valid {select} | "
          + (f"{split} {select} | " if held_column else "") + "selected step | training (min) | validation share |",
          "|---|---|---|---:|---:|" + ("---:|" if held_column else "") + "---:|---:|---:|", *rows]


@one_line
def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True, help="the project folder holding models/ and results/")
  ap.add_argument("--models", required=True, help="comma-separated model names (folders in <workdir>/models) or "
                  "paths to models or to records (experiments/record_run.py); seeds of one model joined by '+'")
  ap.add_argument("--reference", default="", help="the model others are tested against (default: the first)")
  ap.add_argument("--baselines", action="store_true", help="add most-popular and the Markov chain")
  ap.add_argument("--evaluate", action="store_true", help="re-evaluate every model first (models without per-user "
                  "files always are; records never are)")
  ap.add_argument("--split", default="test", choices=("test", "valid"))
  ap.add_argument("--metrics", default="ndcg@10,hr@10,sampled_ndcg@10,sampled_hr@10",
                  help="metrics tested for significance")
  ap.add_argument("--segment_metric", default="ndcg@10")
  ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples over users")
  ap.add_argument("--out", default="", help="also write the Markdown report here")
  ap.add_argument("--figure", default="", help="the figure (PNG) of every --metrics value per model with its "
                  "bootstrap interval (default: beside --out, <out>.png; none without --out)")
  args = ap.parse_args()

  import pandas as pd
  from bert4rec_jax import io_utils, model_store, significance
  configs = {}  # model name -> its config
  folders = {}  # model name -> its folder (a model's, or a record's)
  seeds = {}  # model (its first seed's name) -> the names of all its seeds' models
  for entry in (e for e in args.models.split(",") if e):
    members = []
    for m in entry.split("+"):
      folder = model_folder(args.workdir, m)
      config, name = saved_config(folder)
      if name in configs:
        if os.path.realpath(folders[name]) == os.path.realpath(folder):
          raise SystemExit(f"{name} is given twice (as {folders[name]} and {folder}): name each model once")
        name = f"{name} [{m}]"  # another model of that name (a record, another workdir's): told apart by its path
        if name in configs:
          raise SystemExit(f"{m} is given twice: name each model once")
      configs[name], folders[name] = config, folder
      members.append(name)
    first = configs[members[0]]
    same = lambda c: {k: v for k, v in model_store.settings(c).items() if k != "seed"}  # noqa: E731
    for other in members[1:]:
      if same(configs[other]) != same(first):
        raise SystemExit(f"{entry}: models joined by '+' are seeds of one model; {other} differs from {members[0]} "
                         "in more than config.seed")
    seeds[members[0]] = members
  names = list(seeds)
  reference = args.reference or names[0]
  if reference not in seeds:
    reference = next((n for n, members in seeds.items() if reference in members), None)
    if reference is None:
      raise SystemExit(f"--reference={args.reference!r} is not among --models")
  ref_config = configs[reference]
  ref_data = data_hashes(folders[reference])
  for name in configs:  # models of one dataset: the same prepared data, wherever each was trained
    other = data_hashes(folders[name])
    changed = [what for k, what in DATA_HASHES.items() if k in other and k in ref_data and other[k] != ref_data[k]]
    if changed:
      raise SystemExit(f"{name} was trained on other data than {reference} ({' and '.join(changed)} differ): "
                       "compare models of one dataset")
  dirs = {}  # model name -> the results folder holding its per-user ranks
  states = {}  # trained model name -> how far its training went (training_state)
  for name, config in configs.items():
    if is_record(folders[name]):  # ranks as recorded: never re-evaluated (its checkpoints are not kept)
      dirs[name] = folders[name]
      if not os.path.isfile(os.path.join(dirs[name], f"{args.split}_per_user.parquet")):
        raise SystemExit(f"{dirs[name]}: the record of {name} has no {args.split} split")
      states[name] = recorded_state(io_utils.read_json(os.path.join(dirs[name], f"{args.split}_metrics.json")), config)
      continue
    home = model_workdir(folders[name])
    states[name] = training_state(folders[name], config)
    root = os.path.join(home, "results", os.path.basename(os.path.abspath(folders[name])))
    dirs[name], why = (root, "") if args.evaluate else current_results(root, config, args.split, folders[name],
                                                                       states[name])
    if args.evaluate or why:
      if why:
        print(f"{name}: {why}; evaluating it first", flush=True)
      dirs[name] = evaluate_model(config, home)[1]
    if states[name]["how"] == "partly trained":
      print(f"{name} is partly trained (step {states[name]['newest']:,} of {states[name]['planned']:,}): its numbers "
            "are interim (marked so in the report)", flush=True)
  if args.baselines:
    for kind in ("most_popular", "markov"):
      c = ref_config.copy_and_resolve_references()
      c.model.kind = kind
      name, dirs[name] = evaluate_model(c, args.workdir)
      configs[name] = c
      names.append(name)
      seeds[name] = [name]
  # Models evaluated another way are on another scale: refused, whatever else agrees.
  protocols = {m: evaluated_with(dirs[m], args.split, m) for n in names for m in seeds[n]}
  pairs = [(name, reference, ()) for name in protocols]
  pairs += [(m, n, ("model.read_last",)) for n in names for m in seeds[n][1:]]  # seeds: read alike too
  for name, other, fields in pairs:
    differs = protocol_difference(protocols[name], protocols[other], fields)
    if differs:
      field, mine, theirs = differs
      raise SystemExit(f"{name} was evaluated with {field}={mine!r}, {other} with {theirs!r}: their {args.split} "
                       "metrics are on other scales; compare models evaluated alike")

  frames = {}
  for name in (m for n in names for m in seeds[n]):
    frame = load_ranks(dirs[name], name, args.split).set_index("user")
    frames[name] = frame
  base = frames[reference]
  for name, frame in frames.items():
    if len(frame) != len(base) or not frame.index.isin(base.index).all():
      raise SystemExit(f"{name} was evaluated on other users than {reference}: compare models of one dataset")
    frame = frame.loc[base.index]
    if not (frame["target"].to_numpy() == base["target"].to_numpy()).all():
      raise SystemExit(f"{name} has other targets than {reference} for the same users (another split or data)")
    frames[name] = frame

  def per_seed(name, metric):
    """[seeds, U] per-user values of each seed's model, None when the metric was not evaluated."""
    column = "sampled_rank" if metric.startswith("sampled_") else "rank"
    if any(column not in frames[m] for m in seeds[name]):
      return None
    return np.stack([significance.per_user_metrics(frames[m][column].to_numpy(), metric) for m in seeds[name]])

  def values(name, metric):
    """[U] per-user values, averaged over the model's seeds."""
    v = per_seed(name, metric)
    return None if v is None else v.mean(axis=0)

  def cell(name, metric):
    v = per_seed(name, metric)
    if v is None:
      return "–"
    means = v.mean(axis=1)
    return f"{means.mean():.4f}" + (f" ± {means.std(ddof=1):.4f}" if len(means) > 1 else "")

  short = {n: f"M{i}" for i, n in enumerate(names)}
  several = any(len(seeds[n]) > 1 for n in names)
  lines = [f"# Model comparison ({args.split} split, {len(base):,} users)", "",
           "Made by `python experiments/compare_models.py " + " ".join(sys.argv[1:]) + "`", "",
           "| id | model | kind | seeds |", "|---|---|---|---:|"]
  for n in names:
    kind = configs[n].model.get("kind", "bert4rec")
    models = " + ".join(f"`{m}`" for m in seeds[n])
    lines.append(f"| {short[n]} | {models} | {kind}{' (reference)' if n == reference else ''} | {len(seeds[n])} |")
  lines += selection_table(names, seeds, short, dirs, args.split, states)
  lines += ["", "## All metrics (means over users" + ("; mean ± std over seeds" if several else "") + ")", "",
            "| metric | " + " | ".join(short[n] for n in names) + " |", "|---|" + "---:|" * len(names)]
  for metric in TABLE_METRICS:
    cells = [cell(n, metric) for n in names]
    if all(c == "–" for c in cells):
      continue
    lines.append(f"| {metric} | " + " | ".join(cells) + " |")
  def seed_means(name, metric):
    """{config.seed: the mean over users} of each of the model's seeds."""
    return dict(zip((configs[m].seed for m in seeds[name]), per_seed(name, metric).mean(axis=1)))

  tests = []
  for n in names:
    if n == reference:
      continue
    for metric in args.metrics.split(","):
      a, b = values(n, metric), values(reference, metric)
      if a is None or b is None:
        continue
      test = significance.paired_t_test(a, b)
      lo, hi = significance.bootstrap_ci(a - b, args.bootstrap) if args.bootstrap else (float("nan"),) * 2
      sa, sb = seed_means(n, metric), seed_means(reference, metric)
      over_seeds = seed_level(sa, sb)
      spread = (f"{over_seeds['sd']:.4f} ({over_seeds['pairs']} pairs)" if over_seeds else
                f"{np.std(list(sa.values()), ddof=1):.4f} (model's)" if len(sa) > 1 else
                f"{np.std(list(sb.values()), ddof=1):.4f} (reference's)" if len(sb) > 1 else "–")
      tests.append((n, metric, a.mean(), b.mean(), test, lo, hi, spread, over_seeds))
  adjusted = significance.holm([t[4]["p"] for t in tests]) if tests else []
  by_seed = [t[8] for t in tests if t[8]]
  seed_adjusted = iter(significance.holm([t["p"] for t in by_seed]) if by_seed else [])
  interval = (f"95% percentile bootstrap interval ({args.bootstrap} resamples of users)" if args.bootstrap else
              "no bootstrap interval (--bootstrap=0: the verdict rests on the t-test alone)")
  lines += ["", f"## Paired tests against {short[reference]} (same users)", "",
            "Difference = model − reference, mean over users" + (" (each user's value averaged over the model's "
                                                                 "seeds)" if several else "") +
            f"; {interval}; two-sided paired t-test; Holm-adjusted p over the {len(tests)} tests against the "
            "reference (better / worse: the adjusted p < 0.05" + (" and the interval excludes 0" if args.bootstrap
                                                                  else "") + "). This verdict is about these "
            "trained models on these users, not about training them again."
            + (" Seed spread: std over seeds of each seed pair's difference of means, seeds paired by config.seed "
               "(or of one side's means). Seed level, where both sides have at least 2 seeds in common: a two-sided "
               "paired t-test over those seeds of each seed's mean (pairs, t), Holm-adjusted over the seed-level "
               "tests; its verdict is about the recipe: whether a model trained again with another seed would be "
               "expected to differ (few seeds: little power)." if several else ""), "",
            "| model | metric | model | reference | difference [95% CI] | t | p | Holm p | "
            + ("verdict: these models | seed spread | seed level: t (pairs) | p | Holm p | verdict: the recipe |"
               if several else "verdict |"),
            "|---|---|---:|---:|---:|---:|---:|---:|:---:|" + ("---:|---:|---:|---:|:---:|" if several else "")]
  for (n, metric, a_mean, b_mean, test, lo, hi, spread, over_seeds), p_holm in zip(tests, adjusted):
    ci = f"[{lo:+.4f}, {hi:+.4f}]" if args.bootstrap else "–"
    row = (f"| {short[n]} | {metric} | {a_mean:.4f} | {b_mean:.4f} | {test['diff']:+.4f} {ci} | {test['t']:.2f} | "
           f"{test['p']:.2g} | {p_holm:.2g} | {verdict(test['diff'], p_holm, lo, hi)} |")
    if several:
      if over_seeds:
        p_seed = next(seed_adjusted)
        row += (f" {spread} | {over_seeds['t']:.2f} ({over_seeds['pairs']}) | {over_seeds['p']:.2g} | {p_seed:.2g} | "
                f"{verdict(over_seeds['diff'], p_seed)} |")
      else:
        row += f" {spread} | – | – | – | – |"
    lines.append(row)

  seg = segments(ref_config, args.workdir, args.split).set_index("user").loc[base.index]
  groupings = {"history length (items before the target)": bucket_labels(seg["history_length"].to_numpy(),
                                                                         HISTORY_EDGES),
               "target popularity (training count quintile)": popularity_labels(seg["target_count"].to_numpy())}
  for title, labels in groupings.items():
    lines += ["", f"## {args.segment_metric} by {title}", "",
              "| segment | users | " + " | ".join(short[n] for n in names) + " |", "|---|---:|" + "---:|" * len(names)]
    table = pd.DataFrame({n: values(n, args.segment_metric) for n in names})
    table["segment"] = labels
    order = sorted(set(labels), key=lambda s: (len(s.split(":")[0]), s) if s.startswith("Q") else int(s.split("-")[0].rstrip("+")))
    for label in order:
      sub = table[table["segment"] == label]
      lines.append(f"| {label} | {len(sub):,} | " + " | ".join(f"{sub[n].mean():.4f}" for n in names) + " |")
  figure = args.figure or (os.path.splitext(args.out)[0] + ".png" if args.out else "")
  if figure:
    intervals = {(n, m): (values(n, m).mean(), *significance.bootstrap_ci(values(n, m), max(args.bootstrap, 100)))
                 for n in names for m in args.metrics.split(",") if values(n, m) is not None}
    plot_metrics(intervals, names, short, configs, args, len(base), figure)
    lines += ["", f"Figure: `{figure}` (each metric per model, with its 95% bootstrap interval over users)."]
  text = "\n".join(lines) + "\n"
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text)


def plot_metrics(intervals, names, short, configs, args, num_users, path):
  """One panel per metric: each model's mean over users, with the 95% percentile bootstrap
  interval of that mean as its error bar."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  metrics = [m for m in args.metrics.split(",") if any((n, m) in intervals for n in names)]
  fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + 1, 3.6), squeeze=False)
  for ax, metric in zip(axes[0], metrics):
    shown = [n for n in names if (n, metric) in intervals]
    mean = np.array([intervals[n, metric][0] for n in shown])
    lo = np.array([intervals[n, metric][1] for n in shown])
    hi = np.array([intervals[n, metric][2] for n in shown])
    x = np.arange(len(shown))
    ax.bar(x, mean, color="#8fb3d9", edgecolor="#2b5d8a")
    ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], fmt="none", ecolor="black", capsize=4)
    ax.set_xticks(x, [f"{short[n]}\n{configs[n].model.get('kind', 'bert4rec')}" for n in shown], fontsize=8)
    ax.set_title(metric)
    ax.set_ylabel(f"{metric} (mean over users)")
  fig.suptitle(f"{args.split} split, {num_users:,} users; error bars: 95% percentile bootstrap interval of the "
               f"mean over users ({max(args.bootstrap, 100)} resamples)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


if __name__ == "__main__":
  main()
