"""The sharded, padded, batched evaluator agrees with a per-user NumPy reference."""
import jax
import jax.numpy as jnp
import numpy as np

from bert4rec_jax import evaluate, parallel, preprocess
from tests.test_metrics import brute_force_rank
from tests.test_preprocess import random_interactions


def _random_query(params, item_ids):
  """A one-hot of a hash of the input: batching or sharding mistakes change ranks."""
  h = jnp.sum(item_ids * jnp.arange(1, item_ids.shape[1] + 1), axis=1) % 7  # [b]
  return jax.nn.one_hot(h, 7), None


def _random_table(params):
  return jnp.round(jnp.sin(jnp.arange(7)[None, :] * params[:, None]) * 3)  # [N, 7], coarse: many ties


random_scorer = evaluate.Scorer(_random_query, _random_table)


def reference_scores(params, window):
  q, _ = _random_query(params, jnp.asarray([window]))
  return np.asarray(q @ _random_table(jnp.asarray(params)).T)[0]


def test_evaluator_matches_reference(tiny_config):
  p = preprocess.prepare(random_interactions(11, num_rows=4000, num_users=150, num_items=90),
                         drop_duplicates=False, min_seq_length=3)
  _, _, test = preprocess.leave_one_out(p.sequences)
  cfg = tiny_config.eval
  cfg.batch_size, cfg.num_negatives = 24, 15  # 150 users -> a padded last batch
  cfg.item_chunk_size = 32  # 90 items -> three chunks, the last one ragged
  devices = parallel.local_devices(4)
  params = np.linspace(0.1, 5.0, p.vocab.num_items).astype(np.float32)
  L = 8
  for exclude, method in ((True, "count"), (False, "count"), (True, "sort"), (False, "sort")):
    cfg.exclude_history, cfg.rank_method = exclude, method  # sort: the textbook path, same ranks
    ev = evaluate.Evaluator(test, p.vocab, eval_config=cfg, max_seq_length=L, devices=devices, seed=0)
    ranks = ev.ranks(random_scorer, params)
    negatives, valid = ev._negatives
    for u in range(len(test.rows)):
      hist = test.history[u]
      window = ([0] * L + list(hist[-(L - 1):]))[-(L - 1):] + [p.vocab.mask_id]
      scores = reference_scores(params, window)
      target = test.targets[u] - 1
      excluded = np.zeros(p.vocab.num_items, bool)
      if exclude:
        excluded[np.asarray(hist) - 1] = True
      excluded[target] = False
      assert ranks["full"][u] == brute_force_rank(scores, target, excluded)
      negs = negatives[u][valid[u]]
      assert not set(negs) & (set(np.asarray(hist) - 1) | {target})  # protocol: never history or target
      assert ranks["sampled"][u] == sum(scores[j] >= scores[target] for j in negs)
  # Negatives are fixed per user: every user's (for baselines) are this process's block's, and
  # a subset evaluator draws the same ones.
  np.testing.assert_array_equal(ev.negatives()[0], negatives)
  sub = evaluate.Evaluator(test, p.vocab, eval_config=cfg, max_seq_length=L, devices=devices, seed=0, max_users=40)
  sub.ranks(random_scorer, params)
  np.testing.assert_array_equal(sub._negatives[0], negatives[sub.index])


def test_popularity_baseline_ranks_by_training_counts(tiny_config):
  seqs = preprocess.Sequences(offsets=np.array([0, 4, 8]), items=np.array([1, 1, 2, 3, 1, 2, 4, 3], np.int32))
  train, _, test = preprocess.leave_one_out(seqs)
  vocab = preprocess.ItemVocab(ids=np.array([10, 20, 30, 40]), counts=np.array([3, 2, 2, 1]))
  pop = evaluate.popularity_params(train, 4)
  np.testing.assert_array_equal(pop, [3, 1, 0, 0])  # held-out items are not counted
  cfg = tiny_config.eval
  cfg.exclude_history, cfg.num_negatives = False, 0
  ev = evaluate.Evaluator(test, vocab, eval_config=cfg, max_seq_length=4, devices=jax.local_devices()[:1], seed=0)
  ranks = ev.ranks(evaluate.popularity_scorer, pop)
  # user 0 target 3 (count 0, tied with item 4): rank 3; user 1 target 3: rank 3.
  np.testing.assert_array_equal(ranks["full"], [3, 3])
  assert "sampled" not in ranks


def _nan_scorer(bad_rows):
  """Scores item j as j for every user, except users whose first history slot holds a token in
  `bad_rows`: NaN for every item (a diverged model)."""
  def query(params, item_ids):
    bad = jnp.isin(item_ids[:, -2], jnp.asarray(bad_rows))[:, None]
    return jnp.where(bad, jnp.nan, 1.0) * jnp.ones((item_ids.shape[0], 1)), None

  def table(params):
    return params[:, None]
  return evaluate.Scorer(query, table)


