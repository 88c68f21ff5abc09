"""Fixed-shape NumPy batches from CSR sequences: windows, the training stream and its batches
on device (target-slot buckets, prefetch), eval batches.

Sequences are right-aligned (left padding): the newest item sits at position L - 1.
Training examples are windows of at most L items (the last L of each training sequence, plus
sliding windows over longer ones); evaluation and inference inputs are the last L - 1 items
of the history followed by [MASK] at position L - 1.
"""
import dataclasses
from typing import Iterator, Optional

import numpy as np

from bert4rec_jax import losses, parallel
from bert4rec_jax.errors import ConfigError
from bert4rec_jax.preprocess import PAD, Sequences


def bucket(n: int, floor: int = 16, steps: int = 1) -> int:
  """The next power of two >= n (at least `floor`): few distinct shapes, few compilations.
  steps > 1 (a power of two) also allows `steps` even steps between powers of two, e.g. 4:
  1024, 1280, 1536, 1792, 2048, ...: at most 1 / steps over n, a few more shapes."""
  n = max(int(n), floor, 1)
  grain = max(1, (1 << (n - 1).bit_length()) // (2 * steps))  # one step of the octave n falls in
  return -(-n // grain) * grain


def right_aligned(seqs: Sequences, rows: np.ndarray, length: int, append: Optional[int] = None,
                  ends: Optional[np.ndarray] = None) -> np.ndarray:
  """[len(rows), length] int32: the items of each sequence up to `ends` (default: its end),
  at most `length` of them, right-aligned and left-padded with PAD.

  With `append` (a token, e.g. MASK), the last `length - 1` items are followed by that token.
  """
  rows = np.asarray(rows, dtype=np.int64)
  n = length - (append is not None)
  starts = seqs.offsets[rows]
  ends = seqs.stops[rows] if ends is None else np.asarray(ends, dtype=np.int64)
  idx = ends[:, None] - n + np.arange(n)[None, :]  # [B, n] positions into seqs.buffer
  items = seqs.buffer if len(seqs.buffer) else np.zeros(1, np.int32)  # every sequence may be empty
  window = np.where(idx >= starts[:, None], items[np.clip(idx, 0, len(items) - 1)], PAD).astype(np.int32)
  if append is not None:
    window = np.concatenate([window, np.full((len(rows), 1), append, np.int32)], axis=1)
  return window


def scoring_batch(history: Sequences, rows: np.ndarray, batch_size: int, max_seq_length: int, mask_id: int,
                  history_width: int):
  """A fixed-size batch for scoring the [MASK] slot of users `rows` (len <= batch_size).

  Returns (the padded rows [B], batch): item_ids [B, L] = last L - 1 history items + [MASK];
  history [B, history_width] = the history itself, for exclusion. Padding repeats the first
  row; callers keep only the first len(rows) results.
  """
  rows = np.concatenate([rows, np.full(batch_size - len(rows), rows[0], dtype=np.asarray(rows).dtype)])
  return rows, {"item_ids": right_aligned(history, rows, max_seq_length, append=mask_id),
                "history": right_aligned(history, rows, history_width)}


def sliding_windows(seqs: Sequences, length: int, prop_sliding_window: float):
  """Training windows as (rows [W], ends [W]) with `ends` absolute positions into seqs.buffer.

  Every sequence contributes its last `length` items. With prop_sliding_window > 0, a longer
  sequence also contributes windows ending step, 2 * step, ... items earlier
  (step = max(1, int(prop * length))) until one reaches its first item (the seed's scheme:
  windows start at n - L, n - L - step, ..., and 0). -1 disables sliding.
  """
  lengths = seqs.lengths
  rows = np.arange(len(seqs), dtype=np.int64)
  if prop_sliding_window <= 0:
    return rows, np.array(seqs.stops, dtype=np.int64)
  step = max(1, int(prop_sliding_window * length))
  # Windows per sequence: starts n-L, n-L-step, ... > 0, then 0 (when n > L).
  extra = np.where(lengths > length, -(-(lengths - length) // step), 0)  # ceil((n - L) / step)
  counts = 1 + extra
  w_rows = np.repeat(rows, counts)
  k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)  # window index in its sequence
  n = lengths[w_rows]
  start = np.maximum(n - length - k * step, 0)  # start within the sequence
  end_in_seq = np.where(k == 0, n, start + length)
  return w_rows, seqs.offsets[w_rows] + end_in_seq


POOL_BATCHES = 32  # length buckets: batches formed together from this many batches' worth of examples
MAX_REPEATS = 1000  # a batch may hold each training example at most this many times (a batch far larger than the data)


def window_width(longest: int, max_seq_length: int) -> int:
  """The width a length-bucketed batch is cut to: the next power of two >= its longest window
  (at least 8), or the full window when that is no narrower. Few widths, few compilations."""
  width = 8
  while width < longest:
    width *= 2
  return min(width, max_seq_length)


@dataclasses.dataclass
class TrainStream:
  """The training batches as a pure function of (seed, step).

  An example is a (window, copy) pair: `copies` = 1 with dynamic masking; with static
  masking, `dupe_factor` differently-masked copies plus one "only the last item masked" copy.
  The examples form an endless stream of epochs, each a fresh permutation seeded by
  (seed, epoch); batch `step` is stream positions [step * B, (step + 1) * B). Resuming at any
  step reproduces the batches of an uninterrupted run, and no example is dropped at epoch
  ends. Nothing is materialised per copy: memory is O(windows).

  With `length_buckets`, the positions of POOL_BATCHES consecutive batches are pooled, ordered
  by window length (ties in stream order) and cut into batches taken in an order drawn from
  (seed, pool): every example is still trained once per epoch, give or take a pool at the
  epoch's ends, but a batch holds windows of similar length and is cut to `width(step)` columns
  (`window_width` of its longest), so short histories stop paying for the padding of long ones.
  """
  seqs: Sequences
  batch_size: int
  max_seq_length: int
  seed: int
  prop_sliding_window: float = -1.0
  static_copies: int = 0  # 0 = dynamic masking; else dupe_factor (+1 mask-last copy is added)
  length_buckets: bool = False

  def __post_init__(self):
    self.window_rows, self.window_ends = sliding_windows(self.seqs, self.max_seq_length, self.prop_sliding_window)
    self.copies = self.static_copies + 1 if self.static_copies else 1
    if self.num_examples and self.batch_size > MAX_REPEATS * self.num_examples:
      raise ConfigError(
          f"config.train.batch_size={self.batch_size} would hold each of the {self.num_examples:,} training "
          f"examples about {self.batch_size // self.num_examples:,} times a step (at most {MAX_REPEATS:,}): "
          f"lower it to at most {MAX_REPEATS * self.num_examples:,}")
    self._cached_epoch, self._cached_perm = -1, None
    self._cached_pool, self._pool = -1, None

  @property
  def num_examples(self) -> int:
    return len(self.window_rows) * self.copies

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch != self._cached_epoch:
      rng = np.random.default_rng([self.seed, epoch])
      self._cached_perm, self._cached_epoch = rng.permutation(self.num_examples), epoch
    return self._cached_perm

  def _examples_at(self, pos: np.ndarray) -> np.ndarray:
    """int64 example indices at stream positions `pos`. Linear in the positions and the epochs
    they span (a batch larger than the data spans many: one permutation each, looked up by runs
    of positions sorted by epoch, never one pass over all positions per epoch)."""
    epochs, within = np.divmod(pos, self.num_examples)
    out = np.empty(len(pos), dtype=np.int64)
    order = np.argsort(epochs, kind="stable")  # already sorted for the contiguous ranges batches use
    sorted_epochs = epochs[order]
    starts = np.flatnonzero(np.diff(sorted_epochs, prepend=sorted_epochs[:1] - 1))
    for first, last in zip(starts, np.append(starts[1:], len(pos))):
      run = order[first:last]
      out[run] = self._permutation(int(sorted_epochs[first]))[within[run]]
    return out

  def window_lengths(self, windows=slice(None)) -> np.ndarray:
    """Items in each training window (default: all [W]; copies of a window have its length)."""
    return np.minimum(self.window_ends[windows] - self.seqs.offsets[self.window_rows[windows]], self.max_seq_length)

  def _window_lengths(self, examples: np.ndarray) -> np.ndarray:
    return self.window_lengths(examples // self.copies)

  def _positions(self, step: int) -> tuple:
    """([B] stream positions, [B] example indices) of batch `step`."""
    if not self.length_buckets:
      pos = step * self.batch_size + np.arange(self.batch_size, dtype=np.int64)
      return pos, self._examples_at(pos)
    pool, k = divmod(step, POOL_BATCHES)
    if pool != self._cached_pool:
      pos = pool * POOL_BATCHES * self.batch_size + np.arange(POOL_BATCHES * self.batch_size, dtype=np.int64)
      examples = self._examples_at(pos)
      order = np.argsort(self._window_lengths(examples), kind="stable")
      turn = np.random.default_rng([self.seed, pool, POOL_BATCHES]).permutation(POOL_BATCHES)
      self._cached_pool, self._pool = pool, (pos[order], examples[order], turn)
    pos, examples, turn = self._pool
    rows = slice(turn[k] * self.batch_size, (turn[k] + 1) * self.batch_size)
    return pos[rows], examples[rows]

  def example_ids(self, step: int) -> np.ndarray:
    """[B] int64 example indices of batch `step`."""
    return self._positions(step)[1]

  def lengths(self, step: int) -> np.ndarray:
    """[B] items in each window of batch `step` (from the offsets alone: no item is read)."""
    return self._window_lengths(self.example_ids(step))

  def lengths_of_steps(self, start: int, stop: int, chunk_positions: int = 1 << 20) -> Iterator[np.ndarray]:
    """The window lengths of batches start..stop - 1 as [steps, B] blocks of about
    chunk_positions items (`lengths` for a whole schedule at once; without length buckets, whose
    pools reorder the positions)."""
    assert not self.length_buckets, "a length-bucketed stream has a bound per width"
    steps = max(1, chunk_positions // self.batch_size)
    for first in range(start, stop, steps):
      last = min(stop, first + steps)
      pos = first * self.batch_size + np.arange((last - first) * self.batch_size, dtype=np.int64)
      yield self._window_lengths(self._examples_at(pos)).reshape(last - first, self.batch_size)

  def width(self, step: int) -> int:
    """Columns of batch `step`: max_seq_length, or with length buckets the `window_width` of
    its longest window (the same for every process: lengths need no item reads)."""
    return self._width(self.example_ids(step))

  def _width(self, examples: np.ndarray) -> int:
    if not self.length_buckets:
      return self.max_seq_length
    return window_width(int(self._window_lengths(examples).max()), self.max_seq_length)

  def batch(self, step: int, block: slice = slice(None)) -> dict:
    """Batch `step`, or only its rows `block` (a process's share of the global batch: the
    other rows are never read)."""
    positions, examples = self._positions(step)
    width = self._width(examples)  # of the whole global batch, whatever the block
    examples, positions = examples[block], positions[block]
    windows, copy = np.divmod(examples, self.copies)
    if self.static_copies:
      # Static: an example's mask is a function of the example alone, the same every epoch.
      mask_key = examples
      only_last = copy == self.static_copies
    else:
      # Dynamic: keyed by stream position, so a window's copies in different epochs differ.
      mask_key = positions
      only_last = np.zeros(len(examples), bool)
    return {
        "item_ids": right_aligned(self.seqs, self.window_rows[windows], width,
                                  ends=self.window_ends[windows]),  # [B, L] (L = width(step))
        "example_ids": (mask_key % np.iinfo(np.int32).max).astype(np.int32),  # [B]
        "only_last": only_last,  # [B] bool
    }

  def batches(self, start_step: int, block: slice = slice(None)) -> Iterator[tuple]:
    """(step, batch rows `block`) from `start_step` on, endlessly."""
    step = start_step
    while True:
      yield step, self.batch(step, block)
      step += 1


# --- The training batches of a config, on device -----------------------------------------------

def make_stream(config, train_seqs, length: int = 0) -> TrainStream:
  """Windows of `length` items (default: model.max_seq_length)."""
  return TrainStream(
      train_seqs, config.train.batch_size, length or config.model.max_seq_length, config.seed,
      prop_sliding_window=config.train.prop_sliding_window,
      static_copies=config.masking.dupe_factor if config.masking.mode == "static" and config.model.kind == "bert4rec" else 0,
      length_buckets=bool(config.train.get("length_buckets", False)))


def _slots(max_seq_length: int, masking_config, kind: str, next_item_positions: int) -> int:
  """P, the target slots a window has: masking's max_predictions_per_seq, or with kind="sasrec"
  (the next-item targets) L, or next_item_positions when that is set."""
  if kind == "sasrec":
    return min(next_item_positions, max_seq_length) if next_item_positions else max_seq_length
  return masking_config.max_predictions_per_seq


def _used_slots(n, max_seq_length: int, masking_config, kind: str, next_item_positions: int) -> np.ndarray:
  """Target slots used by windows of n items [...]: at most min(P, n, max(1, ceil(n *
  masked_lm_prob))) (the device rounds; ceil bounds it); with kind="sasrec", min(P, n - 1)."""
  n = np.asarray(n)
  p_max = _slots(max_seq_length, masking_config, kind, next_item_positions)
  if kind == "sasrec":
    return np.minimum(np.maximum(n - 1, 0), p_max)
  return np.minimum(np.minimum(p_max, n), np.maximum(1, np.ceil(n * masking_config.masked_lm_prob)))


def _slot_bound(per_device: int, max_seq_length: int, masking_config, num_devices: int, batch: int, kind: str,
                next_item_positions: int, every: int = 1) -> int:
  """A shard's used slots rounded up to a quarter step between powers of two, at most its P x rows
  (its rows that carry the loss: one in `every`)."""
  p_max = _slots(max_seq_length, masking_config, kind, next_item_positions)
  return min(batch // num_devices // every * p_max, bucket(per_device, floor=32, steps=4))


def _shard_slots(used: np.ndarray, every: int) -> np.ndarray:
  """[..., devices, rows] used slots -> [..., devices] the most any shard's loss can use: all rows,
  or with train.masked_loss_every = k the fullest row of each group of k (`losses.masked_rows`
  takes one row of each group at an offset drawn on device)."""
  if every > 1:
    used = used.reshape(*used.shape[:-1], used.shape[-1] // every, every).max(axis=-1)
  return used.sum(axis=-1)


def target_bucket(lengths: np.ndarray, max_seq_length: int, masking_config, num_devices: int,
                  kind: str = "bert4rec", next_item_positions: int = 0, every: int = 1) -> int:
  """A static upper bound on the used target slots of any device's shard of a global batch whose
  windows hold `lengths` [B] items (`_used_slots`), rounded up to a quarter step between powers
  of two (at most 25% over) so that only a few step shapes are ever compiled. Lengths need no
  item reads, so every process computes the same bound. every: the masked-item loss's
  train.masked_loss_every."""
  used = _used_slots(lengths, max_seq_length, masking_config, kind, next_item_positions)
  per_device = int(_shard_slots(used.reshape(num_devices, -1), every).max())
  return _slot_bound(per_device, max_seq_length, masking_config, num_devices, len(used), kind, next_item_positions,
                     every)


def target_shapes(config, devices) -> str:
  """train.target_shapes resolved: "batch" (each batch's own bound: the fewest wasted slots, a
  compilation per new bound) or "run" (one bound for the run: one compilation). "auto": batch on
  CPU, where a compilation takes a second or two and the output layer is much of a step; run on
  an accelerator, where a compilation takes 10-50 s and the slots are cheap (on an H200,
  configs/beauty.py's batches asked for 7 bounds and trained 38 steps in 96 s, compiling). A
  length-bucketed stream has one bound per width either way: with "batch" the most slots that
  width's batches use (`width_bounds`, found before the first batch: a few seconds over a long
  schedule), with "run" that of full windows."""
  chosen = config.train.get("target_shapes", "auto")
  if chosen == "auto":
    return "batch" if devices[0].platform == "cpu" else "run"
  return chosen


WIDTH_BOUND_STEPS = 50_000  # width_bounds reads at most this many steps' lengths (a few seconds)


def _step_losses(config, next_item: bool) -> tuple:
  """(kind, rows in which one carries it) per loss of a step: the model's loss (the masked-item
  loss reads one window in train.masked_loss_every), then with the next-item loss ("sasrec"'s
  targets) every window."""
  first = (config.model.kind, losses.masked_loss_every(config))
  return (first, ("sasrec", 1)) if next_item else (first,)


def _shard_most(lengths, stream, config, num_global: int, next_item: bool, keep: int) -> tuple:
  """The most target slots any device's shard of a batch whose windows hold `lengths` items uses,
  exactly, per loss (`_step_losses`)."""
  return tuple(int(_shard_slots(_used_slots(lengths, stream.max_seq_length, config.masking, kind, keep)
                                .reshape(num_global, -1), every).max()) for kind, every in _step_losses(config, next_item))


def width_bounds(stream, config, num_global: int, start: int, stop: int) -> dict:
  """A length-bucketed stream's bounds: {width: the most target slots any shard of any batch of
  that width among steps start..stop - 1 uses (per loss, a tuple)}, exactly: still one compiled
  step per width, without the slots of windows assumed full (a batch of width 16 holds windows of
  9-16 items; every padded slot costs the output layer as a target does). On the recipe's stream of
  experiments/benchmark.py's beauty_like_16k shape, 2,000 steps: 3,586 slots a step (both losses)
  where full windows had 4,485, for 2,258 targets. Read from window lengths alone (every process finds the same), over at most WIDTH_BOUND_STEPS steps;
  a later batch that needs more gets its width's full-window bound (`_bounds`)."""
  next_item, keep = bool(losses.next_item_loss_weight(config)), losses.next_item_positions(config)
  most = {}
  for step in range(start, min(max(stop, start + 1), start + WIDTH_BOUND_STEPS)):
    lengths = stream.lengths(step)
    width = window_width(int(lengths.max()), stream.max_seq_length)
    own = _shard_most(lengths, stream, config, num_global, next_item, keep)
    most[width] = tuple(map(max, most.get(width, own), own))
  return {w: tuple(max(1, m) for m in ms) for w, ms in most.items()}


def _bounds(lengths, stream, config, num_global: int, next_item: bool, keep: int, widths: Optional[dict] = None):
  """The static target-slot bound(s) of a batch whose windows hold `lengths` items; with a
  length-bucketed stream its width's entry of `widths` (`width_bounds`) where that holds it."""
  if widths is not None:
    held = widths.get(window_width(int(lengths.max()), stream.max_seq_length))
    if held is not None and all(o <= h for o, h in zip(_shard_most(lengths, stream, config, num_global, next_item, keep),
                                                       held)):
      return held if next_item else held[0]
  if stream.length_buckets:  # one bound per width (every window full): one compiled step per width
    lengths = np.full(len(lengths), window_width(int(lengths.max()), stream.max_seq_length))
  bound = target_bucket(lengths, stream.max_seq_length, config.masking, num_global, config.model.kind, keep,
                        losses.masked_loss_every(config))
  if next_item:
    return bound, target_bucket(lengths, stream.max_seq_length, config.masking, num_global, "sasrec", keep)
  return bound


def run_bounds(stream, config, num_global: int, start: int, stop: int):
  """The bound(s) every batch of steps start..stop - 1 fits in: the largest of their own
  (`_bounds`; bucketing is monotone, so the bound of the run's fullest shard). From window
  lengths alone (no item is read), so every process finds the same; about a second for
  configs/ml1m.py's 30,000 steps of 256 windows."""
  next_item, keep = bool(losses.next_item_loss_weight(config)), losses.next_item_positions(config)
  step_losses = _step_losses(config, next_item)
  most = [0] * len(step_losses)
  for block in stream.lengths_of_steps(start, max(stop, start + 1)):
    for i, (kind, every) in enumerate(step_losses):
      used = _used_slots(block, stream.max_seq_length, config.masking, kind, keep)
      most[i] = max(most[i], int(_shard_slots(used.reshape(len(block), num_global, -1), every).max()))
  bounds = tuple(_slot_bound(m, stream.max_seq_length, config.masking, num_global, stream.batch_size, kind, keep, e)
                 for m, (kind, e) in zip(most, step_losses))
  return bounds if next_item else bounds[0]


def batch_iterator(config, stream, start: int, devices, stop: Optional[int] = None, first: int = 0):
  """(device batch, num_targets) pairs from step `start` (up to `stop`), staged on device
  `train.prefetch` ahead (0: each put synchronously when used). num_targets = 0 when target
  compaction is off. With several processes each builds only its block of every global batch.
  `target_shapes` says whether each batch gets its own bound or the run's: the one of steps
  `first` (the stream's first step) to `stop` or train.num_train_steps, whatever step the run
  resumes at, so a resumed run compiles the step an uninterrupted one did (a batch past the
  schedule that needs more gets its own)."""
  block = parallel.batch_block(config.train.batch_size)
  num_global = parallel.global_device_count(devices)
  next_item = bool(losses.next_item_loss_weight(config))  # the next-item loss has its own slots
  keep = losses.next_item_positions(config)
  fixed = widths = None
  end = stop if stop is not None else config.train.num_train_steps
  shapes = target_shapes(config, devices) if config.train.compact_targets else ""
  if shapes == "batch" and stream.length_buckets:  # on an accelerator slots are cheap: no pass over the schedule
    widths = width_bounds(stream, config, num_global, first, end)
  elif shapes == "run" and not stream.length_buckets:
    fixed = run_bounds(stream, config, num_global, first, end)

  def host():
    for step, b in stream.batches(start, block):
      if stop is not None and step >= stop:
        return
      if not config.train.compact_targets:
        yield b, 0
        continue
      bound = _bounds(stream.lengths(step), stream, config, num_global, next_item, keep, widths)
      if fixed is not None:
        bound = tuple(map(max, bound, fixed)) if next_item else max(bound, fixed)
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
  first = tc.warmup_seq_steps if tc.get("warmup_seq_length", 0) else 0
  yield from batch_iterator(config, make_stream(config, train_seqs), start, devices, first=first)
