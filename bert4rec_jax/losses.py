"""The training losses' parts beside the model: next-item targets, the sampled softmax with logQ
correction, and the sampler of its negatives.

The sampler is Walker's alias method (Walker 1977; Vose 1991) built on the host in float64 with
32-bit integer acceptance thresholds, so that every item with a nonzero weight can be drawn (a
float32 CDF cannot draw tail items whose probability is below its resolution) and the logQ
correction uses the exact probability with which the sampler draws each item, not the intended
one.
"""
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


def sampled_softmax_ce(own, shared, target_columns, candidates, log_q):
  """Sampled softmax cross-entropy with logQ correction (importance sampling of the partition
  function, Bengio & Senecal 2008).

  own [..]: logit of each target; shared [.., C]: logits of C candidates drawn with replacement
  from q = exp(log_q) [N]; target_columns [..] and candidates [C] are item columns. The
  partition function is estimated as exp(own) + sum over draws j != target of
  exp(s_j) / (C q_j): each negative is divided by its expected number of draws (the logQ
  correction) and a draw of the row's own target (an accidental hit) is removed. The estimate
  is consistent: as C grows the loss converges to the full softmax cross-entropy (tested).
  """
  log_expected = jnp.log(float(candidates.shape[0])) + log_q  # log(C q_j)
  shared = shared - log_expected[candidates]
  shared = jnp.where(candidates == target_columns[..., None], -jnp.inf, shared)
  # log(exp(own) + sum exp(shared)) without materialising [own, shared] ([.., C + 1]).
  return jnp.logaddexp(own, jax.nn.logsumexp(shared, axis=-1)) - own


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


def mean_targets(config, window_lengths, per_example: bool = False) -> tuple:
  """(masked-item, next-item) targets per training example, averaged over an epoch of windows
  holding `window_lengths` [W] items: what `masking.mask_example` and `next_item_targets` pick,
  in expectation over the masking draws (exact: float32 rounding as on device). The next-item
  mean is 0 without the next-item loss; kind="sasrec" has only next-item targets (first).
  per_example: the fraction of examples with at least one target instead."""
  n = np.asarray(window_lengths, np.int64)
  following = np.maximum(n - 1, 0)
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
  return float(masked), following if next_item_loss_weight(config) else 0.0


def next_item_targets(item_ids) -> masking.MaskedBatch:
  """SASRec's targets for right-aligned windows [b, L]: the item at every position that has an
  earlier item in the window (the model reads only items before a position, see model.py);
  the inputs are the window itself, unmasked."""
  seq_len = item_ids.shape[1]
  has_previous = jnp.pad(item_ids[:, :-1] != 0, ((0, 0), (1, 0)))  # [b, L]
  weights = ((item_ids != 0) & has_previous).astype(jnp.float32)
  positions = jnp.broadcast_to(jnp.arange(seq_len, dtype=jnp.int32), item_ids.shape)
  return masking.MaskedBatch(item_ids, positions, jnp.where(weights > 0, item_ids, 0), weights)
