"""The prepared dataset on disk: content-hashed, reused while inputs and data config are unchanged.

Layout of `<workdir>/data/processed/<hash>/`:
  offsets.npy, items.npy, last_item_known.npy
                  CSR sequences (offsets [U+1] int64, items [T] int32 token ids, full sequences)
                  and [U] bool; memory-mapped when loaded (artifacts of the first layout keep a
                  single sequences.npz, still readable)
  items.parquet   original item id and training count, in token order (token = row + 1)
  users.parquet   original user id, in row order
  meta.json       counts of everything read, dropped and kept, the data config, the source hash,
                  and the content fingerprint of the arrays (what a model's identity records)

Two keys: the folder is named by `dataset_hash` (the input, the data config and FORMAT_VERSION,
the version of the readers' semantics, so a change of reading never reuses a stale artifact);
models are named by `input_key` (the input and data config only, so a reader change never
renames a model: a model's identity records the content fingerprint, which catches a change of
the prepared data itself).

No pickle: loading never runs code. Preparation holds a lock per artifact, so two runs that need
the same dataset prepare it once (the second waits, then reuses it).
"""
import hashlib
import json
import logging
import os
import shutil

import numpy as np
import pandas as pd

from bert4rec_jax import bucketed, io_utils, preprocess, sources
from bert4rec_jax.errors import DataError

FORMAT_VERSION = 2  # bump when the artifact or preprocessing semantics change (2: ids are labels, time columns found)
_NAME_VERSION = 1  # the version model names were first hashed with: never changes (see input_key)
# config.data fields that only choose how the input is read (a tfds source is read into a Parquet file
# first: its content is that file's)
READING_FIELDS = ("chunk_rows", "num_buckets", "tfds_name", "tfds_split", "tfds_data_dir")
# (path, device, inode, size, mtime_ns, ctime_ns) -> sha256: a large input is hashed once per process.
# ctime too: a rewrite that keeps size and mtime (`cp -p`, `rsync -t`, a coarse clock) still changes it.
_SHA_CACHE = {}


