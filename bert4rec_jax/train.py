"""Training: the pure pmapped step, the optimizer, and the loop with checkpoints and validation."""
import functools
import logging
import math
import os
import signal
import threading
import time
from typing import Optional

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax.training import train_state
from tqdm import tqdm

from bert4rec_jax import baselines, evaluate, input_pipeline, io_utils, masking, model as model_lib, parallel
from bert4rec_jax.errors import ConfigError, Interrupted

NO_DECAY = ("bias", "scale", "output_bias")  # biases and LayerNorm parameters


class TrainState(train_state.TrainState):
  pass


def learning_rate_schedule(train_config) -> optax.Schedule:
  """Linear warmup from 0 to learning_rate, then linear decay to 0 at num_train_steps."""
  lr, total = train_config.learning_rate, train_config.num_train_steps
  warmup = min(train_config.num_warmup_steps, total)  # a run shortened below the warmup just warms up
  decay = optax.linear_schedule(lr, 0.0, max(total - warmup, 1))
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])


def make_optimizer(train_config) -> optax.GradientTransformation:
  """Global-norm clipping, then AdamW (no decay on biases/LayerNorm) on the warmup/decay schedule."""
  schedule = learning_rate_schedule(train_config)

  def decay_mask(params):
    flat = flax.traverse_util.flatten_dict(params)
    return flax.traverse_util.unflatten_dict({k: k[-1] not in NO_DECAY for k in flat})

  parts = [optax.clip_by_global_norm(train_config.max_grad_norm)] if train_config.max_grad_norm > 0 else []
  parts.append(optax.adamw(schedule, b1=train_config.adam_b1, b2=train_config.adam_b2,
                           eps=train_config.adam_eps, weight_decay=train_config.weight_decay,
                           mask=decay_mask))
  return optax.chain(*parts)


def create_state(config, num_items: int) -> TrainState:
  model = model_lib.from_config(config.model, num_items)
  dummy = jnp.ones((1, config.model.max_seq_length), jnp.int32)
  params = jax.jit(model.init)(jax.random.PRNGKey(config.seed), dummy, jnp.zeros((1, 1), jnp.int32))["params"]
  return TrainState.create(apply_fn=model.apply, params=params, tx=make_optimizer(config.train))


