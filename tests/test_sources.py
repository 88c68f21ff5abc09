"""Every reader gives the same Interactions; bad input gets a clear error naming file and field."""
import gzip
import os

import numpy as np
import pandas as pd
import pytest

from bert4rec_jax import dataset, sources
from bert4rec_jax.errors import DataError

ROWS = [(1, 10, 100), (1, 11, 101), (2, 10, 100), (1, 12, 103), (2, 13, 102), (3, 11, 50)]


def data_config(fmt, path, **kw):
  from configs import default
  c = default.base().data
  c.format, c.path = fmt, str(path)
  for k, v in kw.items():
    c[k] = v
  return c


def expected():
  """Per-user item lists in time order."""
  out = {}
  for u, i, t in sorted(ROWS, key=lambda r: r[2]):
    out.setdefault(u, []).append(i)
  return out


def as_lists(df):
  out = {}
  for u, i in zip(df["user"], df["item"]):
    out.setdefault(u, []).append(i)
  return out


def test_all_formats_agree(tmp_path):
  by_time = sorted(ROWS, key=lambda r: r[2])
  # text: one user block after another, time order within a user, gzip transparently.
  text = tmp_path / "seq.txt.gz"
  with gzip.open(text, "wt") as f:
    for u in (1, 2, 3):
      f.writelines(f"{uu} {i}\n" for uu, i, _ in by_time if uu == u)
  csv = tmp_path / "rows.csv"
  pd.DataFrame(ROWS, columns=["uid", "sid", "ts"]).to_csv(csv, index=False)
  pq = tmp_path / "rows.parquet"
  pd.DataFrame(ROWS, columns=["uid", "sid", "ts"]).to_parquet(pq)
  pkl = tmp_path / "seed.pkl"
  pd.DataFrame({"uid": list(expected()), "sid_add_to_cart": list(expected().values())}).to_pickle(pkl)
  ml = tmp_path / "ratings.dat"
  ml.write_text("".join(f"{u}::{i}::4::{t}\n" for u, i, t in ROWS))

  frames = {
      "text": sources.read_interactions(data_config("text", text)),
      "csv": sources.read_interactions(data_config("csv", csv, user_col="uid", item_col="sid", time_col="ts")),
      "parquet": sources.read_interactions(data_config("parquet", pq, user_col="uid", item_col="sid", time_col="ts")),
      "pickle": sources.read_interactions(data_config("pickle", pkl, user_col="uid")),
      "movielens": sources.read_interactions(data_config("movielens", ml)),
  }
  for name, df in frames.items():
    assert as_lists(df) == expected(), name
    assert df["user"].dtype == np.int64 and df["item"].dtype == np.int64, name


def test_movielens_min_rating_and_stable_ties(tmp_path):
  ml = tmp_path / "ratings.dat"
  ml.write_text("1::5::5::10\n1::6::1::10\n1::7::4::9\n")
  df = sources.read_movielens(str(ml))
  assert list(df["item"]) == [7, 5, 6]  # stable sort: file order among equal timestamps
  assert list(sources.read_movielens(str(ml), min_rating=4)["item"]) == [7, 5]


def test_string_ids_are_kept(tmp_path):
  csv = tmp_path / "rows.csv"
  csv.write_text("user,item\nalice,sku-1\nalice,sku-2\nbob,sku-1\n")
  df = sources.read_interactions(data_config("csv", csv))
  assert list(df["item"]) == ["sku-1", "sku-2", "sku-1"]


@pytest.mark.parametrize("content,fmt,kw,match", [
    ("", "text", {}, "empty"),
    ("1 2\n1 2 3\n", "text", {}, "cannot parse .*line 2"),
    ("1 2 3\n", "text", {}, "expected 2 whitespace-separated fields"),
    ("user,item\n1,2\n", "csv", {"item_col": "sku"}, r"missing column\(s\) \['sku'\]"),
    ("user,item\n1,\n", "csv", {}, "missing value"),
    ("user,item\n1,2\n1,null\n", "csv", {}, r"missing value \(data row 2\) \(NA, NaN, null, None and n/a count as"),
    ("1 2\nNA 3\n", "text", {}, r"line 2: no user id \(NA, NaN, null, None and n/a count as missing: rename"),
    ("user,item\n", "csv", {}, "no interactions"),
    ("1::2::3\n", "movielens", {}, "UserID::MovieID"),
])
def test_bad_inputs(tmp_path, content, fmt, kw, match):
  path = tmp_path / "input.txt"
  path.write_text(content)
  with pytest.raises(DataError, match=match) as e:
    sources.read_interactions(data_config(fmt, path, **kw))
  assert str(path) in str(e.value)  # the message names the file


