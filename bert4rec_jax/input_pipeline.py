"""Fixed-shape NumPy batches from CSR sequences: windows, the training stream, eval batches.

Sequences are right-aligned (left padding): the newest item sits at position L - 1. Training
examples are the last L items of each training sequence; evaluation and inference inputs are
the last L - 1 items of the history followed by [MASK] at position L - 1.
"""
import dataclasses
from typing import Iterator, Optional

import numpy as np

from bert4rec_jax.preprocess import PAD, Sequences


def right_aligned(seqs: Sequences, rows: np.ndarray, length: int, append: Optional[int] = None) -> np.ndarray:
  """[len(rows), length] int32: the last items of each sequence, left-padded with PAD.

  With `append` (a token, e.g. MASK), the last `length - 1` items are followed by that token.
  """
  rows = np.asarray(rows, dtype=np.int64)
  n = length - (append is not None)
  starts, ends = seqs.offsets[rows], seqs.offsets[rows + 1]
  idx = ends[:, None] - n + np.arange(n)[None, :]  # [B, n] positions into seqs.items
  window = np.where(idx >= starts[:, None], seqs.items[np.maximum(idx, 0)], PAD).astype(np.int32)
  if append is not None:
    window = np.concatenate([window, np.full((len(rows), 1), append, np.int32)], axis=1)
  return window


@dataclasses.dataclass
class TrainStream:
  """The training batches as a pure function of (seed, step).

  The examples form an endless stream of epochs, each a fresh permutation of all examples
  seeded by (seed, epoch); batch `step` is stream positions [step * B, (step + 1) * B). So
  resuming at any step reproduces the exact batches of an uninterrupted run, and no example
  is dropped at epoch ends.
  """
  seqs: Sequences
  batch_size: int
  max_seq_length: int
  seed: int

  def __post_init__(self):
    self._cached_epoch, self._cached_perm = -1, None

  @property
  def num_examples(self) -> int:
    return len(self.seqs)

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch != self._cached_epoch:
      rng = np.random.default_rng([self.seed, epoch])
      self._cached_perm, self._cached_epoch = rng.permutation(self.num_examples), epoch
    return self._cached_perm

  def example_ids(self, step: int) -> np.ndarray:
    """[B] int64 global example indices of batch `step` (distinct per stream position)."""
    pos = step * self.batch_size + np.arange(self.batch_size, dtype=np.int64)
    epochs, within = np.divmod(pos, self.num_examples)
    out = np.empty(self.batch_size, dtype=np.int64)
    for e in np.unique(epochs):  # at most a few epochs per batch
      sel = epochs == e
      out[sel] = self._permutation(int(e))[within[sel]]
    return out

  def batch(self, step: int) -> dict:
    ids = self.example_ids(step)
    pos = step * self.batch_size + np.arange(self.batch_size, dtype=np.int64)
    return {
        "item_ids": right_aligned(self.seqs, ids, self.max_seq_length),  # [B, L]
        # Masking is keyed by stream position, so a user's copies in different epochs differ.
        "example_ids": (pos % np.iinfo(np.int32).max).astype(np.int32),  # [B]
    }

  def batches(self, start_step: int) -> Iterator[dict]:
    step = start_step
    while True:
      yield self.batch(step)
      step += 1


def eval_batches(history: Sequences, rows: np.ndarray, batch_size: int, max_seq_length: int,
                 mask_id: int) -> Iterator[dict]:
  """Batches of a fixed size over `rows`; the last one is padded, with `valid` marking real rows."""
  for start in range(0, len(rows), batch_size):
    chunk = rows[start:start + batch_size]
    n = len(chunk)
    padded = np.concatenate([chunk, np.full(batch_size - n, chunk[0], dtype=chunk.dtype)])
    yield {
        "rows": padded,
        "item_ids": right_aligned(history, padded, max_seq_length, append=mask_id),  # [B, L]
        "valid": np.arange(batch_size) < n,  # [B]
    }