def train_step(state: TrainState, batch, log_q=None, num_targets=0, *, model, mask_kwargs: dict, seed: int,
               static_masking: bool, loss: str = "full", num_negatives: int = 0, loss_positions: str = "masked",
               kind: str = "bert4rec", next_item_loss_weight: float = 0.0):
  """One step on this device's shard; gradients are exact global means over all devices.

  batch: item_ids [b, L] int32 right-aligned windows; example_ids [b] int32, the key of each
  example's masking draw; only_last [b] bool (static masking's mask-last copies).
  Dynamic masking draws from (seed, step, example key); static from (seed, example key) only,
  so a static copy is masked the same way every epoch.
  loss: "full" softmax over all N items, or "sampled" softmax over `num_negatives` items drawn
  (shared by the whole global batch) from log_q [N], with logQ correction.
  loss_positions: "masked" computes the output layer only at the P gathered positions; "all"
  at all L positions (slower; kept to measure what gathering saves).
  num_targets > 0 (static): compact the used target slots of this shard, at most num_targets
  of them (the host bounds it, see `target_bucket`), so the output layer skips unused slots;
  with the next-item loss, a pair (masked-item bound, next-item bound).
  kind="sasrec": no masking; every position with an earlier item is a target (`next_item_targets`).
  next_item_loss_weight > 0 (kind="bert4rec"): the loss is the masked-item mean cross-entropy
  plus this weight times SASRec's next-item mean cross-entropy, computed by the same weights
  reading the unmasked windows causally (same candidates, separate dropout draw).
  Returns (new state, {'loss_sum', 'count'}) with the sums over all devices (the masked-item
  loss's; with the next-item loss also 'next_loss_sum', 'next_count').
  """
  base = jax.random.PRNGKey(seed)
  step_key = jax.random.fold_in(base, state.step)
  if kind == "sasrec":
    masked = next_item_targets(batch["item_ids"])
  else:
    mask_key = jax.random.fold_in(base, -1) if static_masking else jax.random.fold_in(step_key, 0)
    masked = masking.mask_batch(mask_key, batch["item_ids"], batch["example_ids"], batch["only_last"],
                                **mask_kwargs)
  dropout_key = jax.random.fold_in(jax.random.fold_in(step_key, 1), parallel.axis_index())
  num_masked, num_next = num_targets if isinstance(num_targets, tuple) else (num_targets, 0)
  seq_len = batch["item_ids"].shape[1]

  def target_slots(batch_targets, num, every_position):
    """(positions, targets, weights) of one loss: compacted to `num` used slots, or spread over
    every position with loss_positions="all"."""
    positions, targets, weights = batch_targets.positions, batch_targets.targets, batch_targets.weights
    if num and loss_positions == "masked":
      # Short sequences fill few of their P slots: keep only used ones (weight 1 first, stable).
      slot = jnp.argsort(-weights.reshape(-1), stable=True)[:num]  # [T] into [b * P]
      row = slot // positions.shape[1]
      positions = row * seq_len + positions.reshape(-1)[slot]  # [T] flat row * L + pos
      targets, weights = targets.reshape(-1)[slot], weights.reshape(-1)[slot]
    if loss_positions == "all" and not every_position:  # every position carries a (possibly zero-weight) target
      rows = jnp.arange(positions.shape[0])[:, None]
      targets = jnp.zeros((positions.shape[0], seq_len), targets.dtype).at[rows, positions].max(targets)
      weights = jnp.zeros((positions.shape[0], seq_len), weights.dtype).at[rows, positions].max(weights)
      positions = jnp.broadcast_to(jnp.arange(seq_len), targets.shape)
    return positions, targets, weights

  losses = [(masked.inputs, target_slots(masked, num_masked, kind == "sasrec"), parallel.psum(masked.weights.sum()),
             None, dropout_key)]  # (inputs, slots, global target count, causal, dropout key)
  if next_item_loss_weight:
    following = next_item_targets(batch["item_ids"])
    losses.append((following.inputs, target_slots(following, num_next, True), parallel.psum(following.weights.sum()),
                   True, jax.random.fold_in(dropout_key, 1)))
  if loss == "sampled":  # shared negatives: the same draw on every device (keyed by step only)
    candidates = draw_negatives(jax.random.fold_in(step_key, 2), log_q, num_negatives)

  def loss_fn(params):
    total, sums = 0.0, []
    for i, (inputs, (positions, targets, weights), count, causal, key) in enumerate(losses):
      variables, rngs = {"params": params}, {"dropout": key}
      if loss == "sampled":
        own, shared = model.apply(variables, inputs, positions, targets, candidates, train=True, rngs=rngs,
                                  causal=causal, method=model.sampled_logits)  # [b, P], [b, P, C]
        ce = sampled_softmax_ce(own, shared, targets - 1, candidates, log_q)  # [b, P]
      else:
        logits, _ = model.apply(variables, inputs, positions, train=True, rngs=rngs, causal=causal)  # [b, P, N]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(targets - 1, 0))  # [b, P]
      loss_sum = jnp.sum(ce * weights)
      total = total + (next_item_loss_weight if i else 1.0) * loss_sum / jnp.maximum(count, 1.0)
      sums.append(loss_sum)
    return total, sums

  grads, sums = jax.grad(loss_fn, has_aux=True)(state.params)
  grads = parallel.psum(grads)  # sum of per-device shares of the global mean = the global mean
  new_state = state.apply_gradients(grads=grads)
  out = {"loss_sum": parallel.psum(sums[0]), "count": losses[0][2]}
  if next_item_loss_weight:
    out.update(next_loss_sum=parallel.psum(sums[1]), next_count=losses[1][2])
  return new_state, out


def next_item_targets(item_ids) -> masking.MaskedBatch:
  """SASRec's targets for right-aligned windows [b, L]: the item at every position that has an
  earlier item in the window (the model reads only items before a position, see model.py);
  the inputs are the window itself, unmasked."""
  seq_len = item_ids.shape[1]
  has_previous = jnp.pad(item_ids[:, :-1] != 0, ((0, 0), (1, 0)))  # [b, L]
  weights = ((item_ids != 0) & has_previous).astype(jnp.float32)
  positions = jnp.broadcast_to(jnp.arange(seq_len, dtype=jnp.int32), item_ids.shape)
  return masking.MaskedBatch(item_ids, positions, jnp.where(weights > 0, item_ids, 0), weights)