def test_missing_file_and_unknown_format(tmp_path):
  with pytest.raises(DataError, match="no such file"):
    sources.read_interactions(data_config("text", tmp_path / "nope.txt"))
  with pytest.raises(DataError, match="no such file"):
    dataset.load_or_prepare(data_config("text", tmp_path / "nope.txt"), str(tmp_path), 3)
  with pytest.raises(DataError, match="not one of"):
    sources.read_interactions(data_config("xml", tmp_path / "x"))


def test_wrong_pickle_contents(tmp_path):
  p = tmp_path / "x.pkl"
  pd.Series([1, 2]).to_pickle(p)
  with pytest.raises(DataError, match="expected a pickled pandas DataFrame"):
    sources.read_interactions(data_config("pickle", p))


def test_prepared_dataset_is_reused_and_rehashed(tmp_path):
  text = tmp_path / "seq.txt"
  text.write_text("".join(f"{u} {i}\n" for u in range(1, 6) for i in range(1, 6)))
  cfg = data_config("text", text)
  p1, folder1 = dataset.load_or_prepare(cfg, str(tmp_path), 3)
  mtime = os.path.getmtime(os.path.join(folder1, "meta.json"))
  p2, folder2 = dataset.load_or_prepare(cfg, str(tmp_path), 3)
  assert folder1 == folder2 and os.path.getmtime(os.path.join(folder2, "meta.json")) == mtime
  np.testing.assert_array_equal(p1.sequences.items, p2.sequences.items)
  np.testing.assert_array_equal(p1.vocab.ids, p2.vocab.ids)
  assert list(p1.users) == list(p2.users)
  cfg.drop_duplicates = True  # data config changed -> new artifact
  assert dataset.load_or_prepare(cfg, str(tmp_path), 3)[1] != folder1
  cfg.drop_duplicates = False
  with open(text, "a") as f:  # input bytes changed -> new artifact
    f.write("6 1\n6 2\n6 3\n")
  p3, folder3 = dataset.load_or_prepare(cfg, str(tmp_path), 3)
  assert folder3 != folder1 and len(p3.users) == 6


def test_prepared_arrays_are_memory_mapped_and_first_layout_still_reads(tmp_path):
  text = tmp_path / "seq.txt"
  text.write_text("".join(f"{u} {i}\n" for u in range(1, 6) for i in range(1, 4 + u)))
  cfg = data_config("text", text)
  fresh, folder = dataset.load_or_prepare(cfg, str(tmp_path), 3)
  p, _ = dataset.load_or_prepare(cfg, str(tmp_path), 3)
  assert isinstance(p.sequences.items, np.memmap) and isinstance(p.sequences.offsets, np.memmap)
  assert not p.sequences.items.flags.writeable  # read-only: nothing can change the artifact
  np.testing.assert_array_equal(p.sequences.items, fresh.sequences.items)
  # An artifact of the first layout (one sequences.npz) under the same hash loads the same.
  np.savez(os.path.join(folder, "sequences.npz"), offsets=np.load(os.path.join(folder, "offsets.npy")),
           items=np.load(os.path.join(folder, "items.npy")),
           last_item_known=np.load(os.path.join(folder, "last_item_known.npy")))
  for name in ("offsets", "items", "last_item_known"):
    os.remove(os.path.join(folder, f"{name}.npy"))
  old, old_folder = dataset.load_or_prepare(cfg, str(tmp_path), 3)
  assert old_folder == folder
  np.testing.assert_array_equal(old.sequences.items, fresh.sequences.items)
  np.testing.assert_array_equal(old.sequences.offsets, fresh.sequences.offsets)
  np.testing.assert_array_equal(old.last_item_known, fresh.last_item_known)
