"""How much a checkpoint chosen on a few validation users loses: the selection's noise, on validation only.

  python experiments/selection_noise.py --workdir=projects/recipe_beauty_s2 --model=<name> \\
      [--sizes=500,2000,5000,10000] [--draws=1000] [--out=selection_noise.json]

The model must have been trained with its validation checkpoints kept (`train.keep_checkpoints` at
least the number of validations plus the periodic saves between them; a selecting run keeps only
the newest and the selected one otherwise). Every checkpoint of a validation step is scored on
every user of the validation split (full ranking, NDCG@10, the history excluded as the model's
config says), once. Then, over --draws random halvings of the users, a checkpoint is chosen as
training chooses (the best mean, the earliest on ties, among the steps patience would have reached)
on n users of one half, for each n of --sizes and for the whole half, and is scored on the other
half: the loss against the other half's best checkpoint (regret) is what choosing on n users costs,
measured on users the choice never saw. The run's own periodic curve (on its eval.max_valid_users
users) is recomputed from the same scores and must agree (other data, evaluation settings or checkpoints
are refused, as is data whose hashes differ from the model's identity.json). Test is never read.
Prints JSON.
"""
import argparse
import contextlib
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if os.path.isdir(os.path.join(REPO, "bert4rec_jax")):  # a checkout (installed: the package is importable)
  sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import benchmark  # noqa: E402  (a sibling script)
from bert4rec_jax.errors import UserError, one_line  # noqa: E402


def choose(curve_means: np.ndarray, patience: int) -> int:
  """The index training selects from validation means in step order: the best so far (a strictly
  higher value replaces it, so the earliest wins ties), stopping once `patience` validations in a
  row bring nothing better (0: never)."""
  best, since = 0, 0
  for i in range(1, len(curve_means)):
    if curve_means[i] > curve_means[best]:
      best, since = i, 0
    else:
      since += 1
      if patience and since >= patience:
        break
  return best


def analyse(scores: np.ndarray, sizes, draws: int, patience: int, seed: int = 0) -> dict:
  """scores [steps, users] (per-user NDCG@10 of each validated checkpoint, in step order): for each
  n of `sizes` (and 'half': all of the choosing half), over `draws` random halvings, the mean regret
  on the held-out half of the checkpoint chosen on n users of the other half, its spread, and how
  often each step index was chosen."""
  steps, users = scores.shape
  rng = np.random.default_rng(seed)
  half = users // 2
  labels = [n for n in sizes if n <= half] + ["half"]
  dropped = [n for n in sizes if n > half]
  if dropped:
    print(f"--sizes {dropped}: more than half of the {users:,} users (the held-out half needs the rest); "
          f"the whole half ({half:,}) stands for them", file=sys.stderr)
  regrets = {n: [] for n in labels}
  picks = {n: np.zeros(steps, np.int64) for n in labels}
  for _ in range(draws):
    order = rng.permutation(users)
    pick_from, held = order[:half], order[half:]
    held_means = scores[:, held].mean(axis=1)
    best_held = held_means.max()
    for n in labels:
      users_n = pick_from if n == "half" else pick_from[:n]
      i = choose(scores[:, users_n].mean(axis=1), patience)
      regrets[n].append(best_held - held_means[i])
      picks[n][i] += 1
  out = {}
  for n in labels:
    r = np.asarray(regrets[n])
    out[str(n)] = {"users": half if n == "half" else n, "mean_regret": float(r.mean()),
                   "p90_regret": float(np.quantile(r, 0.9)), "share_regret_over_0.001": float((r > 0.001).mean()),
                   "chosen_index_counts": picks[n].tolist()}
  return out


@one_line
def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--model", required=True, help="the model's name under <workdir>/models")
  p.add_argument("--sizes", default="500,1000,2000,5000,10000", help="validation users a choice is made on")
  p.add_argument("--draws", type=int, default=1000)
  p.add_argument("--out", default="", help="also write the JSON here")
  args = p.parse_args()
  try:
    sizes = sorted({int(x) for x in args.sizes.split(",") if x.strip()})
  except ValueError:
    raise UserError(f"--sizes={args.sizes!r}: user counts separated by commas") from None
  if not sizes or min(sizes) < 1 or args.draws < 1:
    raise UserError("--sizes: positive user counts; --draws: at least 1")
  result = run(args, sizes)
  benchmark.emit_json(result, args.out)


def run(args, sizes) -> dict:
  from bert4rec_jax import io_utils, pipeline
  model_dir = os.path.join(args.workdir, "models", args.model)
  lock_file = pipeline.model_lock(model_dir)  # shared: never while a run trains or replaces the model
  with io_utils.lock(lock_file, f"model {model_dir}", shared=True) if lock_file else contextlib.nullcontext():
    return measure(args, sizes, model_dir)