def file_sha256(path: str) -> str:
  stat = os.stat(path)
  key = (os.path.abspath(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
  if key not in _SHA_CACHE:
    h = hashlib.sha256()
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    _SHA_CACHE[key] = h.hexdigest()
  return _SHA_CACHE[key]


def _hash(data_config, min_seq_length: int, vocab_fingerprint: str, version: int) -> str:
  if data_config.format != "synthetic" and not os.path.isfile(data_config.path):
    sources.read_interactions(data_config)  # raises the clear "no such file" error
  cfg = data_config.to_dict()
  for how_read in ("path",) + READING_FIELDS:  # where and how it is read never changes the result
    cfg.pop(how_read, None)
  cfg["min_seq_length"] = min_seq_length
  if cfg["format"] != "synthetic":
    cfg.pop("synthetic")
  source = "synthetic" if data_config.format == "synthetic" else file_sha256(data_config.path)
  blob = json.dumps({"v": version, "config": cfg, "source": source, "vocab": vocab_fingerprint},
                    sort_keys=True, default=list)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dataset_hash(data_config, min_seq_length: int, vocab_fingerprint: str = "") -> str:
  """The artifact's folder name: everything that determines the prepared arrays (the path itself
  does not), including the readers' FORMAT_VERSION."""
  return _hash(data_config, min_seq_length, vocab_fingerprint, FORMAT_VERSION)


def input_key(data_config, min_seq_length: int) -> str:
  """The data part of a model's name: the input's bytes and the data config, hashed as model
  names always were (a new reader version keeps every model's name)."""
  return _hash(data_config, min_seq_length, "", _NAME_VERSION)


def _array_digest(h, a) -> None:
  a = np.asarray(a)
  if a.dtype == object or a.dtype.kind in "US":
    h.update(("str:" + "\x00".join(map(str, a.tolist()))).encode())
  else:
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())


def vocab_fingerprint(vocab: "preprocess.ItemVocab") -> str:
  """Hash of the vocabulary's original ids and counts, in token order."""
  h = hashlib.sha256()
  for a in (vocab.ids, vocab.counts):
    _array_digest(h, a)
  return h.hexdigest()[:16]


def fingerprint(prepared_or_folder) -> dict:
  """{'content': hash of users and sequences, 'vocab': vocab_fingerprint}: what a model trained on
  this data records in its identity. A folder's is read from its meta.json when it has one."""
  if isinstance(prepared_or_folder, str):
    meta = io_utils.read_json(os.path.join(prepared_or_folder, "meta.json"))
    if "fingerprint" in meta:
      return meta["fingerprint"]
    prepared_or_folder = load(prepared_or_folder)
  p = prepared_or_folder
  h = hashlib.sha256()
  seqs = p.sequences.compact()
  for a in (p.users, seqs.offsets, seqs.items, p.last_item_known):
    _array_digest(h, a)
  return {"content": h.hexdigest()[:16], "vocab": vocab_fingerprint(p.vocab)}


def load_or_prepare(data_config, workdir: str, min_seq_length: int, vocab: "preprocess.ItemVocab" = None,
                    vocab_fingerprint: str = "") -> tuple:
  """Returns (Prepared, folder); prepares and saves only when no artifact with this hash exists.

  With `vocab` (a trained model's), items are encoded with it and it is never rebuilt; its
  fingerprint is part of the hash. Temporaries a killed preparation left are removed first; a
  second run that needs the same artifact waits for the first and reuses what it wrote.
  """
  processed = os.path.join(workdir, "data", "processed")
  folder = os.path.join(processed, dataset_hash(data_config, min_seq_length, vocab_fingerprint))
  if not os.path.isfile(os.path.join(folder, "meta.json")):
    for leftovers in (processed, os.path.join(workdir, "data"), os.path.join(workdir, "data", "inputs")):
      io_utils.clean_leftovers(leftovers)
    with io_utils.lock(os.path.join(workdir, "locks", f"dataset-{os.path.basename(folder)}.lock"),
                       f"the dataset {folder}", wait=True):
      if not os.path.isfile(os.path.join(folder, "meta.json")):  # the run we waited for may have made it
        _prepare(data_config, workdir, min_seq_length, vocab, vocab_fingerprint, folder)
        return load(folder), folder
  logging.info("Reusing prepared dataset %s (inputs and data config unchanged)", folder)
  return load(folder), folder


def _prepare(data_config, workdir, min_seq_length, vocab, vocab_fingerprint, folder) -> None:
  logging.info("Preparing dataset from %s", data_config.path or data_config.format)
  try:
    if data_config.get("chunk_rows", 0) > 0:  # larger than memory: chunks, bucketed by user on disk
      prepared = bucketed.prepare_bucketed(
          sources.read_chunks(data_config, data_config.chunk_rows), drop_duplicates=data_config.drop_duplicates,
          min_seq_length=min_seq_length, vocab=vocab, num_buckets=data_config.num_buckets,
          tmp_parent=os.path.join(workdir, "data"), source=data_config.path)
    else:
      prepared = preprocess.prepare(sources.read_interactions(data_config), drop_duplicates=data_config.drop_duplicates,
                                    min_seq_length=min_seq_length, vocab=vocab)
  except DataError as e:  # name the input, as the readers do
    source = data_config.path or data_config.format
    if str(e).startswith(f"{source}:"):
      raise
    raise DataError(f"{source}: {e}") from e
  # The folder is named by the file's bytes when its name was chosen: a file written since (its
  # size or time changed, so the hash is taken again) holds other data than the name says.
  if (data_config.format != "synthetic" and os.path.isfile(data_config.path)
      and dataset_hash(data_config, min_seq_length, vocab_fingerprint) != os.path.basename(folder)):
    raise DataError(f"{data_config.path}: the file changed while it was being read; run again once it is written")
  meta = {"format_version": FORMAT_VERSION, "source": data_config.path or "synthetic",
          "data_config": data_config.to_dict(), "min_seq_length": min_seq_length,
          "vocab": vocab_fingerprint or "built from this data", "stats": prepared.stats,
          "fingerprint": fingerprint(prepared)}
  save(prepared, folder, meta)
  logging.info("Prepared %s", json.dumps(prepared.stats))


def save(prepared: "preprocess.Prepared", folder: str, meta: dict) -> None:
  """Writes the artifact into a temporary folder and renames it into place (atomic)."""
  tmp = io_utils.make_temp_dir(os.path.dirname(os.path.abspath(folder)), "dataset")
  try:
    seqs = prepared.sequences.compact()
    for name, array in (("offsets", seqs.offsets), ("items", seqs.items), ("last_item_known", prepared.last_item_known)):
      np.save(os.path.join(tmp, f"{name}.npy"), np.asarray(array))
    pd.DataFrame({"item": prepared.vocab.ids, "count": prepared.vocab.counts}).to_parquet(
        os.path.join(tmp, "items.parquet"), index=False)
    pd.DataFrame({"user": prepared.users}).to_parquet(os.path.join(tmp, "users.parquet"), index=False)
    io_utils.write_json(os.path.join(tmp, "meta.json"), meta)
    if os.path.isdir(folder) and not os.path.isfile(os.path.join(folder, "meta.json")):
      shutil.rmtree(folder)  # never complete (no meta.json): a folder no reader would use
    os.replace(tmp, folder)
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp)


