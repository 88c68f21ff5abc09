"""Non-neural baselines run by the same pipeline and metrics as the models (config.model.kind):
most_popular (training counts; ranked by `evaluate.popularity_scorer`) and markov, a
first-order Markov chain, exact, in NumPy.

The Markov chain scores item j for a user whose last history item is i by the number of times
j directly followed i in the training sequences, and orders items with equal counts by their
training popularity (most users' last item was followed by few distinct items, so without it
most of the catalogue would tie at 0). Items equal in both still tie, and as everywhere in this
package every competitor scoring >= the target counts against it. Ranks are those of
`evaluate.scan_catalogue`: columns are item tokens - 1, history items other than the target
are not ranked when excluded.
"""
from typing import Dict, Optional

import numpy as np

from bert4rec_jax import evaluate
from bert4rec_jax.preprocess import EvalSplit, Sequences

KINDS = ("most_popular", "markov")


class MarkovChain:
  """Item-to-item transition counts from training sequences, stored as CSR rows by source."""

  def __init__(self, train: Sequences, num_items: int):
    train = train.compact()  # adjacent tokens of one buffer: views hold tokens outside their sequences
    items = train.items.astype(np.int64)
    follows = np.ones(max(len(items) - 1, 0), bool)  # pair (k, k+1) lies inside one user
    ends = train.offsets[1:-1] - 1
    follows[ends[(ends >= 0) & (ends < len(follows))]] = False
    src, dst = items[:-1][follows], items[1:][follows]
    keys, counts = np.unique(src * (num_items + 2) + dst, return_counts=True)
    self.num_items = num_items
    self.dst = (keys % (num_items + 2)).astype(np.int64)  # sorted within each source row
    self.counts = counts.astype(np.int64)
    self.row_ptr = np.searchsorted(keys // (num_items + 2), np.arange(num_items + 3))
    self.popularity = np.bincount(items, minlength=num_items + 2).astype(np.int64)  # by token
    self.popularity[0] = self.popularity[num_items + 1] = -1  # PAD / MASK are never items
    self._sorted_popularity = np.sort(self.popularity[1:num_items + 1])

  def row(self, item: int):
    a, b = self.row_ptr[item], self.row_ptr[item + 1]
    return self.dst[a:b], self.counts[a:b]

  def score(self, last: int, tokens: np.ndarray) -> np.ndarray:
    """Transition counts last -> each of `tokens` (0 where never observed)."""
    dst, cnt = self.row(last)
    out = np.zeros(len(tokens), np.int64)
    if len(dst):
      pos = np.minimum(np.searchsorted(dst, tokens), len(dst) - 1)
      hit = dst[pos] == tokens
      out[hit] = cnt[pos[hit]]
    return out

  def _at_least(self, counts, tokens, t_count: int, t_pop: int) -> np.ndarray:
    """Which (count, popularity) pairs order at or above the target's."""
    pop = self.popularity[tokens]
    return (counts > t_count) | ((counts == t_count) & (pop >= t_pop))

  def ranks(self, split: EvalSplit, exclude_history: bool = True, negatives: Optional[np.ndarray] = None,
            negative_valid: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """{'full': [U]} and with negatives ([U, K] columns) also {'sampled': [U]}."""
    n = len(split.rows)
    full = np.zeros(n, np.int64)
    sampled = np.zeros(n, np.int64) if negatives is not None else None
    for u in range(n):
      hist = split.history[u]
      target = int(split.targets[u])
      last = int(hist[-1]) if len(hist) else 0
      t_count, t_pop = int(self.score(last, np.array([target]))[0]), int(self.popularity[target])
      excluded = np.setdiff1d(hist, [target]) if exclude_history else np.zeros(0, np.int64)
      dst, cnt = self.row(last)
      keep = (dst != target) & ~np.isin(dst, excluded)
      rank = int(self._at_least(cnt[keep], dst[keep], t_count, t_pop).sum())
      if t_count == 0:  # items never seen after `last` tie on count: the more popular ones beat the target
        pop_ge = len(self._sorted_popularity) - np.searchsorted(self._sorted_popularity, t_pop)
        off_row = np.setdiff1d(excluded, dst)
        rank += int(pop_ge - (self.popularity[dst] >= t_pop).sum() - 1  # minus row items and the target
                    - (self.popularity[off_row] >= t_pop).sum())  # minus excluded items off the row
      full[u] = rank
      if sampled is not None:
        negs = negatives[u][negative_valid[u]] + 1
        sampled[u] = int(self._at_least(self.score(last, negs), negs, t_count, t_pop).sum())
    out = {"full": full}
    if sampled is not None:
      out["sampled"] = sampled
    return out

  def top_items(self, history: Sequences, k: int, exclude_history: bool = True) -> list:
    """[U] arrays of at most k recommended tokens per user: the items that followed the user's last
    item most often, ties and the rest of the list by training popularity, then by token (fewer
    than k when fewer items are left outside the history)."""
    popularity = self.popularity[1:self.num_items + 1]
    by_popularity = np.argsort(-popularity, kind="stable") + 1  # tokens, most popular first
    out = []
    for u in range(len(history)):
      hist = history[u]
      dst, cnt = self.row(int(hist[-1])) if len(hist) else (np.zeros(0, np.int64), np.zeros(0, np.int64))
      order = np.lexsort((-popularity[dst - 1], -cnt)) if len(dst) else np.zeros(0, np.int64)
      seen = set(hist.tolist()) if exclude_history else set()
      picked = [t for t in dst[order].tolist() if t not in seen][:k]
      if len(picked) < k:
        chosen = set(picked)
        for t in by_popularity.tolist():
          if t not in seen and t not in chosen:
            picked.append(t)
            if len(picked) == k:
              break
      out.append(np.asarray(picked, np.int64))
    return out


def split_ranks(kind: str, ev: "evaluate.Evaluator", train: Sequences, num_items: int, exclude_history: bool,
                chain: Optional[MarkovChain] = None) -> Dict[str, np.ndarray]:
  """A baseline's ranks for the evaluator's users, with the evaluator's own negatives: the one
  place both the pipeline and the reproduction report score baselines."""
  if kind == "most_popular":
    return ev.ranks(evaluate.popularity_scorer, evaluate.popularity_params(train, num_items))
  chain = chain or MarkovChain(train, num_items)
  negatives, valid = ev.negatives() or (None, None)
  return chain.ranks(ev.split, exclude_history=exclude_history, negatives=negatives, negative_valid=valid)
