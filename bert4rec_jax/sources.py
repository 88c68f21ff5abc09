"""Readers: every supported input format -> one `Interactions` DataFrame.

An Interactions frame has columns `user`, `item` and optionally `time`, one row per
interaction. Row order is meaningful: within a user, rows are in time order (or are made so
by a stable sort on `time`). Original ids are kept as they are (ints or strings); encoding to
dense integers happens in `preprocess`.

Ids are labels, in every format: a column whose every id is written as a plain integer (digits,
an optional leading '-', no leading zeros, within 64 bits) is read as int64; any other column is
kept as text, each id exactly as written (spaces around a field aside), so '007', '7' and '7.0'
are three different users or items. Typed columns (Parquet, pickle) keep their type: integers stay integers, whole floats
become integers, text follows the rule above. Two labels are the same id only when they are
equal as text ('7' and the integer 7 are; '007' and 7 are not).

Time order: with `data.time_col`, each user's rows are stably sorted by that column. With it
unset (""), a CSV or Parquet input that has one column named like a time (`timestamp`, `time`,
`ts`, `date`, ...) is sorted by it, and the log says so; several such columns are an error that
asks which; `data.time_col="file_order"` keeps the order of the file. Text times are dates: ISO
8601 as such; any other layout is read one way for the whole column, and dates that read both
day-first and month-first in different orders (10/01 and 11/02) are refused, never guessed.

Every problem with an input file raises `DataError` naming the file and the field or line.
"""
import contextlib
import csv
import logging
import lzma
import os
import re
import warnings
import zipfile
import zlib
from typing import Callable, Iterable, Iterator, Optional

import numpy as np
import pandas as pd

from bert4rec_jax import synthetic
from bert4rec_jax.errors import DataError

FORMATS = ("synthetic", "text", "csv", "parquet", "pickle", "movielens", "tfds")  # tfds: read by tfds_source


def read_interactions(data_config) -> pd.DataFrame:
  """Reads the source named by `config.data` into an Interactions frame."""
  fmt = data_config.format
  if fmt not in FORMATS:
    raise DataError(f"config.data.format={fmt!r} is not one of {', '.join(FORMATS)}")
  if fmt == "synthetic":
    return synthetic.generate(seed=0, **data_config.synthetic.to_dict())
  path = data_config.path
  _check_path(data_config)
  readers = {
      "text": lambda: read_text(path),
      "csv": lambda: read_table(path, data_config.user_col, data_config.item_col, data_config.time_col),
      "parquet": lambda: read_table(path, data_config.user_col, data_config.item_col, data_config.time_col),
      "pickle": lambda: read_seed_pickle(path, data_config.user_col, data_config.list_col),
      "movielens": lambda: read_movielens(path, data_config.min_rating),
  }
  df = readers[fmt]()
  if len(df) == 0:
    raise DataError(f"{path}: no interactions in the file")
  return df


def read_text(path: str) -> pd.DataFrame:
  """SASRec/BERT4Rec text format: `user item` per line, each user's lines in time order."""
  try:
    df = _read_csv(path, sep=r"\s+", header=None, dtype=str, quoting=csv.QUOTE_NONE)
    _text_fields(df, path)
  except DataError as e:  # a comment line of more words than two is a parse error: say what it is
    raise _comment_error(path) or e from None
  df.columns = ["user", "item"]
  _no_missing_ids(df, path, line_offset=1)
  _no_header_or_comments(df, path, line_offset=1, first_chunk=True)
  for col in ("user", "item"):
    df[col] = parse_ids(df[col], path, col)
  return df


def _text_fields(df: pd.DataFrame, path: str) -> None:
  if df.shape[1] != 2:
    commas = df.shape[1] == 1 and df.iloc[:, 0].astype(str).str.contains(",").any()
    raise DataError(f"{path}: expected 2 whitespace-separated fields per line (user item), found {df.shape[1]}"
                    + ("; the lines hold commas: for a CSV file use data.format=csv" if commas else ""))