def draw_negatives(key, log_q, num: int):
  """[num] item columns drawn with replacement from q = exp(log_q) by inverse CDF: O(num log N)
  memory and time (jax.random.categorical would build a [num, N] noise array)."""
  u = jax.random.uniform(key, (num,))
  cdf = jnp.cumsum(jnp.exp(log_q))
  return jnp.minimum(jnp.searchsorted(cdf, u * cdf[-1], side="right"), log_q.shape[0] - 1).astype(jnp.int32)


def sampled_softmax_ce(own, shared, target_columns, candidates, log_q):
  """Sampled softmax cross-entropy with logQ correction (importance sampling of the partition
  function, Bengio & Senecal 2008).

  own [..]: logit of each target; shared [.., C]: logits of C candidates drawn with replacement
  from q = exp(log_q) [N]; target_columns [..] and candidates [C] are item columns. The
  partition function is estimated as exp(own) + sum over draws j != target of
  exp(s_j) / (C q_j): each negative is divided by its expected number of draws (the logQ
  correction) and a draw of the row's own target (an accidental hit) is removed. The estimate
  is consistent: as C grows the loss converges to the full softmax cross-entropy (tested).
  """
  log_expected = jnp.log(float(candidates.shape[0])) + log_q  # log(C q_j)
  shared = shared - log_expected[candidates]
  shared = jnp.where(candidates == target_columns[..., None], -jnp.inf, shared)
  # log(exp(own) + sum exp(shared)) without materialising [own, shared] ([.., C + 1]).
  return jnp.logaddexp(own, jax.nn.logsumexp(shared, axis=-1)) - own


def negative_log_q(train_config, train_seqs, num_items: int) -> Optional[np.ndarray]:
  """[N] log-probabilities of the sampled-softmax negative sampler (None for the full softmax)."""
  if train_config.loss != "sampled":
    return None
  if train_config.negative_sampler == "uniform":
    return np.full(num_items, -np.log(num_items), np.float32)
  counts = train_seqs.token_counts(num_items + 2)[1:num_items + 1] + 1.0  # +1: every item drawable
  return np.log(counts / counts.sum()).astype(np.float32)


def step_loss(train_config, num_items: int) -> str:
  """The loss the step computes: the configured one, except that a sampled softmax with at least
  as many draws as there are items becomes the full softmax, which is then both exact and
  cheaper (a config tuned on a large catalogue can be run on a small one as it is)."""
  if train_config.loss == "sampled" and train_config.num_negatives >= num_items:
    return "full"
  return train_config.loss


def next_item_loss_weight(config) -> float:
  """The auxiliary next-item loss's weight: BERT4Rec only (SASRec's loss is that loss already, so
  a config that sets it switches to SASRec with one flag, model.kind=sasrec)."""
  return float(config.train.get("next_item_loss_weight", 0.0)) if config.model.kind == "bert4rec" else 0.0


def make_step(config, num_items: int, devices, train_seqs):
  """The pmapped train step and its replicated extra input: step(p_state, batch, p_log_q)."""
  tc = config.train
  model = model_lib.from_config(config.model, num_items, dtype=jnp.dtype(tc.compute_dtype))
  loss = step_loss(tc, num_items)
  if loss != tc.loss:
    logging.info("config.train.num_negatives=%d >= %d items: the full softmax instead of the sampled one",
                 tc.num_negatives, num_items)
  step = parallel.pmap(functools.partial(
      train_step, model=model, mask_kwargs=masking.masking_kwargs(config.masking, num_items), seed=config.seed,
      static_masking=config.masking.mode == "static", loss=loss, num_negatives=tc.num_negatives,
      loss_positions=tc.loss_positions, kind=config.model.kind,
      next_item_loss_weight=next_item_loss_weight(config)), parallel.step_devices(devices),
      donate_argnums=(0,) if tc.donate_buffers else (),
      static_broadcasted_argnums=(3,))
  log_q = negative_log_q(tc, train_seqs, num_items) if loss == "sampled" else None
  return step, (parallel.replicate(log_q, devices) if log_q is not None else None)


