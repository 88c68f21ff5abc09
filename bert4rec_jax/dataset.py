"""The prepared dataset on disk: content-hashed, reused while inputs and data config are unchanged.

Layout of `<workdir>/data/processed/<hash>/`:
  offsets.npy, items.npy, last_item_known.npy
                  CSR sequences (offsets [U+1] int64, items [T] int32 token ids, full sequences)
                  and [U] bool; memory-mapped when loaded (artifacts of the first layout keep a
                  single sequences.npz, still read under the same hash, so no model is renamed;
                  checkouts from before this layout cannot read the new one: give them their own
                  workdir)
  items.parquet   original item id and training count, in token order (token = row + 1)
  users.parquet   original user id, in row order
  meta.json       counts of everything read, dropped and kept, the data config, the source hash

No pickle: loading never runs code.
"""
import hashlib
import json
import logging
import os
import shutil
import tempfile

import numpy as np
import pandas as pd

from bert4rec_jax import bucketed, io_utils, preprocess, sources
from bert4rec_jax.errors import DataError

FORMAT_VERSION = 1  # bump when the artifact or preprocessing semantics change
READING_FIELDS = ("chunk_rows", "num_buckets")  # config.data fields that only choose how the input is read


def file_sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def dataset_hash(data_config, min_seq_length: int, vocab_fingerprint: str = "") -> str:
  """Hash of everything that determines the prepared arrays (the path itself does not)."""
  if data_config.format != "synthetic" and not os.path.isfile(data_config.path):
    sources.read_interactions(data_config)  # raises the clear "no such file" error
  cfg = data_config.to_dict()
  for how_read in ("path",) + READING_FIELDS:  # where and how it is read never changes the result
    cfg.pop(how_read, None)
  cfg["min_seq_length"] = min_seq_length
  if cfg["format"] != "synthetic":
    cfg.pop("synthetic")
  source = "synthetic" if data_config.format == "synthetic" else file_sha256(data_config.path)
  blob = json.dumps({"v": FORMAT_VERSION, "config": cfg, "source": source, "vocab": vocab_fingerprint},
                    sort_keys=True, default=list)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_or_prepare(data_config, workdir: str, min_seq_length: int, vocab: "preprocess.ItemVocab" = None,
                    vocab_fingerprint: str = "") -> tuple:
  """Returns (Prepared, folder); prepares and saves only when no artifact with this hash exists.

  With `vocab` (a trained model's), items are encoded with it and it is never rebuilt; its
  fingerprint is part of the hash.
  """
  folder = os.path.join(workdir, "data", "processed", dataset_hash(data_config, min_seq_length, vocab_fingerprint))
  if os.path.isfile(os.path.join(folder, "meta.json")):
    logging.info("Reusing prepared dataset %s (inputs and data config unchanged)", folder)
    return load(folder), folder
  logging.info("Preparing dataset from %s", data_config.path or data_config.format)
  try:
    if data_config.get("chunk_rows", 0) > 0:  # larger than memory: chunks, bucketed by user on disk
      prepared = bucketed.prepare_bucketed(
          sources.read_chunks(data_config, data_config.chunk_rows), drop_duplicates=data_config.drop_duplicates,
          min_seq_length=min_seq_length, vocab=vocab, num_buckets=data_config.num_buckets,
          tmp_parent=_made(os.path.join(workdir, "data")), source=data_config.path)
    else:
      prepared = preprocess.prepare(sources.read_interactions(data_config), drop_duplicates=data_config.drop_duplicates,
                                    min_seq_length=min_seq_length, vocab=vocab)
  except DataError as e:  # name the input, as the readers do
    source = data_config.path or data_config.format
    if str(e).startswith(f"{source}:"):
      raise
    raise DataError(f"{source}: {e}") from e
  meta = {"format_version": FORMAT_VERSION, "source": data_config.path or "synthetic",
          "data_config": data_config.to_dict(), "min_seq_length": min_seq_length,
          "vocab": vocab_fingerprint or "built from this data", "stats": prepared.stats}
  save(prepared, folder, meta)
  logging.info("Prepared %s", json.dumps(prepared.stats))
  del prepared  # from here on the same (memory-mapped) arrays as every later run and every other process
  return load(folder), folder


def _made(folder: str) -> str:
  os.makedirs(folder, exist_ok=True)
  return folder


def save(prepared: "preprocess.Prepared", folder: str, meta: dict) -> None:
  """Writes the artifact into a temporary folder and renames it into place (atomic)."""
  parent = os.path.dirname(os.path.abspath(folder))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-")
  try:
    seqs = prepared.sequences.compact()
    for name, array in (("offsets", seqs.offsets), ("items", seqs.items), ("last_item_known", prepared.last_item_known)):
      np.save(os.path.join(tmp, f"{name}.npy"), np.asarray(array))
    pd.DataFrame({"item": prepared.vocab.ids, "count": prepared.vocab.counts}).to_parquet(
        os.path.join(tmp, "items.parquet"), index=False)
    pd.DataFrame({"user": prepared.users}).to_parquet(os.path.join(tmp, "users.parquet"), index=False)
    io_utils.write_json(os.path.join(tmp, "meta.json"), meta)
    if os.path.isdir(folder):  # a partial folder from an interrupted run has no meta.json
      shutil.rmtree(folder)
    os.replace(tmp, folder)
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp)


def load(folder: str) -> "preprocess.Prepared":
  """The artifact's arrays are memory-mapped, read-only: a process reads from disk only the pages
  of the rows it touches (with several processes on a host, the page cache holds one copy)."""
  legacy = os.path.join(folder, "sequences.npz")  # artifacts written before the .npy layout
  if os.path.exists(legacy):
    with np.load(legacy, allow_pickle=False) as z:
      seqs = preprocess.Sequences(offsets=z["offsets"], items=z["items"])
      last_item_known = z["last_item_known"]
  else:
    arrays = {name: np.load(os.path.join(folder, f"{name}.npy"), mmap_mode="r", allow_pickle=False)
              for name in ("offsets", "items", "last_item_known")}
    seqs = preprocess.Sequences(offsets=arrays["offsets"], items=arrays["items"])
    last_item_known = arrays["last_item_known"]
  meta = io_utils.read_json(os.path.join(folder, "meta.json"))
  return preprocess.Prepared(vocab=load_vocab(folder), users=load_users(folder), sequences=seqs,
                             stats=meta["stats"], last_item_known=last_item_known)


def load_vocab(folder: str) -> "preprocess.ItemVocab":
  items = pd.read_parquet(os.path.join(folder, "items.parquet"))
  return preprocess.ItemVocab(ids=items["item"].to_numpy(), counts=items["count"].to_numpy())


def load_users(folder: str) -> np.ndarray:
  return pd.read_parquet(os.path.join(folder, "users.parquet"))["user"].to_numpy()