def _no_header_or_comments(df: pd.DataFrame, path: str, line_offset: int, first_chunk: bool) -> None:
  """The text format has neither: a '#' line, or a first line of words above lines of integers (a
  header), would be read as an interaction and change the vocabulary in silence."""
  comment = df["user"].astype(str).str.startswith("#").to_numpy()
  if comment.any():
    raise _comment(path, int(np.flatnonzero(comment)[0]) + line_offset)
  if first_chunk and len(df) > 1:
    first, rest = df.iloc[0], df.iloc[1:1001]
    numeric = lambda x: x.astype(str).str.strip().str.fullmatch(_PLAIN_INT)  # noqa: E731
    words = (not numeric(pd.Series([first["user"], first["item"]])).any() and numeric(rest["user"]).all()
             and numeric(rest["item"]).all())
    named = bool(_USER_NAME.fullmatch(str(first["user"]).strip()) and _ITEM_NAME.fullmatch(str(first["item"]).strip())
                 and not (rest["user"] == first["user"]).any())
    if words or named:
      raise DataError(f"{path}: line {line_offset} ({first['user']} {first['item']}) looks like a header: the text "
                      "format has none; remove it, or use data.format=csv")


# A first line naming its columns (`user_id item_id`, `UserID ProductID`) rather than holding ids: a
# header even above text ids, unless that user appears again.
_USER_NAME = re.compile(r"(?i)(user|customer|visitor|session|client|member|u)[_ -]?(id|name|ids)?s?")
_ITEM_NAME = re.compile(r"(?i)(item|product|movie|song|track|article|sku|asin|book|video|business|poi|i)[_ -]?"
                        r"(id|name|ids)?s?")


def _no_missing_ids(df: pd.DataFrame, path: str, line_offset: int) -> None:
  """A line of a text format without its user or item id (a short line) is an error naming it."""
  for col in ("user", "item"):
    missing = df[col].isna().to_numpy()
    if missing.any():
      raise DataError(f"{path}: line {int(np.flatnonzero(missing)[0]) + line_offset}: no {col} id{MISSING_MARKERS}")


# Empty fields and the markers exports write for a missing value are read as missing, never as an
# id: a column of them would otherwise become one very popular item. Said in the refusal.
MISSING_MARKERS = " (NA, NaN, null, None and n/a count as missing: rename such ids)"


TIME_NAMES = ("timestamp", "time", "ts", "date", "datetime", "event_time", "event_timestamp", "unix_time",
              "unixtime", "created_at", "time_stamp")
FILE_ORDER = "file_order"  # data.time_col value that keeps the file's row order


def time_column(path: str, columns, user_col: str, item_col: str, time_col: str) -> str:
  """The column rows are ordered by: `time_col`; for "" the one column named like a time (logged),
  none when there is none; "file_order" for none at all."""
  if time_col == FILE_ORDER:
    return ""
  if time_col:
    return time_col
  found = [c for c in columns if str(c).strip().lower() in TIME_NAMES and c not in (user_col, item_col)]
  if len(found) > 1:
    raise DataError(f"{path}: several time-like columns {found}; set config.data.time_col to the one that orders "
                    f"each user's rows (or {FILE_ORDER!r} to keep the file's order)")
  if found:
    logging.info("%s: ordering each user's rows by column %r (config.data.time_col is unset; set it to %r to "
                 "keep the file's order)", path, found[0], FILE_ORDER)
    return found[0]
  return ""


