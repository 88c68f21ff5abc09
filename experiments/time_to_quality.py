"""Quality against seconds of training: how soon a model good enough to ship exists.

  python experiments/time_to_quality.py --dataset=ml1m --budget_seconds=60            # every ML-1M row
  python experiments/time_to_quality.py --dataset=beauty --rows=paper,next_item_b1024_bf16
  python experiments/time_to_quality.py --dataset=ml1m --users=600 --budget_seconds=120 --steps_scale=0.05   # a CPU look

Each row is one training setting (a lever, or several together) on top of the dataset's
committed config (configs/ml1m.py or configs/beauty.py), trained from scratch on the
train_val_test split for at most --budget_seconds of training wall-clock, compilation included
(every compilation: the first step, each new batch width, each phase of a sequence-length
warmup), or until its schedule ends. Every --eval_every_seconds of that clock, training pauses
(the pause is not on the clock) and both the validation and the test split are scored in full
(full ranking over the catalogue, history excluded, every user). The model a run would ship at
that moment is the one with the best validation NDCG@10 so far; its test figures are the row's
curve, and "seconds_to" gives, for each --thresholds value, the first moment that model's test
NDCG@10 reaches it. Test never chooses anything: it is read off the model validation chose.

What each evaluation cost is reported beside the training clock ("eval_seconds"), with the share
a validation of --valid_users users at the row's cadence would add to the run
("validation_share"): the cost of evaluating inside the loop, the last lever of the list.

The rows (ROWS below) state their schedules in steps sized for one H100/H200: about 290 steps/s at
batch 256 and 100 at batch 1,024 in bfloat16 on ML-1M's shapes (docs/benchmarks.md), so that each
schedule ends inside a 60-second budget there. --steps_scale multiplies every row's steps (and
warmup) for slower machines. Prints one JSON document (also to --out); the Markov chain and
most-popular, scored by the same evaluators, are in it for scale.
"""
import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if os.path.isdir(os.path.join(REPO, "bert4rec_jax")):  # a checkout (installed: the package is importable)
  sys.path.insert(0, REPO)
sys.path.insert(0, HERE)
import benchmark  # noqa: E402  (a sibling script)

# Levers, each as config overrides on the dataset's config. Batch 1,024 takes the rate up by 2x
# (the square root of the batch ratio, Adam's usual rule).
_B1024 = ["train.batch_size=1024", "train.learning_rate=2e-3"]
_BF16 = ["train.compute_dtype=bfloat16"]
_NEXT = ["train.next_item_loss_weight=10", "model.read_last=causal"]
ROWS = {
    "ml1m": {
        "paper": ("configs/ml1m.py as committed: batch 256, 30,000 steps (its schedule cannot end in 60 s)", []),
        "short_schedule": ("the same with a 12,000-step schedule (fewer steps)",
                           ["train.num_train_steps=12000"]),
        "b1024": ("batch 1,024, rate 2e-3, 4,000 steps (fewer, larger steps)", _B1024 + ["train.num_train_steps=4000"]),
        "b1024_bf16": ("+ bfloat16, 5,000 steps (faster steps, more of them)", _B1024 + _BF16 + ["train.num_train_steps=5000"]),
        "next_item_b1024_bf16": ("+ SASRec's next-item loss on the same weights (weight 10, read causally), 4,500 steps",
                                 _B1024 + _BF16 + _NEXT + ["train.num_train_steps=4500"]),
        "seq_warmup_next_item_b1024_bf16": ("+ sequence-length warmup (the first 1,000 of 5,000 steps on 50-item windows)",
                                            _B1024 + _BF16 + _NEXT + ["train.num_train_steps=5000",
                                                                      "train.warmup_seq_length=50",
                                                                      "train.warmup_seq_steps=1000"]),
        "sampled_next_item_b1024_bf16": ("+ the sampled softmax (1,024 uniform negatives) instead of the full one, 5,000 steps",
                                         _B1024 + _BF16 + _NEXT + ["train.num_train_steps=5000", "train.loss=sampled",
                                                                   "train.num_negatives=1024"]),
    },
    "beauty": {
        "paper": ("configs/beauty.py as committed: batch 256, 6,000 steps", []),
        "b1024_bf16": ("batch 1,024, rate 6e-3, bfloat16, 3,000 steps",
                       ["train.batch_size=1024", "train.learning_rate=6e-3", "train.num_train_steps=3000"] + _BF16),
        "b1024_bf16_buckets": ("+ length buckets (most Beauty histories are far shorter than 50)",
                               ["train.batch_size=1024", "train.learning_rate=6e-3", "train.num_train_steps=3000",
                                "train.length_buckets=true", "train.target_weighting=epoch"] + _BF16),
    },
}
DATA_FILES = {"ml1m": "ml-1m.txt.gz", "beauty": "beauty.txt"}
THRESHOLDS = {"ml1m": "0.16", "beauty": "0.035"}