def test_a_nan_score_ranks_the_target_worst_never_first(tiny_config):
  """NaN compares false: counted naively, a NaN target would beat every item. It ranks below
  every item shown, with both rank methods and both protocols; a NaN competitor counts against
  the target."""
  seqs = preprocess.Sequences(offsets=np.array([0, 3, 6, 9]), items=np.array([1, 2, 5, 3, 4, 5, 1, 6, 2], np.int32))
  _, _, test = preprocess.leave_one_out(seqs)  # targets 5, 5, 2; histories end in 2, 4, 6
  vocab = preprocess.ItemVocab(ids=np.arange(10, 17), counts=np.ones(7, np.int64))
  params = jnp.arange(7, dtype=jnp.float32)  # item column j scores j
  cfg = tiny_config.eval
  cfg.num_negatives, cfg.exclude_history = 3, True
  for method in ("count", "sort"):
    cfg.rank_method = method
    ev = evaluate.Evaluator(test, vocab, eval_config=cfg, max_seq_length=4, devices=jax.local_devices()[:1], seed=0)
    ranks = ev.ranks(_nan_scorer([4]), params)  # user 1 (last history item 4) scores NaN
    shown = [7 - 1 - 2, 7 - 1 - 2, 7 - 1 - 2]  # every item but the target and the 2 history items
    assert ranks["full"][1] == shown[1], method
    assert ranks["sampled"][1] == ev.negative_counts()[1], method
    ok = ev.ranks(_nan_scorer([]), params)
    np.testing.assert_array_equal(ranks["full"][[0, 2]], ok["full"][[0, 2]])
  plain = evaluate.Scorer(lambda p, x: (jnp.ones((x.shape[0], 1)), None), lambda p: p[:, None])
  nan_low = evaluate.Scorer(plain.query, lambda p: jnp.where(jnp.arange(7) == 0, jnp.nan, p)[:, None])
  cfg.rank_method, cfg.num_negatives = "count", 0
  for method in ("count", "sort"):
    cfg.rank_method = method
    ev = evaluate.Evaluator(test, vocab, eval_config=cfg, max_seq_length=4, devices=jax.local_devices()[:1], seed=0)
    # Column 0 would score lowest; as NaN it counts against the target wherever it is shown (user 1
    # only: users 0 and 2 have item token 1 in their history).
    np.testing.assert_array_equal(ev.ranks(nan_low, params)["full"], ev.ranks(plain, params)["full"] + [0, 1, 0])


def test_cut_windows_rank_as_the_full_window(tiny_config):
  """Users are scored shortest history first, each batch cut to the window its longest history
  needs: a real model's ranks (full and sampled, history excluded or not, on several devices)
  equal a per-user reference that reads every history at the full window, up to float rounding."""
  from bert4rec_jax import model as model_lib, trainer
  rng = np.random.default_rng(3)
  lengths = rng.choice([2, 3, 5, 9, 14, 20, 33, 47, 70, 90], size=70)  # every window width from 8 to 64
  seqs = preprocess.Sequences(offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                              items=rng.integers(1, 61, int(lengths.sum())).astype(np.int32))
  _, _, test = preprocess.leave_one_out(seqs)
  vocab = preprocess.ItemVocab(ids=np.arange(1, 61), counts=np.bincount(seqs.items, minlength=61)[1:].astype(np.int64))
  c = tiny_config
  L = c.model.max_seq_length = 64
  c.eval.batch_size, c.eval.num_negatives = 8, 10
  model = model_lib.from_config(c.model, vocab.num_items)
  params = trainer.create_state(c, vocab.num_items).params
  scorer = evaluate.model_scorer(model)
  table = np.asarray(scorer.table(params))
  for exclude in (True, False):
    c.eval.exclude_history = exclude
    ev = evaluate.Evaluator(test, vocab, eval_config=c.eval, max_seq_length=L, devices=parallel.local_devices(2),
                            seed=0)
    ranks = ev.ranks(scorer, params)
    negatives, valid = ev._negatives
    for u in range(len(test.rows)):
      hist = list(test.history[u])
      window = ([0] * L + hist[-(L - 1):])[-(L - 1):] + [vocab.mask_id]
      scores = np.asarray(scorer.query(params, jnp.asarray([window], jnp.int32))[0])[0] @ table.T
      target = test.targets[u] - 1
      others = np.ones(vocab.num_items, bool)
      others[target] = False
      if exclude:
        others[np.asarray(hist) - 1] = False
      tol = 1e-5 * max(1.0, float(np.abs(scores).max()))
      low, high = (others & (scores > scores[target] + tol)).sum(), (others & (scores >= scores[target] - tol)).sum()
      assert low <= ranks["full"][u] <= high, (u, len(hist))
      negs = negatives[u][valid[u]]
      s_low, s_high = (scores[negs] > scores[target] + tol).sum(), (scores[negs] >= scores[target] - tol).sum()
      assert s_low <= ranks["sampled"][u] <= s_high, (u, len(hist))


def test_sort_and_count_agree_when_the_target_scores_minus_infinity():
  """Excluded history items sort after every other item by a key of their own: as -inf scores they
  tied with a target scoring -inf and counted against it under rank_method=sort (the counting
  method never counts them)."""
  query = jnp.array([[1.0, 0.0]])
  table = jnp.array([[3.0, 0.0], [-jnp.inf, 0.0], [2.0, 0.0], [-jnp.inf, 0.0], [1.0, 0.0]])  # columns 0-4
  history, targets = jnp.array([[1, 3, 4, 0]]), jnp.array([1])  # tokens: columns 0, 2, 3 excluded
  counted = evaluate.scan_catalogue(query, table, chunk=2, targets=targets, history=history)["full"]
  by_sort = evaluate.sort_ranks(query, table, targets, history)
  assert int(counted[0]) == int(by_sort[0]) == 1  # only column 4 (1.0 >= -inf) competes
  assert int(evaluate.sort_ranks(query, table, targets, None)[0]) == 4  # without exclusion: 0, 2, 3 and 4
