"""NumPy preprocessing: Interactions -> ItemVocab, UserIndex and CSR Sequences; splits.

Everything here is vectorised (argsort / bincount / np.diff): no per-user Python loop.

Token ids (ItemVocab): 0 = PAD, 1..N = items in descending frequency over all of the prepared
sequences, held-out validation and test items included (ties broken by original id, so every run
gives the same ids), N + 1 = MASK. `vocab.counts` are those counts: the sampled protocol's
popularity negatives are drawn by them, as the paper's were (popularity over the whole dataset).
What a model learns from (its popularity row, fallback) are its training counts alone
(model_store.TRAIN_COUNTS_FILE).
"""
import dataclasses
from typing import Dict, Optional, Tuple

import numpy as np
import pandas as pd

from bert4rec_jax.errors import DataError

PAD = 0


def comparable(values: np.ndarray, reference: np.ndarray):
  """(values, reference) in one kind, to look ids of one file up among another file's: as they are
  when both are int64 or both text, otherwise both as text, the labels rule's equality ('7' is the
  integer 7, '007' is not)."""
  values, reference = np.asarray(values), np.asarray(reference)
  if np.issubdtype(values.dtype, np.integer) == np.issubdtype(reference.dtype, np.integer):
    return values, reference
  return values.astype(str), reference.astype(str)


@dataclasses.dataclass(frozen=True)
class ItemVocab:
  """Original item ids in token order: token t (1..N) is `ids[t - 1]`."""
  ids: np.ndarray  # [N] original ids (int64 or str)
  counts: np.ndarray  # [N] int64 frequency in the data the vocab was built on

  @property
  def num_items(self) -> int:
    return len(self.ids)

  @property
  def mask_id(self) -> int:
    return self.num_items + 1

  @property
  def vocab_size(self) -> int:
    """PAD + items + MASK."""
    return self.num_items + 2

  def encode(self, original: np.ndarray) -> np.ndarray:
    """Original ids -> tokens (int32); unknown ids -> PAD (callers count and drop them). Ids of
    another kind (text against an integer vocabulary) match by the labels rule (`comparable`)."""
    original, ids = comparable(original, self.ids)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    pos = np.searchsorted(sorted_ids, original)
    pos = np.clip(pos, 0, max(len(sorted_ids) - 1, 0))
    found = sorted_ids[pos] == original if len(sorted_ids) else np.zeros(original.shape, bool)
    return np.where(found, order[pos] + 1, PAD).astype(np.int32)

  def decode(self, tokens: np.ndarray) -> np.ndarray:
    """Item tokens (1..N) -> original ids. PAD/MASK are never valid here."""
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 1 or tokens.max() > self.num_items):
      raise ValueError("decode() got PAD/MASK or out-of-range tokens")
    return self.ids[tokens - 1]


