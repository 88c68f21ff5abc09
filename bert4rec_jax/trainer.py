"""Training: the optimizer, the pure pmapped step, and the loop (checkpoints through `model_store`,
settings checked beforehand by `config_checks`, loss parts in `losses`)."""
import functools
import logging
import math
import signal
import time
from typing import Dict, NamedTuple, Optional

import flax.traverse_util
import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
from flax.training import train_state
from tqdm import tqdm

from bert4rec_jax import (evaluate, input_pipeline, losses, masking, model as model_lib, model_store, parallel,
                          selection, stop_signals)
from bert4rec_jax.errors import ConfigError, DivergedError, Interrupted

NO_DECAY = ("bias", "scale", "output_bias")  # biases and LayerNorm parameters
STATIC_MASK_STREAM = 2 ** 32 - 1  # the key stream of static masking, apart from every step's


class TrainState(train_state.TrainState):
  pass


class Trained(NamedTuple):
  """What a call of `train` reached: the step, whether training is over (the last step, or early
  stopping), and the validation selection's record (None without one)."""
  step: int
  finished: bool
  selection: Optional[Dict] = None


def resolve_schedule(config, train_seqs) -> None:
  """A schedule given in epochs (train.num_epochs, num_warmup_epochs, eval_every_epochs) becomes
  steps of this data (an epoch = every training example once: windows x copies / batch size),
  written into `config`; a schedule in steps is left as it is."""
  tc = config.train
  if not (tc.num_epochs or tc.num_warmup_epochs or tc.eval_every_epochs):
    return
  per_epoch = input_pipeline.make_stream(config, train_seqs).num_examples / tc.batch_size
  if tc.num_epochs:
    tc.num_train_steps = max(1, math.ceil(tc.num_epochs * per_epoch))
  if tc.num_warmup_epochs:
    tc.num_warmup_steps = int(round(tc.num_warmup_epochs * per_epoch))
  if tc.eval_every_epochs:
    tc.eval_every_steps = max(1, int(round(tc.eval_every_epochs * per_epoch)))
  logging.info("%.1f steps per epoch: %d training steps, %d warmup, validation every %d", per_epoch,
               tc.num_train_steps, tc.num_warmup_steps, tc.eval_every_steps)


def learning_rate_schedule(train_config) -> optax.Schedule:
  """Linear warmup from 0 to learning_rate, then linear decay to 0 at num_train_steps."""
  lr, total = train_config.learning_rate, train_config.num_train_steps
  warmup = min(train_config.num_warmup_steps, total)  # a run shortened below the warmup just warms up
  decay = optax.linear_schedule(lr, 0.0, max(total - warmup, 1))
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])


SPIKE_DECAY = 0.99  # the running mean of train.spike_clip: about the last 100 steps' norms


class SpikeClipState(NamedTuple):
  """`clip_spikes`' state: the running sum of earlier steps' (clipped) gradient norms, exponentially
  weighted (not yet divided by its weights' total), and the steps it holds."""
  norm_sum: jax.Array  # float32
  count: jax.Array  # int32


