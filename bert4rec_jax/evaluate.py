"""Leave-one-out evaluation of any scorer: full ranking and sampled ranking, on device.

A *scorer* is a pure function `(params, item_ids [b, L]) -> (scores [b, N], hidden [b, H] | None)`
giving a score to every real item for the [MASK] slot at position L - 1. The model and the
popularity baseline are both scorers, so both are ranked by exactly the same code.

Sampled protocol (the BERT4Rec paper's): per user, `num_negatives` items drawn without
replacement, by popularity (or uniformly), from items outside the user's history and target;
the draw is keyed by the user's row and the seed, so every model is ranked against the same
negatives.
"""
import functools
import logging
from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from bert4rec_jax import input_pipeline, metrics, parallel
from bert4rec_jax.preprocess import EvalSplit, ItemVocab, Sequences

Scorer = Callable  # (params, item_ids [b, L]) -> (scores [b, N], hidden [b, H] or None)


def model_scorer(model) -> Scorer:
  """Scores at the last position (the [MASK] slot) of right-aligned inputs."""
  def score(params, item_ids):
    return model.apply({"params": params}, item_ids, method=model.score_last)  # [b, N], [b, H]
  return score


def popularity_scorer(params, item_ids):
  """Most-popular baseline: params is the [N] training count of every item."""
  return jnp.broadcast_to(params.astype(jnp.float32), (item_ids.shape[0], params.shape[0])), None


def with_popularity_fallback(score_fn: Scorer) -> Scorer:
  """A scorer over params (inner_params, popularity [N]) that scores a user with an empty
  history (nothing but PAD before the [MASK] slot) by popularity instead of the model."""
  def score(params, item_ids):
    inner, popularity = params
    scores, hidden = score_fn(inner, item_ids)
    empty = jnp.all(item_ids[:, :-1] == 0, axis=1)  # [b]
    return jnp.where(empty[:, None], popularity[None, :].astype(scores.dtype), scores), hidden
  return score


def popularity_params(train: Sequences, num_items: int) -> np.ndarray:
  """[N] float32 count of each item in the training sequences (no held-out item leaks in)."""
  return np.bincount(train.items, minlength=num_items + 2)[1:num_items + 1].astype(np.float32)


def _eval_step(params, batch, *, score_fn, num_items: int, exclude_history: bool, top_k: int):
  scores, _ = score_fn(params, batch["item_ids"])  # [b, N]
  targets = batch["targets"] - 1  # token -> column
  if exclude_history:
    # History items are not ranked, except the target itself (a repeat purchase still counts).
    excluded = metrics.history_mask(batch["history"], num_items)  # [b, N]
    excluded &= jnp.arange(num_items)[None, :] != targets[:, None]
  else:
    excluded = jnp.zeros(scores.shape, jnp.bool_)
  out = {"full": metrics.target_ranks(scores, targets, excluded)}
  if "negatives" in batch:
    out["sampled"] = metrics.sampled_ranks(scores, targets, batch["negatives"], batch["negative_valid"])
  if top_k:  # what the user was shown, for per-user prediction files
    out["top_items"] = jax.lax.top_k(jnp.where(excluded, -jnp.inf, scores), top_k)[1] + 1  # [b, K] tokens
  return out


