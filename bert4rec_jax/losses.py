"""The training losses' parts beside the model: next-item targets, the sampled softmax with logQ
correction, and the sampler of its negatives.

The sampler is Walker's alias method (Walker 1977; Vose 1991) built on the host in float64 with
32-bit integer acceptance thresholds, so that every item with a nonzero weight can be drawn (a
float32 CDF cannot draw tail items whose probability is below its resolution) and the logQ
correction uses the exact probability with which the sampler draws each item, not the intended
one.
"""
from functools import partial
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from bert4rec_jax import masking

_TWO32 = float(2 ** 32)


class NegativeSampler(NamedTuple):
  """Draws item columns with replacement: column i (uniform over N), kept when a 32-bit draw is
  below threshold[i], else alias[i]. log_q [N] is the log of the exact probability of each column."""
  threshold: np.ndarray  # [N] uint32
  alias: np.ndarray  # [N] int32
  log_q: np.ndarray  # [N] float32


def alias_sampler(weights: np.ndarray) -> NegativeSampler:
  """The alias tables of weights [N] >= 0 (not all 0)."""
  w = np.asarray(weights, np.float64)
  n = len(w)
  p = w * (n / w.sum())  # mean 1
  prob, alias = np.ones(n), np.arange(n, dtype=np.int64)
  small, large = list(np.flatnonzero(p < 1.0)), list(np.flatnonzero(p >= 1.0))
  p = p.tolist()
  while small and large:
    s, g = small.pop(), large.pop()
    prob[s], alias[s] = p[s], g
    p[g] -= 1.0 - p[s]
    (small if p[g] < 1.0 else large).append(g)
  # What is left holds (up to rounding) exactly 1: always itself.
  threshold = np.rint(prob * _TWO32)
  threshold[(w > 0) & (threshold < 1)] = 1  # an item with weight is always drawable through its own slot
  full = threshold >= _TWO32
  threshold[full], alias[full] = _TWO32 - 1, np.flatnonzero(full)  # "below 2**32 - 1, else itself": always
  # The exact probability of each column: the draws its own slot accepts plus the rejections
  # aliased to it (a full column is its own alias, so it gets its whole slot).
  mass = threshold + np.bincount(alias, weights=_TWO32 - threshold, minlength=n)
  q = mass / (n * _TWO32)
  return NegativeSampler(threshold.astype(np.uint32), alias.astype(np.int32), np.log(q).astype(np.float32))


def draw_negatives(key, sampler: NegativeSampler, num: int):
  """[num] item columns drawn with replacement from the sampler: O(num), whatever the catalogue."""
  k_col, k_bits = jax.random.split(key)
  n = sampler.alias.shape[0]
  col = jax.random.randint(k_col, (num,), 0, n)
  bits = jax.random.bits(k_bits, (num,), jnp.uint32)
  return jnp.where(bits < sampler.threshold[col], col, sampler.alias[col]).astype(jnp.int32)


def sampled_softmax_ce(own, hidden, table, bias, target_columns, candidates, log_q,
                       chunk_elements: int = 0):
  """Sampled softmax cross-entropy with logQ correction (importance sampling of the partition
  function, Bengio & Senecal 2008).

  own [..]: logit of each target; the logits of C candidates drawn with replacement from
  q = exp(log_q) [N] are hidden [.., H] @ table.T + bias (table [C, H] and bias [C]: the
  candidates' output rows); target_columns [..] and candidates [C] are item columns. The
  partition function is estimated as exp(own) + sum over draws j != target of
  exp(s_j) / (C q_j): each negative is divided by its expected number of draws (the logQ
  correction) and a draw of the row's own target (an accidental hit) is removed. The estimate
  is consistent: as C grows the loss converges to the full softmax cross-entropy (tested).
  The [.., C] logits are formed a chunk at a time (`chunked_logsumexp`).
  """
  log_expected = jnp.log(float(candidates.shape[0])) + log_q[candidates]  # log(C q_j)
  others = chunked_logsumexp(hidden, table, bias - log_expected, target_columns, candidates,
                             chunk_elements)
  return jnp.logaddexp(own, others) - own


