"""Inputs larger than memory: chunked reading bucketed by user gives exactly the in-memory result."""
import numpy as np
import pandas as pd
import pytest

from bert4rec_jax import bucketed, dataset, preprocess, sources
from bert4rec_jax.errors import DataError
from tests.test_preprocess import random_interactions


def assert_same(a: preprocess.Prepared, b: preprocess.Prepared, stats_order=True):
  np.testing.assert_array_equal(a.users, b.users)
  np.testing.assert_array_equal(a.vocab.ids, b.vocab.ids)
  np.testing.assert_array_equal(a.vocab.counts, b.vocab.counts)
  np.testing.assert_array_equal(a.sequences.offsets, b.sequences.offsets)
  np.testing.assert_array_equal(a.sequences.items, b.sequences.items)
  np.testing.assert_array_equal(a.last_item_known, b.last_item_known)
  assert a.stats == b.stats and (list(a.stats) == list(b.stats) or not stats_order)


def data_config(tiny_config, path, fmt, time_col=""):
  c = tiny_config.data
  c.format, c.path, c.time_col = fmt, str(path), time_col
  return c


def write(df, tmp_path, fmt):
  if fmt == "parquet":
    path = tmp_path / "in.parquet"
    df.to_parquet(path, index=False)
  elif fmt == "csv":
    path = tmp_path / "in.csv"
    df.to_csv(path, index=False)
  else:
    path = tmp_path / "in.txt"
    df[["user", "item"]].to_csv(path, sep=" ", header=False, index=False)
  return path


@pytest.mark.parametrize("fmt,time,drop,min_len,strings,chunk,buckets", [
    ("text", False, False, 3, False, 1000, 8), ("csv", True, True, 3, False, 997, 5),
    ("parquet", True, False, 1, True, 500, 64), ("csv", False, True, 15, True, 7, 3),
    ("parquet", False, False, 2, False, 100_000, 1), ("text", False, True, 5, False, 1, 2)])
def test_bucketed_equals_in_memory(tiny_config, tmp_path, fmt, time, drop, min_len, strings, chunk, buckets):
  df = random_interactions(len(fmt) + chunk, num_rows=2000 if chunk > 1 else 300, string_users=strings)
  if time:  # many ties: order within a user is by time, then by file order
    df["time"] = np.random.default_rng(chunk).integers(0, 50, len(df))
  cfg = data_config(tiny_config, write(df, tmp_path, fmt), fmt, "time" if time else "")
  whole = preprocess.prepare(sources.read_interactions(cfg), drop_duplicates=drop, min_seq_length=min_len)
  parts = bucketed.prepare_bucketed(sources.read_chunks(cfg, chunk), drop_duplicates=drop, min_seq_length=min_len,
                                    num_buckets=buckets, tmp_parent=str(tmp_path))
  assert_same(whole, parts)
  assert [p for p in tmp_path.iterdir() if p.name.startswith(".buckets-")] == []  # scratch removed


def test_bucketed_with_a_given_vocab_counts_unknown_items_alike(tiny_config, tmp_path):
  train = preprocess.prepare(random_interactions(1, num_items=30), drop_duplicates=False, min_seq_length=1)
  df = random_interactions(2, num_items=60)  # half of these items are unknown to the vocab
  cfg = data_config(tiny_config, write(df, tmp_path, "parquet"), "parquet")
  whole = preprocess.prepare(sources.read_interactions(cfg), drop_duplicates=False, min_seq_length=1,
                             vocab=train.vocab)
  parts = bucketed.prepare_bucketed(sources.read_chunks(cfg, 333), drop_duplicates=False, min_seq_length=1,
                                    vocab=train.vocab, num_buckets=7, tmp_parent=str(tmp_path))
  assert whole.stats["unknown_item_interactions_dropped"] > 0
  assert_same(whole, parts)


def test_load_or_prepare_chunked_is_the_same_dataset(tiny_config, tmp_path):
  df = random_interactions(3)
  cfg = data_config(tiny_config, write(df, tmp_path, "csv"), "csv")
  whole, folder = dataset.load_or_prepare(cfg, str(tmp_path / "a"), 3)
  cfg.chunk_rows, cfg.num_buckets = 250, 4
  parts, folder_b = dataset.load_or_prepare(cfg, str(tmp_path / "b"), 3)
  assert_same(whole, parts)
  assert folder.split("/")[-1] == folder_b.split("/")[-1]  # how the input is read is not part of its hash
  assert_same(whole, dataset.load(folder_b), stats_order=False)  # meta.json keeps keys sorted


def test_chunked_errors_name_the_global_line(tiny_config, tmp_path):
  path = tmp_path / "bad.txt"
  path.write_text("".join(f"{u} {u + 1}\n" for u in range(20)) + "7 8 9\n")
  cfg = data_config(tiny_config, path, "text")
  with pytest.raises(DataError, match="line 21"):
    sources.read_interactions(cfg)
  with pytest.raises(DataError, match="line 21"):
    list(sources.read_chunks(cfg, 6))


