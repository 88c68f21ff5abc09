"""Settings chosen from the data: what `configs/default.py` leaves to the dataset it meets.

A field set to its "from the data" value below is filled in by `resolve` once the dataset is
prepared and split, before the model is named: the model's name, identity and saved config.json
hold the values chosen, so a trained model is the same whichever way its settings were given,
and a rerun on the same data resumes it. Each choice is logged with the rule that made it.

  model.max_seq_length = 0           the 99th percentile of the training sequences' lengths plus
                                     the [MASK] slot, rounded up to a multiple of 50, at most 200
                                     (the paper's 50 for Amazon Beauty, 200 for MovieLens-1M)
  masking.max_predictions_per_seq=0  ceil(masking.masked_lm_prob x max_seq_length) (the paper's
                                     30 for Beauty at 0.6 x 50, 40 for ML-1M at 0.2 x 200)
  train.loss = "auto"                the softmax over every item while the catalogue has at most
                                     2 x train.num_negatives items, else the sampled softmax over
                                     train.num_negatives items (the full one then costs more than
                                     twice as much per target, for no measured gain)
  train.spike_clip = -1              2 with the sampled softmax: its gradient norm spikes in the
                                     steps after the warmup's peak rate (over 10 x the norm
                                     around them on full Beauty), which a fixed clip loose enough
                                     for the rest leaves alone; clipped at 2 x the recent norm, it
                                     came out higher on validation (docs/recipe.md). 0 (off) with
                                     the full softmax, whose norm is heavy-tailed without spikes
                                     and which 2 cut at a cost on validation (the 7-core set)
  train.num_train_steps = 0          train.budget_per_interaction window positions (batch x
                                     columns per step; with train.length_buckets the mean width
                                     of a batch) per training interaction: compute in proportion
                                     to the data, which early stopping on validation
                                     (train.patience) may end sooner
  train.masked_loss_every = 0        4 on dense data (below) for BERT4Rec with the next-item loss:
                                     its masked-item loss on one window in 4, a step about 1.4x
                                     cheaper, so more steps in the time target (on validation the
                                     dense MovieLens sets gain from them: docs/recipe.md); 1 (every
                                     window) on sparse data, whose budget the time does not cut
  train.budget_per_interaction = 0   120 on sparse data (below), 360 on dense data (on validation
                                     dense MovieLens sets gain from steps that sparse Beauty does
                                     not: docs/recipe.md), raised where that gives fewer than
                                     MIN_STEPS (1,000) steps to what gives that many (small sparse
                                     sets gain from them on validation), each at most what 80
                                     minutes of a 2-core CPU per 300k training interactions allow at the step's
                                     estimated time (`position_seconds`: its floating-point work
                                     with the output layer at every target slot it computes),
                                     rounded down to a multiple of 10: the time target is 90 minutes
  train.num_warmup_steps = -1        2% of num_train_steps
  train.learning_rate = 0            with fewer than 23 training interactions per item (sparse: each
  train.weight_decay = -1              item seen seldom), 3e-3 with weight decay 0.3 and dropout 0.5;
  model.hidden_dropout_prob = -1       else 1e-3, 0.01 and 0.2. Measured on validation in
                                       docs/recipe.md: the three together lift BERT4Rec at 10.5,
                                       13.3, 17.8 and 18.5 training interactions per item (Beauty and
                                       MovieLens sets alike) and keep it near popularity at 29
                                       (MovieLens-1M's first 600 users); 23 is the geometric midpoint
                                       of 18.5 and 29. The rate or the regularisation alone does not help.
  train.eval_every_steps = -1        num_train_steps / train.auto_validations (rounded up)
  eval.max_valid_users = -1          every user of the validation split, at most as many as keep the
                                     validations' estimated time (`validation_user_seconds`: the
                                     encoder read once and the output layer against every item, at
                                     the step estimate's rates, and the ranking's work per item)
                                     under 5% of the schedule's estimated training time, and at
                                     least 2,000 (or all): the fewer users a checkpoint is chosen on,
                                     the more it loses on users it never saw (docs/recipe.md,
                                     "Validation on every user")
  train.max_training_minutes = -1    85 minutes per 300k training interactions (at least 10):
                                     training ends there for good, with the best validated
                                     checkpoint, on a machine slower than the one the step's
                                     estimate was measured on (2 AVX2 cores; 2 AVX-512 cores
                                     took 0.6-0.75 of its time); not part of the model's name
"""
import logging
import math
from typing import List

