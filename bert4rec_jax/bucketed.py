"""Preparation of inputs larger than memory: read in chunks, bucket by user on disk, group each bucket.

Pass 1 streams the input `chunk_rows` rows at a time (`sources.read_chunks`: the same parsing
and checks as the in-memory readers) and appends every row to one of `num_buckets` Parquet
files chosen by a hash of its user id, so each user's rows land in one bucket, in file order.
Pass 2 groups each bucket with the NumPy code of the in-memory path (`preprocess.group_users`;
with a time column, a stable sort by time first, as the in-memory reader does) and counts its
items. Pass 3 (`preprocess.finish`) builds the vocabulary from all counts, encodes bucket by
bucket and orders users by id. The result equals `preprocess.prepare` on the whole input
(tests/test_bucketed.py); memory holds one chunk or one bucket plus the output arrays.

Ids follow the labels rule of the in-memory readers (`sources`): a column is int64 only when
every id in the whole file is a plain integer. One chunk cannot know that, so the buckets hold ids
as text (an integer chunk's ids in their plain form, which is how they were written) and pass 2
turns them back into integers when no chunk held anything else: the same ids either way.
"""
import logging
import os
import shutil
import tempfile
from typing import Iterable, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from bert4rec_jax import io_utils, preprocess
from bert4rec_jax.errors import ConfigError, DataError


def _bucket_of(users: np.ndarray, num_buckets: int) -> np.ndarray:
  return (pd.util.hash_array(users) % np.uint64(num_buckets)).astype(np.int64)


def _kind(values: np.ndarray) -> str:
  return "int" if np.issubdtype(values.dtype, np.integer) else "text"


def prepare_bucketed(chunks: Iterable[pd.DataFrame], *, drop_duplicates: bool, min_seq_length: int,
                     vocab: Optional[preprocess.ItemVocab] = None, num_buckets: int = 64, tmp_parent: str = "",
                     source: str = "input") -> preprocess.Prepared:
  """preprocess.prepare for interactions that arrive in chunks (Interactions frames, file order)."""
  if num_buckets < 1:
    raise DataError(f"config.data.num_buckets={num_buckets} must be >= 1")
  allowed = open_files_allowed()
  most = allowed - 64  # a file per bucket, open at once, beside what the process has open
  if num_buckets > most:
    way = (f"lower it to at most {most:,}" if most >= 1 else
           "raise the open-file limit (ulimit -n), or read the file whole (data.chunk_rows=0)")
    raise ConfigError(f"config.data.num_buckets={num_buckets}: chunked reading keeps a file open per bucket, and "
                      f"this process may open {allowed:,} files (ulimit -n): {way}")
  tmp = io_utils.make_temp_dir(tmp_parent or tempfile.gettempdir(), "buckets")
  try:
    return _prepare(chunks, drop_duplicates, min_seq_length, vocab, num_buckets, tmp, source)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def _time_kind(t: pd.Series) -> str:
  if pd.api.types.is_datetime64_any_dtype(t):
    return "times with a UTC offset" if t.dt.tz is not None else "times without a UTC offset"
  return "numbers" if pd.api.types.is_numeric_dtype(t) else f"values of type {t.dtype}"


def open_files_allowed() -> int:
  """The process's soft limit on open files (a large number where the platform has none)."""
  try:
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
  except (ImportError, OSError, ValueError):
    return 1 << 20
  return soft if soft != resource.RLIM_INFINITY and soft > 0 else 1 << 20