def test_ids_mixing_numbers_and_text_across_chunks_are_the_in_memory_labels(tiny_config, tmp_path):
  """Ids are labels: one text id anywhere makes the whole column text, whichever chunk holds it."""
  df = pd.DataFrame({"user": ["1", "1", "2", "2", "u4", "u4", "007", "007", "7", "7"],
                     "item": ["5", "6", "7", "8", "5", "6", "7", "8", "05", "5"]})
  path = tmp_path / "mixed.csv"
  df.to_csv(path, index=False)
  cfg = data_config(tiny_config, path, "csv")
  whole = preprocess.prepare(sources.read_interactions(cfg), drop_duplicates=False, min_seq_length=1)
  parts = bucketed.prepare_bucketed(sources.read_chunks(cfg, 2), drop_duplicates=False, min_seq_length=1,
                                    tmp_parent=str(tmp_path))
  assert_same(whole, parts)
  assert sorted(whole.users) == ["007", "1", "2", "7", "u4"]
  assert sorted(whole.vocab.ids) == ["05", "5", "6", "7", "8"]


@pytest.mark.parametrize("times,order", [
    # whole numbers in one chunk, fractions in another: all compared as floats, as the whole file is
    (["1700000002", "1700000001.5", "1700000003", "5", "3.25", "4", "2", "1"], [4, 2, 1, 3]),
    # nanosecond epochs, all integers: compared exactly (1 ns apart), never as rounded floats
    (["1700000000000000003", "1700000000000000002", "1700000000000000001", "9", "8", "7", "6", "5"], [4, 3, 2, 1]),
    # local times across a daylight-saving change (other offsets, other chunks): compared in UTC
    (["2024-03-31T03:30:00+02:00", "2024-03-31T01:45:00+01:00", "2024-03-31T01:40:00Z",
      "2024-03-31T03:10:00+02:00"] * 2, [2, 4, 1, 3]),
    # dates of other precisions in other chunks
    (["2024-01-02", "2024-01-01 10:00:00.123456789", "2024-01-01 10:00:00", "2023-12-31", "2024-05-01",
      "2024-05-01 00:00:01", "2024-04-30T23:59:59.999", "2024-04-01"], [4, 3, 2, 1]),
    # a far-off placeholder date (beyond what nanoseconds reach) among ordinary ones
    (["9999-12-31", "2024-01-01", "1500-06-01", "2024-01-02", "2024-01-01", "9999-12-31", "2000-01-01",
      "2000-01-02"], [3, 2, 4, 1]),
])
def test_time_columns_of_other_types_in_other_chunks_order_as_the_whole_file(tiny_config, tmp_path, times, order):
  df = pd.DataFrame({"user": ["a"] * 4 + ["b"] * 4, "item": [1, 2, 3, 4, 5, 6, 7, 8], "time": times})
  path = tmp_path / "times.csv"
  df.to_csv(path, index=False)
  cfg = data_config(tiny_config, path, "csv", "time")
  whole = preprocess.prepare(sources.read_interactions(cfg), drop_duplicates=False, min_seq_length=1)
  for chunk in (1, 2, 3):
    parts = bucketed.prepare_bucketed(sources.read_chunks(cfg, chunk), drop_duplicates=False, min_seq_length=1,
                                      num_buckets=2, tmp_parent=str(tmp_path))
    assert_same(whole, parts)
  assert list(whole.vocab.decode(whole.sequences[list(whole.users).index("a")])) == order


def test_times_with_and_without_an_offset_are_refused(tiny_config, tmp_path):
  """Whole: the row named. In chunks (each chunk one way, the next the other; or numbers, then
  dates): refused in one line naming the row where the kind changes."""
  path = tmp_path / "times.csv"
  pd.DataFrame({"user": ["a", "a"], "item": [1, 2], "time": ["2024-03-31T03:30:00+02:00", "2024-03-31 01:45:00"]}
               ).to_csv(path, index=False)
  cfg = data_config(tiny_config, path, "csv", "time")
  with pytest.raises(DataError, match=r"mixes times with and without a UTC offset \(data row 2 has none\)"):
    sources.read_interactions(cfg)
  with pytest.raises(DataError, match=r"times without a UTC offset from row 2 on, times with a UTC offset before") as e:
    bucketed.prepare_bucketed(sources.read_chunks(cfg, 1), drop_duplicates=False, min_seq_length=1,
                              tmp_parent=str(tmp_path))
  assert "\n" not in str(e.value)
  pd.DataFrame({"user": ["a", "a"], "item": [1, 2], "time": ["5", "2024-03-31"]}).to_csv(path, index=False)
  with pytest.raises(DataError, match=r"times without a UTC offset from row 2 on, numbers before") as e:
    bucketed.prepare_bucketed(sources.read_chunks(cfg, 1), drop_duplicates=False, min_seq_length=1,
                              tmp_parent=str(tmp_path))
  assert "\n" not in str(e.value)


def test_formats_read_whole_refuse_chunks(tiny_config, tmp_path):
  cfg = data_config(tiny_config, write(random_interactions(0), tmp_path, "csv"), "pickle")
  with pytest.raises(DataError, match="read whole"):
    next(sources.read_chunks(cfg, 10))