import numpy as np

AUTO_LENGTH_QUANTILE = 99  # percent of training sequences whose whole history fits the window
AUTO_LENGTH_GRAIN = 50  # the window length is a multiple of this
AUTO_LENGTH_MAX = 200  # and at most this (attention costs length^2; longer histories add little)
AUTO_WARMUP_FRACTION = 0.02  # of the training steps, when num_warmup_steps = -1
# train.spike_clip with the sampled softmax (the full softmax's is 0: off); docs/recipe.md, "Gradient spikes".
SAMPLED_SPIKE_CLIP = 2.0
SPARSE_BELOW = 23.0  # training interactions per item under which the data is sparse (docs/recipe.md)
# (learning rate, weight decay, hidden dropout) for sparse and for dense data
SPARSE_SETTINGS, DENSE_SETTINGS = (3e-3, 0.3, 0.5), (1e-3, 0.01, 0.2)
# Window positions trained per training interaction, on sparse and on dense data, at most what
# the time target allows (90 minutes of a 2-core CPU per 300k training interactions; the budget
# plans for 80 of them, leaving the rest to validation, compilation, preparation and a slower
# machine) at the step's estimated time on a 2-core CPU: its encoder's and its output layer's
# floating-point work at their rates, plus CPU_STEP_SECONDS a step, all fitted to the recipe's steps
# (docs/recipe.md, "The budget from the data" and "The estimate counts the slots a step computes").
SPARSE_BUDGET, DENSE_BUDGET = 120.0, 360.0
# A schedule of fewer steps than this (a small dataset's budget) is lengthened to this many, as far
# as the time target allows: on small sparse sets more updates lifted both models on validation
# (docs/recipe.md, "A floor of steps for small datasets").
MIN_STEPS = 1000
# BERT4Rec's masked-item loss on one window in this many on dense data (train.masked_loss_every), or the
# largest divisor of a device's share of the batch below it.
DENSE_MASKED_EVERY = 4
TIME_TARGET_MINUTES, PLANNED_MINUTES, TARGET_INTERACTIONS = 90, 80, 300_000
# Training ends for good after this much (minutes per TARGET_INTERACTIONS training interactions, at
# least BOUND_MIN_MINUTES): the schedule is planned at the step's estimated time on the machine the
# rates were measured on; a slower machine stops at the bound, within the time target, with the
# best validated checkpoint.
BOUND_MINUTES, BOUND_MIN_MINUTES = 85, 10
# Fitted by experiments/fit_step_rates.py to nine recipe steps on 2 AVX2 cores (AMD EPYC, 2026-12-06:
# MovieLens-1M and Beauty for both models, dense 15k-item and sparse 16k/32k-item shapes with the full
# softmax; docs/benchmarks/cpu_2core_step_rates_fit.json); every row within 0.90-1.23 x the estimate.
CPU_ENCODER_FLOPS_PER_SECOND, CPU_OUTPUT_FLOPS_PER_SECOND, CPU_STEP_SECONDS = 28e9, 78e9, 0.05
BUDGET_GRAIN = 10.0
# eval.max_valid_users = -1: the periodic validations may take this share of the schedule's estimated
# training time (measured, validation is to stay under 10% of a run), and validate at least
# MIN_VALID_USERS users (all of a smaller split), base()'s fixed number.
VALID_SHARE, MIN_VALID_USERS = 0.05, 2000
# A validation's work per user and item beyond the output layer's product (the rank's comparisons, the
# history's exclusion, the chunked scan): with it full Beauty's estimate (280 microseconds a user) meets
# its measured validation (260 on 2 cores: docs/benchmarks/cpu_2core_validation.json), where the
# products alone said 171; MovieLens-1M's (window 200, 3,416 items) is then above its measured 890.
VALID_ITEM_SECONDS = 2e-9
EVAL_MIN_WIDTH = 8  # evaluate.Evaluator's narrowest batch