def make_stream(config, train_seqs, length: int = 0) -> input_pipeline.TrainStream:
  """Windows of `length` items (default: model.max_seq_length)."""
  return input_pipeline.TrainStream(
      train_seqs, config.train.batch_size, length or config.model.max_seq_length, config.seed,
      prop_sliding_window=config.train.prop_sliding_window,
      static_copies=config.masking.dupe_factor if config.masking.mode == "static" and config.model.kind == "bert4rec" else 0)


def target_bucket(lengths: np.ndarray, max_seq_length: int, masking_config, num_devices: int,
                  kind: str = "bert4rec") -> int:
  """A static upper bound on the used target slots of any device's shard of a global batch whose
  windows hold `lengths` [B] items, rounded up to a quarter step between powers of two (at most
  25% over) so that only a few step shapes are ever compiled. A window of n items uses at most
  min(P, n, max(1, ceil(n * masked_lm_prob))) slots (the device rounds; ceil bounds it); with
  kind="sasrec", P = L slots of which n - 1 are used. Lengths need no item reads, so every
  process computes the same bound."""
  n = np.asarray(lengths)
  if kind == "sasrec":
    p_max = max_seq_length
    used = np.maximum(n - 1, 0)
  else:
    p_max = masking_config.max_predictions_per_seq
    used = np.minimum(np.minimum(p_max, n), np.maximum(1, np.ceil(n * masking_config.masked_lm_prob)))
  per_device = int(used.reshape(num_devices, -1).sum(axis=1).max())
  return min(len(n) // num_devices * p_max, input_pipeline.bucket(per_device, floor=32, steps=4))


def batch_iterator(config, stream, start: int, devices, stop: Optional[int] = None):
  """(device batch, num_targets) pairs from step `start` (up to `stop`), staged on device
  `train.prefetch` ahead (0: each put synchronously when used). num_targets = 0 when target
  compaction is off. With several processes each builds only its block of every global batch."""
  block = parallel.batch_block(config.train.batch_size)
  num_global = parallel.global_device_count(devices)
  next_item = bool(next_item_loss_weight(config))  # the next-item loss has its own slots

  def host():
    for step, b in stream.batches(start, block):
      if stop is not None and step >= stop:
        return
      if not config.train.compact_targets:
        yield b, 0
        continue
      lengths = stream.lengths(step)
      bound = target_bucket(lengths, stream.max_seq_length, config.masking, num_global, config.model.kind)
      if next_item:
        bound = (bound, target_bucket(lengths, stream.max_seq_length, config.masking, num_global, "sasrec"))
      yield b, bound

  if config.train.prefetch > 0:
    return parallel.prefetch_to_device(host(), devices, config.train.prefetch)
  return ((parallel.put_sharded(b, devices), t) for b, t in host())


def training_batches(config, train_seqs, start: int, devices):
  """The batches of steps start, start + 1, ...: windows of train.warmup_seq_length items for
  the first train.warmup_seq_steps steps (sequence-length warmup: the same model, cheaper
  steps while it learns the basics), then of model.max_seq_length items. Each phase is its
  own pure function of (seed, step), so a resumed run gets the same batches."""
  tc = config.train
  if tc.get("warmup_seq_length", 0) and start < tc.warmup_seq_steps:
    yield from batch_iterator(config, make_stream(config, train_seqs, tc.warmup_seq_length), start, devices,
                              stop=tc.warmup_seq_steps)
    start = tc.warmup_seq_steps
  yield from batch_iterator(config, make_stream(config, train_seqs), start, devices)


def checkpoint_manager(model_dir: str, train_config) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=train_config.keep_checkpoints, create=True)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(model_dir, "checkpoints")), options=options)


def restore_latest(manager: ocp.CheckpointManager, state: TrainState) -> Optional[TrainState]:
  """The newest checkpoint that restores; a truncated or corrupted one is skipped with a
  warning and the one before it used (None when there is none)."""
  restored, damaged = None, []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      restored = manager.restore(step, args=ocp.args.StandardRestore(state))
      break
    except Exception as e:  # Orbax / TensorStore raise many types for damaged files
      logging.warning("Checkpoint at step %d in %s cannot be restored (%s: %s); trying the previous one",
                      step, manager.directory, type(e).__name__, str(e)[:300])
      damaged.append(step)
  if damaged:  # moved aside (kept for inspection), so training can write those steps again
    if parallel.is_primary():  # every process found the same ones; one moves them
      aside = os.path.join(os.path.dirname(str(manager.directory)), "damaged_checkpoints")
      os.makedirs(aside, exist_ok=True)
      for step in damaged:
        target = os.path.join(aside, f"{step}-{int(time.time())}")
        os.replace(os.path.join(str(manager.directory), str(step)), target)
        logging.warning("Moved the damaged checkpoint of step %d to %s", step, target)
    parallel.barrier("damaged checkpoints moved")
    manager.reload()
    if restored is None:
      logging.warning("No checkpoint in %s could be restored: starting from scratch", manager.directory)
  return restored