class Evaluator:
  """Ranks the held-out items of one split under any scorer."""

  def __init__(self, split: EvalSplit, vocab: ItemVocab, *, eval_config, max_seq_length: int,
               devices, seed: int, max_users: int = 0):
    self.split, self.vocab, self.config = split, vocab, eval_config
    self.devices, self.seed, self.max_seq_length = devices, seed, max_seq_length
    n = len(split.rows)
    if max_users and n > max_users:  # a fixed random subset of users, for periodic validation
      self.index = np.sort(np.random.default_rng([seed, 7]).choice(n, max_users, replace=False))
    else:
      self.index = np.arange(n)
    d = len(devices)
    self.batch_size = -(-eval_config.batch_size // d) * d  # round up to a multiple of the devices
    # One static history width for the whole split: one compilation.
    self.history_width = input_pipeline.bucket(int(split.history.lengths[self.index].max()))
    self._steps: Dict[int, Callable] = {}
    self._negatives: Optional[np.ndarray] = None

  def _host_batches(self, with_negatives: bool):
    split, n = self.split, len(self.index)
    for start in range(0, n, self.batch_size):
      idx = self.index[start:start + self.batch_size]
      real = len(idx)
      idx = np.concatenate([idx, np.full(self.batch_size - real, idx[0])])
      batch = {
          "rows": split.rows[idx].astype(np.int32),
          "item_ids": input_pipeline.right_aligned(split.history, idx, self.max_seq_length,
                                                   append=self.vocab.mask_id),  # [B, L]
          "history": input_pipeline.right_aligned(split.history, idx, self.history_width),  # [B, Hw]
          "targets": split.targets[idx].astype(np.int32),  # [B]
      }
      if with_negatives:
        negatives, valid = self._negatives
        batch["negatives"] = negatives[start:start + self.batch_size]
        batch["negative_valid"] = valid[start:start + self.batch_size]
        if real < self.batch_size:
          pad = self.batch_size - real
          batch["negatives"] = np.concatenate([batch["negatives"], np.zeros((pad,) + negatives.shape[1:], np.int32)])
          batch["negative_valid"] = np.concatenate([batch["negative_valid"], np.zeros((pad,) + valid.shape[1:], bool)])
      yield real, batch

  def _ensure_negatives(self) -> None:
    """Draws the sampled protocol's negatives once per split, for all of its users."""
    if self._negatives is not None or not self.config.num_negatives:
      return
    if self.config.negative_sampling == "popularity":
      weights = self.vocab.counts.astype(np.float64)
    elif self.config.negative_sampling == "uniform":
      weights = np.ones(self.vocab.num_items)
    else:
      raise ValueError(f"config.eval.negative_sampling={self.config.negative_sampling!r}: use popularity|uniform")
    split = self.split
    # Blocked per user: the whole history and the target.
    blocked = Sequences(offsets=split.history.offsets + np.arange(len(split.rows) + 1),
                        items=np.insert(split.history.items, split.history.offsets[1:], split.targets))
    negatives, valid = metrics.sample_negatives(split.rows, blocked, weights, self.config.num_negatives,
                                                seed=self.seed)
    self._negatives = (negatives[self.index], valid[self.index])

  def ranks(self, score_fn: Scorer, params, replicated: bool = False, top_k: int = 0) -> Dict[str, np.ndarray]:
    """Per-user ranks {'full': [U], 'sampled': [U]} (sampled only when num_negatives > 0), and
    with top_k > 0 also 'top_items' [U, K] (tokens, best first, history excluded as ranked)."""
    self._ensure_negatives()
    top_k = min(top_k, self.vocab.num_items)
    key = (id(score_fn), top_k)
    if key not in self._steps:
      self._steps[key] = parallel.pmap(functools.partial(
          _eval_step, score_fn=score_fn, num_items=self.vocab.num_items,
          exclude_history=self.config.exclude_history, top_k=top_k), self.devices)
    step = self._steps[key]
    p_params = params if replicated else parallel.replicate(params, self.devices)
    with_negatives = self._negatives is not None
    reals, outs = [], []
    batches = self._host_batches(with_negatives)
    for real, batch in batches:  # dispatch is asynchronous; results are fetched at the end
      reals.append(real)
      outs.append(step(p_params, parallel.put_sharded(batch, self.devices)))
    result = {}
    for name in outs[0]:
      result[name] = np.concatenate([parallel.unshard(o[name])[:r] for o, r in zip(outs, reals)])
    return result

  def metrics(self, score_fn: Scorer, params, replicated: bool = False) -> Dict[str, float]:
    ranks = self.ranks(score_fn, params, replicated)
    return summarize_ranks(ranks, self.config.ks)

  @property
  def rows(self) -> np.ndarray:
    """[U] the user row of each evaluated user, in the order of `ranks`."""
    return self.split.rows[self.index]

  @property
  def targets(self) -> np.ndarray:
    return self.split.targets[self.index]


def summarize_ranks(ranks: Dict[str, np.ndarray], ks) -> Dict[str, float]:
  out = metrics.summarize(ranks["full"], ks)
  if "sampled" in ranks:
    out.update(metrics.summarize(ranks["sampled"], [k for k in ks if k <= 100], prefix="sampled_",
                                 with_rank100=False))
    out.pop("sampled_num_users")
  return out


def format_table(rows: Dict[str, Dict[str, float]], keys) -> str:
  """A plain-text table: one column per model, one row per metric."""
  names = list(rows)
  width = max(12, *(len(n) for n in names))
  lines = ["metric".ljust(22) + "".join(n.rjust(width + 2) for n in names)]
  for k in keys:
    cells = []
    for n in names:
      v = rows[n].get(k)
      cells.append(("-" if v is None else (f"{v:d}" if isinstance(v, int) else f"{v:.4f}")).rjust(width + 2))
    lines.append(k.ljust(22) + "".join(cells))
  return "\n".join(lines)


def log_table(title: str, rows, keys) -> str:
  table = format_table(rows, keys)
  logging.info("%s\n%s", title, table)
  return table
