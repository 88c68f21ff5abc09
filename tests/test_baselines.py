"""The Markov-chain baseline against a dense, obviously-correct NumPy reference."""
import numpy as np

from bert4rec_jax import baselines, metrics, preprocess
from tests.test_metrics import brute_force_rank
from tests.test_preprocess import random_interactions


def test_markov_chain_matches_dense_reference():
  p = preprocess.prepare(random_interactions(5, num_rows=3000, num_users=120, num_items=40),
                         drop_duplicates=False, min_seq_length=3)
  train, _, test = preprocess.leave_one_out(p.sequences)
  n = p.vocab.num_items
  dense = np.zeros((n + 1, n + 1), np.int64)  # dense[a, b] = times b directly followed a in one user's training items
  for u in range(len(train)):
    seq = train[u]
    for a, b in zip(seq[:-1], seq[1:]):
      dense[a, b] += 1
  chain = baselines.MarkovChain(train, n)
  blocked = preprocess.Sequences(offsets=test.history.offsets + np.arange(len(test.rows) + 1),
                                 items=np.insert(test.history.items, test.history.offsets[1:], test.targets))
  negatives, valid = metrics.sample_negatives(test.rows, blocked, np.ones(n), 10, seed=3)
  for exclude in (True, False):
    out = chain.ranks(test, exclude_history=exclude, negatives=negatives, negative_valid=valid)
    for u in range(len(test.rows)):
      hist = np.asarray(test.history[u])
      scores = dense[hist[-1], 1:].astype(float)  # columns = tokens - 1
      target = test.targets[u] - 1
      excluded = np.zeros(n, bool)
      if exclude:
        excluded[hist - 1] = True
      excluded[target] = False
      assert out["full"][u] == brute_force_rank(scores, target, excluded)
      negs = negatives[u][valid[u]]
      assert out["sampled"][u] == int(np.sum(scores[negs] >= scores[target]))
  # Ties matter: many targets were never seen after the last item and rank below every shown item.
  assert (out["full"] > n // 2).any() and (out["full"] < 5).any()