class Sequences:
  """Ragged int32 token sequences over one flat buffer: sequence u is buffer[offsets[u]:stops[u]].

  Without `ends` this is plain CSR (stops = offsets[1:]) and `items` is the buffer. With `ends`
  it is a view that shares the buffer of the sequences it was made from: drop_last(k), the
  training split, costs [U] ints and copies no token (prepared arrays may be memory-mapped from
  disk). A view's buffer also holds tokens outside its sequences, so a view has no `items`:
  asking for it is an error, not a silent leak of held-out items; use tokens() or compact().
  """
  __slots__ = ("offsets", "buffer", "ends")

  def __init__(self, offsets: np.ndarray, items: np.ndarray, ends: Optional[np.ndarray] = None):
    self.offsets = offsets  # [U + 1] int64: starts (and, for CSR, stops)
    self.buffer = items  # [T] int32
    self.ends = ends  # [U] int64 exclusive stops, for a view

  @property
  def items(self) -> np.ndarray:
    """[T] every token, in order (CSR only)."""
    if self.ends is not None:
      raise ValueError("Sequences.items of a view (drop_last) would include tokens outside its sequences: "
                       "use tokens() or compact()")
    return self.buffer

  def __len__(self) -> int:
    return len(self.offsets) - 1

  @property
  def stops(self) -> np.ndarray:
    """[U] exclusive end of every sequence in `buffer`."""
    return self.offsets[1:] if self.ends is None else self.ends

  @property
  def lengths(self) -> np.ndarray:
    return self.stops - self.offsets[:-1]

  def __getitem__(self, u: int) -> np.ndarray:
    return self.buffer[self.offsets[u]:self.stops[u]]

  def drop_last(self, k: int) -> "Sequences":
    """Every sequence without its last k items (sequences must have at least k): a view."""
    if k == 0:
      return self
    lengths = self.lengths
    if len(lengths) and lengths.min() < k:
      raise ValueError(f"drop_last({k}) needs every sequence to have at least {k} items")
    return Sequences(offsets=self.offsets, items=self.buffer, ends=np.asarray(self.stops - k, dtype=np.int64))

  def last(self, k: int = 1) -> np.ndarray:
    """[U] the k-th item from the end of every sequence."""
    return self.buffer[self.stops - k]

  def select(self, rows: np.ndarray) -> "Sequences":
    """The sub-collection of sequences `rows` (in that order), compact (a copy of their tokens)."""
    rows = np.asarray(rows, dtype=np.int64)
    starts, lengths = self.offsets[rows], self.lengths[rows]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    return Sequences(offsets=offsets, items=np.asarray(self.buffer[idx]))

  def take(self, rows: np.ndarray) -> "Sequences":
    """The sequences `rows` (in that order) as a view: no token copied."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = np.append(self.offsets[:-1][rows], 0)  # the last entry is never a start
    return Sequences(offsets=starts, items=self.buffer, ends=np.asarray(self.stops[rows], dtype=np.int64))

  @property
  def is_compact(self) -> bool:
    """Plain CSR whose buffer holds exactly the sequences' tokens."""
    return self.ends is None and self.offsets[0] == 0 and self.offsets[-1] == len(self.buffer)

  def compact(self) -> "Sequences":
    """Plain CSR holding exactly the sequences' tokens (self when it already is)."""
    return self if self.is_compact else self.select(np.arange(len(self)))

  def tokens(self) -> np.ndarray:
    """[sum(lengths)] every token of every sequence, in order (a copy for a view)."""
    return self.compact().items

  def token_counts(self, minlength: int, chunk_tokens: int = 1 << 22) -> np.ndarray:
    """np.bincount(self.tokens(), minlength=minlength), reading at most ~chunk_tokens tokens at a
    time: no copy of the whole (a view's held-out tokens are not counted)."""
    if self.is_compact:
      return np.bincount(self.buffer, minlength=minlength)
    counts = np.zeros(minlength, np.int64)
    ends = np.cumsum(self.lengths)
    start = 0
    while start < len(self):
      stop = max(int(np.searchsorted(ends, ends[start] - self.lengths[start] + chunk_tokens, side="right")), start + 1)
      chunk = np.bincount(self.select(np.arange(start, stop)).items, minlength=minlength)
      if len(chunk) > len(counts):
        counts = np.concatenate([counts, np.zeros(len(chunk) - len(counts), np.int64)])
      counts[:len(chunk)] += chunk
      start = stop
    return counts


@dataclasses.dataclass(frozen=True)
class Prepared:
  """The output of preprocessing: what the rest of the pipeline consumes."""
  vocab: ItemVocab
  users: np.ndarray  # [U] original user ids; row u of `sequences` belongs to users[u]
  sequences: Sequences  # [U] full time-ordered token sequences (unknown items removed)
  stats: Dict[str, int]
  # [U] False where the user's last raw interaction was an item unknown to a given vocab
  # (so the sequence's last token is not the user's last item). All True for a new vocab.
  last_item_known: np.ndarray = None