def auto_fields(config) -> List[str]:
  """The fields of `config` left to the data (empty: nothing to resolve)."""
  m, k, t = config.model, config.masking, config.train
  out = []
  if m.max_seq_length == 0:
    out.append("model.max_seq_length")
  if k.max_predictions_per_seq == 0:
    out.append("masking.max_predictions_per_seq")
  if t.loss == "auto":
    out.append("train.loss")
  if t.get("spike_clip", 0.0) == -1:
    out.append("train.spike_clip")
  if t.get("masked_loss_every", 1) == 0:
    out.append("train.masked_loss_every")
  if t.num_train_steps == 0 and not t.get("num_epochs"):
    out.append("train.num_train_steps")
    if t.budget_per_interaction == 0:
      out.append("train.budget_per_interaction")
  if t.num_warmup_steps == -1 and not t.get("num_warmup_epochs"):
    out.append("train.num_warmup_steps")
  if t.eval_every_steps == -1 and not t.get("eval_every_epochs"):
    out.append("train.eval_every_steps")
  if t.learning_rate == 0:
    out.append("train.learning_rate")
  if t.weight_decay == -1:
    out.append("train.weight_decay")
  if m.hidden_dropout_prob == -1:
    out.append("model.hidden_dropout_prob")
  if t.get("max_training_minutes", 0) == -1:
    out.append("train.max_training_minutes")
  if config.eval.get("max_valid_users", 0) == -1:
    out.append("eval.max_valid_users")
  return out


ESTIMATE_SEED = 0  # the batches the mean width is measured on (seed 0: what every run measured before)
MEAN_WIDTH_WINDOWS = 1024  # mean_width measures at most min_steps batches of this many windows


def _quantile(lengths: np.ndarray) -> int:
  """The 99th percentile of the lengths: an actual length, never interpolated (0 for none)."""
  return int(np.percentile(lengths, AUTO_LENGTH_QUANTILE, method="higher")) if len(lengths) else 0


def sequence_length(lengths: np.ndarray) -> int:
  """The window length for sequences of these lengths: the [MASK] slot plus their 99th
  percentile, rounded up to a multiple of 50, at most 200."""
  p = _quantile(np.asarray(lengths))
  return int(min(AUTO_LENGTH_MAX, AUTO_LENGTH_GRAIN * max(1, math.ceil((p + 1) / AUTO_LENGTH_GRAIN))))


def _estimate_stream(config, train_seqs, max_steps: int, min_steps: int) -> tuple:
  """(the training stream drawn with seed 0, the number of its first batches the estimate reads):
  its first epoch, at least `min_steps` batches and at most `max_steps`, never more than min_steps
  batches of MEAN_WIDTH_WINDOWS windows."""
  from bert4rec_jax import input_pipeline
  fixed = config.copy_and_resolve_references()
  fixed.seed = ESTIMATE_SEED
  stream = input_pipeline.make_stream(fixed, train_seqs)
  steps = max(min_steps, min(max_steps, math.ceil(stream.num_examples / config.train.batch_size)))
  steps = min(steps, max(1, math.ceil(min_steps * MEAN_WIDTH_WINDOWS / config.train.batch_size)))
  return stream, steps


def mean_width(config, train_seqs, max_steps: int = 1600, min_steps: int = 400) -> float:
  """Columns of an average training batch: max_seq_length, or with train.length_buckets the mean
  width of the stream's first batches: its first epoch, at least `min_steps` batches (a small
  dataset's epoch is a few batches, whose widths vary with the shuffle) and at most `max_steps`,
  and never more than min_steps batches of 1,024 windows (MEAN_WIDTH_WINDOWS; a far larger batch
  is measured over fewer of its batches, not over hundreds of them).
  The batches are drawn with seed 0 whatever config.seed is: the schedule is the data's, so the
  seeds of one model differ in config.seed alone (and can be joined as seeds of one model)."""
  if not config.train.get("length_buckets"):
    return float(config.model.max_seq_length)
  stream, steps = _estimate_stream(config, train_seqs, max_steps, min_steps)
  return float(np.mean([stream.width(s) for s in range(steps)]))


