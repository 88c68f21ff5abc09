"""BERT4Rec side by side with RecBole's, in one invocation: same data, same model size.

  python experiments/compare_recbole.py                          # ML-1M, RecBole trains 60 min
  python experiments/compare_recbole.py --users=300 --recbole_minutes=2 --eval_at=1,2 --ours_minutes=2   # a quick look
  python experiments/compare_recbole.py --ours_only --split=valid --ours_minutes=10 --set=...   # choose our settings

What it does, in order:
1. Reads the data (the SASRec/BERT4Rec `user item` text format; default ml-1m.txt.gz from
   BERT4REC_DATA_DIR), optionally keeps the first --users users, and writes it as RecBole's
   atomic `.inter` file (timestamp = position in the user's sequence, so both see the same order).
2. Creates RecBole's own throwaway virtual environment (--venv; reused when complete) with the
   known working pins for recbole 1.2.1 and the CPU build of torch 2.13.0. RecBole is never a
   dependency of this project.
3. Runs RecBole's BERT4Rec (experiments/recbole_runner.py, in that environment) for
   --recbole_minutes of training-clock time, evaluating the test split (full ranking) at
   --eval_at minutes. Its own data loader, masking, model, Adam and evaluator are used.
4. Runs ours in a fresh process on the same users: leave-one-out split (the same split as
   RecBole's `LS: valid_and_test`), the same model size (hidden 64, inner 256, 2 layers, 2
   heads, length --max_seq_length, batch 256, mask ratio 0.2), evaluating the test split every
   few steps for --ours_minutes of training clock or until its schedule ends (a fixed horizon,
   so that whether ours *holds* a quality is judged over the same stretch every time). Our
   settings (--ours_settings): `recipe` (the default) is configs/default.py get_config(), what a
   user gets on a dataset it has never seen, with what it leaves to the data (schedule, rate,
   regularisation, softmax) chosen by bert4rec_jax/recipe.py from the training sequences; none of
   it was chosen on this comparison's test split. `base` is configs/default.py base() with a
   --decay_steps schedule and, for lengths >= 100, a sequence-length warmup (the first 400 steps
   on windows of L / 4 items), as the rows of 2026-11-27. --set overrides either.
   The most-popular and Markov-chain baselines are fitted on the same training sequences and
   scored by the same evaluators.
5. Answers two questions (the "headline" of the JSON):
   (a) RecBole's best test NDCG@10 within its budget: the seconds ours needs to first reach it
       and to hold it (from the first evaluation after which it never falls below it again
       within its run: early peaks can be transient), the speed-ups against the seconds RecBole
       needed to get there, and whether that quality is above most-popular's at all;
   (b) the Markov chain's test NDCG@10 under the same protocol: the seconds ours needs to reach
       and hold it, and whether (and when) RecBole reaches it within its budget.
   The same figures for each of RecBole's evaluations are in "time_to_quality".
6. Measures both on identical shapes: RecBole's batches are always [256, L] with
   int(0.2 L) mask slots over the whole catalogue; ours is timed on [256, L] windows that are
   full (every row exactly int(0.2 L) targets), so neither gets shorter rows.
Prints one JSON document (also to --out).

How the epochs differ: RecBole's sequential data pipeline turns every user into one training
example per prefix (a user with n training items gives n - 1 examples, each padded to L), and
one RecBole "epoch" is a pass over all of them (about 990k examples on ML-1M). Ours trains on
each user's most recent L training items per epoch (6,040 examples on ML-1M) with fresh random
masks every step, so one of our epochs is ~160x shorter. Epoch counts are therefore not
comparable (and the recipe's sliding windows give ours a few more examples per epoch on long
histories); sequences/s on identical shapes and wall-clock time to a test NDCG@10 are.

Choosing our settings: --ours_only runs step 4 alone (no RecBole) and --split=valid evaluates the
validation split (second-to-last items) instead of test, so that settings for the side-by-side run
are chosen on validation curves and the test split is read only by the run that reports them.

Evaluation protocol: RecBole's full ranking of sequential models does not exclude the user's
history (its FullSortEvalDataLoader passes no history for sequential models), so for the
time-to-quality comparison ours is evaluated the same way (eval.exclude_history=False); our
default (history excluded) is reported beside it. Evaluation time is never on either training
clock; preparation time is reported separately.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if os.path.isdir(os.path.join(REPO, "bert4rec_jax")):  # a checkout (installed: the package is importable)
  sys.path.insert(0, REPO)
sys.path.insert(0, HERE)
import benchmark  # noqa: E402  (a sibling script)

# RecBole 1.2.1's working set here: it breaks on numpy 2; ray, hyperopt, thop and plotly are
# only needed by its quick_start, hence --no-deps for recbole itself and its real imports listed.
RECBOLE_PINS = ["torch==2.13.0", "numpy==1.26.4", "pandas==2.2.3", "scipy==1.13.1", "scikit-learn==1.5.2",
                "colorlog==4.7.2", "colorama==0.4.4", "tensorboard", "pyyaml", "tqdm", "texttable", "tabulate"]
RECBOLE = "recbole==1.2.1"


def log(msg: str) -> None:
  print(f"[compare_recbole {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def ensure_venv(venv: str) -> str:
  """RecBole's throwaway environment; a marker file says the install finished."""
  python = os.path.join(venv, "bin", "python")
  marker = os.path.join(venv, ".recbole-complete")
  if os.path.exists(marker):
    return python
  log(f"creating RecBole's environment in {venv} (about 2 minutes)")
  if not os.path.exists(python):
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
  pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
  subprocess.run(pip + RECBOLE_PINS, check=True)
  subprocess.run(pip + ["--no-deps", RECBOLE], check=True)
  subprocess.run([python, "-c", "import recbole.config, recbole.data, recbole.trainer, recbole.utils, "
                  "recbole.model.sequential_recommender"], check=True,
                 env=dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1"))
  with open(marker, "w") as f:
    f.write("\n".join(RECBOLE_PINS + [RECBOLE]) + "\n")
  return python


def load_users(path: str, num_users: int):
  """The first `num_users` users (0 = all) of a `user item` file, each user's items in order."""
  from bert4rec_jax import sources
  df = sources.read_text(path)
  if num_users:
    keep = df["user"].drop_duplicates().iloc[:num_users]
    df = df[df["user"].isin(keep)]
  return df.reset_index(drop=True)


def write_atomic_inter(df, folder: str, name: str) -> None:
  os.makedirs(os.path.join(folder, name), exist_ok=True)
  position = df.groupby("user", sort=False).cumcount()
  path = os.path.join(folder, name, f"{name}.inter")
  with open(path + ".tmp", "w") as f:
    f.write("user_id:token\titem_id:token\ttimestamp:float\n")
    for u, i, t in zip(df["user"].to_numpy(), df["item"].to_numpy(), position.to_numpy()):
      f.write(f"{u}\t{i}\t{t}\n")
  os.replace(path + ".tmp", path)


def run_recbole(python: str, args, data_folder: str, name: str) -> dict:
  cmd = [python, os.path.join(HERE, "recbole_runner.py"), f"--data_path={data_folder}", f"--dataset={name}",
         f"--minutes={args.recbole_minutes}", f"--eval_at={args.eval_at}", f"--max_seq_length={args.max_seq_length}",
         f"--batch_size={args.batch_size}", f"--checkpoint_dir={os.path.join(args.workdir, 'recbole_saved')}"]
  log(f"RecBole: training for {args.recbole_minutes} min of training clock")
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=args.workdir,
                          env=dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1"))
  result = None
  for line in proc.stdout:
    if line.startswith("{"):
      doc = json.loads(line)
      if "recbole_progress" in doc:
        p = doc["recbole_progress"]
        log(f"RecBole at {p['train_seconds']:.0f} s: test NDCG@10 {p['ndcg@10']:.4f} HR@10 {p['hr@10']:.4f}")
      result = doc.get("recbole", result)
  if proc.wait() or result is None:
    raise SystemExit(f"RecBole's run failed (exit {proc.returncode}); its log is above")
  return result


def ours_child(spec: dict) -> dict:
  """Our side, in a fresh process (its peak RSS is its own)."""
  import jax
  from bert4rec_jax import baselines, evaluate, input_pipeline, model as model_lib, parallel, preprocess, trainer

  t0 = time.perf_counter()
  df = load_users(spec["data"], spec["users"])
  prepared = preprocess.prepare(df, drop_duplicates=False, min_seq_length=3)
  train_seqs, valid, test = preprocess.leave_one_out(prepared.sequences)
  held_out = valid if spec.get("split", "test") == "valid" else test
  prepare_s = time.perf_counter() - t0
  num_items = prepared.vocab.num_items

  c, chosen = our_config(spec, train_seqs, num_items)
  devices = parallel.local_devices(0)
  step, sampler = trainer.make_step(c, num_items, devices, train_seqs)
  p_state = parallel.replicate(trainer.create_state(c, num_items), devices)
  batches = input_pipeline.training_batches(c, train_seqs, 0, devices)
  examples_per_epoch = input_pipeline.make_stream(c, train_seqs).num_examples
  scorer = evaluate.model_scorer(model_lib.from_config(c.model, num_items))
  evaluators = {}
  for exclude in (False, True):
    ec = c.eval.copy_and_resolve_references()
    ec.exclude_history = exclude
    evaluators[exclude] = evaluate.Evaluator(held_out, prepared.vocab, eval_config=ec,
                                             max_seq_length=c.model.max_seq_length, devices=devices, seed=c.seed)

  baseline = {}
  for kind in baselines.KINDS:  # under both protocols, by the same evaluators, fitted on the same training data
    baseline[kind] = {}
    for ex, ev in evaluators.items():
      suffix = "_history_excluded" if ex else ""
      baseline[kind][f"ndcg@10{suffix}"], baseline[kind][f"hr@10{suffix}"] = benchmark.ndcg_hr_at_10(
          baselines.split_ranks(kind, ev, train_seqs, num_items, ex)["full"])
  print(json.dumps({"ours_baselines": baseline}), flush=True)
  curve, clock, steps = [], 0.0, 0
  compile_s = None
  budget = spec["max_minutes"] * 60
  while True:
    every = 10 if steps < 200 else 50 if steps < 1000 else 100
    start = time.perf_counter()
    for _ in range(every):
      batch, num_targets = next(batches)
      p_state, m = step(p_state, batch, sampler, num_targets)
      if compile_s is None:
        jax.block_until_ready(m)
        compile_s = time.perf_counter() - start
    jax.block_until_ready(m)
    clock += time.perf_counter() - start
    steps += every
    ranks = {ex: ev.ranks(scorer, p_state.params, replicated=True)["full"] for ex, ev in evaluators.items()}
    row = {"train_seconds": round(clock, 1), "steps": steps, "sequences": steps * c.train.batch_size,
           "epochs": round(steps * c.train.batch_size / examples_per_epoch, 2)}
    for ex, r in ranks.items():
      suffix = "_history_excluded" if ex else ""
      row[f"ndcg@10{suffix}"], row[f"hr@10{suffix}"] = benchmark.ndcg_hr_at_10(r)
    curve.append(row)
    print(json.dumps({"ours_progress": row}), flush=True)
    if clock >= budget or steps >= c.train.num_train_steps:  # a fixed horizon: a first crossing can be a transient peak
      break
  rss_training = peak_rss_mb()

  # Identical shapes to RecBole's batches: [B, L] windows, every row with int(0.2 L) targets.
  L = spec["max_seq_length"]
  benchmark.SHAPES["recbole_identical"] = dict(users=4096, items=num_items, mean_len=2.0 * L, min_len=L, L=L,
                                               P=int(0.2 * L), p=0.2)
  shaped = None if spec.get("ours_only") else benchmark.bench_train("recbole_identical", [f"train.batch_size={spec['batch_size']}",
                                                       "model.intermediate_size=256"], repeats=3, steps=10)
  return {"jax": jax.__version__, "devices": f"{len(devices)} x {devices[0].device_kind}",
          "split": spec.get("split", "test"), "prepare_seconds": round(prepare_s, 1), "compile_seconds": round(compile_s, 1),
          "training_examples_per_epoch": examples_per_epoch, "num_items": num_items,
          "settings": {"config": spec.get("settings", "base"), "from_the_data": chosen,
                       "learning_rate": c.train.learning_rate, "warmup_steps": c.train.num_warmup_steps,
                       "weight_decay": c.train.weight_decay, "next_item_loss_weight": c.train.next_item_loss_weight,
                       "read_last": c.model.read_last, "loss": c.train.loss,
                       "warmup_seq_length": c.train.warmup_seq_length, "warmup_seq_steps": c.train.warmup_seq_steps,
                       "decay_steps": c.train.num_train_steps, "dropout": c.model.hidden_dropout_prob,
                       "mask_last_prob": c.masking.mask_last_prob,
                       "last_keep_prob": c.masking.get("last_keep_prob", 0.0), "overrides": spec.get("set", [])},
          "baselines": baseline, "curve": curve,
          "peak_rss_mb_training": round(rss_training),
          "identical_shapes": shaped, "peak_rss_mb": round(peak_rss_mb())}


def first_reached(curve, target):
  """Training seconds of the first evaluation at or above `target` (None if none)."""
  return next((row["train_seconds"] for row in curve if row["ndcg@10"] >= target), None)


def held_from(curve, target):
  """Training seconds of the first evaluation from which every later one in the run stays at or
  above `target` (None if the last one is below)."""
  t = None
  for row in curve:
    if row["ndcg@10"] >= target:
      t = row["train_seconds"] if t is None else t
    else:
      t = None
  return t


def time_to_quality(recbole_curve, ours):
  """Ours against every evaluation of RecBole's run, and the two headline questions:
  (a) RecBole's best quality in its budget: when ours first reaches it and from when it holds it,
      the speed-up against the seconds RecBole needed to reach it, and whether that quality is above
      the most-popular baseline (a speed-up below most-popular says little);
  (b) the Markov chain's NDCG@10 under the same protocol: when ours first reaches and holds it,
      and whether RecBole reaches it at all in its budget (and when)."""
  def speedup(theirs, mine):
    return round(theirs / mine, 1) if mine else None

  curve = ours["curve"]
  rows = []
  for p in recbole_curve:
    t, held = first_reached(curve, p["ndcg@10"]), held_from(curve, p["ndcg@10"])
    rows.append({"recbole_train_seconds": p["train_seconds"], "recbole_ndcg@10": p["ndcg@10"],
                 "ours_train_seconds": t, "speedup": speedup(p["train_seconds"], t),
                 "ours_held_from_seconds": held, "speedup_held": speedup(p["train_seconds"], held)})
  best = max(recbole_curve, key=lambda p: (p["ndcg@10"], -p["train_seconds"]))  # the first time it got there
  popular, markov = ours["baselines"]["most_popular"]["ndcg@10"], ours["baselines"]["markov"]["ndcg@10"]
  t, held = first_reached(curve, best["ndcg@10"]), held_from(curve, best["ndcg@10"])
  recbole_markov = next((p["train_seconds"] for p in recbole_curve if p["ndcg@10"] >= markov), None)
  headline = {
      "recbole_best": {"ndcg@10": best["ndcg@10"], "hr@10": best["hr@10"], "recbole_train_seconds": best["train_seconds"],
                       "recbole_budget_seconds": recbole_curve[-1]["train_seconds"],
                       "above_most_popular": best["ndcg@10"] > popular, "most_popular_ndcg@10": popular,
                       "ours_train_seconds": t, "speedup": speedup(best["train_seconds"], t),
                       "ours_held_from_seconds": held, "speedup_held": speedup(best["train_seconds"], held)},
      "markov": {"ndcg@10": markov, "ours_train_seconds": first_reached(curve, markov),
                 "ours_held_from_seconds": held_from(curve, markov),
                 "recbole_reaches": recbole_markov is not None, "recbole_train_seconds": recbole_markov},
      "ours_horizon_seconds": curve[-1]["train_seconds"],
  }
  return rows, headline


def recorded_args(args) -> dict:
  """Every argument the run used, defaults included (a later change of a default does not change
  what the record says was run); folders of this machine left out."""
  return {k: v for k, v in sorted(vars(args).items()) if k not in ("data", "workdir", "venv", "out", "_ours")} | {
      "data": os.path.basename(args.data)}


def our_settings(settings: str, max_seq_length: int, overrides) -> list:
  """The --set overrides of our side; with --ours_settings=base, first a sequence-length warmup for
  long sequences (400 steps on windows of L / 4 items)."""
  warmup = [f"train.warmup_seq_length={max_seq_length // 4}", "train.warmup_seq_steps=400"]
  return (warmup if settings == "base" and max_seq_length >= 100 else []) + list(overrides)


def our_config(spec: dict, train_seqs, num_items: int):
  """Our training config at RecBole's model size (hidden 64, inner 256, 2 layers, 2 heads, length
  L, batch B, mask ratio 0.2 with int(0.2 L) slots), the rest from spec["settings"]:
  recipe: configs/default.py get_config(), what a user gets for a dataset it has never seen; what
    it leaves to the data (schedule, rate, regularisation, softmax) chosen by bert4rec_jax/recipe.py
    from the training sequences, exactly as `python -m bert4rec_jax.main` would;
  base: configs/default.py base() with train.num_train_steps = --decay_steps (the earlier rows).
  Then the --set overrides. Returns (config, the recipe's choices as lines)."""
  from bert4rec_jax import recipe
  from bert4rec_jax.configs import default
  L = spec["max_seq_length"]
  c = default.get_config() if spec.get("settings", "base") == "recipe" else default.base()
  c.model.max_seq_length = L
  c.model.hidden_size, c.model.intermediate_size = 64, 256
  c.model.num_hidden_layers, c.model.num_attention_heads = 2, 2
  c.masking.masked_lm_prob = 0.2
  c.masking.max_predictions_per_seq = int(0.2 * L)
  c.train.batch_size = spec["batch_size"]
  c.eval.num_negatives, c.eval.ks = 0, (10,)
  if spec.get("settings", "base") == "base":
    c.train.num_train_steps = spec["decay_steps"]
  benchmark.apply_overrides(c, spec.get("set", []))
  chosen = recipe.resolve(c, train_seqs, num_items) if recipe.auto_fields(c) else []
  return c, chosen


def run_ours(args) -> dict:
  spec = {"data": args.data, "users": args.users, "max_seq_length": args.max_seq_length, "batch_size": args.batch_size,
          "decay_steps": args.decay_steps, "set": our_settings(args.ours_settings, args.max_seq_length, args.set),
          "settings": args.ours_settings, "split": args.split, "ours_only": args.ours_only,
          "max_minutes": args.ours_minutes}
  log(f"ours: {args.ours_minutes:g} min of training, evaluating the {args.split} split as it goes")
  proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--_ours=" + json.dumps(spec)],
                          stdout=subprocess.PIPE, text=True, cwd=REPO)
  result = None
  for line in proc.stdout:
    doc = json.loads(line)
    if "ours_progress" in doc:
      p = doc["ours_progress"]
      log(f"ours at {p['train_seconds']:.0f} s (step {p['steps']}): {args.split} NDCG@10 {p['ndcg@10']:.4f} "
          f"(history excluded {p['ndcg@10_history_excluded']:.4f})")
    if "ours_baselines" in doc:
      for kind, b in doc["ours_baselines"].items():
        log(f"{kind}: {args.split} NDCG@10 {b['ndcg@10']:.4f} (history excluded {b['ndcg@10_history_excluded']:.4f})")
    result = doc.get("ours", result)
  if proc.wait() or result is None:
    raise SystemExit(f"our run failed (exit {proc.returncode})")
  return result


