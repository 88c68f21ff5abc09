"""Leave-one-out evaluation of any scorer: full ranking and sampled ranking, on device.

A `Scorer` gives every real item a score for the [MASK] slot at position L - 1, in factored
form (query x table), so the catalogue is scanned in chunks (`eval.item_chunk_size`) and a
1M-item catalogue never needs a [batch, N] score matrix.

Sampled protocol (the BERT4Rec paper's): per user, `num_negatives` items drawn without
replacement, by popularity (or uniformly), from items outside the user's history and target;
the draw is keyed by the user's row and the seed, so every model is ranked against the same
negatives.
"""
import functools
from typing import Callable, Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from bert4rec_jax import input_pipeline, metrics, parallel
from bert4rec_jax.errors import ConfigError
from bert4rec_jax.preprocess import EvalSplit, ItemVocab, Sequences

def _matmul(a, b):
  """a @ b at full float32 precision: ranks compare scores, so a GPU's default TF32 matmul (about
  3 significant digits) would tie or swap items whose scores differ less than that, and the
  popularity fallback's counts above 2,048 would round together."""
  return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


class Scorer(NamedTuple):
  """Scores of every real item for the [MASK] slot at position L - 1, in factored form:
  scores = query(params, item_ids)[0] @ table(params).T, i.e. [b, D] x [N, D] -> [b, N] (a
  bias rides in a constant column). Factored, the catalogue can be scanned in chunks, so a
  [b, N] score matrix never has to exist. The model, the popularity baseline and the
  cold-start fallback are all scorers, ranked by exactly the same code.
  """
  query: Callable  # (params, item_ids [b, L]) -> (query [b, D], hidden [b, H] or None)
  table: Callable  # params -> [N, D]


def model_scorer(model) -> Scorer:
  def query(params, item_ids):
    h, hidden = model.apply({"params": params}, item_ids, method=model.query_last)  # [b, H], [b, H]
    return jnp.concatenate([h, jnp.ones_like(h[:, :1])], axis=1), hidden  # [b, H + 1]

  def table(params):
    return model.apply({"params": params}, method=model.output_table)  # [N, H + 1]
  return Scorer(query, table)


def _popularity_query(params, item_ids):
  return jnp.ones((item_ids.shape[0], 1), jnp.float32), None


def _popularity_table(params):
  return params.astype(jnp.float32)[:, None]


# Most-popular baseline: params is the [N] training count of every item.
popularity_scorer = Scorer(_popularity_query, _popularity_table)


def with_popularity_fallback(scorer: Scorer) -> Scorer:
  """A scorer over params (inner_params, popularity [N]) that scores a user with an empty
  history (nothing but PAD before the [MASK] slot) by popularity instead of `scorer`:
  query [q * (1 - e), e] against table [T, popularity], e = 1 for an empty history."""
  def query(params, item_ids):
    q, hidden = scorer.query(params[0], item_ids)
    empty = jnp.all(item_ids[:, :-1] == 0, axis=1, keepdims=True).astype(q.dtype)  # [b, 1]
    return jnp.concatenate([q * (1.0 - empty), empty], axis=1), hidden

  def table(params):
    return jnp.concatenate([scorer.table(params[0]), params[1].astype(jnp.float32)[:, None]], axis=1)
  return Scorer(query, table)


def popularity_params(train: Sequences, num_items: int) -> np.ndarray:
  """[N] float32 count of each item in the training sequences (no held-out item leaks in)."""
  return train.token_counts(num_items + 2)[1:num_items + 1].astype(np.float32)


