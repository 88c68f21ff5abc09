"""`data.format=tfds`: a TensorFlow Datasets source (e.g. the MovieLens ratings builders), read
without TensorFlow and kept as a Parquet file of the workdir.

TFDS reads a prepared dataset by random access (`tfds.data_source`) when it was built in the
`array_record` or `parquet` file format, which needs no TensorFlow; a dataset built in TFDS's
default `tfrecord` format can only be read through TensorFlow (`tfds.load`), used when it is
installed. The records are written once to `<workdir>/data/inputs/tfds-<name>-<split>-<key>.parquet`,
keyed by the content of the prepared dataset's files, and from there the run is a Parquet run:
the same reader, checks, labels rule and time ordering, the same model for the same content.

TFDS stores records shuffled, so a source must have a time column to order each user's items
(the MovieLens builders have `timestamp`). Columns: `data.user_col` / `data.item_col` when the
dataset has them, else the first of USER_FIELDS / ITEM_FIELDS it has; `data.time_col`, else a
field named like a time.
"""
import hashlib
import logging
import os

import numpy as np
import pandas as pd

from bert4rec_jax import io_utils, sources
from bert4rec_jax.errors import ConfigError, DataError

USER_FIELDS = ("user_id", "user", "userId", "uid")
ITEM_FIELDS = ("item_id", "movie_id", "item", "itemId", "movieId", "product_id", "sid")
_CHUNK = 65536  # records read per call


def _import():
  try:
    import tensorflow_datasets as tfds
  except ImportError:
    raise ConfigError('data.format=tfds needs tensorflow-datasets: pip install "bert4rec_jax[tfds]" '
                      "(TensorFlow itself is not needed for datasets built as array_record or parquet)") from None
  return tfds


def _describe(d) -> str:
  return f"TFDS dataset {d.tfds_name!r}, split {d.tfds_split!r}" + (f" in {d.tfds_data_dir}" if d.tfds_data_dir else "")


def _open(tfds, d):
  """(random-access source or None, DatasetInfo, a tf.data fallback or None)."""
  data_dir = d.tfds_data_dir or None
  try:
    source = tfds.data_source(d.tfds_name, split=d.tfds_split, data_dir=data_dir, try_gcs=False, download=False)
    return source, source.dataset_info, None
  except NotImplementedError:  # built as tfrecord: only TensorFlow reads it
    import importlib.util
    if importlib.util.find_spec("tensorflow") is None:
      raise DataError(f"{_describe(d)} was built in the tfrecord format, which only TensorFlow reads: rebuild it "
                      f"with `tfds build {d.tfds_name} --file_format=array_record` (no TensorFlow needed), or "
                      "install tensorflow") from None
    builder = tfds.builder(d.tfds_name, data_dir=data_dir, try_gcs=False)
    return None, builder.info, builder
  except Exception as e:  # noqa: BLE001 (TFDS raises many types for a dataset it cannot find)
    raise DataError(f"{_describe(d)}: cannot open it ({type(e).__name__}: {' '.join(str(e).split())[:300]}). "
                    f"It must be prepared first, e.g. `tfds build {d.tfds_name} --file_format=array_record"
                    + (f" --data_dir={d.tfds_data_dir}`" if d.tfds_data_dir else "`")
                    + " (this project never downloads)") from None