def read_table(path: str, user_col: str, item_col: str, time_col: str = "") -> pd.DataFrame:
  """CSV or Parquet rows `user, item[, timestamp]` with configurable column names."""
  if _is_parquet(path):
    names = _parquet_schema(path).names
    time_col = time_column(path, names, user_col, item_col, time_col)
    wanted = [user_col, item_col] + ([time_col] if time_col else [])
    _check_columns(path, names, wanted)
    df = pd.read_parquet(path, columns=wanted)
  else:
    df = _read_csv(path, dtype={user_col: str, item_col: str})  # ids are labels: parsed by parse_ids
    _check_header(path)
    time_col = time_column(path, list(df.columns), user_col, item_col, time_col)
    wanted = [user_col, item_col] + ([time_col] if time_col else [])
    _check_columns(path, list(df.columns), wanted)
    df = df[wanted]
  df = _table_columns(df, path, user_col, item_col, time_col)
  if time_col:
    order = np.argsort(df["time"].to_numpy(), kind="stable")
    df = df.iloc[order].reset_index(drop=True)  # Global stable time order; users are grouped later.
  return df.reset_index(drop=True)


CHUNKED_FORMATS = ("text", "csv", "parquet")


def read_chunks(data_config, chunk_rows: int) -> Iterator[pd.DataFrame]:
  """The input of config.data, `chunk_rows` rows at a time, in file order, each chunk parsed and
  checked as the in-memory readers do (errors name the file and the global row or line). Rows
  are not sorted by time here: with a time column, each user's rows are sorted when grouped."""
  fmt, path = data_config.format, data_config.path
  if fmt not in CHUNKED_FORMATS:
    raise DataError(f"config.data.chunk_rows: format {fmt!r} is read whole; chunked reading supports "
                    f"{', '.join(CHUNKED_FORMATS)}")
  _check_path(data_config)
  if fmt == "text":
    try:
      yield from _text_chunks(path, chunk_rows)
    except DataError as e:  # a comment line of more words than two is a parse error: say what it is
      raise _comment_error(path) or e from None
    return
  seen = 0
  user_col, item_col = data_config.user_col, data_config.item_col
  if _is_parquet(path):
    import pyarrow.parquet as pq
    names = _parquet_schema(path).names
    time_col = time_column(path, names, user_col, item_col, data_config.time_col)
    wanted = [user_col, item_col] + ([time_col] if time_col else [])
    _check_columns(path, names, wanted)
    batches = (b.to_pandas() for b in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=wanted))
  else:
    _check_header(path)
    names = list(_read_csv(path, nrows=0).columns)
    time_col = time_column(path, names, user_col, item_col, data_config.time_col)
    wanted = [user_col, item_col] + ([time_col] if time_col else [])
    _check_columns(path, names, wanted)
    batches = (df[wanted] for df in _csv_chunks(path, chunk_rows, dtype={user_col: str, item_col: str}))
  dates = None  # text dates: one layout for the whole file, not one a chunk
  for df in batches:
    if dates is None and time_col and not (pd.api.types.is_numeric_dtype(df[time_col])
                                           or pd.api.types.is_datetime64_any_dtype(df[time_col])):
      dates = date_layout(lambda: _time_parts(path, time_col, chunk_rows), path, time_col)
    yield _table_columns(df.reset_index(drop=True), path, user_col, item_col, time_col, row_offset=seen, dates=dates)
    seen += len(df)


def _time_parts(path: str, time_col: str, chunk_rows: int) -> Iterator[pd.Series]:
  """The time column's text dates, `chunk_rows` rows at a time (read once more to find their layout;
  numbers and missing values left out: a chunk of them is refused as itself)."""
  if _is_parquet(path):
    import pyarrow.parquet as pq
    parts = (b.to_pandas()[time_col] for b in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows,
                                                                                columns=[time_col]))
  else:
    parts = (df[time_col] for df in _csv_chunks(path, chunk_rows, usecols=[time_col], dtype=str))
  for part in parts:
    part = part.dropna()
    if not (pd.api.types.is_numeric_dtype(part) or pd.api.types.is_datetime64_any_dtype(part)):
      part = part[pd.to_numeric(part, errors="coerce").isna()]
      if len(part):
        yield part