ARTIFACT_FILES = ("meta.json", "items.parquet", "users.parquet")


def load(folder: str) -> "preprocess.Prepared":
  """The artifact's arrays are memory-mapped, read-only: a process reads from disk only the pages
  of the rows it touches (with several processes on a host, the page cache holds one copy).
  A damaged artifact (truncated or missing files) is a DataError that names the file and says to
  delete the folder, which the next run prepares anew."""
  current = "the folder"
  try:
    legacy = os.path.join(folder, "sequences.npz")  # artifacts written before the .npy layout
    if os.path.exists(legacy):
      current = legacy
      with np.load(legacy, allow_pickle=False) as z:
        seqs = preprocess.Sequences(offsets=z["offsets"], items=z["items"])
        last_item_known = z["last_item_known"]
    else:
      arrays = {}
      for name in ("offsets", "items", "last_item_known"):
        current = os.path.join(folder, f"{name}.npy")
        arrays[name] = np.load(current, mmap_mode="r", allow_pickle=False)
      seqs = preprocess.Sequences(offsets=arrays["offsets"], items=arrays["items"])
      last_item_known = arrays["last_item_known"]
    current = os.path.join(folder, "meta.json")
    meta = io_utils.read_json(current)
    current = os.path.join(folder, "items.parquet")
    vocab = load_vocab(folder)
    current = os.path.join(folder, "users.parquet")
    users = load_users(folder)
    current = folder
    _check_consistent(seqs, last_item_known, users, vocab)
  except Exception as e:  # noqa: BLE001 (NumPy, pyarrow and json each raise their own types)
    if isinstance(e, OSError) and e.errno not in (None, 2):
      raise  # a disk problem, not a damaged artifact
    raise DataError(f"{current}: the prepared dataset is damaged ({type(e).__name__}: {str(e)[:200]}); delete "
                    f"{folder} and run again to prepare it anew") from e
  return preprocess.Prepared(vocab=vocab, users=users, sequences=seqs, stats=meta["stats"],
                             last_item_known=last_item_known)


def _check_consistent(seqs, last_item_known, users, vocab) -> None:
  """Cheap checks (no pass over the tokens) that the artifact's parts belong together."""
  n_users, n_tokens = len(seqs), len(seqs.buffer)
  if len(users) != n_users or len(last_item_known) != n_users:
    raise ValueError(f"{n_users} sequences but {len(users)} users and {len(last_item_known)} flags")
  if n_users and (seqs.offsets[0] != 0 or seqs.offsets[-1] != n_tokens):
    raise ValueError(f"offsets end at {seqs.offsets[-1]}, items hold {n_tokens} tokens")
  if len(vocab.ids) != len(vocab.counts):
    raise ValueError("item ids and counts differ in length")


def load_vocab(folder: str) -> "preprocess.ItemVocab":
  items = pd.read_parquet(os.path.join(folder, "items.parquet"))
  return preprocess.ItemVocab(ids=items["item"].to_numpy(), counts=items["count"].to_numpy())


def load_users(folder: str) -> np.ndarray:
  return pd.read_parquet(os.path.join(folder, "users.parquet"))["user"].to_numpy()