def logit_chunk_elements(configured: int = 0) -> int:
  """The training losses' logits formed at once (train.logit_chunk_elements; 0 chooses): about 4M
  (16 MB) on CPU: on MovieLens-1M's recipe step (256 x 200 windows, 3,416 items, the next-item
  loss; 2 cores) chunks of 4M made the step 1.4x faster and its peak RSS 1.3 GB smaller than
  autodiff through the whole logits (1.2x and 1.7 GB against a single chunk), and 1M or 16M were
  no better. 128M (512 MB) on an accelerator, whose memory holds a batch's logits in one or two
  chunks (not measured there)."""
  if configured:
    return configured
  return 1 << 22 if jax.default_backend() == "cpu" else 1 << 27


def full_softmax_ce(hidden, table, bias, labels, chunk_elements: int = 0):
  """Cross-entropy of softmax(hidden @ table.T + bias) at `labels`: hidden [..., H], table [N, H]
  (hidden's dtype), bias [N], labels [...] int in [0, N) -> [...] float32; the [..., N] logits
  are formed a chunk at a time (`chunked_logsumexp`). The same value and gradients as the plain
  computation (tested against NumPy)."""
  own = target_logits(hidden, table[labels], bias[labels])
  return chunked_logsumexp(hidden, table, bias, chunk_elements=chunk_elements) - own


def target_logits(hidden, rows, bias):
  """Each row's logit of its own target: hidden [..., H] . rows [..., H] (the target's output row)
  + bias [...], accumulated in float32 as `chunked_logsumexp`'s logits are -> [...] float32."""
  return jnp.einsum("...h,...h->...", hidden, rows, preferred_element_type=jnp.float32) + bias


