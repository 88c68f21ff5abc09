"""Ranking metrics from the rank of the held-out item, and the sampled protocol's negatives.

rank = #{ranked items scoring >= the target, other than the target}: 0 is the best rank, and
ties count against the target, so a model that scores everything the same gets the worst rank,
never the best. Ranks are counted on device (`evaluate.scan_catalogue`, no sort); the metrics
here are exact means over users on the host.
"""
from typing import Dict, Sequence

import numpy as np


def _uniform(seed: int, keys: np.ndarray, count: int) -> np.ndarray:
  """[len(keys), count] uniforms in [0, 1), a pure function of (seed, key, column).

  A counter-based generator (SplitMix64 finaliser over the counter), so row r's numbers do not
  depend on which other rows are drawn with it, and a longer draw extends a shorter one.
  """
  with np.errstate(over="ignore"):
    x = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
         + keys.astype(np.uint64)[:, None] * np.uint64(0xD1B54A32D192ED03)
         + np.arange(count, dtype=np.uint64)[None, :] * np.uint64(0x8CB92BA72F3D8DD7))
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
  return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def sample_negatives(user_keys: np.ndarray, blocked, weights: np.ndarray, num_negatives: int,
                     seed: int, max_draws: int = 1 << 20):
  """Per-user negatives drawn without replacement with probability proportional to `weights`.

  Successive sampling: draw item columns i.i.d. from `weights`, skip blocked items (the user's
  history and target) and repeats, keep the first `num_negatives`. Each user's draws come from
  its own counter stream keyed by (seed, user_keys[u]), so they do not depend on batching or on
  which other users are evaluated. Vectorised; rows that need more draws get more, doubling.

  user_keys [U] int; blocked: Sequences of blocked item tokens per user (1..N); weights [N] >= 0.
  Returns (negatives [U, K] int32 column indices, valid [U, K] bool); valid is False only when
  a user has fewer than K drawable items.
  """
  n = len(weights)
  k = num_negatives
  u_count = len(user_keys)
  cdf = np.cumsum(weights, dtype=np.float64)
  # Sorted keys row * (N + 1) + column of every blocked (row, item) pair, for membership tests.
  lengths = blocked.lengths
  blocked_keys = np.unique(np.repeat(np.arange(u_count, dtype=np.int64), lengths) * (n + 1)
                           + blocked.items.astype(np.int64) - 1)
  # Items a user can get: those of positive weight that are not blocked for it (a blocked item of
  # weight 0, such as a target never seen in training, was never drawable: not subtracted).
  blocked_drawable = blocked_keys[weights[blocked_keys % (n + 1)] > 0] // (n + 1)
  drawable = (weights > 0).sum() - np.bincount(blocked_drawable, minlength=u_count)
  want = np.minimum(k, np.maximum(drawable, 0))  # [U] how many each user can get
  negatives = np.zeros((u_count, k), np.int32)
  valid = np.zeros((u_count, k), bool)
  todo = np.arange(u_count)
  draws = 2 * k + 16
  while len(todo):
    cand = np.searchsorted(cdf, _uniform(seed, user_keys[todo], draws) * cdf[-1], side="right")  # [R, M]
    cand = np.minimum(cand, n - 1)
    pair = todo[:, None].astype(np.int64) * (n + 1) + cand
    pos = np.minimum(np.searchsorted(blocked_keys, pair), max(len(blocked_keys) - 1, 0))
    ok = blocked_keys[pos] != pair if len(blocked_keys) else np.ones(pair.shape, bool)
    order = np.argsort(cand, axis=1, kind="stable")  # equal items keep draw order: first is earliest
    sorted_c = np.take_along_axis(cand, order, axis=1)
    repeat = np.zeros(cand.shape, bool)
    np.put_along_axis(repeat, order[:, 1:], sorted_c[:, 1:] == sorted_c[:, :-1], axis=1)
    ok &= ~repeat
    rank = np.cumsum(ok, axis=1)
    done = rank[:, -1] >= want[todo]
    if draws >= max_draws:
      done[:] = True
    rows, cols = np.nonzero(ok & (rank <= k) & done[:, None])
    slot = rank[rows, cols] - 1
    negatives[todo[rows], slot] = cand[rows, cols]
    valid[todo[rows], slot] = True
    todo = todo[~done]
    draws *= 2
  return negatives, valid


def summarize(ranks: np.ndarray, ks: Sequence[int], prefix: str = "", with_rank100: bool = True) -> Dict[str, float]:
  """Means over users of HR@k, NDCG@k, MRR and mean rank (1-based); rank100 counts.

  HR@k = [rank < k]; NDCG@k = [rank < k] / log2(rank + 2) (one relevant item, so IDCG = 1);
  MRR = 1 / (rank + 1). rank100 = number of users whose target ranks in the top 100.
  """
  ranks = np.asarray(ranks, dtype=np.float64)
  if ranks.size == 0:
    raise ValueError("no users to summarise")
  out = {}
  for k in ks:
    hit = ranks < k
    out[f"{prefix}hr@{k}"] = float(hit.mean())
    out[f"{prefix}ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
  out[f"{prefix}mrr"] = float((1.0 / (ranks + 1.0)).mean())
  out[f"{prefix}mean_rank"] = float((ranks + 1.0).mean())
  if with_rank100:
    out[f"{prefix}rank100"] = int((ranks < 100).sum())
    out[f"{prefix}rank100_percent"] = float(100.0 * (ranks < 100).mean())
  out[f"{prefix}num_users"] = int(ranks.size)
  return out