def prepare(df: pd.DataFrame, *, drop_duplicates: bool, min_seq_length: int,
            vocab: Optional[ItemVocab] = None) -> Prepared:
  """Groups interactions by user (time order kept), cleans, and encodes to CSR token arrays.

  Users are numbered in ascending order of their original id; within a user the row order of
  `df` is kept (readers put rows in time order). `min_seq_length` applies to the raw
  interactions (after `drop_duplicates`).

  Without `vocab`, a new one is built from these interactions. With `vocab` (test and
  inference reuse the trained model's), it is never changed: interactions with unknown items
  are removed *before* any windowing, so no position shifts, and counted in `stats`; a user
  whose items are all unknown keeps an empty sequence (callers fall back to popularity).
  """
  if len(df) == 0:
    raise DataError("no interactions to prepare")
  return finish([group_users(df["user"].to_numpy(), df["item"].to_numpy(), drop_duplicates=drop_duplicates,
                             min_seq_length=min_seq_length)], min_seq_length, vocab)


@dataclasses.dataclass
class UserGroups:
  """Cleaned, not yet encoded sequences of a set of users (all of the data, or one bucket of it)."""
  users: np.ndarray  # [U] original ids, ascending
  lengths: np.ndarray  # [U] int64
  items: np.ndarray  # [T] original item ids, grouped by user, time order kept
  stats: Dict[str, int]


def group_users(users: np.ndarray, items: np.ndarray, *, drop_duplicates: bool, min_seq_length: int) -> UserGroups:
  """Groups rows by user (stable: row order kept within a user), drops consecutive repeats
  (optional) and users with fewer than `min_seq_length` items."""
  stats = {"interactions_read": int(len(items))}
  user_ids, user_codes = np.unique(users, return_inverse=True)
  order = np.argsort(user_codes, kind="stable")  # group users, keep time order inside a user
  user_codes = user_codes[order]
  items = items[order]

  if drop_duplicates:  # consecutive repeats of the same item by the same user
    same = np.zeros(len(items), dtype=bool)
    same[1:] = (items[1:] == items[:-1]) & (user_codes[1:] == user_codes[:-1])
    stats["consecutive_duplicates_dropped"] = int(same.sum())
    items, user_codes = items[~same], user_codes[~same]

  lengths = np.bincount(user_codes, minlength=len(user_ids))
  short = lengths < min_seq_length
  stats["users_too_short_dropped"] = int(short.sum())
  stats["interactions_of_short_users_dropped"] = int(lengths[short].sum())
  if short.any():
    items = items[~short[user_codes]]
    user_ids, lengths = user_ids[~short], lengths[~short]
  return UserGroups(user_ids, lengths.astype(np.int64), items, stats)


def item_counts(groups) -> Tuple[np.ndarray, np.ndarray]:
  """(ids ascending, counts) of the items of several UserGroups together."""
  return merge_counts([np.unique(g.items, return_counts=True) for g in groups])


def merge_counts(per) -> Tuple[np.ndarray, np.ndarray]:
  """Several (ids, counts) pairs -> (ids ascending, summed counts)."""
  if len(per) == 1:
    return per[0]
  ids, inverse = np.unique(np.concatenate([i for i, _ in per]), return_inverse=True)
  return ids, np.bincount(inverse, weights=np.concatenate([c for _, c in per]), minlength=len(ids)).astype(np.int64)