def scan_catalogue(query, table, *, chunk: int, targets=None, history=None, negatives=None, negative_valid=None,
                   top_k: int = 0):
  """Ranks / top-K over the catalogue from factored scores, `chunk` items at a time.

  query [b, D], table [N, D]; targets [b] columns (None at inference); history [b, W] item
  tokens excluded from ranking and from the top-K (0 = PAD; the target is never excluded);
  negatives [b, K] columns with negative_valid [b, K]. Returns {'full': [b] rank of the target
  (competitors scoring >= it, ties against the target), 'sampled': [b], 'top_items': [b, k]
  tokens, 'top_scores': [b, k]} as applicable. With more than one chunk, a first pass reads
  the target's (and negatives') scores from the very same chunk products the second pass
  compares against, so chunking changes no rank.
  """
  n, b = table.shape[0], query.shape[0]
  num_chunks = -(-n // chunk)
  chunk = min(chunk, n)
  table = jnp.pad(table, ((0, num_chunks * chunk - n), (0, 0)))
  rows = jnp.arange(b)[:, None]

  def scores_of(c):
    return _matmul(query, jax.lax.dynamic_slice_in_dim(table, c * chunk, chunk, axis=0).T)  # [b, C]

  def pick(s, start, cols, old):  # the scores of columns `cols` [b, K] that fall in this chunk
    inside = (cols >= start) & (cols < start + chunk)
    return jnp.where(inside, jnp.take_along_axis(s, jnp.clip(cols - start, 0, chunk - 1), axis=1), old)

  def first(c, carry, s=None):
    s = scores_of(c) if s is None else s
    t, neg = carry
    t = pick(s, c * chunk, targets[:, None], t)
    if negatives is not None:
      neg = pick(s, c * chunk, negatives, neg)
    return t, neg

  def second(c, carry, t, s=None):
    s = scores_of(c) if s is None else s
    count, top_v, top_i = carry
    start = c * chunk
    cols = start + jnp.arange(chunk)[None, :]  # [1, C]
    shown = cols < n
    if history is not None:
      h = history - 1  # tokens -> columns; PAD -> -1 (outside every chunk)
      local = jnp.where((h >= start) & (h < start + chunk), h - start, chunk)
      in_history = jnp.zeros((b, chunk + 1), jnp.bool_).at[rows, local].set(True)[:, :chunk]
      shown &= ~in_history
    if targets is not None:
      is_target = cols == targets[:, None]
      count = count + jnp.sum(_at_least(s, t) & shown & ~is_target, axis=1, dtype=jnp.int32)
      shown |= is_target
    if top_k:  # an item scored NaN is never recommended (nor is an excluded one): it sorts as -inf
      v, i = jax.lax.top_k(jnp.where(shown & ~jnp.isnan(s), s, -jnp.inf), min(top_k, chunk))
      merged_v, merged_i = jnp.concatenate([top_v, v], axis=1), jnp.concatenate([top_i, i + start], axis=1)
      top_v, sel = jax.lax.top_k(merged_v, top_k)
      top_i = jnp.take_along_axis(merged_i, sel, axis=1)
    return count, top_v, top_i

  k = negatives.shape[1] if negatives is not None else 0
  carry1 = (jnp.zeros((b, 1), jnp.float32), jnp.zeros((b, k), jnp.float32))
  carry2 = (jnp.zeros((b,), jnp.int32), jnp.full((b, top_k), -jnp.inf), jnp.zeros((b, top_k), jnp.int32))
  if num_chunks == 1:  # one product serves both passes
    s = scores_of(0)
    t, neg = first(0, carry1, s) if targets is not None else carry1
    count, top_v, top_i = second(0, carry2, t, s)
  else:
    t, neg = jax.lax.fori_loop(0, num_chunks, first, carry1) if targets is not None else carry1
    count, top_v, top_i = jax.lax.fori_loop(0, num_chunks, lambda c, cr: second(c, cr, t), carry2)
  out = {}
  if targets is not None:
    out["full"] = count
  if negatives is not None:
    out["sampled"] = jnp.sum(_at_least(neg, t) & negative_valid, axis=1, dtype=jnp.int32)
  if top_k:
    out["top_items"], out["top_scores"] = top_i + 1, top_v
  return out


def _at_least(s, t):
  """Which competitors count against the target: those scoring >= it, and every one when either
  score is NaN, so a model that scores NaN gets the worst rank, never the best (NaN compares false)."""
  return (s >= t) | jnp.isnan(s) | jnp.isnan(t)


def sort_ranks(query, table, targets, history=None):
  """The textbook full ranking, kept only to measure what counting saves (eval.rank_method=sort):
  score the whole catalogue at once, sort every row, find the target. Same ranks as
  `scan_catalogue` (ties against the target, history excluded), but O(N log N) per user and a
  [b, N] matrix in memory."""
  s = _matmul(query, table.T)  # [b, N]
  b, n = s.shape
  rows = jnp.arange(b)
  is_target = jnp.arange(n)[None, :] == targets[:, None]
  t = s[rows, targets]
  s = jnp.where(jnp.isnan(s), jnp.inf, s)  # a NaN competitor counts against the target (as _at_least)
  excluded = jnp.zeros((b, n), jnp.bool_)
  if history is not None:  # excluded items sort last, whatever their scores; PAD (-1) lands in a spare column
    h = jnp.where(history > 0, history - 1, n)
    excluded = jnp.zeros((b, n + 1), jnp.bool_).at[rows[:, None], h].set(True)[:, :n] & ~is_target
  s = s.at[rows, targets].set(t)
  rank = _position_of_target(s, is_target, excluded)
  # A NaN target ranks below every competitor shown (ranked), as in the counting method.
  return jnp.where(jnp.isnan(t), n - 1 - excluded.sum(axis=1), rank).astype(jnp.int32)


def _position_of_target(s, is_target, excluded=None):
  """Position of the target in each row sorted by descending score; ties sort before the target,
  `excluded` items after every other (a key of its own: as -inf scores they would tie with a target
  scoring -inf and count against it, which the counting method never does)."""
  is_target = jnp.broadcast_to(is_target, s.shape)
  keys = (is_target, -s) if excluded is None else (is_target, -s, excluded)
  order = jnp.lexsort(keys, axis=1)  # primary key last: excluded, score, then the target after its ties
  return jnp.argmax(jnp.take_along_axis(is_target, order, axis=1), axis=1).astype(jnp.int32)


def _eval_step(params, batch, *, scorer: Scorer, exclude_history: bool, top_k: int, chunk: int,
               rank_method: str = "count"):
  query, _ = scorer.query(params, batch["item_ids"])
  table = scorer.table(params)
  history = batch["history"] if exclude_history else None
  by_sort = rank_method == "sort"
  out = scan_catalogue(query, table, chunk=chunk, targets=None if by_sort else batch["targets"] - 1,
                       history=history, negatives=None if by_sort else batch.get("negatives"),
                       negative_valid=batch.get("negative_valid"), top_k=top_k)
  if by_sort:
    out["full"] = sort_ranks(query, table, batch["targets"] - 1, history)
    if "negatives" in batch:  # the sampled protocol sorts its 101 candidates the same way
      cols = jnp.concatenate([batch["targets"][:, None] - 1, batch["negatives"]], axis=1)
      s = jnp.einsum("bd,bkd->bk", query, table[cols], precision=jax.lax.Precision.HIGHEST)
      t = s[:, 0]
      s = jnp.where(jnp.isnan(s), jnp.inf, s).at[:, 0].set(t)
      invalid = jnp.concatenate([jnp.zeros_like(batch["targets"][:, None], bool), ~batch["negative_valid"]], 1)
      rank = _position_of_target(s, jnp.arange(s.shape[1])[None, :] == 0, invalid)
      out["sampled"] = jnp.where(jnp.isnan(t), batch["negative_valid"].sum(axis=1), rank).astype(jnp.int32)
  return out


_STEPS: Dict[tuple, Callable] = {}


def _shared_step(scorer: Scorer, exclude_history: bool, top_k: int, chunk: int, rank_method: str, devices: tuple):
  """One pmapped evaluation step per scorer and setting, shared by every Evaluator: validation
  during training and the final evaluation of the same split compile once (when their batch
  shapes agree) instead of once per Evaluator."""
  key = (scorer, exclude_history, top_k, chunk, rank_method, devices)
  if key not in _STEPS:
    if len(_STEPS) >= 32:  # a long-lived process (a notebook, the tests) evaluating many models
      _STEPS.clear()
    _STEPS[key] = parallel.pmap(functools.partial(
        _eval_step, scorer=scorer, exclude_history=exclude_history, top_k=top_k, chunk=chunk,
        rank_method=rank_method), list(devices))
  return _STEPS[key]


class Evaluator:
  """Ranks the held-out items of one split under any scorer."""

  def __init__(self, split: EvalSplit, vocab: ItemVocab, *, eval_config, max_seq_length: int,
               devices, seed: int, max_users: int = 0):
    self.split, self.vocab, self.config = split, vocab, eval_config
    self.devices, self.seed, self.max_seq_length = devices, seed, max_seq_length
    if eval_config.get("rank_method", "count") not in ("count", "sort"):
      raise ConfigError(f"config.eval.rank_method={eval_config.rank_method!r}: use count|sort")
    n = len(split.rows)
    if not isinstance(max_users, (int, np.integer)) or max_users < 0:
      raise ConfigError(f"max_users={max_users!r}: a number of users (0 = all); -1 (from the data) is resolved "
                        "by recipe.resolve before evaluation")
    if max_users and n > max_users:  # a fixed random subset of users, for periodic validation
      self.index = np.sort(np.random.default_rng([seed, 7]).choice(n, max_users, replace=False))
    else:
      self.index = np.arange(n)
    self.block = parallel.process_block(len(self.index))  # this process's users (all, with one process)
    d = len(devices)
    self.batch_size = -(-eval_config.batch_size // d) * d  # round up to a multiple of the devices
    # Users are scored shortest history first, each batch's input cut to the window its longest
    # history needs (a power of two, at most max_seq_length) and its history (for exclusion) to a
    # power of two as well: the model reads a right-aligned window the same at any width (padding
    # is never attended), so a short history costs what it holds, in a few compiled shapes.
    self._order = np.argsort(split.history.lengths[self.index[self.block]], kind="stable")
    self._negatives: Optional[tuple] = None  # (negatives, valid) of this process's block
    self._all_negatives: Optional[tuple] = None  # of every evaluated user, when asked for

  def _host_batches(self, with_negatives: bool):
    """(real rows, batch) over this process's block of users in `_order` (shortest history
    first); an empty block still gives one batch (of padding), so that every process has outputs
    of the same shape to gather."""
    split, index = self.split, self.index[self.block]
    negatives = self._negatives if with_negatives else ()
    lengths = split.history.lengths
    for start in range(0, max(len(index), 1), self.batch_size):
      real = min(self.batch_size, len(index) - start)
      picked = self._order[start:start + self.batch_size]
      rows = index[picked] if real else self.index[:1]
      longest = int(lengths[rows].max())
      width = min(self.max_seq_length, input_pipeline.bucket(longest + 1, floor=8))
      idx, batch = input_pipeline.scoring_batch(split.history, rows, self.batch_size, width, self.vocab.mask_id,
                                                input_pipeline.bucket(longest))
      batch["targets"] = split.targets[idx].astype(np.int32)  # [B]
      if with_negatives:  # padding rows get no valid negative
        for key, values in zip(("negatives", "negative_valid"), negatives):
          chunk = values[picked]
          batch[key] = np.concatenate([chunk, np.zeros((self.batch_size - real,) + chunk.shape[1:], chunk.dtype)])
      yield real, batch

  def _draw_negatives(self, sel: np.ndarray):
    """The sampled protocol's (negatives, valid) for the split's users `sel` alone: each user's
    draws come from its own stream (metrics.sample_negatives), so any subset gets the same ones."""
    if self.config.negative_sampling == "popularity":
      weights = self.vocab.counts.astype(np.float64)
    elif self.config.negative_sampling == "uniform":
      weights = np.ones(self.vocab.num_items)
    else:
      raise ValueError(f"config.eval.negative_sampling={self.config.negative_sampling!r}: use popularity|uniform")
    history = self.split.history.select(sel)  # compact, only these users
    # Blocked per user: the whole history and the target.
    blocked = Sequences(offsets=history.offsets + np.arange(len(sel) + 1),
                        items=np.insert(history.items, history.offsets[1:], self.split.targets[sel]))
    return metrics.sample_negatives(self.split.rows[sel], blocked, weights, self.config.num_negatives, seed=self.seed)

  def _ensure_negatives(self) -> None:
    """This process's block of users' negatives, drawn once per split."""
    if self._negatives is None and self.config.num_negatives:
      self._negatives = self._draw_negatives(self.index[self.block])

  def negatives(self):
    """The sampled protocol's (negatives [U, K] item columns, valid [U, K]) for every evaluated
    user in the order of `ranks`, or None when the protocol is off: for scoring the same users
    another way."""
    if not self.config.num_negatives:
      return None
    if parallel.process_count() == 1:  # this process's block is every user: drawn once
      self._ensure_negatives()
      return self._negatives
    if self._all_negatives is None:
      self._all_negatives = self._draw_negatives(self.index)
    return self._all_negatives

  def negative_counts(self) -> Optional[np.ndarray]:
    """[U] how many negatives each evaluated user is ranked against in the sampled protocol (fewer
    than eval.num_negatives when the catalogue outside the user's history is smaller), or None."""
    drawn = self.negatives()
    return None if drawn is None else drawn[1].sum(axis=1)

  def ranks(self, scorer: Scorer, params, replicated: bool = False, top_k: int = 0) -> Dict[str, np.ndarray]:
    """Per-user ranks {'full': [U], 'sampled': [U]} (sampled only when num_negatives > 0), and
    with top_k > 0 also 'top_items' [U, K] (tokens, best first, history excluded as ranked) and
    'top_scores' [U, K] (-inf where no item is left to show)."""
    self._ensure_negatives()
    top_k = min(top_k, self.vocab.num_items)
    step = _shared_step(scorer, self.config.exclude_history, top_k, self.config.item_chunk_size,
                        self.config.get("rank_method", "count"), tuple(self.devices))
    if replicated and parallel.process_count() > 1:  # the train step's copies span every process's devices
      params, replicated = parallel.unreplicate(params), False
    p_params = params if replicated else parallel.replicate(params, self.devices)
    with_negatives = self._negatives is not None
    reals, outs = [], []
    batches = self._host_batches(with_negatives)
    for real, batch in batches:  # dispatch is asynchronous; results are fetched at the end
      reals.append(real)
      outs.append(step(p_params, parallel.put_sharded(batch, self.devices)))
    result = {}
    for name in outs[0]:  # this process's users (back from shortest-first), then every process's, in order
      scored = np.concatenate([parallel.unshard(o[name])[:r] for o, r in zip(outs, reals)])
      local = np.empty_like(scored)
      local[self._order] = scored
      result[name] = parallel.gather_blocks(local, len(self.index))
    return result

  def metrics(self, scorer: Scorer, params, replicated: bool = False, ks=None) -> Dict[str, float]:
    """Metrics at config.eval.ks (or at `ks`)."""
    ranks = self.ranks(scorer, params, replicated)
    return summarize_ranks(ranks, self.config.ks if ks is None else ks)

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