def trained_model(workdir: str, model_dir: str, baseline_has_no: str) -> tuple:
  """(folder, saved config, prepared data) of the trained network in `model_dir`, its data prepared
  in `workdir` and checked against the model's identity.json; a baseline (which has no
  `baseline_has_no`), a missing model or other data is refused in one line."""
  from bert4rec_jax import dataset, model as model_lib, model_store, pipeline
  folder = model_store.Folder(model_dir)
  if not folder.is_model:
    raise UserError(f"{model_dir}: no trained model there")
  config = folder.saved_config()
  if config.model.get("kind", "bert4rec") not in model_lib.KINDS:
    raise UserError(f"{model_dir} is the {config.model.kind} baseline: it has no {baseline_has_no}")
  prepared, data_dir = dataset.load_or_prepare(config.data, workdir, pipeline.min_seq_length(config))
  identity = folder.saved_identity() or {}
  found = dataset.fingerprint(data_dir)
  for key in ("content", "vocab"):
    if identity.get(f"data.{key}") and identity[f"data.{key}"] != found[key]:
      raise UserError(f"{config.data.path} (prepared in {data_dir}) is not the data {model_dir} was trained on "
                      f"(its {key} differs from the model's identity.json): restore that data or pass its workdir")
  return folder, config, prepared


def measure(args, sizes, model_dir: str) -> dict:
  from bert4rec_jax import evaluate, model as model_lib, model_store, parallel, pipeline, selection, trainer
  from bert4rec_jax import significance
  folder, config, prepared = trained_model(args.workdir, model_dir, "checkpoints to choose among")
  if selection.recorded(model_dir) is None:
    raise UserError(f"{model_dir}: trained without selection on validation (no {selection.SELECTION_FILE})")
  _, splits = pipeline.task_splits(config.task, prepared.sequences)
  num_items = prepared.vocab.num_items
  devices = parallel.local_devices(0)
  ec = config.eval.copy_and_resolve_references()
  ec.num_negatives = 0
  scorer = evaluate.model_scorer(model_lib.from_config(config.model, num_items))
  state = model_store.initial_state(folder, lambda: trainer.create_state(config, num_items))
  manager = model_store.checkpoint_manager(folder, writable=False)
  try:
    # The curve up to the newest checkpoint: a run killed between its validation's record and the
    # checkpoint left one entry more, which its resume trains again.
    sel = selection.of_folder(model_dir, manager.latest_step() or 0)
    if sel.metric != "ndcg@10":
      raise UserError(f"{model_dir} selected on {sel.metric}; this script measures ndcg@10")
    curve = [(int(e["step"]), float(e["value"])) for e in sel.curve]
    if not curve:
      raise UserError(f"{model_dir}: no validated checkpoint yet")
    full = evaluate.Evaluator(splits["valid"], prepared.vocab, eval_config=ec,
                              max_seq_length=config.model.max_seq_length, devices=devices, seed=config.seed)
    periodic = evaluate.Evaluator(splits["valid"], prepared.vocab, eval_config=ec,
                                  max_seq_length=config.model.max_seq_length, devices=devices, seed=config.seed,
                                  max_users=sel.users or config.eval.max_valid_users)
    position = {int(u): i for i, u in enumerate(full.index)}
    periodic_columns = np.array([position[int(u)] for u in periodic.index])
    on_disk = set(manager.all_steps())
    missing = [s for s, _ in curve if s not in on_disk]
    if missing:
      more = "..." if len(missing) > 5 else ""
      raise UserError(f"{model_dir}: the checkpoints of validation steps {missing[:5]}{more} are not on disk: "
                      "train with train.keep_checkpoints above the number of checkpoints a run saves")
    rows = []
    for step, _ in curve:
      t0 = time.perf_counter()
      restored, got = model_store.restore_latest(manager, state, writable=False, order=[step])
      if restored is None or got != step:
        raise UserError(f"{model_dir}: the checkpoint of step {step} cannot be restored")
      rows.append(significance.per_user_metrics(full.ranks(scorer, restored.params)["full"], "ndcg@10"))
      print(f"step {step}: full validation NDCG@10 {rows[-1].mean():.4f} ({time.perf_counter() - t0:.1f} s)",
            file=sys.stderr, flush=True)
  finally:
    manager.close()
  scores = np.stack(rows)
  recomputed = scores[:, periodic_columns].mean(axis=1)
  off = float(np.max(np.abs(recomputed - np.array([v for _, v in curve]))))
  if off > 1e-6:  # the same checkpoints on the same users must give the values training recorded
    raise UserError(f"{model_dir}: its checkpoints score {off:.2g} away from the validations training recorded on "
                    "the same users: not the data, evaluation settings or checkpoints it was trained with")
  patience = int(sel.patience or 0)
  full_means = scores.mean(axis=1)
  steps = [s for s, _ in curve]
  periodic_choice, full_choice = choose(np.array([v for _, v in curve]), patience), choose(full_means, patience)
  return {
      "command": "python experiments/selection_noise.py " + " ".join(sys.argv[1:]),
      "date": time.strftime("%Y-%m-%d"), "model": args.model, "validation_users": int(scores.shape[1]),
      "patience": patience, "steps": steps,
      "periodic": {"users": int(len(periodic_columns)), "curve": [v for _, v in curve],
                   "recomputed_max_abs_difference": off,
                   "chosen_step": steps[periodic_choice], "chosen_full_value": float(full_means[periodic_choice])},
      "full_split": {"curve": [round(float(v), 5) for v in full_means], "chosen_step": steps[full_choice],
                     "chosen_value": float(full_means[full_choice])},
      "halvings": analyse(scores, sizes, args.draws, patience),
  }


if __name__ == "__main__":
  main()