def estimate_batches(config, train_seqs, max_steps: int = 1600, min_steps: int = 400) -> List[tuple]:
  """(columns, target slots) of each batch `mean_width` reads: the slots are those the output
  layer computes on one CPU device (train.target_shapes "batch", `input_pipeline.batch_iterator`),
  summed over the step's losses: with train.length_buckets each width's most used slots over these
  batches, else each batch's used slots rounded up to a quarter step between powers of two; without
  train.compact_targets every window's P slots, and the next-item loss's at each of the batch's
  columns. A padded slot costs the output layer as a target does: on a Beauty-like stream the slots
  are 1.6 x the targets."""
  from bert4rec_jax import input_pipeline, losses
  stream, steps = _estimate_stream(config, train_seqs, max_steps, min_steps)
  next_item, keep = bool(losses.next_item_loss_weight(config)), losses.next_item_positions(config)
  t, b = config.train, config.train.batch_size
  if not t.compact_targets:  # every row's P slots, or the next-item loss's at every column (or `keep` of them)
    return [(w, sum(b // every * input_pipeline._slots(w, config.masking, kind, keep)
                    for kind, every in input_pipeline._step_losses(config, next_item)))
            for w in (stream.width(s) for s in range(steps))]
  widths = input_pipeline.width_bounds(stream, config, 1, 0, steps) if stream.length_buckets else None
  out = []
  for s in range(steps):
    bound = input_pipeline._bounds(stream.lengths(s), stream, config, 1, next_item, keep, widths)
    out.append((stream.width(s), int(sum(bound) if next_item else bound)))
  return out


def step_flops(config, num_items: int, width: int, slots: int) -> tuple:
  """Estimated floating-point operations of one training step, (encoder, output layer), forward
  and backward (3 x the forward's matrix products), on a batch of `width` columns whose losses
  compute `slots` target slots (`estimate_batches`): the encoder's projections, feed-forward and
  attention at every position (twice for BERT4Rec with the next-item loss: once over the masked
  windows, once read causally; the masked pass over one window in train.masked_loss_every), and
  the output layer at each slot against every item of the full softmax or the shared negatives of
  the sampled one. Dropout, normalisation and the softmax's elementwise work are left to the
  measured rates."""
  from bert4rec_jax import losses
  m, t = config.model, config.train
  h = m.hidden_size
  passes = 1 + 1 / losses.masked_loss_every(config) if losses.next_item_loss_weight(config) else 1
  per_position = passes * m.num_hidden_layers * (8 * h * h + 4 * h * m.intermediate_size + 4 * width * h)
  encoder = per_position * t.batch_size * width
  candidates = num_items if losses.step_loss(t, num_items) == "full" else t.num_negatives
  return 3.0 * encoder, 3.0 * slots * 2 * h * candidates


def step_seconds(config, num_items: int, width: int, slots: int) -> float:
  """Estimated seconds of one training step on a 2-core CPU: `step_flops`' encoder and output-layer
  work at their measured rates, plus CPU_STEP_SECONDS."""
  encoder, output = step_flops(config, num_items, width, slots)
  return encoder / CPU_ENCODER_FLOPS_PER_SECOND + output / CPU_OUTPUT_FLOPS_PER_SECOND + CPU_STEP_SECONDS


def position_seconds(config, num_items: int, batches) -> float:
  """Estimated seconds of a 2-core CPU per window position trained over `batches` ((columns,
  target slots) pairs, `estimate_batches`): their steps' seconds over their positions."""
  seconds = sum(step_seconds(config, num_items, w, n) for w, n in batches)
  return seconds / max(1.0, config.train.batch_size * sum(w for w, _ in batches))


def validation_user_seconds(config, num_items: int, lengths: np.ndarray) -> float:
  """Estimated seconds of a 2-core CPU per user of one validation: the encoder read once over the
  width evaluation gives the user's history and the [MASK] slot (the power of two at or above
  them, at least 8 and at most max_seq_length, as `evaluate.Evaluator` cuts a batch of users of
  similar lengths) and the output layer against every item, at the training step's rates, plus
  VALID_ITEM_SECONDS per item for the ranking around the product."""
  m = config.model
  h, length = m.hidden_size, m.max_seq_length
  lengths = np.asarray(lengths, np.int64)
  widths = np.minimum(length, np.maximum(EVAL_MIN_WIDTH, 2 ** np.ceil(np.log2(lengths + 1))))
  per_position = m.num_hidden_layers * (8 * h * h + 4 * h * m.intermediate_size + 4 * widths * h)
  encoder = float(np.mean(per_position * widths)) if len(widths) else 0.0
  return (encoder / CPU_ENCODER_FLOPS_PER_SECOND + 2.0 * h * num_items / CPU_OUTPUT_FLOPS_PER_SECOND
          + num_items * VALID_ITEM_SECONDS)


