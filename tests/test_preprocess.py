"""Preprocessing against a plain-Python reference on random data."""
import collections

import numpy as np
import pandas as pd
import pytest

from bert4rec_jax import input_pipeline, preprocess
from bert4rec_jax.errors import DataError


def random_interactions(seed, num_rows=3000, num_users=120, num_items=60, string_users=False):
  rng = np.random.default_rng(seed)
  users = rng.integers(0, num_users, num_rows) * 7 + 3  # sparse, unordered ids
  items = rng.integers(0, num_items, num_rows) * 13 + 100
  if string_users:
    users = np.array([f"u{u}" for u in users])
  return pd.DataFrame({"user": users, "item": items})


def reference_prepare(df, drop_duplicates, min_len):
  """Obviously-correct Python: dicts and lists, one user at a time."""
  seqs = collections.OrderedDict()
  for u, i in zip(df["user"].tolist(), df["item"].tolist()):
    seqs.setdefault(u, []).append(i)
  if drop_duplicates:
    for u, s in seqs.items():
      seqs[u] = [x for j, x in enumerate(s) if j == 0 or s[j - 1] != x]
  seqs = {u: s for u, s in seqs.items() if len(s) >= min_len}
  counts = collections.Counter(i for s in seqs.values() for i in s)
  vocab = sorted(counts, key=lambda i: (-counts[i], i))
  token = {i: t + 1 for t, i in enumerate(vocab)}
  users = sorted(seqs)
  return users, vocab, [[token[i] for i in seqs[u]] for u in users]


@pytest.mark.parametrize("seed,drop,min_len,string_users", [(0, False, 3, False), (1, True, 3, False),
                                                            (2, True, 30, True), (3, False, 1, True)])
def test_prepare_matches_reference(seed, drop, min_len, string_users):
  df = random_interactions(seed, string_users=string_users)
  # Consecutive repeats on purpose so drop_duplicates has work to do.
  df = pd.concat([df, df.iloc[::5]]).sort_index(kind="stable").reset_index(drop=True)
  p = preprocess.prepare(df, drop_duplicates=drop, min_seq_length=min_len)
  users, vocab, seqs = reference_prepare(df, drop, min_len)
  assert list(p.users) == users
  assert list(p.vocab.ids) == vocab
  assert [list(p.sequences[u]) for u in range(len(p.sequences))] == seqs
  assert p.sequences.items.dtype == np.int32 and p.sequences.offsets.dtype == np.int64
  assert p.stats["users"] == len(users) and p.stats["interactions"] == sum(map(len, seqs))
  assert p.stats["users_too_short_dropped"] == df["user"].nunique() - len(users)


def test_vocab_roundtrip_and_special_tokens():
  p = preprocess.prepare(random_interactions(4), drop_duplicates=False, min_seq_length=1)
  v = p.vocab
  tokens = np.arange(1, v.num_items + 1)
  np.testing.assert_array_equal(v.encode(v.decode(tokens)), tokens)
  assert v.mask_id == v.num_items + 1 and v.vocab_size == v.num_items + 2
  assert v.encode(np.array([-12345]))[0] == preprocess.PAD  # unknown -> PAD, for callers to count
  with pytest.raises(ValueError):
    v.decode(np.array([0]))
  with pytest.raises(ValueError):
    v.decode(np.array([v.mask_id]))
  assert np.all(np.diff(v.counts) <= 0)  # frequency order


def test_vocab_is_deterministic_under_row_shuffles_of_other_users():
  df = random_interactions(5)
  p1 = preprocess.prepare(df, drop_duplicates=False, min_seq_length=1)
  # Reordering whole users (not the order within a user) changes nothing.
  order = np.argsort(df["user"].to_numpy() % 11, kind="stable")
  p2 = preprocess.prepare(df.iloc[order], drop_duplicates=False, min_seq_length=1)
  np.testing.assert_array_equal(p1.vocab.ids, p2.vocab.ids)
  np.testing.assert_array_equal(p1.sequences.items, p2.sequences.items)


def test_leave_one_out_split():
  p = preprocess.prepare(random_interactions(6), drop_duplicates=False, min_seq_length=3)
  train, valid, test = preprocess.leave_one_out(p.sequences)
  for u in range(len(p.sequences)):
    s = list(p.sequences[u])
    assert list(train[u]) == s[:-2]
    assert list(valid.history[u]) == s[:-2] and valid.targets[u] == s[-2]
    assert list(test.history[u]) == s[:-1] and test.targets[u] == s[-1]


def test_select_and_drop_last():
  p = preprocess.prepare(random_interactions(7), drop_duplicates=False, min_seq_length=4)
  rows = np.array([5, 0, 3, 3])
  sub = p.sequences.select(rows)
  for j, r in enumerate(rows):
    assert list(sub[j]) == list(p.sequences[r])
  with pytest.raises(ValueError):
    p.sequences.drop_last(int(p.sequences.lengths.min()) + 1)


