"""The Python API: a trained model as an object, and training from a DataFrame.

    from bert4rec_jax import Recommender
    rec = Recommender.load("projects/beauty/models/<name>")   # or Recommender.load(workdir, name)
    rec.recommend([["B001", "B007"], ["B042"]], k=10)          # original ids in, original ids out
    rec.embed(histories)                                       # [n, H] user vectors
    ids, vectors = rec.item_embeddings()                       # the catalogue's ids and vectors

    import bert4rec_jax
    result = bert4rec_jax.train("default", data=df, workdir="projects/mine")
    rec = Recommender.load(result["model_dir"])

A history is a sequence of original item ids, oldest first, as the model was trained on them. Items
the model does not know are dropped (and counted: `Recommendations.unknown`); a history left with
no known item is ranked by training popularity (`Recommendations.fallback`), as batch inference
does. Histories are read exactly as the pipeline's inference reads them: the same cleaning
(data.drop_duplicates of the model's config), the last max_seq_length - 1 items before [MASK],
the model's reading (model.read_last) and, by default, every item of the history excluded from
its recommendations.
"""
import contextlib
import functools
import hashlib
import logging
import os
from typing import Iterable, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bert4rec_jax import (baselines, config_files, evaluate, input_pipeline, io_utils, model as model_lib,
                          model_store, pipeline, preprocess, trainer)
from bert4rec_jax.errors import ConfigError, DataError, MissingError

_MAX_BATCH = 256  # histories per jitted call; smaller requests are padded to the next power of two


class Recommendations(list):
  """The top-K items of each history (a list, one list of original ids per history, best first),
  with `scores` (one float32 array per history, in the same order), `unknown` (items of each
  history the model does not know, dropped) and `fallback` (histories with no known item, ranked
  by training popularity)."""

  def __init__(self, items, scores, unknown, fallback):
    super().__init__(items)
    self.scores = scores
    self.unknown = unknown
    self.fallback = fallback

  def to_frame(self) -> pd.DataFrame:
    """One row per history: items, scores, unknown, fallback."""
    return pd.DataFrame({"items": list(self), "scores": self.scores, "unknown": self.unknown,
                         "fallback": self.fallback})


