"""Ranking metrics against a brute-force NumPy reference: ties, rank 0, exclusion, sampling."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from bert4rec_jax import metrics


def brute_force_rank(scores, target, excluded):
  """Rank = how many other, non-excluded items score at least as high (ties count against)."""
  return sum(1 for j in range(len(scores))
             if j != target and not excluded[j] and scores[j] >= scores[target])


def brute_force_summary(ranks, ks):
  out = {}
  for k in ks:
    out[f"hr@{k}"] = np.mean([1.0 if r < k else 0.0 for r in ranks])
    out[f"ndcg@{k}"] = np.mean([1.0 / math.log2(r + 2) if r < k else 0.0 for r in ranks])
  out["mrr"] = np.mean([1.0 / (r + 1) for r in ranks])
  out["mean_rank"] = np.mean([r + 1 for r in ranks])
  out["rank100"] = sum(r < 100 for r in ranks)
  out["rank100_percent"] = 100.0 * sum(r < 100 for r in ranks) / len(ranks)
  return out


def test_target_ranks_match_brute_force_with_ties_and_exclusion():
  rng = np.random.default_rng(0)
  b, n = 64, 150
  scores = rng.integers(0, 6, size=(b, n)).astype(np.float32)  # many ties on purpose
  targets = rng.integers(0, n, size=b)
  history = rng.integers(0, n + 1, size=(b, 12))  # tokens, 0 = PAD
  history[:8, 0] = targets[:8] + 1  # the target also in the history: still ranked
  excluded = np.asarray(metrics.history_mask(jnp.asarray(history), n))
  for r in range(b):
    hist_cols = {t - 1 for t in history[r] if t > 0}
    assert set(np.flatnonzero(excluded[r])) == hist_cols
  got = np.asarray(metrics.target_ranks(jnp.asarray(scores), jnp.asarray(targets), jnp.asarray(excluded)))
  want = [brute_force_rank(scores[r], targets[r], excluded[r] & (np.arange(n) != targets[r])) for r in range(b)]
  np.testing.assert_array_equal(got, want)


def test_first_place_gives_hit_at_1_and_ties_rank_last():
  scores = jnp.array([[0.1, 0.9, 0.3], [0.5, 0.5, 0.5], [0.2, 0.1, 0.0]])
  targets = jnp.array([1, 0, 2])
  ranks = np.asarray(metrics.target_ranks(scores, targets, jnp.zeros((3, 3), bool)))
  np.testing.assert_array_equal(ranks, [0, 2, 2])  # constant scores -> worst rank, not best
  s = metrics.summarize(ranks[:1], [1])
  assert s["hr@1"] == 1.0 and s["ndcg@1"] == 1.0 and s["mrr"] == 1.0


def test_exclusion_can_lift_the_target():
  scores = jnp.array([[0.9, 0.8, 0.1]])
  excluded = jnp.array([[True, False, False]])
  assert int(metrics.target_ranks(scores, jnp.array([1]), excluded)[0]) == 0
  assert int(metrics.target_ranks(scores, jnp.array([1]), ~excluded & False)[0]) == 1


def test_summary_matches_brute_force():
  ranks = np.random.default_rng(1).integers(0, 300, size=500)
  ks = [1, 5, 10, 20, 50, 100]
  got, want = metrics.summarize(ranks, ks), brute_force_summary(list(ranks), ks)
  for k, v in want.items():
    assert got[k] == pytest.approx(v, rel=1e-12), k
  assert got["num_users"] == 500


def test_sampled_ranks_match_brute_force():
  rng = np.random.default_rng(2)
  b, n, k = 32, 80, 10
  scores = rng.integers(0, 4, size=(b, n)).astype(np.float32)
  targets = rng.integers(0, n, size=b)
  negatives = rng.integers(0, n, size=(b, k))
  valid = rng.random((b, k)) < 0.8
  got = np.asarray(metrics.sampled_ranks(jnp.asarray(scores), jnp.asarray(targets), jnp.asarray(negatives),
                                         jnp.asarray(valid)))
  want = [sum(1 for j in range(k) if valid[r, j] and scores[r, negatives[r, j]] >= scores[r, targets[r]])
          for r in range(b)]
  np.testing.assert_array_equal(got, want)


def csr(lists):
  from bert4rec_jax.preprocess import Sequences
  return Sequences(offsets=np.cumsum([0] + [len(x) for x in lists]).astype(np.int64),
                   items=np.array([i for x in lists for i in x], np.int32))


def test_negatives_exclude_blocked_items_and_follow_popularity():
  n, k, users = 50, 10, 400
  weights = np.arange(1, n + 1, dtype=np.float64) ** 2
  rng = np.random.default_rng(3)
  blocked = [list(rng.choice(np.arange(1, n + 1), size=rng.integers(1, 15), replace=False)) for _ in range(users)]
  keys = np.arange(users) * 3 + 1
  negs, valid = metrics.sample_negatives(keys, csr(blocked), weights, k, seed=0)
  assert valid.all()
  for r in range(users):
    assert len(set(negs[r])) == k  # without replacement
    assert not set(negs[r] + 1) & set(blocked[r])
  freq = np.bincount(negs.ravel(), minlength=n)
  assert freq[-10:].sum() > 5 * freq[:10].sum()  # popular items are drawn far more often
  # A user's draw depends on (seed, its key) only: not on the other users drawn with it.
  sub = [5, 17, 333]
  negs2, _ = metrics.sample_negatives(keys[sub], csr([blocked[i] for i in sub]), weights, k, seed=0)
  np.testing.assert_array_equal(negs2, negs[sub])
  negs3, _ = metrics.sample_negatives(keys, csr(blocked), weights, k, seed=1)
  assert (negs3 != negs).any()


def test_negatives_inclusion_probabilities_match_successive_sampling():
  """Exact inclusion probabilities of 2 draws without replacement from weights 1:2:3:4."""
  w = np.array([1.0, 2.0, 3.0, 4.0])
  total = w.sum()
  exact = [w[i] / total + sum(w[j] / total * w[i] / (total - w[j]) for j in range(4) if j != i) for i in range(4)]
  users = 20000
  negs, valid = metrics.sample_negatives(np.arange(users), csr([[] for _ in range(users)]), w, 2, seed=7)
  assert valid.all() and (negs[:, 0] != negs[:, 1]).all()
  empirical = np.bincount(negs.ravel(), minlength=4) / users
  np.testing.assert_allclose(empirical, exact, atol=0.015)


def test_negatives_when_too_few_items_remain():
  negs, valid = metrics.sample_negatives(np.array([0, 1]), csr([[1, 2, 3], [5]]), np.ones(5), 4, seed=0)
  assert valid[0].sum() == 2 and set(negs[0][valid[0]]) == {3, 4}
  assert valid[1].all() and set(negs[1]) == {0, 1, 2, 3}