def clip_spikes(factor: float, decay: float = SPIKE_DECAY) -> optax.GradientTransformation:
  """Global-norm clipping relative to the gradient's own recent scale: a step whose norm exceeds
  `factor` x the running mean of the earlier steps' norms is scaled down to that limit (the first
  step is never clipped). The mean takes each step's norm after this clip, so a spike never raises
  the limit; a norm that grows for good raises it by up to (factor - 1) x (1 - decay) a step
  (~1% at factor 2), so slow growth is followed, not clipped. A fixed clip must choose between
  catching the spikes (and binding every step once the norm has grown past it) and leaving
  both alone; this catches spikes at any scale. Spikes matter to Adam beyond their own step: its
  second moment remembers one for ~1 / (1 - b2) steps (1,000 at 0.999) and shrinks every update
  meanwhile (Kumar et al. 2025, "ZClip", clip adaptively against such spikes with a z-score)."""

  def init_fn(params):
    del params
    return SpikeClipState(jnp.zeros([], jnp.float32), jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    del params
    norm = optax.tree.norm(updates).astype(jnp.float32)
    limit = spike_limit(state, factor, decay)
    scale = jnp.where(norm > limit, limit / jnp.maximum(norm, 1e-30), 1.0)
    updates = jax.tree.map(lambda u: (u * scale).astype(u.dtype), updates)
    # A zero or non-finite norm is left out of the mean: a first step without gradient would
    # otherwise set a limit of 0 for good (the loss check stops a non-finite run).
    counted = jnp.isfinite(norm) & (norm > 0)
    norm_sum = jnp.where(counted, decay * state.norm_sum + jnp.minimum(norm, limit), state.norm_sum)
    return updates, SpikeClipState(norm_sum, state.count + counted.astype(jnp.int32))

  return optax.GradientTransformation(init_fn, update_fn)


def spike_limit(state: SpikeClipState, factor: float, decay: float = SPIKE_DECAY) -> jax.Array:
  """The norm above which `clip_spikes` clips the next step: factor x the weighted mean of the
  earlier steps' clipped norms (infinite before the first step)."""
  weights = (1.0 - decay ** state.count.astype(jnp.float32)) / (1.0 - decay)
  return jnp.where(state.count > 0, factor * state.norm_sum / jnp.maximum(weights, 1e-30), jnp.inf)


def clip_limit(opt_state, max_grad_norm: float, factor: float) -> jax.Array:
  """The global norm above which `make_optimizer`'s clips (train.max_grad_norm, train.spike_clip =
  factor; 0 = none) scale this step's gradient, read from its state before the update (infinite
  without a clip)."""
  limit = jnp.float32(max_grad_norm if max_grad_norm > 0 else jnp.inf)
  if factor:
    state = next(s for s in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda x: isinstance(x, SpikeClipState))
                 if isinstance(s, SpikeClipState))
    limit = jnp.minimum(limit, spike_limit(state, factor))
  return limit


def make_optimizer(train_config) -> optax.GradientTransformation:
  """Spike clipping (train.spike_clip, `clip_spikes`) and global-norm clipping (train.max_grad_norm),
  then AdamW (no decay on biases/LayerNorm) on the warmup/decay schedule."""
  schedule = learning_rate_schedule(train_config)

  def decay_mask(params):
    flat = flax.traverse_util.flatten_dict(params)
    return flax.traverse_util.unflatten_dict({k: k[-1] not in NO_DECAY for k in flat})

  spike = float(train_config.get("spike_clip", 0.0))
  if spike < 0:
    raise ValueError(f"train.spike_clip={spike:g} is left to the data: recipe.resolve chooses it before training")
  parts = [clip_spikes(spike)] if spike else []
  if train_config.max_grad_norm > 0:
    parts.append(optax.clip_by_global_norm(train_config.max_grad_norm))
  parts.append(optax.adamw(schedule, b1=train_config.adam_b1, b2=train_config.adam_b2,
                           eps=train_config.adam_eps, weight_decay=train_config.weight_decay,
                           mask=decay_mask))
  return optax.chain(*parts)


def create_state(config, num_items: int) -> TrainState:
  model = model_lib.from_config(config.model, num_items)
  dummy = jnp.ones((1, config.model.max_seq_length), jnp.int32)
  params = jax.jit(model.init)(jax.random.PRNGKey(config.seed), dummy, jnp.zeros((1, 1), jnp.int32))["params"]
  return TrainState.create(apply_fn=model.apply, params=params, tx=make_optimizer(config.train))