def _text_chunks(path: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
  head = _read_csv(path, sep=r"\s+", header=None, dtype=str, nrows=1001,  # a header, whatever the chunk size
                   quoting=csv.QUOTE_NONE)
  if head.shape[1] == 2:
    _no_header_or_comments(head.set_axis(["user", "item"], axis=1), path, line_offset=1, first_chunk=True)
  seen = 0
  for df in _csv_chunks(path, chunk_rows, sep=r"\s+", header=None, dtype=str, quoting=csv.QUOTE_NONE):
    _text_fields(df, path)
    df.columns = ["user", "item"]
    df = df.reset_index(drop=True)
    _no_missing_ids(df, path, line_offset=1 + seen)
    _no_header_or_comments(df, path, line_offset=1 + seen, first_chunk=False)
    for col in ("user", "item"):
      df[col] = parse_ids(df[col], path, col)
    seen += len(df)
    yield df


def _check_path(data_config) -> None:
  if not data_config.path:
    raise DataError(f"config.data.path is empty; format {data_config.format!r} reads from a file")
  if not os.path.exists(data_config.path):
    raise DataError(f"{data_config.path}: no such file (config.data.path)")
  if not os.path.isfile(data_config.path):
    raise DataError(f"{data_config.path}: not a regular file (a folder, a device or a pipe); config.data.path names "
                    "the input file itself")


def _is_parquet(path: str) -> bool:
  return path.endswith(".parquet") or path.endswith(".pq")


def _parquet_schema(path: str):
  try:
    import pyarrow.parquet as pq
    return pq.read_schema(path)
  except Exception as e:  # pyarrow raises several types for non-Parquet bytes
    raise DataError(f"{path}: not a readable Parquet file ({e})") from e


def _normalise_ids(col: pd.Series, path: str, name: str) -> pd.Series:
  """A typed column's ids (Parquet, pickle): integers stay int64 (beyond int64: text); whole
  floats become int64 (a fraction is an error); booleans are an error; anything else is text,
  read by the labels rule (`parse_ids`)."""
  if pd.api.types.is_unsigned_integer_dtype(col) and len(col) and col.max() >= 2 ** 63:
    return col.astype(str)  # beyond int64: kept exactly, as text labels
  if pd.api.types.is_bool_dtype(col):
    raise DataError(f"{path}: column {name!r} holds booleans, not ids")
  if pd.api.types.is_integer_dtype(col):
    return col.astype(np.int64)
  if pd.api.types.is_float_dtype(col):
    v = col.to_numpy()
    if not np.all(v == np.round(v)):
      raise DataError(f"{path}: column {name!r} has non-integer numeric ids (e.g. {v[v != np.round(v)][0]})")
    _check_int64(v, col, path, name, line_offset=1)
    return col.astype(np.int64)
  return parse_ids(col, path, name)


def _table_columns(df: pd.DataFrame, path: str, user_col: str, item_col: str, time_col: str,
                   row_offset: int = 0, dates: Optional[dict] = None) -> pd.DataFrame:
  """Renamed to user/item[/time] and checked: ids normalised, no missing values, times numbers or
  dates (read as `dates` says, pd.to_datetime's keywords; by default as the chunk's own layout)."""
  df = df.rename(columns={user_col: "user", item_col: "item", time_col: "time"} if time_col else {user_col: "user", item_col: "item"})
  for col, name in (("user", user_col), ("item", item_col)):
    if df[col].isna().any():
      row = int(np.flatnonzero(df[col].isna().to_numpy())[0])
      raise DataError(f"{path}: column {name!r} has a missing value (data row {row + 1 + row_offset})"
                      f"{MISSING_MARKERS}")
    df[col] = _normalise_ids(df[col], path, name)
  if time_col:
    if df["time"].isna().any():
      raise DataError(f"{path}: column {time_col!r} has missing timestamps")
    if not (pd.api.types.is_numeric_dtype(df["time"]) or pd.api.types.is_datetime64_any_dtype(df["time"])):
      df["time"] = _dates(df["time"], path, time_col, row_offset, dates)
    if pd.api.types.is_datetime64_any_dtype(df["time"]):
      # One type for every file and chunk: UTC when zoned, in microseconds (years -290,000 to
      # 294,000: a 9999-12-31 placeholder fits; times under a microsecond apart keep file order).
      times = df["time"].dt.tz_convert("UTC") if df["time"].dt.tz is not None else df["time"]
      df["time"] = times.dt.as_unit("us")
  return df


_ZONED = r"\d\d:\d\d(?::\d\d(?:\.\d+)?)?\s*(?:Z|UTC|GMT|[+-]\d\d(?::?\d\d)?)$"  # a time and its UTC offset


def _dates(text: pd.Series, path: str, time_col: str, row_offset: int, how: Optional[dict] = None) -> pd.Series:
  """Text timestamps as dates, never compared as strings, all read one way (`how`, pd.to_datetime's
  keywords: `date_layout` of the whole column when not given). Times with different UTC offsets
  (local time across a daylight-saving change) are compared in UTC; times with and without an
  offset in one file cannot be ordered, and are refused."""
  if how is None:  # one part, the whole column: its reading under the layout found is kept, not made again
    read = {}
    how = date_layout(lambda: [text], path, time_col, read)
    if "first" in read:
      return read["first"]
  try:
    return _to_datetime(text, path, time_col, row_offset, **how)
  except DataError:
    raise
  except (ValueError, TypeError, OverflowError) as e:
    raise DataError(f"{path}: column {time_col!r} holds dates written in more than one way "
                    f"({str(e).splitlines()[0]}); write them one way, as numbers or as ISO 8601 "
                    "(2020-01-31 12:00)") from e


def date_layout(parts: Callable[[], Iterable[pd.Series]], path: str, time_col: str,
                read: Optional[dict] = None) -> dict:
  """How a column of text dates is read, as pd.to_datetime's keywords, for the whole column
  (`parts()` gives it in consecutive parts, afresh at each call): ISO 8601 when its first part is.
  Otherwise the layout pandas guesses from the first date, month-first and day-first (per-date
  parsing when no layout fits), whichever fits every date. When both fit and give different
  dates (10/01 and 11/02, every day at most 12), which is meant cannot be told from the file:
  refused, never guessed. `read`, when given, gets the first part's dates read that way ("first")."""
  from pandas.tseries.api import guess_datetime_format
  read = {} if read is None else read
  first = next(iter(parts()), None)
  if first is None:
    return {"format": "ISO8601"}
  try:
    read["first"] = _to_datetime(first, path, time_col, 0, format="ISO8601")
    return {"format": "ISO8601"}
  except DataError:
    raise
  except (ValueError, TypeError, OverflowError) as e:
    error = e
  known = first.dropna()
  value = str(known.iloc[0]).strip() if len(known) else ""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    guessed = [guess_datetime_format(value, dayfirst=dayfirst) for dayfirst in (False, True)]
  layouts = []
  for f in guessed:
    if f and {"format": f} not in layouts:
      layouts.append({"format": f})
  for candidates in (layouts, [{"format": "mixed", "dayfirst": False}, {"format": "mixed", "dayfirst": True}]):
    alive, differs, offset, firsts = list(candidates), None, 0, []
    for index, text in enumerate(parts()):
      readings = []
      for how in list(alive):
        try:
          readings.append(_to_datetime(text, path, time_col, offset, **how))
          if index == 0:
            firsts.append((how, readings[-1]))
        except DataError:
          raise
        except (ValueError, TypeError, OverflowError) as e:
          alive.remove(how)
          error = e
      if not alive:
        break
      if len(readings) == 2 and differs is None and not readings[0].equals(readings[1]):
        row = int(np.flatnonzero(((readings[0] != readings[1]) & readings[0].notna()).to_numpy())[0])
        differs = (text.iloc[row], row + offset)
      offset += len(text)
    if len(alive) == 2 and differs:
      raise DataError(f"{path}: column {time_col!r}: dates like {differs[0]!r} (data row {differs[1] + 1}) read "
                      "both month-first and day-first, and every date fits both; write them as ISO 8601 (2020-01-31) "
                      "or as numbers")
    if alive:
      read["first"] = next(r for how, r in firsts if how == alive[0])
      return alive[0]
  raise DataError(f"{path}: column {time_col!r} holds neither numbers nor dates written one way "
                  f"({str(error).splitlines()[0]}); write them as numbers or as ISO 8601 (2020-01-31 12:00)")


def _to_datetime(text: pd.Series, path: str, time_col: str, row_offset: int, **how) -> pd.Series:
  with warnings.catch_warnings():  # pandas warns when it infers a layout: the caller checks the readings
    warnings.simplefilter("ignore", UserWarning)
    try:
      return pd.to_datetime(text, **how)
    except (ValueError, TypeError) as e:
      if "Mixed timezones" not in str(e):
        raise
      zoned = text.astype(str).str.strip().str.contains(_ZONED).to_numpy()
      if zoned.all():
        return pd.to_datetime(text, utc=True, **how)
      raise DataError(f"{path}: column {time_col!r} mixes times with and without a UTC offset (data row "
                      f"{int(np.flatnonzero(~zoned)[0]) + 1 + row_offset} has none): write every time one way") from e


def read_seed_pickle(path: str, user_col: str, list_col: str) -> pd.DataFrame:
  """The seed pipeline's input: a pickled DataFrame, one row per user with a list of items.

  Unpickling runs code from the file: read trusted files only. Prefer Parquet/CSV.
  """
  try:
    df = pd.read_pickle(path)
  except Exception as e:
    raise DataError(f"{path}: cannot unpickle ({type(e).__name__}: {e})") from e
  if not isinstance(df, pd.DataFrame):
    raise DataError(f"{path}: expected a pickled pandas DataFrame, found {type(df).__name__}")
  _check_columns(path, list(df.columns), [user_col, list_col])
  lists = df[list_col]
  bad = ~lists.map(lambda x: isinstance(x, (list, tuple, np.ndarray)))
  if bad.any():
    raise DataError(f"{path}: column {list_col!r} must hold lists of item ids (row {int(np.flatnonzero(bad)[0])})")
  lengths = lists.map(len).to_numpy()
  users = np.repeat(df[user_col].to_numpy(), lengths)
  flat = [x for items in lists for x in items]
  nested = next((i for i, x in enumerate(flat) if not np.ndim(x) == 0), None)
  if nested is not None:
    raise DataError(f"{path}: column {list_col!r} must hold lists of item ids; found {type(flat[nested]).__name__} "
                    f"{str(flat[nested])[:40]!r} inside a list")
  items = pd.array(flat, dtype=object) if flat else np.array([], dtype=np.int64)
  out = pd.DataFrame({"user": users, "item": items})
  if len(flat) and out["item"].map(type).nunique() == 1:  # one type: its own dtype (ints stay ints)
    out["item"] = pd.Series(flat).to_numpy()
  for col, name in (("user", user_col), ("item", list_col)):
    if out[col].isna().any():
      raise DataError(f"{path}: column {name!r} has a missing id")
    out[col] = _normalise_ids(out[col], path, name)
  return out


def read_movielens(path: str, min_rating: float = 0.0) -> pd.DataFrame:
  """MovieLens `ratings.dat`: `UserID::MovieID::Rating::Timestamp`, stably sorted by time."""
  # '::' as a one-char separator keeps pandas' fast C parser: fields land in columns 0, 2, 4, 6.
  df = _read_csv(path, sep=":", header=None, dtype=str, quoting=csv.QUOTE_NONE)
  if df.shape[1] != 7:
    raise DataError(f"{path}: expected `UserID::MovieID::Rating::Timestamp` lines")
  df = df[[0, 2, 4, 6]]
  df.columns = ["user", "item", "rating", "time"]
  _no_missing_ids(df, path, line_offset=1)
  for col in ("user", "item"):
    df[col] = parse_ids(df[col], path, col)
  df["time"] = _as_int(df["time"], path, "time", line_offset=1)
  df["rating"] = pd.to_numeric(df["rating"], errors="coerce")
  if min_rating:
    df = df[df["rating"] >= min_rating]
  order = np.argsort(df["time"].to_numpy(), kind="stable")
  return df.iloc[order][["user", "item", "time"]].reset_index(drop=True)


_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"(\xb5/\xfd", "zstd"),
          (b"PK\x03\x04", "zip"))


