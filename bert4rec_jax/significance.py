"""Per-user metrics and the statistics to compare models on them: bootstrap confidence
intervals over users and paired tests on the same users.

Ranks are 0-based counts of competitors scoring at least the target (metrics.py), so
HR@k = [rank < k], NDCG@k = [rank < k] / log2(rank + 2), MRR = 1 / (rank + 1): the means of
these per-user values are exactly the metrics in metrics.summarize.
"""
import math
from typing import Dict, Tuple

import numpy as np
from scipy import special


def per_user_metrics(ranks: np.ndarray, name: str) -> np.ndarray:
  """[U] values of one metric ("ndcg@10", "sampled_hr@5", "mrr", ...) from 0-based ranks."""
  r = np.asarray(ranks, np.float64)
  base = name.replace("sampled_", "")
  if base == "mrr":
    return 1.0 / (r + 1.0)
  kind, k = base.split("@")
  if kind not in ("hr", "ndcg"):
    raise ValueError(f"unknown metric {name!r}: use hr@k, ndcg@k or mrr (optionally sampled_)")
  hit = r < int(k)
  return hit.astype(np.float64) if kind == "hr" else np.where(hit, 1.0 / np.log2(r + 2.0), 0.0)


def bootstrap_ci(values: np.ndarray, resamples: int, seed: int = 0, level: float = 0.95) -> Tuple[float, float]:
  """Percentile bootstrap interval of the mean over users (of a paired difference, when
  `values` are per-user differences). Seeded: the same inputs give the same interval."""
  values = np.asarray(values, np.float64)
  rng = np.random.default_rng(seed)
  n = len(values)
  means = np.empty(resamples)
  for i in range(0, resamples, 100):  # blocks keep the index matrix small
    idx = rng.integers(0, n, size=(min(100, resamples - i), n))
    means[i:i + len(idx)] = values[idx].mean(axis=1)
  lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
  return float(lo), float(hi)


def paired_t_test(a: np.ndarray, b: np.ndarray) -> Dict[str, float]:
  """Two-sided paired t-test of mean(a - b) = 0 over the same users: {'diff', 't', 'df', 'p'}."""
  d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  n = len(d)
  if n < 2:
    raise ValueError("a paired t-test needs at least 2 users")
  mean, sd = float(d.mean()), float(d.std(ddof=1))
  if sd == 0.0:
    return {"diff": mean, "t": 0.0 if mean == 0 else math.copysign(math.inf, mean), "df": n - 1,
            "p": 1.0 if mean == 0 else 0.0}
  t = mean / (sd / math.sqrt(n))
  p = 2.0 * float(special.stdtr(n - 1, -abs(t)))  # Student t CDF
  return {"diff": mean, "t": t, "df": n - 1, "p": p}


def holm(pvalues) -> np.ndarray:
  """Holm's step-down adjustment of a family of p-values (one reference against several models and
  metrics): the i-th smallest is multiplied by (m - i + 1), running maxima keep the order, capped
  at 1. Rejecting where the adjusted p < alpha controls the family-wise error rate at alpha
  (Holm, Scand. J. Statist. 1979)."""
  p = np.asarray(pvalues, np.float64)
  order = np.argsort(p, kind="stable")
  m = len(p)
  adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
  out = np.empty(m)
  out[order] = adjusted
  return out