def _prepare(chunks, drop_duplicates, min_seq_length, vocab, num_buckets, tmp, source):
  writers, text_columns, rows, float_times, time_kind = {}, set(), 0, False, None
  try:
    for df in tqdm(chunks, desc="read chunks", unit="chunk", mininterval=1.0):
      if not len(df):
        continue
      if "time" in df:
        kind = _time_kind(df["time"])
        if time_kind is not None and kind != time_kind:
          raise DataError(f"{source}: the time column holds {kind} from row {rows + 1} on, {time_kind} before: "
                          "write every time one way")
        time_kind = kind
      if "time" in df and kind == "numbers":
        # Numbers are compared as the whole-file reader compares them: as integers when every
        # time of the file is one, else all as floats. A chunk of each kind keeps both columns.
        t = df["time"]
        if t.dtype.kind == "u" and len(t) and int(t.max()) > np.iinfo(np.int64).max:
          raise DataError(f"{source}: times beyond 2**63 - 1 (from row {rows + 1}) cannot be read in chunks: "
                          "read the file whole (data.chunk_rows=0)")
        float_times |= t.dtype.kind == "f"
        df["time_float"] = t.astype(np.float64)
        df["time"] = t.astype(np.int64) if t.dtype.kind in "iub" else np.zeros(len(df), np.int64)
      for col in ("user", "item"):
        if _kind(df[col].to_numpy()) == "text":
          text_columns.add(col)
        df[col] = df[col].astype(str)  # integers in their plain form: exactly as written
      bucket = _bucket_of(df["user"].to_numpy(), num_buckets)
      order = np.argsort(bucket, kind="stable")  # rows of a bucket together, file order kept
      bounds = np.searchsorted(bucket[order], np.arange(num_buckets + 1))
      table = pa.Table.from_pandas(df.iloc[order], preserve_index=False)
      for b in np.flatnonzero(np.diff(bounds)):
        part = table.slice(bounds[b], bounds[b + 1] - bounds[b])
        if b not in writers:
          writers[b] = pq.ParquetWriter(os.path.join(tmp, f"bucket-{b:05d}.parquet"), part.schema)
        try:
          writers[b].write_table(part)
        except ValueError as e:  # another chunk had other column types
          first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
          raise DataError(f"{source}: the column types change between rows {rows + 1} and earlier ones "
                          f"({first}); make every column one type") from e
      rows += len(df)
  finally:
    for w in writers.values():
      w.close()
  if rows == 0:
    raise DataError(f"{source}: no interactions in the file")
  logging.info("Read %d interactions into %d user buckets", rows, len(writers))

  # Pass 2: group every bucket; keep its result on disk and its item counts in memory.
  counts, groups = [], []
  for b in tqdm(sorted(writers), desc="group buckets", unit="bucket", mininterval=1.0):
    df = pq.read_table(os.path.join(tmp, f"bucket-{b:05d}.parquet")).to_pandas()
    for col in ("user", "item"):
      if col not in text_columns:  # every id of the file was a plain integer
        df[col] = df[col].astype(np.int64)
    if "time" in df:  # the in-memory reader's global stable time sort, restricted to this bucket
      df = df.iloc[np.argsort(df["time_float" if float_times else "time"].to_numpy(), kind="stable")]
    g = preprocess.group_users(df["user"].to_numpy(), df["item"].to_numpy(), drop_duplicates=drop_duplicates,
                               min_seq_length=min_seq_length)
    del df
    os.remove(os.path.join(tmp, f"bucket-{b:05d}.parquet"))
    counts.append(np.unique(g.items, return_counts=True))
    path = os.path.join(tmp, f"groups-{b:05d}")
    pq.write_table(pa.table({"items": g.items}), path + "-items.parquet")
    pq.write_table(pa.table({"users": g.users, "lengths": g.lengths}), path + "-users.parquet")
    groups.append(_loader(path, g.stats))
  return preprocess.finish(groups, min_seq_length, vocab, counts=preprocess.merge_counts(counts))


def _loader(path: str, stats: dict):
  """A bucket's UserGroups, read back when preprocess.finish needs it."""
  def load():
    users = pq.read_table(path + "-users.parquet")
    return preprocess.UserGroups(users.column("users").to_numpy(), users.column("lengths").to_numpy(),
                                 pq.read_table(path + "-items.parquet").column("items").to_numpy(), stats)
  return load
