"""Speed and memory benchmarks; prints one JSON document. Every figure is a median over repeats.

  python experiments/benchmark.py                        # all suites at their default sizes
  python experiments/benchmark.py --only=train,eval --repeats=5
  python experiments/benchmark.py --set=train.donate_buffers=False --only=train   # a speed switch off
  python experiments/benchmark.py --only=prepare --prepare_sizes=20000000

Suites:
  prepare  NumPy preprocessing (+ saving the artifact) of synthetic interactions, in a fresh
           process per run so peak RSS is its own. Sizes: interactions; users = n / 20,
           items = min(n / 40, 500k).
  train    training throughput for an ML-1M-like shape (len 200, 3,416 items, 40 predictions)
           and a Beauty-like shape (len 50, 54,542 items, 30 predictions), batch 256; compile
           time reported separately.
  eval     full-ranking (+ sampled) evaluation of every user of the two shapes (6,040 / 40,226).
  predict  top-10 inference to Parquet for every user of the two shapes.
  recommend  the Python API (`Recommender.recommend`, top-10, history excluded): latency of one
           history (p50 / p99 over --recommend_calls calls, after a first pass over the same
           histories that compiles each input width; its time is reported too) and throughput for
           10,000 histories in one call, for the two shapes.
  validation  (not in the default run: minutes) what periodic validation costs inside the training
           loop, for each shipped config on
           its own data (--validation_configs; `default@<file>`: the recipe on a file of
           BERT4REC_DATA_DIR; a row whose file is missing says so): the median step (after each
           timed width has compiled), one validation of eval.max_valid_users users, and their
           share of a whole run's time (the config's steps and validation period, resolved from
           the data as a run resolves them; a config whose task validates nothing, as the
           paper's train_test, is measured as train_val_test runs it). The trainer also records
           the measured share of every run (`training_time` in the results JSON).
  recipe_cost  (not in the default run: minutes) the recipe's training steps on data files of
           BERT4REC_DATA_DIR or the synthetic shapes (--recipe_cost_data, `<file or shape>[:<kind>]`),
           measured (batches made inside the timing, as in a run) against the seconds the recipe
           estimates for the same steps (`recipe.step_seconds` at each step's width and target
           slots), with the budget and steps it chose: what the recipe's time estimate is
           calibrated (experiments/fit_step_rates.py) and checked on.
  softmax  (not in the default run: a minute or two) the training losses' output layer alone: the
           forward and backward pass of `losses.chunked_logsumexp` (what the full softmax and the
           sampled softmax's negatives cost) for rows x columns of --softmax_shapes (targets x items
           or negatives, hidden 64), with its matrix products' GFLOP/s.
  large    a 1M-item catalogue in a fresh process: sampled-softmax training steps and a full
           evaluation, with peak RSS.
  bucketed (not in the default run: minutes) inputs larger than memory: 100M interactions in a
           Parquet file prepared by the chunked, bucketed-by-user path; time and peak RSS.
  stream_predict  (not in the default run: minutes) top-10 inference for 10M synthetic users
           (small model, 2,000 items, histories of ~8), written as Parquet parts of 1M users;
           users/s and peak RSS before and after predicting.
Synthetic data has the shapes of the real sets (users, items, length distribution); speed
depends on shapes, not on what the items are.
"""
import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(REPO, "bert4rec_jax")):  # a checkout (installed: the package is importable)
  sys.path.insert(0, REPO)

from bert4rec_jax.errors import one_line  # noqa: E402

SHAPES = {
    # name: users, items, mean length, min length, max_seq_length, max_predictions, masked_lm_prob
    "ml1m_like": dict(users=6040, items=3416, mean_len=165.0, min_len=20, L=200, P=40, p=0.2),
    "beauty_like": dict(users=40226, items=54542, mean_len=8.8, min_len=5, L=50, P=30, p=0.6),
    # Dense with a large catalogue: the full softmax over 15,000 items at every position (recipe_cost).
    "dense_15k_like": dict(users=3000, items=15000, mean_len=150.0, min_len=60, L=200, P=40, p=0.2),
    # Sparse, short histories (Beauty's users and lengths) over smaller catalogues: with
    # --set=train.loss=full, the full softmax's cost against the catalogue size (recipe_cost).
    "beauty_like_16k": dict(users=40226, items=16000, mean_len=8.8, min_len=5, L=50, P=30, p=0.6),
    "beauty_like_32k": dict(users=40226, items=32000, mean_len=8.8, min_len=5, L=50, P=30, p=0.6),
    "large_1m_items": dict(users=20000, items=1_000_000, mean_len=12.0, min_len=5, L=50, P=30, p=0.6),
    # Inference for millions of users (users set by --stream_users): a small model, short histories.
    "stream_users": dict(users=0, items=2000, mean_len=8.0, min_len=1, L=16, P=4, p=0.2),
}


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def synthetic_sequences(users, items, mean_len, min_len, seed=0):
  """CSR sequences with log-normal lengths and Zipf-like item popularity."""
  from bert4rec_jax.preprocess import Sequences
  rng = np.random.default_rng(seed)
  lengths = np.maximum(min_len, rng.lognormal(np.log(mean_len) - 0.5, 1.0, users).astype(np.int64))
  total = int(lengths.sum())
  tokens = (np.floor(items * rng.random(total) ** 3) + 1).astype(np.int32)  # popular items have small ids
  return Sequences(offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), items=tokens)