def finish(groups, min_seq_length: int, vocab: Optional[ItemVocab] = None, counts=None) -> Prepared:
  """Encodes UserGroups of disjoint sets of users (all of the data, or the buckets of a large
  input) into one Prepared, exactly as if all interactions had been grouped at once: users in
  ascending id order, a vocab built from all of them (unless given), the same stats.

  `groups` is a sequence of UserGroups or of loaders (callables returning one), so that
  buckets are held in memory one at a time; `counts` = item_counts of them all when known
  (otherwise every group is loaded once more to count).
  """
  load = lambda g: g() if callable(g) else g  # noqa: E731
  given = vocab is not None
  if not given:
    vocab = build_vocab_from_counts(*(counts if counts is not None else item_counts([load(g) for g in groups])))
  stats: Dict[str, int] = {}
  users, lengths, tokens, last_known, unknown, dropped = [], [], [], [], [], 0
  for g in groups:
    g = load(g)
    for k, v in g.stats.items():
      stats[k] = stats.get(k, 0) + v
    if not len(g.users):
      continue
    t = vocab.encode(g.items)
    known = t != PAD
    dropped += int((~known).sum())
    last_known.append(known[np.cumsum(g.lengths) - 1])
    unknown.append(np.unique(g.items[~known]))
    lengths.append(np.bincount(np.repeat(np.arange(len(g.users)), g.lengths)[known], minlength=len(g.users)))
    tokens.append(t[known])
    users.append(g.users)
  if not users:
    raise DataError(f"no user has at least min_seq_length={min_seq_length} interactions")
  users, lengths = np.concatenate(users), np.concatenate(lengths).astype(np.int64)
  tokens, last_known = np.concatenate(tokens).astype(np.int32), np.concatenate(last_known)
  if given:
    stats["unknown_item_interactions_dropped"] = dropped
    stats["unknown_items"] = int(len(np.unique(np.concatenate(unknown)))) if sum(map(len, unknown)) else 0
    stats["users_without_known_items"] = int((lengths == 0).sum())
    stats["users_whose_last_item_is_unknown"] = int((~last_known).sum())
  seqs = Sequences(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), tokens)
  if len(groups) > 1:  # buckets hold users in any order: ascending ids overall, as one group would
    order = np.argsort(users, kind="stable")
    users, seqs, last_known = users[order], seqs.select(order), last_known[order]
  stats.update(users=int(len(users)), items=vocab.num_items, interactions=int(len(seqs.items)))
  return Prepared(vocab=vocab, users=users, sequences=seqs, stats=stats, last_item_known=last_known)


def build_vocab_from_counts(ids: np.ndarray, counts: np.ndarray) -> ItemVocab:
  """Vocab in descending frequency; ties by ascending original id (`ids` ascending)."""
  order = np.lexsort((np.arange(len(ids)), -counts))
  return ItemVocab(ids=ids[order], counts=np.asarray(counts)[order].astype(np.int64))


def build_vocab(items: np.ndarray) -> ItemVocab:
  """Vocab in descending frequency; ties by ascending original id (deterministic)."""
  return build_vocab_from_counts(*np.unique(items, return_counts=True))


@dataclasses.dataclass(frozen=True)
class EvalSplit:
  """Held-out next items: for user row u, `history[u]` is the input and `targets[u]` the answer."""
  rows: np.ndarray  # [U] int64 row in the Prepared user index
  history: Sequences  # [U] inputs (all items before the target)
  targets: np.ndarray  # [U] int32 target tokens


def leave_one_out(seqs: Sequences) -> Tuple[Sequences, EvalSplit, EvalSplit]:
  """train = all but the last two items, valid = second to last, test = last.

  Training never sees the validation or test item; the test input includes the validation item.
  """
  rows = np.arange(len(seqs), dtype=np.int64)
  train = seqs.drop_last(2)
  valid = EvalSplit(rows=rows, history=train, targets=seqs.last(2))
  test = EvalSplit(rows=rows, history=seqs.drop_last(1), targets=seqs.last(1))
  return train, valid, test


def last_item_split(seqs: Sequences, rows: Optional[np.ndarray] = None) -> EvalSplit:
  """Evaluate the last item of each sequence (in `rows`, default all) given everything before it."""
  if rows is None:  # every sequence: a view, no copy
    rows, sub = np.arange(len(seqs), dtype=np.int64), seqs
  else:
    rows = np.asarray(rows, dtype=np.int64)
    sub = seqs.take(rows)
  return EvalSplit(rows=rows, history=sub.drop_last(1), targets=sub.last(1))


# Minimum raw sequence length each task needs (train+valid+test, train+valid, history+target, history).
TASK_MIN_LENGTH = {"train_val_test": 3, "train_val": 2, "train_test": 2, "test": 2, "inference": 1}