def test_drop_last_is_a_view_that_never_leaks_held_out_items():
  """drop_last shares the buffer (no token copied); everything that reads a view's tokens sees
  exactly the kept ones (reference: Python lists), and `items`, which would hold the dropped
  ones too, is refused."""
  p = preprocess.prepare(random_interactions(8), drop_duplicates=False, min_seq_length=3)
  seqs = p.sequences
  ref = [list(seqs[u]) for u in range(len(seqs))]
  for k in (1, 2):
    view = seqs.drop_last(k)
    assert view.buffer is seqs.items and np.shares_memory(view[0], seqs.items)
    kept = [s[:-k] for s in ref]
    assert [list(view[u]) for u in range(len(view))] == kept
    assert view.lengths.tolist() == [len(s) for s in kept]
    assert view.tokens().tolist() == [t for s in kept for t in s]
    assert view.last(1).tolist() == [s[-1] for s in kept]
    assert [list(view.drop_last(1)[u]) for u in range(len(view))] == [s[:-1] for s in kept]
    compact = view.compact()
    assert compact.ends is None and compact.items.tolist() == view.tokens().tolist()
    rows = np.array([4, 1, 1])
    assert [list(view.select(rows)[j]) for j in range(3)] == [kept[r] for r in rows]
    with pytest.raises(ValueError, match="tokens"):
      view.items
    want = np.bincount([t for s in kept for t in s], minlength=70)
    for chunk in (1, 7, 1 << 22):  # counted a few users at a time, or all at once
      np.testing.assert_array_equal(view.token_counts(70, chunk_tokens=chunk), want)
    taken = view.take(rows)  # a view of a view: rows in that order, nothing copied
    assert taken.buffer is seqs.items and [list(taken[j]) for j in range(3)] == [kept[r] for r in rows]
    assert [list(taken.drop_last(1)[j]) for j in range(3)] == [kept[r][:-1] for r in rows]
    np.testing.assert_array_equal(taken.token_counts(70, chunk_tokens=3),
                                  np.bincount([t for r in rows for t in kept[r]], minlength=70))
  # What reads all training tokens gives the same from a view as from its compact copy.
  from bert4rec_jax import baselines, evaluate, losses
  from configs import default
  view, n = seqs.drop_last(1), p.vocab.num_items
  np.testing.assert_array_equal(evaluate.popularity_params(view, n), evaluate.popularity_params(view.compact(), n))
  tc = default.base().train
  tc.loss, tc.negative_sampler, tc.num_negatives = "sampled", "popularity", n - 1
  for table in ("threshold", "alias", "log_q"):
    np.testing.assert_array_equal(getattr(losses.negative_sampler(tc, view, n), table),
                                  getattr(losses.negative_sampler(tc, view.compact(), n), table))
  a, b = baselines.MarkovChain(view, n), baselines.MarkovChain(view.compact(), n)
  for field in ("dst", "counts", "row_ptr", "popularity"):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
  windows = input_pipeline.right_aligned(view, np.arange(len(view)), 6)
  np.testing.assert_array_equal(windows, input_pipeline.right_aligned(view.compact(), np.arange(len(view)), 6))


def test_right_aligned_windows():
  p = preprocess.prepare(random_interactions(8), drop_duplicates=False, min_seq_length=1)
  rows = np.arange(len(p.sequences))
  for length in (3, 17, 80):
    w = input_pipeline.right_aligned(p.sequences, rows, length)
    wm = input_pipeline.right_aligned(p.sequences, rows, length, append=999)
    for r in rows:
      s = list(p.sequences[r])
      expect = ([0] * length + s)[-length:]
      assert list(w[r]) == expect
      assert list(wm[r]) == ([0] * length + s)[-(length - 1):] + [999]


def test_train_stream_is_a_function_of_seed_and_step():
  p = preprocess.prepare(random_interactions(9), drop_duplicates=False, min_seq_length=1)
  n = len(p.sequences)
  s1 = input_pipeline.TrainStream(p.sequences, batch_size=32, max_seq_length=10, seed=3)
  s2 = input_pipeline.TrainStream(p.sequences, batch_size=32, max_seq_length=10, seed=3)
  steps = list(range(0, 3 * n // 32 + 2))
  ids = np.concatenate([s1.example_ids(s) for s in steps])
  # Every epoch is a permutation of all examples: nothing dropped or repeated within an epoch.
  for e in range(3):
    assert sorted(ids[e * n:(e + 1) * n]) == list(range(n))
  # Random access (as after a resume) gives the same batches as sequential iteration.
  for s in reversed(steps):
    np.testing.assert_array_equal(s2.batch(s)["item_ids"], s1.batch(s)["item_ids"])
  s3 = input_pipeline.TrainStream(p.sequences, batch_size=32, max_seq_length=10, seed=4)
  assert not np.array_equal(s3.example_ids(0), s1.example_ids(0))


def test_prepare_errors():
  df = random_interactions(10, num_rows=50)
  with pytest.raises(DataError, match="min_seq_length"):
    preprocess.prepare(df, drop_duplicates=False, min_seq_length=10_000)
  with pytest.raises(DataError, match="no interactions"):
    preprocess.prepare(df.iloc[:0], drop_duplicates=False, min_seq_length=1)