def data_summary(path: str, df) -> dict:
  """The JSON's description of the interactions both sides read."""
  return {"file": os.path.basename(path), "users": int(df["user"].nunique()),
          "items": int(df["item"].nunique()), "interactions": len(df)}


def main():
  from bert4rec_jax import parallel
  from bert4rec_jax.configs import default
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--data", default=os.path.join(default.DATA_DIR, "ml-1m.txt.gz"), help="`user item` text file")
  ap.add_argument("--users", type=int, default=0, help="keep the first N users (0 = all)")
  ap.add_argument("--recbole_minutes", type=float, default=60.0, help="RecBole's training-clock budget")
  ap.add_argument("--eval_at", default="2.5,5,10,20,30,40,50,60",
                  help="RecBole's test evaluations (training-clock minutes)")
  ap.add_argument("--ours_minutes", type=float, default=60.0,
                  help="our training-clock horizon (ours also ends where its schedule ends)")
  ap.add_argument("--ours_settings", choices=("recipe", "base"), default="recipe",
                  help="recipe: configs/default.py get_config() with what it leaves to the data chosen from it, as "
                       "`python -m bert4rec_jax.main` does; base: configs/default.py base() (the 2026-11-27 rows)")
  ap.add_argument("--max_seq_length", type=int, default=200)
  ap.add_argument("--batch_size", type=int, default=256)
  ap.add_argument("--decay_steps", type=int, default=2000,
                  help="--ours_settings=base: our learning-rate schedule's horizon (the recipe sets its own)")
  ap.add_argument("--set", action="append", default=[],
                  help="our training setting section.field=value (repeatable), e.g. train.learning_rate=2e-3")
  ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "bert4rec_jax_compare_recbole"))
  ap.add_argument("--venv", default="", help="RecBole's environment (default: <workdir>/recbole-venv)")
  ap.add_argument("--out", default="", help="also write the JSON here")
  ap.add_argument("--ours_only", action="store_true",
                  help="run our side alone (no RecBole, no comparison): for choosing our settings with --split=valid")
  ap.add_argument("--split", choices=("test", "valid"), default="test",
                  help="the split ours is evaluated on; valid (second-to-last items) only with --ours_only")
  ap.add_argument("--_ours", default="", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.split == "valid" and not args.ours_only:
    ap.error("--split=valid needs --ours_only: RecBole's curve is on the test split, and so must ours be beside it")
  for name, ok, need in (("--recbole_minutes", args.recbole_minutes > 0, "> 0"), ("--ours_minutes", args.ours_minutes > 0, "> 0"),
                         ("--max_seq_length", args.max_seq_length >= 5, ">= 5 (int(0.2 L) mask slots)"),
                         ("--batch_size", args.batch_size >= 1, ">= 1"), ("--users", args.users >= 0, ">= 0 (0 = all)"),
                         ("--decay_steps", args.decay_steps >= 1, ">= 1")):
    if not ok:
      ap.error(f"{name} must be {need}")
  if args._ours:
    print(json.dumps({"ours": ours_child(json.loads(args._ours))}), flush=True)
    return
  try:  # our settings checked before RecBole's hour, not after it
    benchmark.apply_overrides(default.get_config() if args.ours_settings == "recipe" else default.base(), args.set)
  except (KeyError, ValueError) as e:
    ap.error(f"--set {args.set}: {benchmark.override_error(e)}")
  if not os.path.exists(args.data):
    raise SystemExit(f"{args.data} not found: set BERT4REC_DATA_DIR or pass --data")
  if args.ours_only:
    df = load_users(args.data, args.users)
    ours = run_ours(args)
    benchmark.emit_json({
        "command": "python experiments/compare_recbole.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count(), "cpu": parallel.describe_cpu(),
        "split": args.split,
        "data": data_summary(args.data, df), "ours": ours}, args.out)
    return
  os.makedirs(args.workdir, exist_ok=True)
  python = ensure_venv(args.venv or os.path.join(args.workdir, "recbole-venv"))

  df = load_users(args.data, args.users)
  name = f"data_{args.users or 'all'}"
  data_folder = os.path.join(args.workdir, "data")
  write_atomic_inter(df, data_folder, name)
  log(f"{df['user'].nunique():,} users, {df['item'].nunique():,} items, {len(df):,} interactions")

  recbole = run_recbole(python, args, data_folder, name)
  ours = run_ours(args)

  shaped = ours["identical_shapes"]
  ttq, headline = time_to_quality(recbole["curve"], ours)
  result = {
      "command": "python experiments/compare_recbole.py " + " ".join(sys.argv[1:]),
      "date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count(), "cpu": parallel.describe_cpu(),
      "args": recorded_args(args),
      "data": data_summary(args.data, df),
      "shape": {"max_seq_length": args.max_seq_length, "batch_size": args.batch_size, "hidden_size": 64,
                "inner_size": 256, "layers": 2, "heads": 2, "mask_slots": int(0.2 * args.max_seq_length)},
      "throughput_identical_shapes": {
          "recbole_sequences_per_second": recbole["sequences_per_second"],
          "ours_sequences_per_second": shaped["sequences_per_second"],
          "recbole_tokens_per_second": recbole["tokens_per_second"],
          "ours_tokens_per_second": shaped["tokens_per_second"],
          "ratio": round(shaped["sequences_per_second"] / recbole["sequences_per_second"], 2)},
      "peak_rss_mb": {"recbole": recbole["peak_rss_mb"], "ours": ours["peak_rss_mb"],
                      "ratio": round(ours["peak_rss_mb"] / recbole["peak_rss_mb"], 3)},
      "baselines": ours["baselines"],
      "headline": headline,
      "time_to_quality": ttq,
      "time_to_quality_final": ttq[-1],
      "recbole": recbole, "ours": ours,
  }
  a, b = headline["recbole_best"], headline["markov"]
  log(f"(a) RecBole's best in {a['recbole_budget_seconds']:.0f} s: NDCG@10 {a['ndcg@10']:.4f} at {a['recbole_train_seconds']:.0f} s"
      f" ({'above' if a['above_most_popular'] else 'not above'} most-popular's {a['most_popular_ndcg@10']:.4f});"
      f" ours first at {a['ours_train_seconds']} s ({a['speedup']}x), holds it from {a['ours_held_from_seconds']} s"
      f" ({a['speedup_held']}x)")
  log(f"(b) the Markov chain's NDCG@10 {b['ndcg@10']:.4f}: ours first at {b['ours_train_seconds']} s, holds it from"
      f" {b['ours_held_from_seconds']} s; RecBole " + (f"at {b['recbole_train_seconds']:.0f} s" if b["recbole_reaches"]
                                                        else "never in its budget"))
  benchmark.emit_json(result, args.out)


if __name__ == "__main__":
  main()