def _content_key(info) -> str:
  """sha256 over dataset_info.json and the names, sizes and modification times of every file of
  the prepared dataset's folder (TFDS writes them once; a rebuild changes the times). It only
  names the Parquet file: the model's input is that file's own bytes' hash."""
  folder = str(info.data_dir)
  h = hashlib.sha256()
  for root, _, files in sorted(os.walk(folder)):
    for name in sorted(files):
      path = os.path.join(root, name)
      stat = os.stat(path)
      h.update(f"{os.path.relpath(path, folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
      if name == "dataset_info.json":
        with open(path, "rb") as f:
          h.update(f.read())
  return h.hexdigest()[:16]


def _pick(wanted: str, default: str, names, fallbacks, what: str, d) -> str:
  if wanted and wanted != default and wanted not in names:
    raise DataError(f"{_describe(d)} has no field {wanted!r} (data.{what}); its fields: {', '.join(names)}")
  if wanted in names:
    return wanted
  found = [f for f in fallbacks if f in names]
  if not found:
    raise DataError(f"{_describe(d)}: no {what.split('_')[0]} id field among {', '.join(names)}: set data.{what}")
  return found[0]


def _records(source, builder, d, fields):
  """{field: numpy array} of every record."""
  columns = {f: [] for f in fields}
  if source is not None:
    n = len(source)
    for start in range(0, n, _CHUNK):
      for record in source.__getitems__(list(range(start, min(n, start + _CHUNK)))):
        for f in fields:
          columns[f].append(record[f])
  else:
    import tensorflow_datasets as tfds
    for record in tfds.as_numpy(builder.as_dataset(split=d.tfds_split)):
      for f in fields:
        columns[f].append(record[f])
  out = {}
  for f, values in columns.items():
    if values and isinstance(values[0], (bytes, np.bytes_)):
      values = [v.decode("utf-8") for v in values]
    out[f] = np.asarray(values)
  return out


def materialize(data_config, workdir: str) -> tuple:
  """(path of the Parquet file holding the source's records, user column, item column, time
  column), made once per content of the prepared TFDS dataset."""
  tfds = _import()
  d = data_config
  if not d.tfds_name:
    raise ConfigError("data.format=tfds: set data.tfds_name (e.g. movielens/1m-ratings)")
  source, info, builder = _open(tfds, d)
  names = list(info.features.keys())
  user = _pick(d.user_col, "user", names, USER_FIELDS, "user_col", d)
  item = _pick(d.item_col, "item", names, ITEM_FIELDS, "item_col", d)
  if d.time_col == sources.FILE_ORDER:
    raise DataError(f"data.time_col={sources.FILE_ORDER!r}: TFDS stores records shuffled, so a TFDS source has no "
                    "order of its own: name its time field")
  time_col = sources.time_column(_describe(d), names, user, item, d.time_col)
  if time_col and time_col not in names:
    raise DataError(f"{_describe(d)} has no field {time_col!r} (data.time_col); its fields: {', '.join(names)}")
  if not time_col:
    raise DataError(f"{_describe(d)}: TFDS stores records shuffled, so each user's order needs a time field, and "
                    f"none of {', '.join(names)} is named like one: set data.time_col")
  if source is not None and not len(source):
    raise DataError(f"{_describe(d)}: no records")
  # Named by the dataset, the split and the fields read (hashed: a long split expression is never cut
  # into another's name) and by the prepared files.
  what = hashlib.sha256(repr((d.tfds_name, d.tfds_split, user, item, time_col)).encode()).hexdigest()[:8]
  safe = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in f"{d.tfds_name}-{d.tfds_split}")[:40]
  path = os.path.join(workdir, "data", "inputs", f"tfds-{safe}-{what}-{_content_key(info)}.parquet")
  from bert4rec_jax import parallel
  if parallel.is_primary() and not os.path.isfile(path):
    logging.info("Reading %s (%s, %s, %s) into %s", _describe(d), user, item, time_col, path)
    frame = pd.DataFrame(_records(source, builder, d, [user, item, time_col]))
    if not len(frame):
      raise DataError(f"{_describe(d)}: no records")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    io_utils.clean_leftovers(os.path.dirname(path))  # what a stopped write left
    with io_utils.atomic_path(path) as tmp:
      frame.to_parquet(tmp, index=False)
  parallel.barrier("tfds source written")  # every process, whether or not the file was there
  return path, user, item, time_col


def as_parquet(config, workdir: str) -> None:
  """Turns a tfds data config into the Parquet config of its materialized records (in place)."""
  path, user, item, time_col = materialize(config.data, workdir)
  config.data.format, config.data.path = "parquet", path
  config.data.user_col, config.data.item_col, config.data.time_col = user, item, time_col
