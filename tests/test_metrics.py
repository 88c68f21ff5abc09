"""Ranking metrics against a brute-force NumPy reference: ties, rank 0, exclusion, sampling."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from bert4rec_jax import evaluate, metrics


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


def scan(scores, chunk, top_k=0, **arrays):
  """scan_catalogue on an explicit score matrix: query = scores, table = identity."""
  scores = jnp.asarray(scores, jnp.float32)
  return {k: np.asarray(v) for k, v in evaluate.scan_catalogue(
      scores, jnp.eye(scores.shape[1]), chunk=chunk, top_k=top_k,
      **{k: jnp.asarray(v) for k, v in arrays.items()}).items()}


@pytest.mark.parametrize("chunk", [150, 40, 7])  # one chunk, a few, many with a ragged last one
def test_ranks_match_brute_force_with_ties_exclusion_and_chunks(chunk):
  rng = np.random.default_rng(0)
  b, n, k = 48, 150, 9
  scores = rng.integers(0, 6, size=(b, n)).astype(np.float32)  # many ties on purpose
  targets = rng.integers(0, n, size=b)
  history = rng.integers(0, n + 1, size=(b, 12))  # tokens, 0 = PAD
  history[:8, 0] = targets[:8] + 1  # the target also in the history: still ranked
  negatives = rng.integers(0, n, size=(b, k))
  valid = rng.random((b, k)) < 0.8
  out = scan(scores, chunk, targets=targets, history=history, negatives=negatives, negative_valid=valid, top_k=5)
  plain = scan(scores, chunk, targets=targets, top_k=3)  # no exclusion
  for r in range(b):
    hist_cols = {t - 1 for t in history[r] if t > 0} - {targets[r]}
    excluded = np.isin(np.arange(n), list(hist_cols))
    assert out["full"][r] == brute_force_rank(scores[r], targets[r], excluded)
    assert plain["full"][r] == brute_force_rank(scores[r], targets[r], np.zeros(n, bool))
    want = sum(1 for j in range(k) if valid[r, j] and scores[r, negatives[r, j]] >= scores[r, targets[r]])
    assert out["sampled"][r] == want
    shown = [j for j in range(n) if j not in hist_cols]
    best = sorted(shown, key=lambda j: -scores[r, j])[:5]
    np.testing.assert_array_equal(out["top_scores"][r], scores[r, best])  # the right scores, best first
    assert not set(out["top_items"][r] - 1) & hist_cols  # history never shown


def test_first_place_gives_hit_at_1_and_ties_rank_last():
  out = scan([[0.1, 0.9, 0.3], [0.5, 0.5, 0.5], [0.2, 0.1, 0.0]], 3, targets=np.array([1, 0, 2]))
  np.testing.assert_array_equal(out["full"], [0, 2, 2])  # constant scores -> worst rank, not best
  s = metrics.summarize(out["full"][:1], [1])
  assert s["hr@1"] == 1.0 and s["ndcg@1"] == 1.0 and s["mrr"] == 1.0


def test_exclusion_can_lift_the_target():
  assert scan([[0.9, 0.8, 0.1]], 3, targets=np.array([1]), history=np.array([[1, 0]]))["full"][0] == 0
  assert scan([[0.9, 0.8, 0.1]], 3, targets=np.array([1]))["full"][0] == 1


def test_summary_matches_brute_force():
  ranks = np.random.default_rng(1).integers(0, 300, size=500)
  ks = [1, 5, 10, 20, 50, 100]
  got, want = metrics.summarize(ranks, ks), brute_force_summary(list(ranks), ks)
  for k, v in want.items():
    assert got[k] == pytest.approx(v, rel=1e-12), k
  assert got["num_users"] == 500


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
  # A blocked item of weight 0 (a target never seen in training) was never drawable: the user still
  # gets every item of positive weight it may have (it got one fewer).
  # (Item 5 is rare: found only by drawing on until every drawable item is found.)
  weights = np.array([0.0, 1.0, 1.0, 1.0, 1e-3])
  negs, valid = metrics.sample_negatives(np.array([0, 1]), csr([[1, 2], [1]]), weights, 3, seed=0)
  assert valid[0].sum() == 3 and set(negs[0][valid[0]]) == {2, 3, 4}
  assert valid[1].all() and set(negs[1]) <= {1, 2, 3, 4}