class StopSignals:
  """While active (main thread only), SIGTERM and SIGINT only set `.received`; the training loop
  then checkpoints and stops at the end of the current step instead of dying mid-write. A second
  signal exits at once, unless it comes within REPEAT_SECONDS of the first: one stop request
  often arrives twice (`timeout` and schedulers signal every process of a job, and a parent such
  as the sweep runner forwards it too), and that must not cost the checkpoint."""
  REPEAT_SECONDS = 3.0

  def __init__(self):
    self.received = None
    self._first = 0.0
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    if self.received is not None:
      if time.monotonic() - self._first < self.REPEAT_SECONDS:
        return  # the same request delivered twice
      signal.default_int_handler(signum, frame) if signum == signal.SIGINT else os._exit(128 + signum)
    self._first = time.monotonic()
    self.received = signal.Signals(signum).name
    logging.warning("%s received: saving a checkpoint after this step, then stopping", self.received)

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    return False


TRAIN_TIME_FILE = "train_time.json"
TRAIN_DEVICES_FILE = "train_devices.json"  # {step: the devices of the invocation that saved it}


def training_seconds(model_dir: str, step: int) -> float:
  """Wall-clock training seconds that produced the checkpoint at `step`, summed over every
  invocation that contributed to it (0 when unknown)."""
  path = os.path.join(model_dir, TRAIN_TIME_FILE)
  if not os.path.exists(path):
    return 0.0
  record = io_utils.read_json(path)
  known = [int(s) for s in record if int(s) <= step]
  return float(record[str(max(known))]) if known else 0.0


def training_devices(model_dir: str, step: int) -> list:
  """The devices (`parallel.describe_devices`) of the invocations that trained the checkpoint at
  `step`, in order, a repeat of the same devices listed once; "unrecorded devices" stands for
  invocations from before this was kept (their time is in train_time.json, their devices not)."""
  def steps(name):
    path = os.path.join(model_dir, name)
    record = io_utils.read_json(path) if os.path.exists(path) else {}
    return sorted(((int(s), v) for s, v in record.items() if int(s) <= step))
  devices, timed = steps(TRAIN_DEVICES_FILE), steps(TRAIN_TIME_FILE)
  out = ["unrecorded devices"] if timed and (not devices or timed[0][0] < devices[0][0]) else []
  for _, d in devices:
    if not out or out[-1] != d:
      out.append(d)
  return out


def _record_training_seconds(model_dir: str, step: int, seconds: float, devices: str) -> None:
  for name, value in ((TRAIN_TIME_FILE, round(seconds, 2)), (TRAIN_DEVICES_FILE, devices)):
    path = os.path.join(model_dir, name)
    record = io_utils.read_json(path) if os.path.exists(path) else {}
    record = {s: v for s, v in record.items() if int(s) < step}  # a re-run from an older checkpoint replaces later ones
    record[str(step)] = value
    io_utils.write_json(path, record)


