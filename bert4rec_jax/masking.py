"""Dynamic masked-item sampling, on device, inside the jitted train step.

Each example's draw depends only on (seed, step, global example index): never on the device
or batch slot it landed in, so 1 device and 4 devices see identical masks.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp


class MaskedBatch(NamedTuple):
  inputs: jax.Array  # [B, L] int32 item ids with picked positions replaced
  positions: jax.Array  # [B, P] int32 picked positions (padding entries point anywhere, weight 0)
  targets: jax.Array  # [B, P] int32 original item token at each picked position (0 where unused)
  weights: jax.Array  # [B, P] float32 1 for a real target, 0 for padding


def mask_example(key, item_ids, force_last=False, *, num_items: int, masked_lm_prob: float, max_predictions: int,
                 mask_prob: float, mask_last_prob: float, last_keep_prob: float = 0.0):
  """One right-aligned sequence [L] -> (inputs [L], positions [P], targets [P], weights [P]).

  Picks round(n * masked_lm_prob) of the n real positions (at least 1, at most P) uniformly
  without replacement; with probability mask_last_prob (always, if force_last) picks only the
  last position instead. A picked position becomes [MASK] with probability mask_prob, else a
  random item or its own item, 50/50 (mask_prob 0.8 is BERT's 80/10/10); the last position of a
  mask-last example always becomes [MASK] (the inference case, as the original's force-last).
  last_keep_prob: a picked last position (not of a mask-last example) shows its own item instead,
  with this probability, and stays a target (the keep share at the last position only).
  """
  seq_len = item_ids.shape[0]
  k_pick, k_last, k_how, k_rand = jax.random.split(key, 4)
  valid = item_ids != 0
  n = valid.sum()
  # Pad slots get a key of 2 so they sort after every real slot (uniform keys are < 1). A window
  # shorter than P (sequence-length warmup) gets key-3 slots beyond its end, never used.
  u = jnp.where(valid, jax.random.uniform(k_pick, (seq_len,)), 2.0)
  if seq_len < max_predictions:
    u = jnp.pad(u, (0, max_predictions - seq_len), constant_values=3.0)
  _, picked = jax.lax.top_k(-u, max_predictions)  # the P smallest keys: a uniform random subset
  picked = jnp.minimum(picked, seq_len - 1)  # slots past the window: unused (n <= L), kept in range
  num_to_pick = jnp.clip(jnp.round(n * masked_lm_prob), 1, max_predictions).astype(jnp.int32)
  used = jnp.arange(max_predictions) < jnp.minimum(num_to_pick, n)

  only_last = force_last | (jax.random.uniform(k_last) < mask_last_prob)
  last_positions = jnp.zeros((max_predictions,), jnp.int32).at[0].set(seq_len - 1)
  positions = jnp.where(only_last, last_positions, picked).astype(jnp.int32)
  used = jnp.where(only_last, jnp.arange(max_predictions) == 0, used) & (n > 0)

  targets = item_ids[positions]
  r = jax.random.uniform(k_how, (max_predictions,))
  random_items = jax.random.randint(k_rand, (max_predictions,), 1, num_items + 1)
  replacement = jnp.where(r < mask_prob, num_items + 1,
                          jnp.where(r < mask_prob + (1.0 - mask_prob) / 2, random_items, targets))
  if last_keep_prob:  # its own key, so that the draws above are the same with and without it
    keep = jax.random.uniform(jax.random.fold_in(key, 5)) < last_keep_prob
    replacement = jnp.where(keep & (positions == seq_len - 1), targets, replacement)
  replacement = jnp.where(only_last, num_items + 1, replacement)
  # Only used slots write. Unused ones may share a position with a used one (a window narrower than
  # P clamps its extra slots to the last position): a write-back there could undo the mask.
  inputs = item_ids.at[jnp.where(used, positions, seq_len)].set(replacement.astype(item_ids.dtype), mode="drop")
  return inputs, positions, jnp.where(used, targets, 0), used.astype(jnp.float32)


def mask_batch(key, item_ids, example_ids, only_last=None, **kwargs) -> MaskedBatch:
  """item_ids [B, L], example_ids [B] (the key of each draw), only_last [B] bool -> MaskedBatch."""
  if only_last is None:
    only_last = jnp.zeros(item_ids.shape[:1], jnp.bool_)
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(example_ids)
  return MaskedBatch(*jax.vmap(lambda k, x, f: mask_example(k, x, f, **kwargs))(keys, item_ids, only_last))


MODES = ("dynamic", "static")


def masking_kwargs(masking_config, num_items: int) -> dict:
  """Static masking takes its mask-last examples from the stream, not from mask_last_prob."""
  return dict(num_items=num_items, masked_lm_prob=masking_config.masked_lm_prob,
              max_predictions=masking_config.max_predictions_per_seq,
              mask_prob=masking_config.mask_prob,
              mask_last_prob=masking_config.mask_last_prob if masking_config.mode == "dynamic" else 0.0,
              last_keep_prob=masking_config.get("last_keep_prob", 0.0))