def shape_config(shape, overrides):
  from bert4rec_jax.configs import default
  s = SHAPES[shape]
  c = default.base()
  c.model.max_seq_length, c.masking.max_predictions_per_seq, c.masking.masked_lm_prob = s["L"], s["P"], s["p"]
  c.train.batch_size = 256
  c.wandb.mode = "disabled"
  if shape == "large_1m_items":
    c.train.loss = "sampled"
    c.eval.batch_size = 128
  return apply_overrides(c, overrides)


def apply_overrides(config, overrides):
  """`a.b.c=value` strings onto a ConfigDict, each value parsed as the type of the field it replaces."""
  for item in overrides:
    key, value = item.split("=", 1)
    *path, field = key.split(".")
    node = config
    for name in path:
      node = node[name]
    old = node[field]
    node[field] = (value.lower() in ("1", "true", "yes")) if isinstance(old, bool) else type(old)(value)
  return config


def ndcg_hr_at_10(full_ranks):
  """(NDCG@10, HR@10) of full-ranking ranks, rounded as the experiment documents print them."""
  from bert4rec_jax import evaluate
  s = evaluate.summarize_ranks({"full": full_ranks}, (10,))
  return round(s["ndcg@10"], 5), round(s["hr@10"], 5)


def override_error(e: Exception) -> str:
  """One line for an override apply_overrides could not apply (an unknown field, a bad value)."""
  if isinstance(e, KeyError):
    return f"no such setting '{str(e.args[0] if e.args else e).strip(chr(39) + chr(34))}'"
  return str(e)


def emit_json(result: dict, out: str = "") -> None:
  """Prints the document, and writes it to `out` too when given (atomically)."""
  text = json.dumps(result, indent=2)
  print(text)
  if out:  # whole or not at all: a run killed while writing leaves the previous file as it was
    from bert4rec_jax import io_utils
    with io_utils.atomic_path(out) as tmp:
      with open(tmp, "w") as f:
        f.write(text + "\n")


def bench_train(shape, overrides, repeats, steps):
  import jax
  from bert4rec_jax import input_pipeline, parallel, trainer
  s = SHAPES[shape]
  c = shape_config(shape, overrides)
  seqs = synthetic_sequences(s["users"], s["items"], s["mean_len"], s["min_len"])
  devices = parallel.local_devices(c.train.num_devices)
  step, sampler = trainer.make_step(c, s["items"], devices, seqs)
  p_state = parallel.replicate(trainer.create_state(c, s["items"]), devices)
  batches = input_pipeline.batch_iterator(c, input_pipeline.make_stream(c, seqs), 0, devices)
  t0 = time.perf_counter()
  p_state, m = step(p_state, *_with_sampler(next(batches), sampler))
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  rates = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(steps):
      p_state, m = step(p_state, *_with_sampler(next(batches), sampler))
    jax.block_until_ready(m)
    rates.append(steps * c.train.batch_size / (time.perf_counter() - t0))
  seq_s = statistics.median(rates)
  flops = train_flops_per_sequence(c, s, seqs)
  return {"sequences_per_second": round(seq_s, 1), "tokens_per_second": round(seq_s * s["L"]),
          "model_tflops_per_second": round(seq_s * flops / 1e12, 3),
          "compile_seconds": round(compile_s, 2), "batch_size": c.train.batch_size, "max_seq_length": s["L"],
          "max_predictions_per_seq": s["P"], "num_items": s["items"], "loss": c.train.loss,
          "steps_per_repeat": steps, "repeats": repeats}


def train_flops_per_sequence(c, s, seqs) -> float:
  """Model FLOPs of one training sequence (forward + backward = 3 x forward), counting the
  matmuls: per token and layer 8H^2 (attention projections) + 4HI (feed-forward) + 4LH
  (scores and mixing); per used target 2H^2 (head) + 2H x (N or sampled candidates + 1); with
  train.next_item_loss_weight, the causal pass's tokens and next-item targets as well.
  Unused target slots are not counted, whatever the implementation computes for them."""
  from bert4rec_jax import losses
  H, I, L, layers = c.model.hidden_size, c.model.intermediate_size, s["L"], c.model.num_hidden_layers
  n = np.minimum(seqs.lengths, L)
  targets = np.minimum(np.minimum(s["P"], n), np.maximum(1, np.round(n * s["p"]))).mean()
  outputs = (c.train.num_negatives + 1) if losses.step_loss(c.train, s["items"]) == "sampled" else s["items"]
  encoder, per_target = L * layers * (8 * H * H + 4 * H * I + 4 * L * H), 2 * H * H + 2 * H * outputs
  forward = encoder + targets * per_target
  if losses.next_item_loss_weight(c):  # a second, causal pass with every next item a target
    forward += encoder + np.maximum(n - 1, 0).mean() * per_target
  return 3.0 * forward