def train_step(state: TrainState, batch, sampler=None, num_targets=0, *, model, mask_kwargs: dict, seed: int,
               static_masking: bool, loss: str = "full", num_negatives: int = 0, loss_positions: str = "masked",
               kind: str = "bert4rec", next_item_loss_weight: float = 0.0, target_norms: tuple = (),
               per_example: bool = False, logit_chunk: int = 0, next_item_positions: int = 0, masked_every: int = 1,
               max_grad_norm: float = 0.0, spike_clip: float = 0.0):
  """One step on this device's shard; gradients are exact global means over all devices.

  batch: item_ids [b, L] int32 right-aligned windows; example_ids [b] int32, the key of each
  example's masking and dropout draws; only_last [b] bool (static masking's mask-last copies).
  Dynamic masking draws from (seed, step, example key); static from (seed, example key) only,
  so a static copy is masked the same way every epoch. Dropout draws from (seed, step, example
  key) too: every random draw is a function of the example, never of the device it landed on,
  so 1 and 4 devices train the same model.
  loss: "full" softmax over all N items, or "sampled" softmax over `num_negatives` items drawn
  (shared by the whole global batch) from `sampler` (losses.NegativeSampler), logQ-corrected.
  loss_positions: "masked" computes the output layer only at the P gathered positions; "all"
  at all L positions (slower; kept to measure what gathering saves).
  num_targets > 0 (static): compact the used target slots of this shard, at most num_targets
  of them (the host bounds it, see `target_bucket`), so the output layer skips unused slots;
  with the next-item loss, a pair (masked-item bound, next-item bound).
  kind="sasrec": no masking; every position with an earlier item is a target (`next_item_targets`).
  next_item_loss_weight > 0 (kind="bert4rec"): the loss is the masked-item mean cross-entropy
  plus this weight times SASRec's next-item mean cross-entropy, computed by the same weights
  reading the unmasked windows causally (same candidates, separate dropout draw).
  next_item_positions > 0 (train.next_item_positions): the next-item loss (SASRec's, or
  BERT4Rec's with the weight above) at a uniform random next_item_positions of each window's
  targets, drawn per (seed, step, example key): the output layer's work at the others is skipped.
  masked_every > 1 (train.masked_loss_every, with the next-item loss): the masked-item loss, and the
  bidirectional pass over masked windows it needs, on one window of every `masked_every`
  consecutive rows of the shard (`losses.masked_rows`: the same offset on every device, drawn per
  (seed, step)); the next-item loss on every window. The shard's rows must be a multiple of it, so
  that the rows taken are those of the global batch whatever the number of devices.
  target_norms (train.target_weighting="epoch"): (masked-item, next-item) divisors of each loss's
  sum over the global batch's targets, in place of that batch's own target count: the mean
  number of targets in a global batch over an epoch, so that every target weighs the same
  whichever batch it lands in (with length buckets a batch of short windows holds few targets).
  per_example (train.target_weighting="example"): each target weighs 1 / its example's number of
  targets, so every example weighs the same (target_norms then count examples with a target).
  logit_chunk (train.logit_chunk_elements): the loss's logits are formed about this many at a time
  (0: losses.logit_chunk_elements chooses); memory and speed only, not the result.
  Returns (new state, {'loss_sum', 'count', 'grad_norm', 'clipped'}) with the sums over all
  devices (the masked-item loss's; with the next-item loss also 'next_loss_sum', 'next_count'),
  the global norm of the gradient before clipping and whether the optimizer's clips (max_grad_norm
  and spike_clip: train.max_grad_norm and train.spike_clip; 0 = none) scaled it (1.0) or not (0.0).
  """
  base = jax.random.PRNGKey(seed)
  step_key = jax.random.fold_in(base, state.step)
  following_targets = lambda: losses.keep_some_targets(  # noqa: E731
      jax.random.fold_in(step_key, 4), losses.next_item_targets(batch["item_ids"]), batch["example_ids"],
      next_item_positions)
  every_next = not next_item_positions  # every position carries a (possibly zero-weight) next-item target
  rows = functools.partial(losses.masked_rows, jax.random.fold_in(step_key, 5), every=masked_every)
  masked_ids = batch["example_ids"]
  if kind == "sasrec":
    masked = following_targets()
  else:
    # Static: one key for every step (fold_in takes uint32 data; no step reaches 2**32 - 1).
    mask_key = jax.random.fold_in(base, STATIC_MASK_STREAM) if static_masking else jax.random.fold_in(step_key, 0)
    masked_ids = rows(batch["example_ids"])  # the windows the masked-item loss reads (all of them by default)
    masked = masking.mask_batch(mask_key, rows(batch["item_ids"]), masked_ids, rows(batch["only_last"]), **mask_kwargs)
  example_keys = lambda stream, ids: jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(step_key, stream), i))(  # noqa: E731
      ids)  # [b] keys
  num_masked, num_next = num_targets if isinstance(num_targets, tuple) else (num_targets, 0)
  seq_len = batch["item_ids"].shape[1]

  def target_slots(batch_targets, num, every_position):
    """(positions, targets, weights, shares) of one loss: compacted to `num` used slots, or
    spread over every position with loss_positions="all". weights: 1 per target (the logged
    loss); shares: each target's weight in the objective (weights, or 1 / the example's count)."""
    positions, targets, weights = batch_targets.positions, batch_targets.targets, batch_targets.weights
    shares = weights / jnp.maximum(weights.sum(-1, keepdims=True), 1.0) if per_example else weights
    if num and loss_positions == "masked":
      # Short sequences fill few of their P slots: keep only used ones (weight 1 first, stable).
      slot = jnp.argsort(-weights.reshape(-1), stable=True)[:num]  # [T] into [b * P]
      row = slot // positions.shape[1]
      positions = row * seq_len + positions.reshape(-1)[slot]  # [T] flat row * L + pos
      targets, weights, shares = (x.reshape(-1)[slot] for x in (targets, weights, shares))
    if loss_positions == "all" and not every_position:  # every position carries a (possibly zero-weight) target
      rows = jnp.arange(positions.shape[0])[:, None]
      spread = lambda x: jnp.zeros((positions.shape[0], seq_len), x.dtype).at[rows, positions].max(x)  # noqa: E731
      targets, weights, shares = spread(targets), spread(weights), spread(shares)
      positions = jnp.broadcast_to(jnp.arange(seq_len), targets.shape)
    return positions, targets, weights, shares

  losses_ = [(masked.inputs, target_slots(masked, num_masked, kind == "sasrec" and every_next),
              parallel.psum(masked.weights.sum()),
              None, example_keys(1, masked_ids))]  # (inputs, slots, global target count, causal, dropout keys [b])
  if next_item_loss_weight:
    following = following_targets()
    losses_.append((following.inputs, target_slots(following, num_next, every_next), parallel.psum(following.weights.sum()),
                    True, example_keys(3, batch["example_ids"])))
  if loss == "sampled":  # shared negatives: the same draw on every device (keyed by step only)
    candidates = losses.draw_negatives(jax.random.fold_in(step_key, 2), sampler, num_negatives)

  def encode(params, inputs, keys, causal):
    """[b, L, H]: each example encoded with its own dropout key."""
    one = lambda x, k: model.apply({"params": params}, x[None], train=True, rngs={"dropout": k},  # noqa: E731
                                   causal=causal, method=model.encode)[0]
    return jax.vmap(one)(inputs, keys)

  def loss_fn(params):
    total, sums = 0.0, []
    for i, (inputs, (positions, targets, weights, shares), count, causal, keys) in enumerate(losses_):
      picked = model_lib.gather(encode(params, inputs, keys, causal), positions)  # [b, P, H] or [T, H]
      if loss == "sampled":
        ce = model.apply({"params": params}, picked, targets, candidates, sampler.log_q, logit_chunk,
                         method=model.sampled_ce)  # [b, P] or [T]: the [.., C] logits a chunk at a time
      else:
        ce = model.apply({"params": params}, picked, jnp.maximum(targets - 1, 0), logit_chunk,
                         method=model.item_ce)  # [b, P] or [T]: the [.., N] logits a chunk at a time
      loss_sum = jnp.sum(ce * weights)  # logged: every target once
      norm = target_norms[i] if target_norms else jnp.maximum(count, 1.0)
      total = total + (next_item_loss_weight if i else 1.0) * jnp.sum(ce * shares) / norm
      sums.append(loss_sum)
    return total, sums

  grads, sums = jax.grad(loss_fn, has_aux=True)(state.params)
  grads = parallel.psum(grads)  # sum of per-device shares of the global mean = the global mean
  limit = clip_limit(state.opt_state, max_grad_norm, spike_clip)  # before the update reads the state
  new_state = state.apply_gradients(grads=grads)
  # The global gradient norm before clipping (the same on every device after the psum): logged, with
  # how often the clips scale it, since a binding clip changes what a step does.
  grad_norm = optax.tree.norm(grads)
  out = {"loss_sum": parallel.psum(sums[0]), "count": losses_[0][2], "grad_norm": grad_norm,
         "clipped": (grad_norm > limit).astype(jnp.float32)}
  if next_item_loss_weight:
    out.update(next_loss_sum=parallel.psum(sums[1]), next_count=losses_[1][2])
  return new_state, out