def compression(path: str):
  """How a text or CSV input is compressed: by its first bytes (a gzip file named .txt is still
  read), else by its name's suffix as pandas infers it."""
  try:
    with open(path, "rb") as f:
      head = f.read(6)
  except OSError:
    return "infer"
  for magic, kind in _MAGIC:
    if head.startswith(magic):
      return kind
  return "infer"


def _first_line(path: str, kind, test) -> int:
  """The number of the input's first line (bytes, decompressed) for which `test` holds; 0 for
  none or an unreadable file. Only called to word an error."""
  import bz2
  import gzip
  import lzma
  if kind == "infer":
    kind = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip", ".zst": "zstd", ".tar": "tar"}.get(
        os.path.splitext(path)[1].lower())
  opener = {None: open, "gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}.get(kind)
  if opener is None:  # zip, zstd, tar: lines of the compressed bytes would be numbered, not the text's
    return 0
  try:
    with opener(path, "rb") as f:
      for number, line in enumerate(f, 1):
        if test(line):
          return number
  except (OSError, EOFError, lzma.LZMAError):
    pass
  return 0


def _not_utf8(line: bytes) -> bool:
  try:
    line.decode("utf-8")
    return False
  except UnicodeDecodeError:
    return True


def _undecodable_line(path: str, kind) -> str:
  """' (line N)' of the first line that is not UTF-8, or '' when it cannot be found."""
  number = _first_line(path, kind, _not_utf8)
  return f" (line {number})" if number else ""


def _comment(path: str, number: int) -> DataError:
  return DataError(f"{path}: line {number} starts with '#': the text format has no comment lines; remove them")


def _comment_error(path: str):
  """The text format's error for a '#' line, when the file has one (else None)."""
  number = _first_line(path, compression(path), lambda line: line.lstrip().startswith(b"#"))
  return _comment(path, number) if number else None


# What a reader raises for bytes it cannot parse or decompress (a file that starts like a zip, xz or
# gzip file and is not one raises its library's own error, not an OSError).
_UNREADABLE = (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError, ImportError, zipfile.BadZipFile,
               lzma.LZMAError, zlib.error)


def _parse_error(path, e, kind) -> DataError:
  if isinstance(e, ImportError):  # a compression whose library is not installed (zstandard)
    return DataError(f"{path}: compressed as {kind}, which needs a library that is not installed ({e})")
  if isinstance(e, UnicodeDecodeError):
    return DataError(f"{path}: bytes that are not UTF-8 text{_undecodable_line(path, kind)}: the input must be "
                     f"UTF-8 ({e.reason} at byte {e.start} of a block)")
  return DataError(f"{path}: cannot parse ({type(e).__name__}: {str(e).strip()})")


@contextlib.contextmanager
def _fields_match_header(path):
  """Rows of more fields than a CSV header names would make pandas take the first field as the
  index and shift every column left (the user column would hold the items): refused instead."""
  with warnings.catch_warnings():
    warnings.simplefilter("error", pd.errors.ParserWarning)
    try:
      yield
    except pd.errors.ParserWarning as e:
      raise DataError(f"{path}: rows have more fields than the header names; name every column in the header "
                      "(or remove the extra fields)") from e


def _read_csv(path, **kwargs) -> pd.DataFrame:
  kind = compression(path)
  if "header" not in kwargs:  # a CSV with a header: its first field is never an index
    kwargs["index_col"] = False
  try:
    with _fields_match_header(path):
      return pd.read_csv(path, compression=kind, **kwargs)
  except pd.errors.EmptyDataError as e:
    raise DataError(f"{path}: the file is empty") from e
  except _UNREADABLE as e:
    raise _parse_error(path, e, kind) from e


def _csv_chunks(path, chunk_rows: int, **kwargs) -> Iterator[pd.DataFrame]:
  """_read_csv, `chunk_rows` rows at a time (the same parser, the same errors)."""
  kind = compression(path)
  if "header" not in kwargs:
    kwargs["index_col"] = False
  try:
    with pd.read_csv(path, compression=kind, chunksize=chunk_rows, **kwargs) as reader:
      while True:
        with _fields_match_header(path):  # per chunk: never left set while the caller holds a chunk
          chunk = next(reader, None)
        if chunk is None:
          return
        yield chunk
  except pd.errors.EmptyDataError as e:
    raise DataError(f"{path}: the file is empty") from e
  except _UNREADABLE as e:
    raise _parse_error(path, e, kind) from e


def _check_header(path):
  """Duplicated column names are an error (pandas would silently rename the second `x` to
  `x.1` and the first would be used); a one-column header holding ';', tab or '|' means
  another separator."""
  header = _read_csv(path, header=None, nrows=1, dtype=str).iloc[0].tolist()
  seen = [h for i, h in enumerate(header) if h in header[:i]]
  if seen:
    raise DataError(f"{path}: duplicated column name(s) {sorted(set(seen))} in the header")
  if len(header) == 1 and any(sep in str(header[0]) for sep in (";", "\t", "|")):
    raise DataError(f"{path}: one column named {header[0]!r}: the file looks separated by something other than "
                    "commas; CSV input must be comma-separated")


def _check_columns(path, names, wanted):
  missing = [c for c in wanted if c not in names]
  if missing:
    raise DataError(f"{path}: missing column(s) {missing}; the file has {list(names)} "
                    "(set config.data.user_col / item_col / time_col / list_col)")


def _as_int(col: pd.Series, path: str, name: str, line_offset: int) -> pd.Series:
  """Parses a string column of numbers (timestamps) as int64, naming the first bad line."""
  values = pd.to_numeric(col, errors="coerce")
  v = values.to_numpy().astype(np.float64)
  bad = values.isna().to_numpy() | (v != np.round(v))
  if bad.any():
    i = int(np.flatnonzero(bad)[0])
    raise DataError(f"{path}: line {i + line_offset}: {name} id {col.iloc[i]!r} is not an integer")
  _check_int64(v, col, path, name, line_offset)
  return values.astype(np.int64)


_INT64_LIMIT = 2.0 ** 63  # float comparison: ids at or beyond it would wrap around in int64


def _check_int64(v: np.ndarray, original, path: str, name: str, line_offset: int) -> None:
  big = np.abs(v) >= _INT64_LIMIT
  if big.any():
    i = int(np.flatnonzero(big)[0])
    raise DataError(f"{path}: line {i + line_offset}: {name} id {original.iloc[i]!r} does not fit in a "
                    "64-bit integer")


_PLAIN_INT = r"0|-?[1-9][0-9]{0,18}"  # how an integer id is written (at most 19 digits; "-0" is not)
_BOOLEANS = {"True", "False", "true", "false", "TRUE", "FALSE"}


def parse_ids(col: pd.Series, path: str, name: str) -> pd.Series:
  """Ids are labels (see the module docstring): int64 when every id is written as a plain integer
  that fits 64 bits, otherwise text, each exactly as written."""
  text = col.astype(str).str.strip()  # spaces around a field are layout, not part of the id
  if len(text) and text.isin(_BOOLEANS).all():
    raise DataError(f"{path}: column {name!r} holds booleans, not ids")
  if text.str.fullmatch(_PLAIN_INT).all():
    v = text.to_numpy()
    wide = np.char.str_len(v.astype(str)) >= 19  # 19 digits may still exceed int64: compare exactly
    if not wide.any() or all(-2 ** 63 <= int(x) < 2 ** 63 for x in v[wide]):
      return text.astype(np.int64)
  return text