def _with_sampler(batch_and_targets, sampler):
  batch, num_targets = batch_and_targets
  return batch, sampler, num_targets


def _model_and_params(c, num_items):
  from bert4rec_jax import evaluate, model as model_lib, trainer
  state = trainer.create_state(c, num_items)
  return evaluate.model_scorer(model_lib.from_config(c.model, num_items)), state.params


def bench_eval(shape, overrides, repeats):
  from bert4rec_jax import evaluate, parallel, preprocess
  s = SHAPES[shape]
  c = shape_config(shape, overrides)
  seqs = synthetic_sequences(s["users"], s["items"], s["mean_len"], max(3, s["min_len"]))
  _, _, test = preprocess.leave_one_out(seqs)
  vocab = preprocess.ItemVocab(ids=np.arange(1, s["items"] + 1),
                               counts=np.bincount(seqs.items, minlength=s["items"] + 1)[1:].astype(np.int64))
  ev = evaluate.Evaluator(test, vocab, eval_config=c.eval, max_seq_length=s["L"],
                          devices=parallel.local_devices(c.train.num_devices), seed=0)
  scorer, params = _model_and_params(c, s["items"])
  t0 = time.perf_counter()
  ev._ensure_negatives()
  negatives_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  ev.ranks(scorer, params)
  first_s = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    ev.ranks(scorer, params)
    times.append(time.perf_counter() - t0)
  sec = statistics.median(times)
  return {"users": s["users"], "num_items": s["items"], "seconds": round(sec, 2),
          "users_per_second": round(s["users"] / sec), "first_call_seconds_incl_compile": round(first_s, 2),
          "sampled_negatives_seconds": round(negatives_s, 2), "protocols": "full + sampled (100 negatives)",
          "repeats": repeats}


def bench_predict(shape, overrides, repeats):
  from bert4rec_jax import parallel, predict, preprocess
  s = SHAPES[shape]
  c = shape_config(shape, overrides)
  seqs = synthetic_sequences(s["users"], s["items"], s["mean_len"], s["min_len"])
  vocab = preprocess.ItemVocab(ids=np.arange(1, s["items"] + 1), counts=np.ones(s["items"], np.int64))
  scorer, params = _model_and_params(c, s["items"])
  users = np.arange(s["users"])
  times = []
  with tempfile.TemporaryDirectory() as tmp:
    for r in range(repeats + 1):  # the first run includes compilation
      t0 = time.perf_counter()
      predict.predict(scorer, params, seqs, users, vocab, predict_config=c.predict, max_seq_length=s["L"],
                      devices=parallel.local_devices(c.train.num_devices), path=os.path.join(tmp, "p.parquet"))
      if r:
        times.append(time.perf_counter() - t0)
  sec = statistics.median(times)
  return {"users": s["users"], "num_items": s["items"], "top_k": c.predict.top_k, "seconds": round(sec, 2),
          "users_per_second": round(s["users"] / sec), "repeats": repeats}


def bench_recommend(shape, overrides, repeats, calls):
  from bert4rec_jax import api, preprocess
  s = SHAPES[shape]
  c = shape_config(shape, overrides)
  seqs = synthetic_sequences(10_000, s["items"], s["mean_len"], s["min_len"])
  vocab = preprocess.ItemVocab(ids=np.arange(1, s["items"] + 1), counts=np.ones(s["items"], np.int64))
  _, params = _model_and_params(c, s["items"])
  rec = api.Recommender("benchmark", c, params, vocab, step=0)
  histories = [list(vocab.ids[seqs[u] - 1]) for u in range(len(seqs))]
  first, latencies = [], []
  for timings in (first, latencies):  # the first pass compiles each input width it meets
    for i in range(calls):
      t0 = time.perf_counter()
      rec.recommend(histories[i % len(histories):][:1], k=10)
      timings.append(time.perf_counter() - t0)
  rec.recommend(histories, k=10)  # compile the batch shapes
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    rec.recommend(histories, k=10)
    times.append(time.perf_counter() - t0)
  sec = statistics.median(times)
  ms = np.asarray(latencies) * 1000
  return {"num_items": s["items"], "max_seq_length": s["L"], "top_k": 10,
          "one_history_ms_p50": round(float(np.percentile(ms, 50)), 2),
          "one_history_ms_p99": round(float(np.percentile(ms, 99)), 2), "one_history_calls": calls,
          "first_pass_seconds_incl_compile": round(sum(first), 2),
          "histories": len(histories), "seconds": round(sec, 2), "histories_per_second": round(len(histories) / sec),
          "repeats": repeats}