def validate(config, num_devices: int) -> None:
  """Config combinations that cannot work, reported before anything runs."""
  m, t, k = config.model, config.train, config.masking
  kinds = model_lib.KINDS + baselines.KINDS
  if m.kind not in kinds:
    raise ConfigError(f"config.model.kind={m.kind!r}: use one of {', '.join(kinds)}")
  if m.get("read_last", "mask") not in model_lib.READINGS:
    raise ConfigError(f"config.model.read_last={m.read_last!r}: use {' or '.join(model_lib.READINGS)}")
  if m.kind == "sasrec" and k.mode != "dynamic":
    raise ConfigError("config.masking.mode=static does not apply to config.model.kind=sasrec (it has no masking)")
  if m.hidden_size % m.num_attention_heads:
    raise ConfigError(f"config.model.hidden_size={m.hidden_size} is not divisible by "
                      f"config.model.num_attention_heads={m.num_attention_heads}")
  if m.max_seq_length < 2:
    raise ConfigError("config.model.max_seq_length must be at least 2")
  if not 1 <= k.max_predictions_per_seq <= m.max_seq_length:
    raise ConfigError(f"config.masking.max_predictions_per_seq={k.max_predictions_per_seq} must be between 1 "
                      f"and config.model.max_seq_length={m.max_seq_length}")
  if not 0.0 < k.masked_lm_prob <= 1.0:
    raise ConfigError("config.masking.masked_lm_prob must be in (0, 1]")
  if not 0.0 <= k.mask_prob <= 1.0:
    raise ConfigError("config.masking.mask_prob must be in [0, 1]")
  if t.loss not in ("full", "sampled"):
    raise ConfigError(f"config.train.loss={t.loss!r}: use full or sampled")
  if t.loss == "sampled" and t.num_negatives < 1:
    raise ConfigError("config.train.num_negatives must be >= 1 with the sampled loss")
  if t.negative_sampler not in ("uniform", "popularity"):
    raise ConfigError(f"config.train.negative_sampler={t.negative_sampler!r}: use uniform or popularity")
  if t.loss_positions not in ("masked", "all"):
    raise ConfigError(f"config.train.loss_positions={t.loss_positions!r}: use masked or all")
  if t.get("warmup_seq_length", 0) and not 2 <= t.warmup_seq_length < m.max_seq_length:
    raise ConfigError(f"config.train.warmup_seq_length={t.warmup_seq_length} must be between 2 and "
                      f"config.model.max_seq_length - 1 = {m.max_seq_length - 1} (0 turns the warmup off)")
  if t.get("next_item_loss_weight", 0.0) < 0:
    raise ConfigError("config.train.next_item_loss_weight must be >= 0 (0 turns the next-item loss off)")
  if t.compute_dtype not in ("float32", "bfloat16"):
    raise ConfigError(f"config.train.compute_dtype={t.compute_dtype!r}: use float32 or bfloat16")
  if k.mode not in masking.MODES:
    raise ConfigError(f"config.masking.mode={k.mode!r}: use one of {', '.join(masking.MODES)}")
  if k.mode == "static" and k.dupe_factor < 1:
    raise ConfigError("config.masking.dupe_factor must be >= 1 with static masking")
  if m.hidden_act not in model_lib.ACTIVATIONS:
    raise ConfigError(f"config.model.hidden_act={m.hidden_act!r}: use one of {sorted(model_lib.ACTIVATIONS)}")
  if t.num_train_steps < 1 or t.num_warmup_steps < 0:
    raise ConfigError("need config.train.num_train_steps >= 1 and config.train.num_warmup_steps >= 0")
  parallel.check_divisible(t.batch_size, num_devices, "config.train.batch_size")