def chunked_logsumexp(hidden, table, bias, row_keys=None, column_keys=None, chunk_elements: int = 0):
  """log sum_j exp(hidden @ table.T + bias)_j per row, without ever holding the [T, N] logits:
  hidden [..., H], table [N, H], bias [N] -> [...] float32. Column j is left out of a row when
  column_keys[j] == that row's row_keys (both given or neither; every column left out: -inf).

  The rows are taken about chunk_elements logits at a time (0: `logit_chunk_elements()`), and the
  gradient is written by hand: the forward pass keeps only each row's result, the backward pass
  recomputes a chunk's logits and forms their softmax from it. Memory is O(chunk_elements + T x H
  + N x H) instead of several [T, N] buffers (BERT4Rec's next-item loss over every position of 256
  windows of 200 items on 3,416 items is 175M logits, 700 MB a buffer).

  The backward pass takes the logits a block of rows at a time while there are more rows than
  columns (T >= N), adding each block's share into the table's gradient, and a block of columns
  at a time otherwise, adding each block's share into the rows' gradient (the lse of every row is
  known from the forward pass): either way the gradient summed over the blocks is the smaller
  of the two. Summing the table's [N, H] gradient over blocks of rows made the pass grow with N^2 on
  a large catalogue (2,200 rows, H 64, forward and backward on 2 CPU cores: 0.21 s at 16,000
  columns, 1.85 s at 54,542; by blocks of columns 0.72 s at 54,542: `experiments/benchmark.py
  --only=softmax`, docs/benchmarks.md)."""
  shape = hidden.shape[:-1]
  h = hidden.reshape((-1, hidden.shape[-1]))
  keyed = row_keys is not None
  rk = (row_keys.reshape(-1) if keyed else jnp.zeros(h.shape[0])).astype(jnp.int32)
  ck = (column_keys if keyed else jnp.full(table.shape[0], -1)).astype(jnp.int32)
  elements = logit_chunk_elements(chunk_elements)
  rows = max(1, min(h.shape[0], elements // max(table.shape[0], 1)))
  cols = _column_block(h.shape[0], table.shape[0], elements)
  pad = -h.shape[0] % rows
  h, rk = jnp.pad(h, ((0, pad), (0, 0))), jnp.pad(rk, (0, pad), constant_values=-2)
  lse = _chunked_lse(rows, cols, keyed, h, table, bias, rk, ck)
  return lse[:lse.shape[0] - pad].reshape(shape)


def _column_block(rows: int, columns: int, elements: int) -> int:
  """The columns of each block of `chunked_logsumexp`'s backward pass, or 0 for blocks of rows (see
  its docstring): about `elements` logits a block, as many columns in each as that many blocks
  need (the last is not mostly padding)."""
  if columns <= rows:
    return 0
  cols = max(1, min(columns, elements // max(rows, 1)))
  return -(-columns // -(-columns // cols))


def _masked_logits(keyed, h, table, bias, rk, ck):
  logits = jnp.dot(h, table.T, preferred_element_type=jnp.float32) + bias  # [rows, N]
  return jnp.where(ck[None, :] == rk[:, None], -jnp.inf, logits) if keyed else logits


def _chunks(rows, *xs):
  return tuple(x.reshape((-1, rows) + x.shape[1:]) for x in xs)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _chunked_lse(rows, cols, keyed, h, table, bias, rk, ck):
  return _chunked_lse_fwd(rows, cols, keyed, h, table, bias, rk, ck)[0]


def _chunked_lse_fwd(rows, cols, keyed, h, table, bias, rk, ck):
  lse = jax.lax.map(lambda c: jax.nn.logsumexp(_masked_logits(keyed, c[0], table, bias, c[1], ck), axis=-1),
                    _chunks(rows, h, rk)).reshape(-1)
  return lse, (h, table, bias, rk, ck, lse)


def _padded_columns(cols, table, bias, ck):
  """table, bias and column keys padded to a multiple of cols columns, blocks of cols: a padded
  column's logit is -inf (its bias) and its key is no row's, so its softmax is 0."""
  pad = -table.shape[0] % cols
  return _chunks(cols, jnp.pad(table, ((0, pad), (0, 0))), jnp.pad(bias, (0, pad), constant_values=-jnp.inf),
                 jnp.pad(ck, (0, pad), constant_values=-3))


def _softmax_times(keyed, h, table, bias, rk, ck, lse, g):
  """d lse / d logits (the softmax: exp(logits - lse)) times the incoming gradient g, for rows h
  against columns table; a row with every column left out (lse -inf) has none (NaN stays NaN)."""
  live = (lse > -jnp.inf)[:, None]
  p = jnp.where(live, jnp.exp(_masked_logits(keyed, h, table, bias, rk, ck) - jnp.where(live, lse[:, None], 0.0)), 0.0)
  return p * g[:, None]


def _chunked_lse_bwd(rows, cols, keyed, saved, g):
  if cols:
    return _chunked_lse_bwd_by_columns(cols, keyed, saved, g)
  h, table, bias, rk, ck, lse = saved

  def one(carry, chunk):
    d_table_t, d_bias = carry
    hc, rc, lc, gc = chunk
    d = _softmax_times(keyed, hc, table, bias, rc, ck, lc, gc)
    dh = jnp.dot(d.astype(table.dtype), table, preferred_element_type=jnp.float32).astype(h.dtype)
    # The table's gradient transposed, [H, N] = hc^T d (rows contracted): on CPU, d^T hc -> [N, H]
    # ran 2-7x slower when N is a power of two (the sampled softmax's 8,192 negatives); hc^T d did not at
    # any N measured (3,416 to 16,384: docs/recipe.md, "A faster sampled softmax").
    d_table_t = d_table_t + jax.lax.dot_general(hc, d.astype(hc.dtype), (((0,), (0,)), ((), ())),
                                                preferred_element_type=jnp.float32)
    return (d_table_t, d_bias + d.sum(0)), dh

  (d_table_t, d_bias), dh = jax.lax.scan(
      one, (jnp.zeros(table.shape[::-1], jnp.float32), jnp.zeros(bias.shape, jnp.float32)),
      _chunks(rows, h, rk, lse, g))
  return dh.reshape(h.shape), d_table_t.T.astype(table.dtype), d_bias.astype(bias.dtype), None, None


def _chunked_lse_bwd_by_columns(cols, keyed, saved, g):
  """The backward pass a block of `cols` columns at a time: each block's gradients of the table
  and bias are its own, the rows' gradient is summed over the blocks."""
  h, table, bias, rk, ck, lse = saved
  n = table.shape[0]

  def one(dh, chunk):
    tc, bc, cc = chunk
    d = _softmax_times(keyed, h, tc, bc, rk, cc, lse, g)  # [T, cols]
    dh = dh + jnp.dot(d.astype(table.dtype), tc, preferred_element_type=jnp.float32)
    # The block's table gradient transposed, [H, cols] = h^T d, as the blocks of rows form theirs (above).
    d_table_t = jax.lax.dot_general(h, d.astype(h.dtype), (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
    return dh, (d_table_t, d.sum(0))

  dh, (d_table_t, d_bias) = jax.lax.scan(one, jnp.zeros(h.shape, jnp.float32), _padded_columns(cols, table, bias, ck))
  d_table, d_bias = d_table_t.transpose(0, 2, 1).reshape(-1, table.shape[1])[:n], d_bias.reshape(-1)[:n]
  return dh.astype(h.dtype), d_table.astype(table.dtype), d_bias.astype(bias.dtype), None, None


_chunked_lse.defvjp(_chunked_lse_fwd, _chunked_lse_bwd)


def negative_sampler(train_config, train_seqs, num_items: int) -> Optional[NegativeSampler]:
  """The sampled softmax's sampler of negatives (None for the full softmax): popularity (training
  counts + 1, so every item can be drawn) or uniform."""
  if step_loss(train_config, num_items) != "sampled":
    return None
  if train_config.negative_sampler == "uniform":
    return alias_sampler(np.ones(num_items))
  return alias_sampler(train_seqs.token_counts(num_items + 2)[1:num_items + 1] + 1.0)


def step_loss(train_config, num_items: int) -> str:
  """The loss the step computes: the configured one, except that a sampled softmax with at least
  as many draws as there are items becomes the full softmax, which is then both exact and
  cheaper (a config tuned on a large catalogue can be run on a small one as it is)."""
  if train_config.loss == "sampled" and train_config.num_negatives >= num_items:
    return "full"
  return train_config.loss


def next_item_loss_weight(config) -> float:
  """The auxiliary next-item loss's weight: BERT4Rec only (SASRec's loss is that loss already, so
  a config that sets it switches to SASRec with one flag, model.kind=sasrec)."""
  return float(config.train.get("next_item_loss_weight", 0.0)) if config.model.kind == "bert4rec" else 0.0


def masked_loss_every(config) -> int:
  """train.masked_loss_every: BERT4Rec with the next-item loss computes its masked-item loss (and
  the bidirectional pass it needs) on one window in this many of each batch; 1 otherwise."""
  return int(config.train.get("masked_loss_every", 1)) if next_item_loss_weight(config) else 1


def masked_rows(key, x, every: int):
  """One row of every `every` consecutive rows of x [b, ...] (b a multiple of `every`): the same
  offset within each group, drawn from `key` (the step's, so every device draws the same). Each row
  is taken with probability 1 / every, so a loss over the rows taken, divided by 1 / every of the
  batch's count, estimates the loss over the whole batch without bias, whichever way rows are
  ordered (a length-bucketed batch is sorted by length)."""
  if every == 1:
    return x
  pick = jax.random.randint(key, (), 0, every)
  return jnp.take(x.reshape(x.shape[0] // every, every, *x.shape[1:]), pick, axis=1)


def next_item_positions(config) -> int:
  """train.next_item_positions: the most next-item targets a window keeps (0: all of them)."""
  return int(config.train.get("next_item_positions", 0))


def mean_targets(config, window_lengths, per_example: bool = False) -> tuple:
  """(masked-item, next-item) targets per training example, averaged over an epoch of windows
  holding `window_lengths` [W] items: what `masking.mask_example`, `next_item_targets` and
  `keep_some_targets` pick, in expectation over the masking draws (exact: float32 rounding as on
  device). The next-item mean is 0 without the next-item loss; kind="sasrec" has only next-item
  targets (first). per_example: the fraction of examples with at least one target instead.
  With train.masked_loss_every = k the masked-item mean is 1 / k of the windows' (`masked_rows`
  takes each window with probability 1 / k)."""
  n = np.asarray(window_lengths, np.int64)
  following = np.maximum(n - 1, 0)
  if keep := next_item_positions(config):
    following = np.minimum(following, keep)
  following = float((np.minimum(following, 1) if per_example else following).mean()) if len(n) else 0.0
  if config.model.kind == "sasrec":
    return following, 0.0
  mk = config.masking
  picked = np.clip(np.round(n.astype(np.float32) * np.float32(mk.masked_lm_prob)), 1, mk.max_predictions_per_seq)
  picked = np.where(n > 0, 1 if per_example else np.minimum(picked, n), 0).mean() if len(n) else 0.0
  last = float((n > 0).mean()) if len(n) else 0.0  # a mask-last example has one target
  if mk.mode == "static":  # dupe_factor masked copies and one mask-last copy of every window
    masked = (mk.dupe_factor * picked + last) / (mk.dupe_factor + 1)
  else:
    masked = (1.0 - mk.mask_last_prob) * picked + mk.mask_last_prob * last
  return float(masked) / masked_loss_every(config), following if next_item_loss_weight(config) else 0.0


def next_item_targets(item_ids) -> masking.MaskedBatch:
  """SASRec's targets for right-aligned windows [b, L]: the item at every position that has an
  earlier item in the window (the model reads only items before a position, see model.py);
  the inputs are the window itself, unmasked."""
  seq_len = item_ids.shape[1]
  has_previous = jnp.pad(item_ids[:, :-1] != 0, ((0, 0), (1, 0)))  # [b, L]
  weights = ((item_ids != 0) & has_previous).astype(jnp.float32)
  positions = jnp.broadcast_to(jnp.arange(seq_len, dtype=jnp.int32), item_ids.shape)
  return masking.MaskedBatch(item_ids, positions, jnp.where(weights > 0, item_ids, 0), weights)


def keep_some_targets(key, batch: masking.MaskedBatch, example_ids, num: int) -> masking.MaskedBatch:
  """`batch` [b, L] with at most `num` targets a row: a uniform random `num` of each row's targets
  (all of a row with fewer), drawn from (key, example id) as the masks are; positions, targets and
  weights become [b, num]. The loss over them is an unbiased estimate of the loss over all.
  num = 0 (train.next_item_positions' default) or >= L: `batch` as it is."""
  if not num or num >= batch.positions.shape[1]:
    return batch

  def one(k, weights):
    u = jnp.where(weights > 0, jax.random.uniform(k, weights.shape), 2.0)  # targets first, in random order
    return jax.lax.top_k(-u, num)[1]

  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(example_ids)
  kept = jax.vmap(one)(keys, batch.weights)  # [b, num] indices into L
  take = lambda x: jnp.take_along_axis(x, kept, axis=1)  # noqa: E731
  return masking.MaskedBatch(batch.inputs, take(batch.positions), take(batch.targets), take(batch.weights))