def timed_train_steps(c, train_seqs, num_items, devices, steps, repeats):
  """The first `steps` training steps of config `c` (batches made inside the timing, as in a run,
  but the first: the batch stream finds the schedule's target bounds before it, once a run),
  once to compile every width they meet, then `repeats` times: (the trained state, seconds of the
  first pass, median seconds a step, the steps' widths, their target slots over all losses and devices)."""
  import jax
  from bert4rec_jax import input_pipeline, parallel, trainer
  step, sampler = trainer.make_step(c, num_items, devices, train_seqs)
  p_state = parallel.replicate(trainer.create_state(c, num_items), devices)
  widths, slots = [], []

  def run_steps(state):
    batches = input_pipeline.training_batches(c, train_seqs, 0, devices)
    first = next(batches)
    t0 = time.perf_counter()
    for i in range(steps):
      batch, num_targets = next(batches) if i else first
      widths.append(int(batch["item_ids"].shape[-1]))
      slots.append(int(np.sum(num_targets)) * len(devices))
      state, m = step(state, batch, sampler, num_targets)
    jax.block_until_ready(m)
    return state, time.perf_counter() - t0

  p_state, first_steps_s = run_steps(p_state)  # compiles every batch width of the timed steps (the same steps each time)
  step_times = []
  for _ in range(repeats):
    p_state, seconds = run_steps(p_state)
    step_times.append(seconds / steps)
  return p_state, first_steps_s, statistics.median(step_times), widths[:steps], slots[:steps]