def train(config, model_dir: str, train_seqs, valid_evaluator: Optional[evaluate.Evaluator], num_items: int,
          tracker, devices, stop_at: Optional[int] = None) -> int:
  """Trains up to config.train.num_train_steps, resuming from the latest checkpoint.

  `stop_at` ends this invocation early at that step (after checkpointing), as an interrupted
  run would. Returns the step reached.
  """
  tc = config.train
  validate(config, parallel.global_device_count(devices))
  several = parallel.process_count() > 1
  model = model_lib.from_config(config.model, num_items)
  state = create_state(config, num_items)
  manager = checkpoint_manager(model_dir, tc)
  restored = restore_latest(manager, state)
  if restored is not None:
    state = restored
    logging.info("Resuming from checkpoint at step %d in %s", int(state.step), manager.directory)
  start = int(state.step)
  seconds_before = training_seconds(model_dir, start)
  end = tc.num_train_steps if stop_at is None else min(stop_at, tc.num_train_steps)
  if start >= end:
    if start >= tc.num_train_steps:
      logging.info("Model already trained to step %d (num_train_steps=%d): nothing to train", start,
                   tc.num_train_steps)
    manager.close()
    return start
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  logging.info("Training %s parameters on %d %s device(s)%s, global batch %d, steps %d -> %d",
               f"{n_params:,}", parallel.global_device_count(devices), devices[0].platform,
               f" in {parallel.process_count()} processes" if several else "", tc.batch_size, start, end)

  p_step, p_log_q = make_step(config, num_items, devices, train_seqs)
  p_state = parallel.replicate(state, devices)
  del state
  stream = make_stream(config, train_seqs)
  logging.info("%d training windows x %d cop%s = %d examples per epoch (%.1f steps)", len(stream.window_rows),
               stream.copies, "y" if stream.copies == 1 else "ies", stream.num_examples,
               stream.num_examples / tc.batch_size)
  batches = training_batches(config, train_seqs, start, devices)

  schedule = learning_rate_schedule(tc)
  valid_scorer = evaluate.model_scorer(model)  # one object: the evaluator compiles its step once
  bar = tqdm(total=end, initial=start, desc="train", unit="step", dynamic_ncols=True, mininterval=1.0,
             disable=not parallel.is_primary())
  window_metrics, window_steps = None, 0  # metric sums since the last log, kept on device
  timed_start, timed_steps = time.perf_counter(), 0  # throughput window (excludes compilation)
  t0, step, compile_seconds = time.perf_counter(), start, None
  stop, interrupted = StopSignals(), False
  try:
    stop.__enter__()
    for step in range(start, end):
      batch, num_targets = next(batches)
      p_state, m = p_step(p_state, batch, p_log_q, num_targets)
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
      stopping = stop.received is not None  # read once: a signal may land anywhere in this iteration
      if several:  # every process must stop (and save) at the same step: agreed at log boundaries
        agree = done % tc.log_every_steps == 0 or done == end
        out_of_time, stopping = parallel.any_process(out_of_time, stopping) if agree else (False, False)
      interrupted = interrupted or stopping
      last = done == end or out_of_time or stopping
      save = done % tc.checkpoint_every_steps == 0 or last
      # Also check the loss before every save, so a checkpoint never holds a diverged model.
      if window_steps and (done % tc.log_every_steps == 0 or save):
        wm = parallel.unreplicate(window_metrics)  # the only sync in the loop (psum'd: every copy is equal)
        loss = float(wm["loss_sum"] / max(wm["count"], 1.0))
        extra = {"train/next_item_loss": float(wm["next_loss_sum"] / max(wm["next_count"], 1.0))} if "next_count" in wm else {}
        if not all(map(math.isfinite, [loss, *extra.values()])):
          raise FloatingPointError(
              f"non-finite training loss {loss}{''.join(f' ({k} {v})' for k, v in extra.items())} at step {done}; "
              f"the last good checkpoint "
              f"(step {manager.latest_step()}) is kept in {manager.directory}. Lower "
              "config.train.learning_rate or check the data.")
        seq_per_s = timed_steps * tc.batch_size / max(time.perf_counter() - timed_start, 1e-9)
        bar.set_postfix(loss=f"{loss:.4f}", seq_s=f"{seq_per_s:,.0f}")
        tracker.log({"train/loss": loss, "train/sequences_per_second": seq_per_s,
                     "train/learning_rate": float(schedule(done - 1)), **extra}, step=done)
        window_metrics, window_steps = None, 0
        timed_start, timed_steps = time.perf_counter(), 0
      if valid_evaluator is not None and tc.eval_every_steps and done % tc.eval_every_steps == 0 and not last:
        scores = valid_evaluator.metrics(valid_scorer, p_state.params, replicated=True)
        if parallel.is_primary():
          bar.write(f"step {done}: valid ndcg@10 {scores['ndcg@10']:.4f} hr@10 {scores['hr@10']:.4f}")
        tracker.log({f"valid/{k}": v for k, v in scores.items()}, step=done)
      if save:
        manager.save(done, args=ocp.args.StandardSave(parallel.unreplicate(p_state)), force=True)
        if parallel.is_primary():
          _record_training_seconds(model_dir, done, seconds_before + time.perf_counter() - t0,
                                   parallel.describe_devices(devices))
      if out_of_time:
        logging.info("Stopping at step %d: training_time_limit_seconds=%s reached", done,
                     tc.training_time_limit_seconds)
        break
      if stopping:
        break
  finally:
    stop.__exit__(None, None, None)
    bar.close()
    manager.wait_until_finished()
    manager.close()
  if interrupted and step + 1 < end:
    name = stop.received or "SIGTERM"  # another process received it
    raise Interrupted(name, step + 1, int(getattr(signal, name)))
  return step + 1