def resolve(config, train_seqs, num_items: int, num_devices: int = 1) -> List[str]:
  """Fills in every field left to the data (`auto_fields`) from the training sequences and the
  catalogue size, in place; returns one line per choice (also logged). num_devices: those one
  global batch is split over (train.masked_loss_every must divide each one's share)."""
  m, k, t = config.model, config.masking, config.train
  todo = set(auto_fields(config))
  lines = []
  lengths = np.asarray(train_seqs.lengths)
  interactions = int(lengths.sum())
  if "model.max_seq_length" in todo:
    m.max_seq_length = sequence_length(lengths)
    lines.append(f"model.max_seq_length={m.max_seq_length}: 99% of the {len(lengths):,} training sequences have at "
                 f"most {_quantile(lengths)} items (+1 for the [MASK] slot, rounded up to a multiple of {AUTO_LENGTH_GRAIN}, "
                 f"at most {AUTO_LENGTH_MAX})")
  if "masking.max_predictions_per_seq" in todo:
    k.max_predictions_per_seq = max(1, math.ceil(k.masked_lm_prob * m.max_seq_length - 1e-9))
    lines.append(f"masking.max_predictions_per_seq={k.max_predictions_per_seq}: masked_lm_prob "
                 f"{k.masked_lm_prob:g} x max_seq_length {m.max_seq_length}")
  if "train.loss" in todo:
    t.loss = "full" if num_items <= 2 * t.num_negatives else "sampled"
    lines.append(f"train.loss={t.loss!r}: {num_items:,} items "
                 f"{'<=' if t.loss == 'full' else '>'} 2 x train.num_negatives ({2 * t.num_negatives:,})")
  if "train.spike_clip" in todo:
    from bert4rec_jax import losses
    sampled = losses.step_loss(t, num_items) == "sampled"
    t.spike_clip = SAMPLED_SPIKE_CLIP if sampled else 0.0
    lines.append(f"train.spike_clip={t.spike_clip:g}: " + (
        f"the sampled softmax (its gradient spikes; clipped at {t.spike_clip:g} x the recent norm)" if sampled
        else "off with the full softmax (its gradient norm is heavy-tailed, not spiking)"))
  density = interactions / max(num_items, 1)
  sparse = density < SPARSE_BELOW
  chosen = SPARSE_SETTINGS if sparse else DENSE_SETTINGS
  why = (f"{density:.1f} training interactions per item {'<' if sparse else '>='} {SPARSE_BELOW:g} "
         f"({'sparse' if sparse else 'dense'} data)")
  for field, value in zip(("train.learning_rate", "train.weight_decay", "model.hidden_dropout_prob"), chosen):
    if field in todo:
      section, name = field.split(".")
      config[section][name] = value
      lines.append(f"{field}={value:g}: {why}")
  if "train.masked_loss_every" in todo:
    from bert4rec_jax import losses
    shard = max(1, t.batch_size // max(1, num_devices))
    both = losses.next_item_loss_weight(config) > 0  # BERT4Rec with the next-item loss beside the masked-item one
    wanted = DENSE_MASKED_EVERY if both and not sparse else 1
    t.masked_loss_every = max(e for e in range(1, wanted + 1) if shard % e == 0)
    on = f"{'sparse' if sparse else 'dense'} data, {density:.1f} per item"
    if wanted == 1:
      lines.append(f"train.masked_loss_every=1: the masked-item loss on every window ({on if both else 'no next-item loss'})")
    else:
      lines.append(f"train.masked_loss_every={t.masked_loss_every}: the masked-item loss on one window in "
                   f"{t.masked_loss_every} ({on}: a cheaper step, more of them in the time target"
                   + (f"; {wanted} does not divide a device's {shard} rows" if t.masked_loss_every != wanted else "")
                   + ")")
  from bert4rec_jax import trainer  # a schedule in epochs, now that the windows are known
  trainer.resolve_schedule(config, train_seqs)
  width = seconds = None  # the mean batch width and the step's estimated seconds per position, once computed
  if "train.num_train_steps" in todo:
    width = mean_width(config, train_seqs)
    per_step = t.batch_size * width
    if "train.budget_per_interaction" in todo:
      wanted = SPARSE_BUDGET if sparse else DENSE_BUDGET
      floor = BUDGET_GRAIN * math.ceil(MIN_STEPS * per_step / max(interactions, 1) / BUDGET_GRAIN)
      seconds = position_seconds(config, num_items, estimate_batches(config, train_seqs))
      allowed = PLANNED_MINUTES * 60 / TARGET_INTERACTIONS / seconds
      t.budget_per_interaction = max(BUDGET_GRAIN, min(max(wanted, floor),
                                                       BUDGET_GRAIN * math.floor(allowed / BUDGET_GRAIN)))
      lines.append(f"train.budget_per_interaction={t.budget_per_interaction:g}: {wanted:g} on "
                   f"{'sparse' if sparse else 'dense'} data"
                   + (f", {floor:g} for at least {MIN_STEPS:,} steps" if floor > wanted else "")
                   + f", at most {allowed:.0f} in {PLANNED_MINUTES} minutes of a 2-core "
                   f"CPU per {TARGET_INTERACTIONS // 1000}k training interactions (an estimated "
                   f"{seconds * 1e6:.0f} microseconds per window position; the time target is {TIME_TARGET_MINUTES})")
    t.num_train_steps = max(1, math.ceil(t.budget_per_interaction * interactions / per_step))
    lines.append(f"train.num_train_steps={t.num_train_steps:,}: {t.budget_per_interaction:g} window positions "
                 f"per training interaction ({interactions:,}), {per_step:,.0f} per step (batch {t.batch_size} "
                 f"x {'mean width' if t.get('length_buckets') else 'length'} {width:.4g})")
  if "train.num_warmup_steps" in todo:
    t.num_warmup_steps = int(round(AUTO_WARMUP_FRACTION * t.num_train_steps))
    lines.append(f"train.num_warmup_steps={t.num_warmup_steps:,}: {AUTO_WARMUP_FRACTION:.0%} of the steps")
  if "train.eval_every_steps" in todo:
    t.eval_every_steps = max(1, math.ceil(t.num_train_steps / t.auto_validations))
    count = -(-t.num_train_steps // t.eval_every_steps)  # every eval_every_steps, and at the last step
    lines.append(f"train.eval_every_steps={t.eval_every_steps:,}: {count} validations over the "
                 f"{t.num_train_steps:,} steps (train.auto_validations={t.auto_validations})")
  if "eval.max_valid_users" in todo:
    users, every = len(lengths), t.eval_every_steps
    validations = -(-t.num_train_steps // every) if every > 0 else 0
    if not validations or users <= MIN_VALID_USERS:  # base()'s number: every user, and the name models had before
      config.eval.max_valid_users = MIN_VALID_USERS
      lines.append(f"eval.max_valid_users={MIN_VALID_USERS}: " + (
          f"every one of the {users:,} validation users" if validations else "no periodic validation"))
    else:
      if seconds is None:
        seconds = position_seconds(config, num_items, estimate_batches(config, train_seqs))
      if width is None:
        width = mean_width(config, train_seqs)
      planned = seconds * t.batch_size * width * t.num_train_steps
      each = validation_user_seconds(config, num_items, lengths)
      fits = int(VALID_SHARE * planned / (validations * each))
      chosen = min(users, max(MIN_VALID_USERS, fits))
      config.eval.max_valid_users = 0 if chosen >= users else chosen
      lines.append(f"eval.max_valid_users={config.eval.max_valid_users}: "
                   + (f"every one of the {users:,} validation users" if chosen >= users else
                      f"{chosen:,} of the {users:,} validation users")
                   + f", {validations} validations of an estimated {each * 1e6:.0f} microseconds per user "
                   f"{'within' if fits >= users else 'cut to'} {VALID_SHARE:.0%} of the estimated "
                   f"{planned / 60:.0f} minutes of training"
                   + (f" (at least {MIN_VALID_USERS:,})" if fits < MIN_VALID_USERS else ""))
  if "train.max_training_minutes" in todo:
    t.max_training_minutes = max(BOUND_MIN_MINUTES, round(BOUND_MINUTES * interactions / TARGET_INTERACTIONS, 1))
    lines.append(f"train.max_training_minutes={t.max_training_minutes:g}: training ends there on a machine slower "
                 f"than the schedule's estimate ({BOUND_MINUTES} minutes per {TARGET_INTERACTIONS // 1000}k training "
                 f"interactions, at least {BOUND_MIN_MINUTES}; the time target is {TIME_TARGET_MINUTES})")
  for line in lines:
    logging.info("From the data: %s", line)
  return lines