class Recommender:
  """A trained model, loaded once, that ranks the catalogue for any histories.

  Attributes: `model_dir`, `model_name`, `kind` (bert4rec | sasrec), `step` (the checkpoint
  used: the one validation selected when training selected on validation), `config` (the model's
  own), `items` (the catalogue's original ids, in token order), `popularity` (each item's count in
  the training sequences: the order of the fallback), `max_seq_length`.
  """

  def __init__(self, model_dir: str, config, params, vocab: preprocess.ItemVocab, step: int,
               read_last: str = "", popularity: Optional[np.ndarray] = None):
    self.model_dir = model_dir
    self.model_name = os.path.basename(os.path.normpath(model_dir))
    self.config = config
    self.kind = config.model.get("kind", "bert4rec")
    self.step = step
    self.vocab = vocab
    self.items = vocab.ids
    self.max_seq_length = int(config.model.max_seq_length)
    self.read_last = read_last or config.model.get("read_last") or "mask"
    model_config = config.model.copy_and_resolve_references()
    model_config.read_last = self.read_last
    self._model = model_lib.from_config(model_config, vocab.num_items)
    scorer = _scorer(self._model)
    self.popularity = np.asarray(vocab.counts if popularity is None else popularity, np.float32)
    self._params = (jax.device_put(params), jnp.asarray(self.popularity))
    self._scorer = scorer
    self._drop_duplicates = bool(config.data.get("drop_duplicates", False))

  @classmethod
  def load(cls, path: str, model_name: Optional[str] = None, *, read_last: str = "") -> "Recommender":
    """The model in folder `path` (`<workdir>/models/<name>`), or model `model_name` of workdir
    `path`. `read_last` overrides how a BERT4Rec model reads the last slot (mask | causal); by
    default, as it was trained (its config)."""
    model_dir = os.path.join(path, "models", model_name) if model_name else path
    folder = model_store.Folder(model_dir)
    if not folder.is_model:
      models = os.path.join(path, "models")
      names = sorted(os.listdir(models)) if os.path.isdir(models) else []
      hint = ("" if not names else f"; the models of {path}: {names[:5]}" if model_name else
              f"; {path} looks like a workdir: pass the model's name too, one of {names[:5]}")
      raise MissingError(f"{model_dir}: no trained model there (no {model_store.CONFIG_FILE}){hint}")
    if read_last not in ("", "mask", "causal"):
      raise ConfigError(f"read_last={read_last!r}: one of 'mask', 'causal' (or '' for the model's own)")
    # A shared lock while the folder is read: never while a run trains or replaces the model.
    lock_file = pipeline.model_lock(model_dir)
    with io_utils.lock(lock_file, f"model {model_dir}", shared=True) if lock_file else contextlib.nullcontext():
      config = folder.saved_config()
      if config.model.get("kind", "bert4rec") in baselines.KINDS:
        raise ConfigError(f"{model_dir} is the {config.model.kind} baseline: it has no trained parameters")
      vocab = folder.vocab()
      state = model_store.initial_state(folder, lambda: trainer.create_state(config, vocab.num_items))
      params, step, _ = model_store.load_params(folder, state, config.train.num_train_steps,
                                                trainer.time_bound_seconds(config))
      popularity = folder.training_popularity(vocab)
    return cls(model_dir, config, params, vocab, step, read_last=read_last, popularity=popularity)

  def __repr__(self):
    return (f"Recommender({self.model_name!r}: {self.kind}, {self.vocab.num_items} items, "
            f"max_seq_length {self.max_seq_length}, step {self.step}, reading {self.read_last})")

  # --- histories -------------------------------------------------------------------------------

  def _encode(self, histories) -> tuple:
    """(Sequences of known tokens, unknown counts [n]) of a list of histories."""
    histories = _as_histories(histories)
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    flat = [x for h in histories for x in h]
    raw = np.zeros(0, np.int64)
    if flat and all(isinstance(x, int) for x in flat):
      try:
        raw = np.array(flat, dtype=np.int64)
      except OverflowError:  # beyond 64 bits: a label, read as text (as the readers read it)
        flat = [str(x) for x in flat]
    if flat and raw.size == 0:
      raw = np.array([str(x) for x in flat], dtype=object)
    owner = np.repeat(np.arange(len(histories)), lengths)
    if self._drop_duplicates and len(raw):  # the cleaning the model's data had, on the ids as given (as prepare)
      keep = np.ones(len(raw), bool)
      keep[1:] = (raw[1:] != raw[:-1]) | (owner[1:] != owner[:-1])
      raw, owner = raw[keep], owner[keep]
    tokens = self.vocab.encode(raw) if len(raw) else np.zeros(0, np.int32)
    known = tokens != preprocess.PAD
    unknown = np.bincount(owner[~known], minlength=len(histories)).astype(np.int64)
    tokens, owner = tokens[known], owner[known]
    counts = np.bincount(owner, minlength=len(histories))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return preprocess.Sequences(offsets, np.ascontiguousarray(tokens, dtype=np.int32)), unknown

  def _batches(self, seqs: preprocess.Sequences, exclusion: bool):
    """(rows, batch) per batch of at most _MAX_BATCH histories, shortest first: each batch is
    padded to a power of two of histories and its input cut to the window its longest history
    needs (the model reads a right-aligned window the same at any width: padding is never
    attended), so short histories cost what they hold, not max_seq_length. `history` (for
    exclusion) is as wide as the longest history of the batch, rounded up to a power of two."""
    lengths = seqs.lengths
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), _MAX_BATCH):
      rows = order[start:start + _MAX_BATCH]
      longest = int(lengths[rows].max())
      size = 1 << (len(rows) - 1).bit_length()
      width = min(self.max_seq_length, input_pipeline.bucket(longest + 1, floor=8))
      history = max(width, input_pipeline.bucket(longest, floor=8)) if exclusion else 8  # one shape per width up to L
      _, batch = input_pipeline.scoring_batch(seqs, rows, size, width, self.vocab.mask_id, history)
      yield rows, batch

  def recommend(self, histories, k: int = 10, *, exclude_history: bool = True) -> Recommendations:
    """The `k` best next items of each history (original ids, best first). History items are
    never recommended unless `exclude_history=False`; fewer than k come back only when fewer are
    left."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
      raise ConfigError(f"k={k!r}: a positive number of items")
    if not isinstance(exclude_history, (bool, np.bool_)):
      raise ConfigError(f"exclude_history={exclude_history!r}: True or False")
    k = min(int(k), self.vocab.num_items)
    seqs, unknown = self._encode(histories)
    self._report(unknown, seqs)
    items, scores = [None] * len(seqs), [None] * len(seqs)
    for rows, batch in self._batches(seqs, bool(exclude_history)):
      tokens, values = _top_k(self._scorer, self._params, batch["item_ids"], batch["history"], k=k,
                              exclude_history=bool(exclude_history), chunk=_chunk(self.vocab.num_items))
      tokens, values = np.asarray(tokens), np.asarray(values).astype(np.float32)
      for row, t, v in zip(rows, tokens, values):
        shown = v > -np.inf  # -inf: excluded or no item left
        items[row] = self.vocab.decode(t[shown]).tolist()
        scores[row] = v[shown]
    return Recommendations(items, scores, unknown, seqs.lengths == 0)

  def embed(self, histories) -> np.ndarray:
    """[n, hidden_size] float32: each history's final hidden state at the slot the model predicts
    (the user vector batch inference writes with predict.with_embeddings)."""
    seqs, unknown = self._encode(histories)
    self._report(unknown, seqs)
    out = np.zeros((len(seqs), self.config.model.hidden_size), np.float32)
    for rows, batch in self._batches(seqs, False):
      out[rows] = np.asarray(_hidden(self._scorer, self._params, batch["item_ids"]))[:len(rows)]
    return out

  def item_embeddings(self) -> tuple:
    """(ids [N] original item ids, vectors [N, hidden_size] float32): the item embedding table
    (tied with the output layer), row i for item ids[i]: the model's input vectors. For vectors
    whose dot products are the scores `recommend` ranks, see `query_vectors` and `output_table`."""
    table = np.asarray(self._params[0]["item_embedding"]["embedding"])[1:self.vocab.num_items + 1]
    return self.vocab.ids.copy(), table.astype(np.float32)

  def query_vectors(self, histories) -> np.ndarray:
    """[n, D] float32 with `output_table()`'s [N, D]: query_vectors(h) @ table.T is exactly the score
    `recommend` ranks each item by (the output head applied to the hidden state, a bias column
    and the popularity fallback's column), for a nearest-neighbour index or a two-tower serving
    path. `embed` is the hidden state before the head: its dot products are not the scores."""
    seqs, unknown = self._encode(histories)
    self._report(unknown, seqs)
    out = None
    for rows, batch in self._batches(seqs, False):
      q = np.asarray(_query(self._scorer, self._params, batch["item_ids"]), np.float32)[:len(rows)]
      out = np.zeros((len(seqs), q.shape[1]), np.float32) if out is None else out
      out[rows] = q
    return out if out is not None else np.zeros((0, self.output_table()[1].shape[1]), np.float32)

  def output_table(self) -> tuple:
    """(ids [N] original item ids, table [N, D] float32): row i scores item ids[i] against
    `query_vectors` (the output layer's item vectors, each item's bias and its training count)."""
    return self.vocab.ids.copy(), np.asarray(self._scorer.table(self._params), np.float32)

  def _report(self, unknown: np.ndarray, seqs: preprocess.Sequences) -> None:
    if unknown.sum():
      empty = int((seqs.lengths == 0).sum())
      logging.warning("%d item(s) in %d of %d histories are unknown to the model and were dropped%s",
                      int(unknown.sum()), int((unknown > 0).sum()), len(unknown),
                      f"; {empty} histor{'y' if empty == 1 else 'ies'} with no known item ranked by popularity"
                      if empty else "")


@functools.partial(jax.jit, static_argnames=("scorer", "k", "exclude_history", "chunk"))
def _top_k(scorer, params, item_ids, history, *, k: int, exclude_history: bool, chunk: int):
  query, _ = scorer.query(params, item_ids)
  out = evaluate.scan_catalogue(query, scorer.table(params), chunk=chunk, top_k=k,
                                history=history if exclude_history else None)
  return out["top_items"], out["top_scores"]


@functools.partial(jax.jit, static_argnames=("scorer",))
def _query(scorer, params, item_ids):
  return scorer.query(params, item_ids)[0]


@functools.partial(jax.jit, static_argnames=("scorer",))
def _hidden(scorer, params, item_ids):
  return scorer.query(params, item_ids)[1]


_SCORERS = {}  # model -> its scorer: one jitted function per model settings, however many times it is loaded


def _scorer(model):
  """The model's scorer with the popularity fallback, shared by every Recommender of equal model
  settings (a Flax module compares by its fields), so loading a model again compiles nothing new."""
  if model not in _SCORERS:
    if len(_SCORERS) >= 16:
      _SCORERS.clear()
    _SCORERS[model] = evaluate.with_popularity_fallback(evaluate.model_scorer(model))
  return _SCORERS[model]


def _chunk(num_items: int) -> int:
  return min(num_items, 1 << 16)


def _as_histories(histories) -> List[Sequence]:
  """A list of histories, each a sequence of ids; a flat list of ids (one history given without
  its outer list) is an error that says so, not a set of one-character histories."""
  if isinstance(histories, (str, bytes)) or not isinstance(histories, Iterable):
    raise DataError("histories: a list of histories, each a list of item ids (for one user: [history])")
  if isinstance(histories, (set, frozenset, dict)):
    raise DataError(f"histories: a {type(histories).__name__} has no order; pass a list of histories")
  out = []
  for i, h in enumerate(histories):
    if isinstance(h, (str, bytes)) or not isinstance(h, Iterable):
      raise DataError(f"histories[{i}] is {h!r}, not a list of item ids: pass a list of histories, each a list "
                      "of item ids (for one user: [history])")
    if isinstance(h, (set, frozenset, dict)):  # a history's order is what the model reads
      raise DataError(f"histories[{i}] is a {type(h).__name__}, which has no order: pass its items oldest first, "
                      "as a list")
    if isinstance(h, np.ndarray) and h.ndim != 1:
      raise DataError(f"histories[{i}] is an array of shape {h.shape}, not a list of item ids: pass a list of "
                      "histories, each a list (or 1-D array) of item ids")
    h = list(h.tolist() if isinstance(h, (np.ndarray, pd.Series)) else h)
    out.append([_id(x, i) for x in h])
  return out


def _id(x, i: int):
  """One id as the readers read it (the labels rule): integers as integers, a whole float as the
  integer it is (as a typed column's), anything else as its text (UTF-8 bytes decoded, spaces
  around it stripped); missing and boolean ids refused."""
  if isinstance(x, (bool, np.bool_)):
    raise DataError(f"histories[{i}] holds a boolean ({x!r}), not an item id")
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (float, np.floating)):
    if not np.isfinite(x):
      raise DataError(f"histories[{i}] holds a missing id ({x!r})")
    return int(x) if float(x).is_integer() else x
  if x is None or (not isinstance(x, (str, bytes)) and pd.api.types.is_scalar(x) and pd.isna(x)):
    raise DataError(f"histories[{i}] holds a missing id ({x!r})")
  if isinstance(x, bytes):
    try:
      x = x.decode("utf-8")
    except UnicodeDecodeError:
      raise DataError(f"histories[{i}] holds {x!r}: ids as bytes must be UTF-8 text") from None
  if isinstance(x, str):  # spaces around an id are layout, as the readers read a field
    return x.strip()
  return x


# --- training from memory -----------------------------------------------------------------------

def train(config, data: Optional[pd.DataFrame] = None, workdir: Optional[str] = None, mode: str = "all",
          overrides: Optional[dict] = None) -> dict:
  """Runs the pipeline (`pipeline.run`) from Python: `config` is a ConfigDict, a shipped config's
  name ("default", "ml1m", ...) or a config file's path; `overrides` sets fields by dotted name
  ({"train.num_train_steps": 100}). With `data`, a pandas DataFrame of interactions (columns
  config.data.user_col, item_col and, when present, a time column), the frame is saved once,
  content-addressed, as `<workdir>/data/inputs/frame-<hash>.parquet` and read from there with every
  check a Parquet file gets, so the model's record names its input and `test` / inference can
  read it again. Returns what the run produced (model_dir, results_dir, metrics, ...)."""
  config = config_files.load(config) if isinstance(config, (str, os.PathLike)) else config.copy_and_resolve_references()
  for field, value in (overrides or {}).items():
    config_files.set_field(config, field, value)
  workdir = workdir or os.path.join("projects", config.project)
  if data is not None:
    if not isinstance(data, pd.DataFrame):
      raise DataError(f"data: a pandas DataFrame of interactions, not {type(data).__name__}")
    path = save_frame(data, os.path.join(workdir, "data", "inputs"))
    config.data.format, config.data.path = "parquet", path
    try:
      return pipeline.run(config, workdir, mode)
    except DataError as e:  # name the frame, not the file it was saved to
      raise DataError(str(e).replace(path, "data (the DataFrame)")) from None
  return pipeline.run(config, workdir, mode)


def save_frame(df: pd.DataFrame, folder: str) -> str:
  """Saves `df` as `folder/frame-<content hash>.parquet` (unless that file is already there) and
  returns its path. The hash covers the column names, dtypes and values, in order."""
  h = hashlib.sha256()
  # Names, dtypes and the kinds of values an object column holds (hash_pandas_object reads 1 and "1" alike).
  h.update(repr([(str(c), str(df.dtypes.iloc[i]), pd.api.types.infer_dtype(df.iloc[:, i], skipna=True))
                 for i, c in enumerate(df.columns)]).encode())
  try:
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
  except TypeError as e:  # unhashable cells (lists, dicts)
    raise DataError(f"data: a column holds values that are not ids or times ({e})") from None
  path = os.path.join(folder, f"frame-{h.hexdigest()[:16]}.parquet")
  if not os.path.isfile(path):
    os.makedirs(folder, exist_ok=True)
    io_utils.clean_leftovers(folder)  # what a stopped write left
    with io_utils.atomic_path(path) as tmp:
      try:
        df.to_parquet(tmp, index=False)
      except (ValueError, TypeError, ImportError) as e:  # pyarrow: mixed or unsupported column types
        raise DataError(f"data: the DataFrame cannot be stored ({' '.join(str(e).split())[:200]}); give each "
                        "column one type (e.g. df[col].astype(str))") from None
  return path
