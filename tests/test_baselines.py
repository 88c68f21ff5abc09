"""The baselines against dense, obviously-correct NumPy references, alone and in the pipeline."""
import os

import numpy as np
import pandas as pd
import pytest

from bert4rec_jax import baselines, dataset, metrics, pipeline, preprocess
from tests.test_metrics import brute_force_rank
from tests.test_preprocess import random_interactions


def dense_transitions(train, n):
  """dense[a, b] = times b directly followed a in one user's training items."""
  dense = np.zeros((n + 1, n + 1), np.int64)
  for u in range(len(train)):
    seq = train[u]
    for a, b in zip(seq[:-1], seq[1:]):
      dense[a, b] += 1
  return dense


def dense_markov_scores(train, n):
  """[n + 1, n] float scores: transition count from row item, plus popularity / (max + 1) so that
  equal counts are ordered by training popularity (columns = tokens - 1)."""
  pop = np.bincount(train.tokens(), minlength=n + 2)[1:n + 1].astype(float)
  return dense_transitions(train, n)[:, 1:] + pop / (pop.max() + 1)


def dense_markov_ranks(train, test, n, exclude_history):
  dense = dense_markov_scores(train, n)
  out = []
  for u in range(len(test.rows)):
    hist = np.asarray(test.history[u])
    scores = dense[hist[-1]]
    excluded = np.zeros(n, bool)
    if exclude_history:
      excluded[hist - 1] = True
    excluded[test.targets[u] - 1] = False
    out.append(brute_force_rank(scores, test.targets[u] - 1, excluded))
  return np.asarray(out)


def test_markov_chain_matches_dense_reference():
  p = preprocess.prepare(random_interactions(5, num_rows=3000, num_users=120, num_items=40),
                         drop_duplicates=False, min_seq_length=3)
  train, _, test = preprocess.leave_one_out(p.sequences)
  n = p.vocab.num_items
  dense = dense_markov_scores(train, n)
  chain = baselines.MarkovChain(train, n)
  history = test.history.compact()
  blocked = preprocess.Sequences(offsets=history.offsets + np.arange(len(test.rows) + 1),
                                 items=np.insert(history.items, history.offsets[1:], test.targets))
  negatives, valid = metrics.sample_negatives(test.rows, blocked, np.ones(n), 10, seed=3)
  for exclude in (True, False):
    out = chain.ranks(test, exclude_history=exclude, negatives=negatives, negative_valid=valid)
    np.testing.assert_array_equal(out["full"], dense_markov_ranks(train, test, n, exclude))
    for u in range(len(test.rows)):
      scores = dense[test.history[u][-1]]
      target = test.targets[u] - 1
      negs = negatives[u][valid[u]]
      assert out["sampled"][u] == int(np.sum(scores[negs] >= scores[target]))
  # Popularity does order equal counts: ranking by counts alone would differ for some users.
  counts_only = dense_transitions(train, n)[:, 1:].astype(float)
  differs = 0
  for u in range(len(test.rows)):
    excluded = np.zeros(n, bool)
    target = test.targets[u] - 1
    differs += brute_force_rank(counts_only[test.history[u][-1]], target, excluded) != out["full"][u]
  assert differs > 0 and (out["full"] < 5).any()


@pytest.mark.parametrize("kind", ["most_popular", "markov"])
def test_baselines_run_through_the_pipeline(tiny_config, tmp_path, kind):
  """model.kind selects a baseline: same evaluator, negatives, metrics and files as a model; the
  Markov chain's ranks equal the dense reference's, and most-popular's equal the popularity row."""
  c = tiny_config
  c.model.kind = kind
  c.eval.per_user_top_k = 5
  out = pipeline.run(c, str(tmp_path), mode="all")
  assert out["model_name"].startswith(kind + "_")
  rows = out["test_metrics"]
  assert set(rows) == {kind}
  per_user = pd.read_parquet(os.path.join(out["results_dir"], "test_per_user.parquet"))
  prepared, _ = dataset.load_or_prepare(c.data, str(tmp_path), pipeline.min_seq_length(c))
  train_seqs, _, test = preprocess.leave_one_out(prepared.sequences)
  n = prepared.vocab.num_items
  if kind == "markov":
    want = dense_markov_ranks(train_seqs, test, n, exclude_history=True)
  else:
    counts = np.bincount(train_seqs.tokens(), minlength=n + 2)[1:n + 1]
    want = []
    for u in range(len(test.rows)):
      target, hist = int(test.targets[u]), set(test.history[u].tolist()) - {int(test.targets[u])}
      want.append(sum(1 for t in range(1, n + 1) if t != target and t not in hist and counts[t - 1] >= counts[target - 1]))
  np.testing.assert_array_equal(per_user["rank"].to_numpy(), want)
  assert rows[kind]["ndcg@10"] == pytest.approx(metrics.summarize(np.asarray(want), [10])["ndcg@10"])
  predictions = pd.read_parquet(out["predictions"])
  assert len(predictions) == len(prepared.users)
  for user_items, u in zip(predictions["items"][:50], range(50)):
    assert len(user_items) == c.predict.top_k and len(set(user_items)) == len(user_items)
    history = set(prepared.vocab.decode(prepared.sequences[u]).tolist())
    assert not history & set(user_items)  # history excluded
  if kind == "markov":  # reference: unseen items sorted by (transitions from the last item, popularity, id)
    dense = dense_transitions(train_seqs, n)
    counts = np.bincount(train_seqs.tokens(), minlength=n + 2)
    for u in range(50):
      seq = prepared.sequences[u]
      ranked = sorted((t for t in range(1, n + 1) if t not in set(seq.tolist())),
                      key=lambda t: (-dense[seq[-1], t], -counts[t], t))[:c.predict.top_k]
      assert list(predictions["items"][u]) == list(prepared.vocab.decode(np.asarray(ranked)))