def target_norms(config, train_seqs) -> tuple:
  """Each loss's divisor (masked-item, next-item) for train.target_weighting: "epoch", the mean
  number of targets in a global batch over an epoch of the training stream (`losses.mean_targets`
  x batch size); "example", the mean number of examples in a global batch with at least one
  target; "batch": () (each batch divides by its own target count).
  The means are over full-length windows: the shorter windows of a sequence-length warmup hold
  fewer targets, so their steps weigh less, as their share of the data's targets says."""
  weighting = config.train.get("target_weighting", "batch")
  if weighting == "batch":
    return ()
  lengths = input_pipeline.make_stream(config, train_seqs).window_lengths()
  masked, following = losses.mean_targets(config, lengths, per_example=weighting == "example")
  norms = (max(masked, 1e-6) * config.train.batch_size, max(following, 1e-6) * config.train.batch_size)
  what = "targets" if weighting == "epoch" else "examples with a target (each weighing the same)"
  logging.info("train.target_weighting=%r: each batch's loss is divided by an epoch's mean of %.1f %s per batch%s",
               weighting, norms[0], what, f" (next-item loss: {norms[1]:.1f})" if following else "")
  return norms


def make_step(config, num_items: int, devices, train_seqs):
  """The pmapped train step and its replicated extra input: step(p_state, batch, p_sampler)."""
  tc = config.train
  model = model_lib.from_config(config.model, num_items, dtype=jnp.dtype(tc.compute_dtype))
  loss = losses.step_loss(tc, num_items)
  every = losses.masked_loss_every(config)
  if loss != tc.loss:
    logging.info("config.train.num_negatives=%d >= %d items: the full softmax instead of the sampled one",
                 tc.num_negatives, num_items)
  step = parallel.pmap(functools.partial(
      train_step, model=model, mask_kwargs=masking.masking_kwargs(config.masking, num_items), seed=config.seed,
      static_masking=config.masking.mode == "static", loss=loss, num_negatives=tc.num_negatives,
      loss_positions=tc.loss_positions, kind=config.model.kind,
      next_item_loss_weight=losses.next_item_loss_weight(config),
      target_norms=target_norms(config, train_seqs), max_grad_norm=float(tc.max_grad_norm),
      spike_clip=float(tc.get("spike_clip", 0.0)),
      per_example=config.train.get("target_weighting", "batch") == "example",
      logit_chunk=config.train.get("logit_chunk_elements", 0),
      next_item_positions=losses.next_item_positions(config), masked_every=every), parallel.step_devices(devices),
      donate_argnums=(0,) if tc.donate_buffers else (),
      static_broadcasted_argnums=(3,))
  sampler = losses.negative_sampler(tc, train_seqs, num_items)
  return step, (parallel.replicate(sampler, devices) if sampler is not None else None)