def log(msg: str) -> None:
  print(f"[time_to_quality {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def row_config(dataset: str, overrides, args):
  """The dataset's committed config on the train_val_test split, the row's overrides, the
  command line's --set, and the steps scaled by --steps_scale."""
  import importlib
  c = importlib.import_module(f"bert4rec_jax.configs.{dataset}").get_config()
  c.task = "train_val_test"
  c.wandb.mode = "disabled"
  if args.data:
    c.data.format, c.data.path = "text", args.data
  benchmark.apply_overrides(c, list(overrides) + list(args.set))
  c.model.read_last = c.model.read_last or "mask"  # "" = as a saved model was read; a new one reads [MASK]
  if args.steps_scale != 1.0:
    t = c.train
    t.num_train_steps = max(1, round(t.num_train_steps * args.steps_scale))
    t.num_warmup_steps = min(t.num_train_steps - 1, max(0, round(t.num_warmup_steps * args.steps_scale)))
    if t.get("warmup_seq_steps"):
      t.warmup_seq_steps = min(t.num_train_steps, max(1, round(t.warmup_seq_steps * args.steps_scale)))
  return c


def load_splits(c, args):
  """The prepared dataset (the package's own preparation, cached under --workdir), optionally cut
  to its first --users users, split train / valid / test."""
  from bert4rec_jax import dataset, pipeline
  prepared, _ = dataset.load_or_prepare(c.data, args.workdir, pipeline.min_seq_length(c))
  seqs = prepared.sequences
  if args.users and args.users < len(seqs):
    import numpy as np
    seqs = seqs.take(np.arange(args.users))
  train, splits = pipeline.task_splits("train_val_test", seqs)
  return prepared, train, splits


def score(ev, scorer, params):
  return benchmark.ndcg_hr_at_10(ev.ranks(scorer, params, replicated=True)["full"])


def with_selection(curve, point):
  """`point` (an evaluation) with the model a run would ship at that moment: of the evaluations so
  far (`curve`, then `point`), the one with the best validation NDCG@10, the earliest on ties, as
  a run with train.select_metric keeps it. Its test figures, never test's own choice."""
  best = max(list(curve) + [point], key=lambda p: (p["valid_ndcg@10"], -p["steps"]))
  return dict(point, **{"selected_step": best["steps"], "selected_test_ndcg@10": best["test_ndcg@10"],
                        "selected_test_hr@10": best["test_hr@10"]})


def run_row(name, description, overrides, args, shared):
  import jax
  from bert4rec_jax import config_checks, evaluate, input_pipeline, model as model_lib, parallel, trainer
  c = row_config(args.dataset, overrides, args)
  config_checks.validate(c, "train")
  prepared, train, evaluators = shared
  num_items = prepared.vocab.num_items
  devices = parallel.local_devices(0)
  trainer.resolve_schedule(c, train)
  t0 = time.perf_counter()  # the training clock starts before anything is compiled
  step, sampler = trainer.make_step(c, num_items, devices, train)
  p_state = parallel.replicate(trainer.create_state(c, num_items), devices)
  batches = input_pipeline.training_batches(c, train, 0, devices)
  clock, steps, compile_s = 0.0, 0, None
  scorer = evaluate.model_scorer(model_lib.from_config(c.model, num_items))
  curve, eval_s, next_eval = [], [], args.eval_every_seconds
  chunk, end = 1, c.train.num_train_steps
  while steps < end and clock < args.budget_seconds:
    start = time.perf_counter() if steps else t0
    for _ in range(min(chunk, end - steps)):
      batch, num_targets = next(batches)
      p_state, m = step(p_state, batch, sampler, num_targets)
      steps += 1
    jax.block_until_ready(m)
    took = time.perf_counter() - start
    clock += took
    if compile_s is None:
      compile_s = round(took, 2)
    else:  # chunks of about half a second: the clock is read often, the device rarely waits for the host
      chunk = max(1, min(1000, int(chunk * 0.5 / max(took, 1e-3))))
    if clock < next_eval and steps < end and clock < args.budget_seconds:
      continue
    next_eval = clock + args.eval_every_seconds
    e0 = time.perf_counter()
    v, t = score(evaluators["valid"], scorer, p_state.params), score(evaluators["test"], scorer, p_state.params)
    eval_s.append(time.perf_counter() - e0)
    row = with_selection(curve, {"seconds": round(clock, 2), "steps": steps, "valid_ndcg@10": v[0], "valid_hr@10": v[1],
                                 "test_ndcg@10": t[0], "test_hr@10": t[1]})
    curve.append(row)
    log(f"{name}: {row['seconds']:.1f} s, step {steps}: valid NDCG@10 {v[0]:.4f}, chosen (step {row['selected_step']}) "
        f"test NDCG@10 {row['selected_test_ndcg@10']:.4f}")
  thresholds = [float(x) for x in args.thresholds.split(",") if x]
  per_eval = sum(eval_s) / max(len(eval_s), 1)
  # Each evaluation scored both splits, every user of each: a periodic validation of valid_users users costs
  validation = per_eval * args.valid_users / max(2 * len(evaluators["valid"].split.rows), 1)
  return {"description": description, "overrides": list(overrides) + list(args.set),
          "settings": {"batch_size": c.train.batch_size, "learning_rate": c.train.learning_rate,
                       "num_train_steps": c.train.num_train_steps, "num_warmup_steps": c.train.num_warmup_steps,
                       "compute_dtype": c.train.compute_dtype, "loss": c.train.loss,
                       "next_item_loss_weight": c.train.next_item_loss_weight, "read_last": c.model.read_last,
                       "max_seq_length": c.model.max_seq_length},
          "compile_seconds": compile_s, "train_seconds": round(clock, 2), "steps": steps,
          "schedule_finished": steps >= end, "sequences_per_second": round(steps * c.train.batch_size / clock, 1),
          "evaluations": len(eval_s), "eval_seconds": round(sum(eval_s), 2),
          "validation_share": round(validation / (validation + args.eval_every_seconds), 4),
          "curve": curve, "final": curve[-1] if curve else None,
          "seconds_to": {f"{x:g}": next((r["seconds"] for r in curve if r["selected_test_ndcg@10"] >= x), None)
                         for x in thresholds}}


def main():
  from bert4rec_jax.configs import default
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--dataset", choices=sorted(ROWS), default="ml1m")
  ap.add_argument("--data", default="", help="the `user item` file (default: the dataset's file in BERT4REC_DATA_DIR)")
  ap.add_argument("--rows", default="all", help="comma-separated row names (default all): " +
                  "; ".join(f"{d}: {', '.join(r)}" for d, r in ROWS.items()))
  ap.add_argument("--budget_seconds", type=float, default=60.0, help="training wall-clock per row, compilation included")
  ap.add_argument("--eval_every_seconds", type=float, default=5.0, help="training clock between evaluations")
  ap.add_argument("--thresholds", default="", help="test NDCG@10 levels to time (default: .16 ML-1M, .035 Beauty)")
  ap.add_argument("--steps_scale", type=float, default=1.0, help="multiplies every row's steps (slower machines)")
  ap.add_argument("--users", type=int, default=0, help="keep the first N users (0 = all)")
  ap.add_argument("--valid_users", type=int, default=2000, help="users of the periodic validation priced in validation_share")
  ap.add_argument("--set", action="append", default=[], help="section.field=value on every row (repeatable)")
  ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "bert4rec_jax_time_to_quality"),
                  help="where the prepared dataset is cached")
  ap.add_argument("--out", default="", help="also write the JSON here")
  args = ap.parse_args()
  for flag, ok, need in (("--budget_seconds", args.budget_seconds > 0, "> 0"),
                         ("--eval_every_seconds", args.eval_every_seconds > 0, "> 0"),
                         ("--steps_scale", args.steps_scale > 0, "> 0"), ("--users", args.users >= 0, ">= 0 (0 = all)"),
                         ("--valid_users", args.valid_users >= 1, ">= 1")):
    if not ok:
      ap.error(f"{flag} must be {need}")
  rows = list(ROWS[args.dataset]) if args.rows == "all" else [r for r in args.rows.split(",") if r]
  unknown = [r for r in rows if r not in ROWS[args.dataset]]
  if unknown or not rows:
    ap.error(f"--rows: {', '.join(unknown) or 'none given'}; the {args.dataset} rows are {', '.join(ROWS[args.dataset])}")
  args.thresholds = args.thresholds or THRESHOLDS[args.dataset]
  try:
    [float(x) for x in args.thresholds.split(",") if x]
  except ValueError:
    ap.error(f"--thresholds must be comma-separated numbers, not {args.thresholds!r}")
  from bert4rec_jax import config_checks
  for name in rows:  # every row's settings checked before anything runs
    try:
      config_checks.validate(row_config(args.dataset, ROWS[args.dataset][name][1], args), "train")
    except (KeyError, ValueError, config_checks.ConfigError) as e:
      ap.error(f"row {name} with --set {args.set}: {benchmark.override_error(e)}")
  args.data = args.data or os.path.join(default.DATA_DIR, DATA_FILES[args.dataset])
  result = {"command": "python experiments/time_to_quality.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d"), "dataset": args.dataset, "budget_seconds": args.budget_seconds,
            "eval_every_seconds": args.eval_every_seconds, "steps_scale": args.steps_scale}
  if not os.path.exists(args.data):
    result["skipped"] = f"no data file {args.data} (set BERT4REC_DATA_DIR or pass --data)"
    log(result["skipped"])
    benchmark.emit_json(result, args.out)
    return

  import jax
  from bert4rec_jax import baselines, evaluate, parallel
  devices = parallel.local_devices(0)
  c = row_config(args.dataset, [], args)
  prepared, train, splits = load_splits(c, args)
  evaluators = {}
  for split, s in splits.items():
    ec = c.eval.copy_and_resolve_references()
    ec.num_negatives, ec.ks, ec.exclude_history = 0, (10,), True
    evaluators[split] = evaluate.Evaluator(s, prepared.vocab, eval_config=ec, max_seq_length=c.model.max_seq_length,
                                           devices=devices, seed=c.seed)
  result.update(device=f"{len(devices)} x {devices[0].device_kind}", jax=jax.__version__,
                data={"file": os.path.basename(args.data), "users": len(splits["test"].rows),
                      "items": prepared.vocab.num_items, "training_interactions": int(train.lengths.sum())},
                thresholds=[float(x) for x in args.thresholds.split(",") if x])
  base = {}
  for kind in baselines.KINDS:
    base[kind] = {}
    for split, ev in evaluators.items():
      base[kind][f"{split}_ndcg@10"], base[kind][f"{split}_hr@10"] = benchmark.ndcg_hr_at_10(
          baselines.split_ranks(kind, ev, train, prepared.vocab.num_items, True)["full"])
  result["baselines"] = base
  log(f"{result['data']['users']:,} users, {result['data']['items']:,} items on {result['device']}; Markov chain test "
      f"NDCG@10 {base['markov']['test_ndcg@10']:.4f}")
  result["rows"] = {}
  for name in rows:
    description, overrides = ROWS[args.dataset][name]
    log(f"row {name}: {description}")
    result["rows"][name] = run_row(name, description, overrides, args, (prepared, train, evaluators))
  benchmark.emit_json(result, args.out)


if __name__ == "__main__":
  main()
