"""Batch inference: for every user, the top-K next items (original ids, scores in rank order)
and optionally the user embedding, streamed to Parquet one row group per batch.

The input is the user's whole history (its last L - 1 items) followed by [MASK]; the user
embedding is the final hidden state at that [MASK] slot.
"""
import functools
import logging
import os

import jax
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from bert4rec_jax import evaluate, input_pipeline, io_utils, parallel
from bert4rec_jax.preprocess import ItemVocab, Sequences


def _predict_step(params, batch, *, scorer, top_k: int, exclude_history: bool, chunk: int):
  query, hidden = scorer.query(params, batch["item_ids"])  # [b, D], [b, H]
  out = evaluate.scan_catalogue(query, scorer.table(params), chunk=chunk, top_k=top_k,
                                history=batch["history"] if exclude_history else None)
  return out["top_items"], out["top_scores"], hidden


def predict(scorer, params, history: Sequences, users: np.ndarray, vocab: ItemVocab, *, predict_config,
            max_seq_length: int, devices, path: str) -> int:
  """Writes `path` (Parquet): user, items (list, best first), scores (list)[, embedding (list)],
  and `popularity_fallback` (True for users with no known item, ranked by popularity) when
  any user has an empty history.

  `scorer` is an `evaluate.Scorer`; the catalogue is scanned predict_config.item_chunk_size
  items at a time.
  Returns the number of users this process wrote. Memory stays flat: one batch is in flight
  at a time, written as one Parquet row group.

  `path` is a folder of Parquet parts when predict_config.users_per_part > 0 (parts of at most
  that many users, `part-<process>-<k>.parquet`) or when there are several processes (each
  predicts its contiguous block of the users on its own devices, `part-<process>.parquet`).
  pandas and pyarrow read the folder as one table, users in order. The parts are written into a
  staging folder beside `path` (`staging_folder`) that takes its name once all of them are: a run
  stopped part-way leaves no folder of some users' parts under `path` to be read as the whole.
  """
  top_k = min(predict_config.top_k, vocab.num_items)
  d = len(devices)
  batch_size = -(-predict_config.batch_size // d) * d
  step = parallel.pmap(functools.partial(_predict_step, scorer=scorer, top_k=top_k,
                                         exclude_history=predict_config.exclude_history,
                                         chunk=predict_config.item_chunk_size), devices)
  p_params = parallel.replicate(params, devices)
  rows = np.arange(len(history))[parallel.process_block(len(history))]
  empty = history.lengths == 0
  per_part = predict_config.get("users_per_part", 0)
  in_parts = per_part > 0 or parallel.process_count() > 1
  staging = staging_folder(path) if in_parts else path
  if parallel.is_primary():
    if in_parts:
      io_utils.remove_path(staging)  # a stopped run's parts: never mixed with this run's
    elif os.path.isdir(path):
      io_utils.remove_path(path)  # an earlier run's parts, where one file goes now (gone as one)
  parallel.barrier("predictions folder cleared")
  pieces = [rows[i:i + per_part] for i in range(0, len(rows), per_part)] if per_part > 0 else [rows]
  short = 0  # users given fewer than top_k items
  bar = tqdm(total=-(-len(rows) // batch_size), desc="predict", unit="batch", mininterval=1.0,
             disable=not parallel.is_primary())
  for k, piece in enumerate(pieces):
    if not len(piece):
      continue
    target = path
    if in_parts:
      target = os.path.join(staging, f"part-{jax.process_index():05d}" + (f"-{k:05d}" if per_part > 0 else "") + ".parquet")
    with io_utils.atomic_path(target) as tmp:
      writer = None
      try:
        for start in range(0, len(piece), batch_size):
          real = min(batch_size, len(piece) - start)
          chunk = piece[start:start + batch_size]
          # Exclusion is as wide as this batch's longest history (a power of two: few compilations),
          # so one very long history costs its own batch, not every batch.
          width = input_pipeline.bucket(int(history.lengths[chunk].max()))
          idx, batch = input_pipeline.scoring_batch(history, chunk, batch_size, max_seq_length, vocab.mask_id, width)
          tokens, scores, hidden = step(p_params, parallel.put_sharded(batch, devices))
          tokens, scores = parallel.unshard(tokens)[:real], parallel.unshard(scores)[:real].astype(np.float32)
          # -inf marks no item: the history and NaN-scored items are never shown, so a user with
          # fewer than top_k items left gets fewer, never a repeated or an excluded one.
          kept = scores > -np.inf  # [b, k], a prefix of each row (top_k sorts -inf last)
          short += int((~kept[:, -1]).sum()) if kept.size else 0
          columns = {
              "user": pa.array(users[idx[:real]]),
              "items": pa.array([vocab.decode(t[m]) for t, m in zip(tokens, kept)]),
              "scores": pa.array([v[m] for v, m in zip(scores, kept)]),
          }
          if predict_config.with_embeddings:
            columns["embedding"] = pa.array(list(parallel.unshard(hidden)[:real].astype(np.float32)))
          if empty.any():
            columns["popularity_fallback"] = pa.array(empty[idx[:real]])
          table = pa.table(columns)
          if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
          writer.write_table(table)
          bar.update(1)
      finally:
        if writer is not None:
          writer.close()
  bar.close()
  if in_parts:
    parallel.barrier("predictions parts written")
    if parallel.is_primary():
      os.makedirs(staging, exist_ok=True)  # a process with no users wrote no part
      io_utils.remove_path(path)  # the earlier parts go as one: never some of them under the name
      os.replace(staging, path)
    parallel.barrier("predictions in place")
  if short:
    logging.warning("%d user(s) got fewer than %d items (predict.top_k=%d%s): fewer are left once their history "
                    "is excluded", short, top_k, predict_config.top_k,
                    f", the catalogue's {vocab.num_items} items" if top_k < predict_config.top_k else "")
  logging.info("Wrote predictions for %d users to %s", len(rows), path)
  return len(rows)


def staging_folder(path: str) -> str:
  """Where the parts of `path` are written until all of them are there."""
  return os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.partial")