def bench_validation(spec, overrides, repeats, steps):
  """Periodic validation against training for one shipped config (`name` or `name@data file`)."""
  import tempfile
  from bert4rec_jax import config_files, evaluate, model as model_lib, parallel, pipeline, recipe
  from bert4rec_jax import selection, trainer
  from bert4rec_jax.configs import default
  name, _, data_file = spec.partition("@")
  c = config_files.load(name)
  if data_file:
    c.data.format, c.data.path = "text", os.path.join(default.DATA_DIR, data_file)
  c.wandb.mode = "disabled"
  c = apply_overrides(c, overrides)
  if c.data.format != "synthetic" and not os.path.exists(c.data.path):
    return {"skipped": f"no data file {c.data.path} (set BERT4REC_DATA_DIR)"}
  with tempfile.TemporaryDirectory() as work:
    prepared, _ = pipeline._load_or_prepare(c.data, work, pipeline.min_seq_length(c))
  train_seqs, splits = pipeline.task_splits(c.task, prepared.sequences)
  if "valid" not in splits:  # the paper's protocol validates nothing; the honest one (train_val_test) does
    c.task = "train_val_test"
    train_seqs, splits = pipeline.task_splits(c.task, prepared.sequences)
  num_items = prepared.vocab.num_items
  if recipe.auto_fields(c):
    recipe.resolve(c, train_seqs, num_items)
  trainer.resolve_schedule(c, train_seqs)
  devices = parallel.local_devices(c.train.num_devices)
  p_state, first_steps_s, step_s, _, _ = timed_train_steps(c, train_seqs, num_items, devices, steps, repeats)
  ev = evaluate.Evaluator(splits["valid"], prepared.vocab, eval_config=c.eval, max_seq_length=c.model.max_seq_length,
                          devices=devices, seed=c.seed, max_users=c.eval.max_valid_users)
  scorer = evaluate.model_scorer(model_lib.from_config(c.model, num_items))
  ks = selection.cutoffs(c.eval.ks, c.train.select_metric)
  t0 = time.perf_counter()
  ev.metrics(scorer, p_state.params, replicated=True, ks=ks)
  first_valid_s = time.perf_counter() - t0
  valid_times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    ev.metrics(scorer, p_state.params, replicated=True, ks=ks)
    valid_times.append(time.perf_counter() - t0)
  valid_s = statistics.median(valid_times)
  n, every = c.train.num_train_steps, c.train.eval_every_steps
  validations = (n // every if every else 0) + (1 if c.train.select_metric and (not every or n % every) else 0)
  train_total, valid_total = n * step_s, validations * valid_s
  valid_compile = max(0.0, first_valid_s - valid_s)  # what compiling the evaluation step added
  train_compile = max(0.0, first_steps_s - steps * step_s)  # and the training step's widths met in the timed steps
  return {"config": name, "task": c.task,
          "data": os.path.basename(c.data.path) if c.data.format != "synthetic" else "synthetic",
          "num_train_steps": n, "eval_every_steps": every, "validations": validations,
          "validated_users": len(ev.index), "batch_size": c.train.batch_size,
          "max_seq_length": c.model.max_seq_length, "num_items": num_items, "loss": c.train.loss,
          "step_seconds": round(step_s, 4), "validation_seconds": round(valid_s, 3),
          "first_validation_seconds_incl_compile": round(first_valid_s, 2),
          "first_steps_seconds_incl_compile": round(first_steps_s, 2),
          "validation_share": round(valid_total / (train_total + valid_total), 4),
          "validation_share_incl_compilation": round((valid_total + valid_compile)
                                                     / (train_total + train_compile + valid_total + valid_compile), 4),
          "timed_steps": steps, "repeats": repeats}


def bench_softmax(shapes: str, repeats: int, hidden: int = 64):
  """Seconds of one forward and backward pass of the output layer's logsumexp (gradients for the
  hidden states, the table and the bias) at `rows`x`columns` of each shape (`R`x`N`, comma-separated),
  the median over repeats after a first call that compiles it."""
  import jax
  from bert4rec_jax import losses
  grad = jax.jit(jax.grad(lambda h, t, b: losses.chunked_logsumexp(h, t, b).sum(), argnums=(0, 1, 2)))
  rows = {}
  for shape in shapes.split(","):
    t, n = (int(x) for x in shape.split("x"))
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    args = (jax.random.normal(keys[0], (t, hidden)) * 0.3, jax.random.normal(keys[1], (n, hidden)) * 0.3,
            jax.random.normal(keys[2], (n,)) * 0.1)
    jax.block_until_ready(grad(*args))
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      jax.block_until_ready(grad(*args))
      times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    rows[shape] = {"rows": t, "columns": n, "hidden": hidden, "seconds": round(seconds, 6),
                   "gflop_per_second": round(6 * t * n * hidden / seconds / 1e9, 1)}
  return rows


def bench_recipe_cost(spec, overrides, repeats, steps):
  """The recipe (configs/default.py get_config()) on one data file or synthetic shape, `what[:kind]`:
  the seconds of its first `steps` training steps (batches made inside the timing, as in a run;
  after a first pass that compiles their widths), against `recipe.step_seconds` for the same
  steps' widths and target slots (the bounds the batch stream gave them)."""
  from bert4rec_jax import parallel, pipeline, recipe
  from bert4rec_jax.configs import default
  what, _, kind = spec.partition(":")
  c = default.get_config()
  c.wandb.mode = "disabled"
  if kind:
    c.model.kind = kind
  c = apply_overrides(c, overrides)
  if what in SHAPES:
    s = SHAPES[what]
    sequences, num_items = synthetic_sequences(s["users"], s["items"], s["mean_len"], s["min_len"]), s["items"]
  else:
    c.data.format, c.data.path = "text", os.path.join(default.DATA_DIR, what)
    if not os.path.exists(c.data.path):
      return {"skipped": f"no data file {c.data.path} (set BERT4REC_DATA_DIR)"}
    with tempfile.TemporaryDirectory() as work:
      prepared, _ = pipeline._load_or_prepare(c.data, work, pipeline.min_seq_length(c))
    sequences, num_items = prepared.sequences, prepared.vocab.num_items
  train_seqs, _ = pipeline.task_splits(c.task, sequences)
  chosen = recipe.resolve(c, train_seqs, num_items)
  devices = parallel.local_devices(c.train.num_devices)
  _, _, measured, widths, slots = timed_train_steps(c, train_seqs, num_items, devices, steps, repeats)
  b, interactions = c.train.batch_size, int(np.asarray(train_seqs.lengths).sum())
  estimated = sum(recipe.step_seconds(c, num_items, w, n) for w, n in zip(widths, slots)) / steps
  encoder_flops, output_flops = (sum(f) / steps for f in zip(*(recipe.step_flops(c, num_items, w, n)
                                                                for w, n in zip(widths, slots))))
  step_flops = encoder_flops + output_flops
  planned = recipe.position_seconds(c, num_items, recipe.estimate_batches(c, train_seqs))
  return {"data": what, "kind": c.model.kind, "num_items": num_items, "loss": c.train.loss,
          "training_interactions": interactions,
          "max_seq_length": c.model.max_seq_length, "mean_width_of_timed_steps": round(float(np.mean(widths)), 1),
          "budget_per_interaction": c.train.budget_per_interaction, "num_train_steps": c.train.num_train_steps,
          "step_seconds": round(measured, 4), "estimated_step_seconds": round(estimated, 4),
          "measured_over_estimated": round(measured / estimated, 3),
          "target_slots_per_step": round(float(np.mean(slots)), 1),
          "estimated_gflop_per_step": round(step_flops / 1e9, 2),
          "estimated_encoder_gflop_per_step": round(encoder_flops / 1e9, 3),
          "estimated_output_gflop_per_step": round(output_flops / 1e9, 3),
          "estimated_encoder_share_of_flops": round(encoder_flops / step_flops, 3),
          "gflop_per_second_measured": round(step_flops / 1e9 / measured, 1),
          "estimated_minutes_per_300k_training_interactions": round(  # the recipe's plan: its steps at its estimate
              c.train.num_train_steps * b * recipe.mean_width(c, train_seqs) * planned / 60 * 300_000 / interactions,
              1),
          "budget_line": next((x for x in chosen if x.startswith("train.budget_per_interaction")), ""),
          "timed_steps": steps, "repeats": repeats}


def prepare_child(n: int) -> dict:
  """In a fresh process: synthetic interactions -> prepare -> save; time and peak RSS."""
  import pandas as pd
  from bert4rec_jax import dataset, preprocess
  users, items = max(1, n // 20), max(2, min(n // 40, 500_000))
  rng = np.random.default_rng(0)
  df = pd.DataFrame({"user": rng.integers(0, users, n) * 7 + 1,  # interleaved, like a time-ordered log
                     "item": (np.floor(items * rng.random(n) ** 3) * 13 + 5).astype(np.int64)})
  rss_before = peak_rss_mb()
  t0 = time.perf_counter()
  prepared = preprocess.prepare(df, drop_duplicates=True, min_seq_length=1)
  with tempfile.TemporaryDirectory() as tmp:
    dataset.save(prepared, os.path.join(tmp, "ds"), {"stats": prepared.stats})
    seconds, peak = time.perf_counter() - t0, peak_rss_mb()
    load = load_rows(os.path.join(tmp, "ds"))
  return {"interactions": n, "users": int(prepared.stats["users"]), "items": int(prepared.stats["items"]),
          "seconds": seconds, "peak_rss_mb": peak, "rss_before_prepare_mb": rss_before, **load}


def _status_mb(field: str) -> float:
  """A /proc/self/status memory figure in MB (Linux; 0 elsewhere)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  return 0.0


def load_child(arg: str) -> dict:
  """In a fresh process: what a training process does with a prepared artifact before training
  (load it, split off the held-out items, draw one evaluation block's users' windows). The
  arrays are memory-mapped and the splits are views: private (anonymous) memory grows with the
  users, not with the tokens. With ":copied", the same with the arrays read into memory and the
  splits copied (what loading cost before the artifact was memory-mapped), for comparison."""
  from bert4rec_jax import dataset, input_pipeline, pipeline, preprocess
  folder, _, mode = arg.partition(":")
  anon_before = _status_mb("RssAnon")
  t0 = time.perf_counter()
  prepared = dataset.load(folder)
  seqs = prepared.sequences
  if mode == "copied":
    seqs = preprocess.Sequences(np.array(seqs.offsets), np.array(seqs.items))
  train_seqs, splits = pipeline.task_splits("train_val_test", seqs)
  test = splits["test"]
  if mode == "copied":
    train_seqs, test = train_seqs.compact(), preprocess.EvalSplit(test.rows, test.history.compact(), test.targets)
  rows = np.arange(len(test.rows))[:len(test.rows) // 2]  # one of two processes' blocks
  for start in range(0, len(rows), 4096):
    input_pipeline.right_aligned(test.history, rows[start:start + 4096], 50)
  artifact = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
  return {"load_seconds": time.perf_counter() - t0, "artifact_mb": round(artifact / 2**20, 1),
          "load_private_mb": round(_status_mb("RssAnon") - anon_before, 1)}


def load_rows(folder: str) -> dict:
  mapped, copied = in_child("load", folder), in_child("load", folder + ":copied")
  return {**mapped, "load_private_mb_copied": copied["load_private_mb"]}


def bucketed_child(n: int, chunk_rows: int) -> dict:
  """In a fresh process: n synthetic interactions written to Parquet chunk by chunk (not timed),
  then prepared by the pipeline's larger-than-memory path (data.chunk_rows: read in chunks,
  bucketed by user on disk) including saving the artifact; time and peak RSS."""
  import pyarrow as pa
  import pyarrow.parquet as pq
  from bert4rec_jax import dataset
  from bert4rec_jax.configs import default
  users, items = max(1, n // 20), max(2, min(n // 40, 500_000))
  rng = np.random.default_rng(0)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "interactions.parquet")
    t0 = time.perf_counter()
    with pq.ParquetWriter(path, pa.schema([("user", pa.int64()), ("item", pa.int64())])) as w:
      for start in range(0, n, chunk_rows):
        m = min(chunk_rows, n - start)
        w.write_table(pa.table({"user": rng.integers(0, users, m) * 7 + 1,  # interleaved, like a time-ordered log
                                "item": (np.floor(items * rng.random(m) ** 3) * 13 + 5).astype(np.int64)}))
    write_s, file_mb = time.perf_counter() - t0, os.path.getsize(path) / 2 ** 20
    rss_before = peak_rss_mb()
    cfg = default.base().data
    cfg.format, cfg.path, cfg.chunk_rows, cfg.drop_duplicates = "parquet", path, chunk_rows, True
    t0 = time.perf_counter()
    prepared, _ = dataset.load_or_prepare(cfg, os.path.join(tmp, "work"), 1)
    seconds = time.perf_counter() - t0
  return {"interactions": n, "users": int(prepared.stats["users"]), "items": int(prepared.stats["items"]),
          "chunk_rows": chunk_rows, "num_buckets": cfg.num_buckets, "input_parquet_mb": round(file_mb),
          "seconds": round(seconds, 1), "peak_rss_mb": round(peak_rss_mb()), "rss_before_prepare_mb": round(rss_before),
          "writing_the_input_seconds": round(write_s, 1)}


def stream_predict_child(num_users: int, overrides) -> dict:
  """In a fresh process: top-10 predictions for `num_users` synthetic users, written as Parquet
  parts; throughput, and peak RSS before and after predicting (flat memory: the difference is
  what the predictions cost)."""
  import pyarrow.parquet as pq
  from bert4rec_jax import parallel, predict, preprocess
  s = dict(SHAPES["stream_users"], users=num_users)
  c = shape_config("stream_users", ["model.hidden_size=32", "model.intermediate_size=128", "predict.batch_size=4096",
                                    "predict.users_per_part=1000000"] + list(overrides))
  seqs = synthetic_sequences(s["users"], s["items"], s["mean_len"], s["min_len"])
  vocab = preprocess.ItemVocab(ids=np.arange(1, s["items"] + 1), counts=np.ones(s["items"], np.int64))
  scorer, params = _model_and_params(c, s["items"])
  users = np.arange(s["users"])
  devices = parallel.local_devices(c.train.num_devices)
  with tempfile.TemporaryDirectory() as tmp:
    # Compile (and warm up) on a small slice, so the timed run is the steady state.
    warm = preprocess.Sequences(seqs.offsets[:c.predict.batch_size + 1], seqs.items)
    predict.predict(scorer, params, warm, users[:c.predict.batch_size], vocab, predict_config=c.predict,
                    max_seq_length=s["L"], devices=devices, path=os.path.join(tmp, "warm"))
    rss_before = peak_rss_mb()
    t0 = time.perf_counter()
    path = os.path.join(tmp, "predictions.parquet")
    n = predict.predict(scorer, params, seqs, users, vocab, predict_config=c.predict, max_seq_length=s["L"],
                        devices=devices, path=path)
    seconds = time.perf_counter() - t0
    parts = sorted(os.listdir(path))
    rows = sum(pq.ParquetFile(os.path.join(path, f)).metadata.num_rows for f in parts)
    out_mb = sum(os.path.getsize(os.path.join(path, f)) for f in parts) / 2 ** 20
  return {"users": n, "rows_written": rows, "parquet_parts": len(parts), "output_mb": round(out_mb),
          "num_items": s["items"], "max_seq_length": s["L"], "hidden_size": c.model.hidden_size,
          "mean_history": float(seqs.lengths.mean()), "top_k": c.predict.top_k, "seconds": round(seconds, 1),
          "users_per_second": round(n / seconds), "peak_rss_mb_before_predicting": round(rss_before),
          "peak_rss_mb": round(peak_rss_mb())}


def large_child(overrides, repeats, steps) -> dict:
  out = {"train": bench_train("large_1m_items", overrides, repeats, steps),
         "eval": bench_eval("large_1m_items", overrides, 1)}
  out["peak_rss_mb"] = round(peak_rss_mb())
  return out


def in_child(kind: str, arg, extra=()):
  cmd = [sys.executable, os.path.abspath(__file__), f"--_child={kind}", f"--_arg={arg}", *extra]
  out = subprocess.run(cmd, capture_output=True, text=True)
  if out.returncode:
    raise RuntimeError(f"benchmark child {kind} failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


@one_line
def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--only", default="prepare,train,eval,predict,recommend,large")
  ap.add_argument("--shapes", default="ml1m_like,beauty_like", help="shapes for train/eval/predict")
  ap.add_argument("--prepare_sizes", default="1000000,20000000")
  ap.add_argument("--bucketed_sizes", default="100000000", help="interactions for the larger-than-memory path")
  ap.add_argument("--chunk_rows", type=int, default=5_000_000, help="bucketed suite: rows read at a time")
  ap.add_argument("--stream_users", type=int, default=10_000_000, help="users for the stream_predict suite")
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--validation_configs", default="synthetic,ml1m,beauty,default@ml-1m.txt.gz,default@beauty.txt",
                  help="validation suite: shipped configs, `name@file` for one on a file of BERT4REC_DATA_DIR")
  ap.add_argument("--recipe_cost_data", default="ml-1m.txt.gz,ml-1m.txt.gz:sasrec,beauty.txt,beauty.txt:sasrec,"
                  "dense_15k_like,dense_15k_like:sasrec",
                  help="recipe_cost suite: `<file of BERT4REC_DATA_DIR or synthetic shape>[:<model kind>]`, comma-separated")
  ap.add_argument("--softmax_shapes", default="2200x3416,2200x8192,2200x16000,2200x32000,2200x54542,"
                  "8000x16000,8000x54542,40000x3416",
                  help="softmax suite: `<rows>x<columns>`, comma-separated (rows: a step's targets; columns: items or negatives)")
  ap.add_argument("--recommend_calls", type=int, default=200, help="recommend suite: one-history calls timed")
  ap.add_argument("--train_steps", type=int, default=10, help="timed steps per repeat")
  ap.add_argument("--set", action="append", default=[], help="config override section.field=value (repeatable)")
  ap.add_argument("--out", default="", help="also write the JSON here")
  ap.add_argument("--_child", default="", help=argparse.SUPPRESS)
  ap.add_argument("--_arg", default="", help=argparse.SUPPRESS)
  args = ap.parse_args()

  if args._child == "prepare":
    print(json.dumps(prepare_child(int(args._arg))))
    return
  if args._child == "load":
    print(json.dumps(load_child(args._arg)))
    return
  if args._child == "bucketed":
    n, chunk = (int(x) for x in args._arg.split(":"))
    print(json.dumps(bucketed_child(n, chunk)))
    return
  if args._child == "stream_predict":
    print(json.dumps(stream_predict_child(int(args._arg), args.set)))
    return
  if args._child == "large":
    print(json.dumps(large_child(args.set, args.repeats, args.train_steps)))
    return

  import jax
  from bert4rec_jax import parallel, tracking
  suites = set(args.only.split(","))
  d = jax.devices()
  result = {"devices": {"platform": d[0].platform, "kind": d[0].device_kind, "count": len(d),
                        "local_count": jax.local_device_count()},
            "jax": jax.__version__, "cpu_count": os.cpu_count(), "cpu": parallel.describe_cpu(),
            "overrides": args.set, "repeats": args.repeats,
            "command": "python experiments/benchmark.py " + " ".join(sys.argv[1:]),
            "date": datetime.date.today().isoformat(), "git_commit": tracking.git_commit(),
            "uncommitted_changes": tracking.uncommitted_changes()}
  def prepare_rows():
    rows = []
    for n in (int(x) for x in args.prepare_sizes.split(",")):
      runs = [in_child("prepare", n) for _ in range(args.repeats)]
      rows.append({k: (round(statistics.median(r[k] for r in runs), 2) if isinstance(runs[0][k], float)
                       else runs[0][k]) for k in runs[0]})
    return rows

  extra = [f"--set={x}" for x in args.set] + [f"--repeats={args.repeats}", f"--train_steps={args.train_steps}"]
  shapes = args.shapes.split(",")
  jobs = {
      "prepare": prepare_rows,
      "train": lambda: {sh: bench_train(sh, args.set, args.repeats, args.train_steps) for sh in shapes},
      "eval": lambda: {sh: bench_eval(sh, args.set, args.repeats) for sh in shapes},
      "predict": lambda: {sh: bench_predict(sh, args.set, args.repeats) for sh in shapes},
      "recommend": lambda: {sh: bench_recommend(sh, args.set, args.repeats, args.recommend_calls) for sh in shapes},
      "validation": lambda: {sp: bench_validation(sp, args.set, args.repeats, args.train_steps)
                             for sp in args.validation_configs.split(",")},
      "softmax": lambda: bench_softmax(args.softmax_shapes, args.repeats),
      "recipe_cost": lambda: {sp: bench_recipe_cost(sp, args.set, args.repeats, args.train_steps)
                              for sp in args.recipe_cost_data.split(",")},
      "large": lambda: in_child("large", "", extra),
      # One run each (minutes long): a fresh process, so its peak RSS is its own.
      "bucketed": lambda: [in_child("bucketed", f"{n}:{args.chunk_rows}")
                           for n in (int(x) for x in args.bucketed_sizes.split(","))],
      "stream_predict": lambda: in_child("stream_predict", args.stream_users, [f"--set={x}" for x in args.set]),
  }
  for suite, job in jobs.items():
    if suite in suites:
      key = "large_1m_items" if suite == "large" else suite
      try:
        result[key] = job()
      except Exception as e:  # one failing suite must not lose the others' figures
        result[key] = {"error": f"{type(e).__name__}: {str(e)[-2000:]}"}
  emit_json(result, args.out)


if __name__ == "__main__":
  main()