def time_bound_seconds(config) -> float:
  """train.max_training_minutes in seconds (0: no bound; -1, left to the data, is resolved by
  recipe.resolve before any training)."""
  return 60.0 * max(0.0, float(config.train.get("max_training_minutes", 0) or 0))


def train(config, model_dir: str, train_seqs, valid_evaluator: Optional[evaluate.Evaluator], num_items: int,
          tracker, devices, stop_at: Optional[int] = None, scorer: Optional[evaluate.Scorer] = None) -> Trained:
  """Trains up to config.train.num_train_steps, resuming from the latest checkpoint.

  With a validation split and train.select_metric, every validation is checkpointed with its
  value and the best checkpoint kept (`selection`); train.patience validations without
  improvement end training early, and so does train.max_training_minutes of training (summed over
  the invocations that made the model; the step it ends at is validated too). `stop_at` ends this
  invocation early at that step (after checkpointing), as an interrupted run would. `scorer`: the
  validation scorer of this model (the caller's, so that its final evaluation reuses the compiled
  step).
  """
  tc = config.train
  several = parallel.process_count() > 1
  model = model_lib.from_config(config.model, num_items)
  state = create_state(config, num_items)
  selecting = valid_evaluator is not None and bool(tc.select_metric)
  protect = model_store.KeepSteps() if selecting else None  # the selected checkpoint, beside the newest ones
  manager = model_store.checkpoint_manager(model_store.Folder(model_dir), tc.keep_checkpoints, protect=protect)
  restored, _ = model_store.restore_latest(manager, state)
  if restored is not None:
    state = restored
    logging.info("Resuming from checkpoint at step %d in %s", int(state.step), manager.directory)
  start = int(state.step)
  sel = (selection.load(model_dir, tc.select_metric, tc.patience, start, len(valid_evaluator.index),
                        config.model.get("read_last", "")) if selecting else None)
  record = lambda: sel.record() if sel is not None else None  # noqa: E731
  if sel is not None and sel.best is not None:
    protect.steps = {sel.best["step"]}
  seconds_before = model_store.training_seconds(model_dir, start)
  valid_before = model_store.validation_seconds(model_dir, start)  # None: an earlier invocation did not time it
  valid_seconds = 0.0  # this invocation's periodic validation (part of its training seconds)
  end = tc.num_train_steps if stop_at is None else min(stop_at, tc.num_train_steps)
  finished_problem = selection.scale_problem(sel, model_dir) if sel is not None else None
  if finished_problem and (sel.should_stop or start >= tc.num_train_steps):
    # Nothing is trained or validated on: the model is evaluated as it is, its checkpoint the one its
    # own validation chose. Said, since a sweep over these settings would otherwise credit that choice to them.
    logging.warning("%s. Nothing is trained: its checkpoint is the one selected as it validated (results record "
                    "that selection); for a selection under these settings, train another model (config.model_name)",
                    finished_problem.split("; resume")[0])
  if sel is not None and sel.should_stop:
    logging.info("Training stopped early at step %d (no better validation %s in %d validations after step %d): "
                 "nothing to train", start, tc.select_metric, tc.patience, sel.best["step"])
    manager.close()
    return Trained(start, True, record())
  bound = time_bound_seconds(config)
  if bound and seconds_before >= bound and start < tc.num_train_steps:
    logging.info("Training ended at step %d: its %g minutes of training (train.max_training_minutes) are spent: "
                 "nothing to train (raise the bound, or 0 = none, to train on)", start, bound / 60)
    manager.close()
    return Trained(start, True, record())
  if start >= end:
    if start >= tc.num_train_steps:
      logging.info("Model already trained to step %d (num_train_steps=%d): nothing to train", start,
                   tc.num_train_steps)
    manager.close()
    return Trained(start, start >= tc.num_train_steps, record())
  problem = selection.scale_problem(sel, model_dir) if sel is not None else None
  if problem:  # only a run that trains on validates on: a finished model is evaluated as it is
    manager.close()
    raise ConfigError(problem)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  logging.info("Training %s parameters on %d %s device(s)%s, global batch %d, steps %d -> %d",
               f"{n_params:,}", parallel.global_device_count(devices), devices[0].platform,
               f" in {parallel.process_count()} processes" if several else "", tc.batch_size, start, end)
  if tc.num_warmup_steps > tc.num_train_steps:
    logging.warning("train.num_warmup_steps=%d is more than the %d training steps: the learning rate rises the "
                    "whole run and never reaches train.learning_rate", tc.num_warmup_steps, tc.num_train_steps)

  if parallel.is_primary():
    model_store.forget_times_after(model_dir, start)
  p_step, p_sampler = make_step(config, num_items, devices, train_seqs)
  p_state = parallel.replicate(state, devices)
  del state
  stream = input_pipeline.make_stream(config, train_seqs)
  logging.info("%d training windows x %d cop%s = %d examples per epoch (%.1f steps)", len(stream.window_rows),
               stream.copies, "y" if stream.copies == 1 else "ies", stream.num_examples,
               stream.num_examples / tc.batch_size)
  batches = input_pipeline.training_batches(config, train_seqs, start, devices)

  schedule = learning_rate_schedule(tc)
  valid_scorer = scorer or evaluate.model_scorer(model)  # one object: its evaluation step compiles once
  bar = tqdm(total=end, initial=start, desc="train", unit="step", dynamic_ncols=True, mininterval=1.0,
             disable=not parallel.is_primary())
  window_metrics, window_steps = None, 0  # metric sums since the last log, kept on device
  timed_start, timed_steps = time.perf_counter(), 0  # throughput window (excludes compilation)
  t0, step, compile_seconds = time.perf_counter(), start, None
  stop, interrupted, early, bounded = stop_signals.StopSignals(), False, False, False
  try:
    stop.__enter__()
    for step in range(start, end):
      batch, num_targets = next(batches)
      p_state, m = p_step(p_state, batch, p_sampler, num_targets)
      window_metrics = m if window_metrics is None else jax.tree.map(jnp.add, window_metrics, m)
      window_steps += 1
      timed_steps += 1
      done = step + 1
      bar.update(1)
      if compile_seconds is None:
        jax.block_until_ready(m)
        compile_seconds = time.perf_counter() - t0
        timed_start, timed_steps = time.perf_counter(), 0
        logging.info("First step (including compilation) took %.1fs", compile_seconds)
      out_of_time = bool(tc.training_time_limit_seconds) and time.perf_counter() - t0 > tc.training_time_limit_seconds
      # The training seconds this step's checkpoint records: measured once here and, where the step
      # validates, again after it, so that the record holds the validation it also records (its share
      # is of the same seconds) and the time bound's decision and the record agree (a run resumed
      # from the checkpoint ends there exactly when this one did).
      elapsed = seconds_before + time.perf_counter() - t0
      spent = bool(bound) and elapsed >= bound and done < tc.num_train_steps
      stopping = stop.received is not None  # read once: a signal may land anywhere in this iteration
      periodic = bool(tc.eval_every_steps) and done % tc.eval_every_steps == 0
      if several:  # every process must stop (and save) at the same step: agreed at every step that may save
        agree = (done % tc.log_every_steps == 0 or done == end or done % tc.checkpoint_every_steps == 0
                 or (periodic and selecting))
        out_of_time, stopping, spent = (parallel.any_process(out_of_time, stopping, spent) if agree
                                        else (False, False, False))
      interrupted = interrupted or stopping
      last = done == end or out_of_time or stopping or spent
      save = done % tc.checkpoint_every_steps == 0 or last
      # Selecting: every validation step (also when stopping there), and the last step, are
      # candidates; otherwise the last step's model is evaluated in full afterwards anyway.
      validates = valid_evaluator is not None and ((periodic or done == tc.num_train_steps or spent) if selecting
                                                   else periodic and not last)
      # Also check the loss before every save and validation (a validation saves), so a diverged
      # model is never validated, selected or checkpointed.
      if window_steps and (done % tc.log_every_steps == 0 or save or validates):
        wm = parallel.unreplicate(window_metrics)  # the only sync in the loop (psum'd: every copy is equal)
        loss = float(wm["loss_sum"] / max(wm["count"], 1.0))
        extra = {"train/next_item_loss": float(wm["next_loss_sum"] / max(wm["next_count"], 1.0))} if "next_count" in wm else {}
        grad_norm, clipped = float(wm["grad_norm"]) / window_steps, float(wm["clipped"]) / window_steps
        if not math.isfinite(grad_norm):  # the last step's update: its loss was finite, its model is not
          extra["train/grad_norm"] = grad_norm
        if not all(map(math.isfinite, [loss, *extra.values()])):
          raise DivergedError(
              f"non-finite training loss {loss}{''.join(f' ({k} {v})' for k, v in extra.items())} at step {done}; "
              + (f"the last good checkpoint (step {manager.latest_step()}) is kept in {manager.directory}"
                 if manager.latest_step() is not None else "no checkpoint was saved before it")
              + ". Lower config.train.learning_rate or check the data.")
        seq_per_s = timed_steps * tc.batch_size / max(time.perf_counter() - timed_start, 1e-9)
        bar.set_postfix(loss=f"{loss:.4f}", seq_s=f"{seq_per_s:,.0f}", gnorm=f"{grad_norm:.3g}",
                        clipped=f"{clipped:.0%}")
        tracker.log({"train/loss": loss, "train/sequences_per_second": seq_per_s,
                     "train/learning_rate": float(schedule(done - 1)), "train/grad_norm": grad_norm,
                     "train/clipped_fraction": clipped, **extra}, step=done)
        window_metrics, window_steps = None, 0
        timed_start, timed_steps = time.perf_counter(), 0
      if validates:
        jax.block_until_ready(p_state)  # the steps dispatched before it are training's time, not validation's
        valid_t0 = time.perf_counter()
        scores = valid_evaluator.metrics(valid_scorer, p_state.params, replicated=True,
                                         ks=selection.cutoffs(config.eval.ks, tc.select_metric))
        valid_seconds += time.perf_counter() - valid_t0
        elapsed = seconds_before + time.perf_counter() - t0  # validation is training's time, in the record too
        if bound and done < tc.num_train_steps:  # it may spend the bound
          over, = parallel.any_process(elapsed >= bound) if several else (elapsed >= bound,)  # all validate here
          if over:  # this step, validated, is where training ends (as a run resumed from its checkpoint finds)
            spent = last = save = True
        if parallel.is_primary():
          k = min(config.eval.ks, key=lambda x: abs(x - 10))  # 10 when asked for (any cut-offs are valid)
          bar.write(f"step {done}: valid ndcg@{k} {scores[f'ndcg@{k}']:.4f} hr@{k} {scores[f'hr@{k}']:.4f}")
        if sel is not None:
          sel.add(done, scores)
          sel.save(model_dir)  # before the checkpoint: a run resumed from an older one drops this entry
          protect.steps = {sel.best["step"]}
          early = sel.should_stop
          save = True
          if early:
            bar.write(f"step {done}: stopping early, no better valid {tc.select_metric} in {tc.patience} "
                      f"validations after step {sel.best['step']}")
        tracker.log({f"valid/{k}": v for k, v in scores.items()}
                    | ({"valid/selected_step": sel.best["step"]} if sel is not None else {}), step=done)
      if save:
        model_store.record_checksums(manager, model_dir)  # of the previous save, finished by now
        if parallel.is_primary():  # before the checkpoint: a run resumed from an older one drops this entry
          # Where the bound ends training the record reaches it (another process may have reached it first).
          model_store.record_training_seconds(model_dir, done, max(elapsed, bound) if spent else elapsed,
                                              parallel.describe_devices(devices),
                                              None if valid_before is None else valid_before + valid_seconds)
        manager.save(done, args=ocp.args.StandardSave(parallel.unreplicate(p_state)), force=True)
      if spent and not early:
        bounded = True
        if parallel.is_primary():
          bar.write(f"step {done}: training ends here, its {bound / 60:g} minutes (train.max_training_minutes) "
                    "spent" + (f"; selected step {sel.best['step']}" if sel is not None and sel.best else ""))
        break
      if out_of_time:
        logging.info("Stopping at step %d: training_time_limit_seconds=%s reached", done,
                     tc.training_time_limit_seconds)
        break
      if stopping or early:
        break
  finally:
    bar.close()
    try:  # a repeated stop signal while the last checkpoint is written is still absorbed
      manager.wait_until_finished()
      model_store.record_checksums(manager, model_dir)
      manager.close()
    finally:
      stop.__exit__(None, None, None)
  ran = time.perf_counter() - t0
  if valid_seconds and ran > 0:
    logging.info("This run trained for %.0f s, of which periodic validation took %.1f s (%.1f%%)", ran, valid_seconds,
                 100 * valid_seconds / ran)
  # A stop request is honoured however training ended, also one that came in its last step or while
  # its last checkpoint was written (one process alone: with several, only the agreed one, as every
  # process must leave together): the checkpoint is saved, and a rerun goes on from it (to evaluation).
  if interrupted or (stop.received is not None and not several):
    name = stop.received or "SIGTERM"  # another process received it
    raise Interrupted(name, step + 1, int(getattr(signal, name)))
  if sel is not None and sel.best is not None and (early or bounded or step + 1 >= tc.num_train_steps):
    logging.info("Selected step %d: valid %s %.4f on %d users (of %d validations)", sel.best["step"],
                 tc.select_metric, sel.best["value"], sel.users, len(sel.curve))
  return Trained(step + 1, early or bounded or step + 1 >= tc.num_train_steps, record())
