"""BERT4Rec encoder and masked-item head (Sun et al., CIKM 2019), in Flax Linen.

Item + learned position embeddings -> LayerNorm -> dropout -> N post-LN transformer blocks
(self-attention over non-pad keys, GELU feed-forward) -> at the requested positions only,
dense + GELU + LayerNorm -> logits over the N real items, tied to the item embedding matrix
plus a bias. Logit j is item token j + 1: PAD (0) and MASK (N + 1) can never be predicted.

Padding is on the left (sequences are right-aligned), so the newest item is always at
position L - 1, and that is where [MASK] goes at evaluation and inference time.

kind="sasrec" is SASRec (Kang & McAuley, ICDM 2018) trained with cross-entropy as in
Klenitskiy & Vasilev (RecSys 2023): the same blocks with causal attention over the inputs
shifted right by one, so the output at position i is computed from the items strictly before
i and is trained on item i at every position (next-item targets). Because of the shift, both
kinds share one interface: "predict the item at these positions". At evaluation the [MASK]
slot's output reads the history only, and the slot's own token is never seen.

Either kind's encoder can also be run the other way (`encode(causal=...)`): BERT4Rec trained
with train.next_item_loss_weight > 0 adds SASRec's next-item loss, computed by its own
weights reading the unmasked window causally, to its masked-item loss. Such a model is
evaluated and served bidirectionally with [MASK] in the last slot (read_last="mask", the
default) or, with read_last="causal", the way its next-item loss trained it: the last slot's
output computed causally from the history alone (SASRec's reading; the [MASK] is never read).
"""
import functools
import math
from typing import Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from bert4rec_jax import losses
from bert4rec_jax.errors import ConfigError

ACTIVATIONS = {
    "gelu": functools.partial(nn.gelu, approximate=False),  # BERT's erf form
    "gelu_approx": functools.partial(nn.gelu, approximate=True),
    "relu": nn.relu,
}


def _fmix32(x):
  """MurmurHash3's 32-bit finaliser (Appleby): a bijection of uint32 words in which each input bit
  flips each output bit with probability close to 1/2."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x85EBCA6B)
  x = x ^ (x >> 13)
  x = x * jnp.uint32(0xC2B2AE35)
  return x ^ (x >> 16)


def hash_bits(key, n: int) -> jax.Array:
  """[n] uint32 words from a PRNG key, counter-based: word i = fmix(...fmix(i * 0x9E3779B9 ^ k0) ^
  k1 ...) over the words k of the key's data (two for JAX's default threefry key). Dropout's bits:
  the key itself comes from jax.random (flax's `make_rng`, one per example and layer), but the
  words of a mask are two multiply-xorshift rounds each instead of threefry's twenty (the masks
  about 4x faster on 2 CPU cores, the recipe's MovieLens-1M BERT4Rec step 1.12x: docs/benchmarks.md)."""
  if n >= 2**32:
    raise ValueError(f"hash_bits: {n} words is more than a 32-bit counter numbers")
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  x = jax.lax.iota(jnp.uint32, n) * jnp.uint32(0x9E3779B9)
  for word in key.reshape(-1).astype(jnp.uint32):
    x = _fmix32(x ^ word)
  return x


def keep_mask(key, keep_prob: float, shape) -> Tuple[jax.Array, float]:
  """Dropout's keep mask [shape] bool from 16 random bits an element, two to each 32-bit word of
  `hash_bits` (jax.random.bernoulli takes 32 threefry bits an element), and the keep probability
  it draws with: keep_prob rounded to a multiple of 1/65536 (at least one), by which the kept
  values are divided so that the expectation is exact (in float32; bfloat16 rounds the divisor,
  as nn.Dropout does)."""
  n = math.prod(shape)
  bits = hash_bits(key, (n + 1) // 2)
  half = jax.lax.bitcast_convert_type(bits, jnp.uint16).reshape(-1)[:n].reshape(shape)
  threshold = min(max(round(keep_prob * 65536), 1), 65536)
  return half.astype(jnp.int32) < threshold, threshold / 65536


class Dropout(nn.Module):
  """Inverted dropout (as nn.Dropout) drawing its mask with `keep_mask`."""
  rate: float

  @nn.compact
  def __call__(self, x, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    keep, keep_prob = keep_mask(self.make_rng("dropout"), 1.0 - self.rate, x.shape)
    return jnp.where(keep, x / jnp.asarray(keep_prob, x.dtype), jnp.zeros_like(x))


def attention(query, key, value, bias=None, mask=None, broadcast_dropout: bool = True, dropout_rng=None,
              dropout_rate: float = 0.0, deterministic: bool = False, dtype=None, precision=None,
              force_fp32_for_softmax: bool = False):
  """nn.dot_product_attention with the dropout of its weights drawn by `keep_mask`, broadcast over
  the batch and head dimensions as flax's default (broadcast_dropout) does: [..., Lq, heads, d].
  (nn.MultiHeadDotProductAttention passes only the arguments named here.)"""
  if not broadcast_dropout:
    raise NotImplementedError("attention: dropout is broadcast over batch and heads only")
  weights = nn.dot_product_attention_weights(query, key, bias, mask, deterministic=True, dtype=dtype,
                                             precision=precision,
                                             force_fp32_for_softmax=force_fp32_for_softmax)  # [..., heads, Lq, Lk]
  if not deterministic and dropout_rate > 0.0:
    keep, keep_prob = keep_mask(dropout_rng, 1.0 - dropout_rate, (1,) * (key.ndim - 2) + weights.shape[-2:])
    weights = weights * (keep.astype(weights.dtype) / jnp.asarray(keep_prob, weights.dtype))
  return jnp.einsum("...hqk,...khd->...qhd", weights, value, precision=precision)


class TransformerBlock(nn.Module):
  """Post-LN block: x = LN(x + Drop(Attn(x))); x = LN(x + Drop(FFN(x)))."""
  hidden_size: int
  num_heads: int
  intermediate_size: int
  act: str
  dropout: float
  attention_dropout: float
  init_std: float
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, attention_mask, train: bool, last_only: bool = False):
    """x [B, L, H] -> [B, L, H]; with last_only, only the last position's output [B, 1, H]
    (it still attends to every position): all that scoring the [MASK] slot needs."""
    init = nn.initializers.truncated_normal(self.init_std)
    keys = x
    if last_only:
      x, attention_mask = x[:, -1:], attention_mask[:, :, -1:]  # queries: the last position only
    h = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, qkv_features=self.hidden_size, out_features=self.hidden_size,
        dropout_rate=self.attention_dropout, kernel_init=init, dtype=self.dtype, attention_fn=attention,
        deterministic=not train, name="attention")(x, keys, mask=attention_mask)  # [B, Lq, H]
    x = nn.LayerNorm(epsilon=1e-12, dtype=self.dtype, name="attention_ln")(
        x + Dropout(self.dropout)(h, deterministic=not train))
    h = nn.Dense(self.intermediate_size, kernel_init=init, dtype=self.dtype, name="ffn_in")(x)  # [B, L, I]
    h = ACTIVATIONS[self.act](h)
    h = nn.Dense(self.hidden_size, kernel_init=init, dtype=self.dtype, name="ffn_out")(h)  # [B, L, H]
    return nn.LayerNorm(epsilon=1e-12, dtype=self.dtype, name="ffn_ln")(
        x + Dropout(self.dropout)(h, deterministic=not train))


KINDS = ("bert4rec", "sasrec")
READINGS = ("mask", "causal")  # read_last: how query_last reads a BERT4Rec's history


class BERT4Rec(nn.Module):
  """Bidirectional (kind="bert4rec") or causal, shifted (kind="sasrec") transformer over item
  sequences with a tied item head."""
  num_items: int  # N real items; the embedding table has N + 2 rows (PAD, items, MASK)
  max_seq_length: int
  kind: str = "bert4rec"
  hidden_size: int = 64
  num_hidden_layers: int = 2
  num_attention_heads: int = 2
  intermediate_size: int = 256
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  initializer_range: float = 0.02
  read_last: str = "mask"  # kind=bert4rec: how query_last reads the history: "mask" | "causal" (see above)
  dtype: jnp.dtype = jnp.float32  # compute dtype; parameters stay float32

  def setup(self):
    init = nn.initializers.truncated_normal(self.initializer_range)
    self.item_embedding = nn.Embed(self.num_items + 2, self.hidden_size, embedding_init=init,
                                   name="item_embedding")
    self.position_embedding = self.param("position_embedding", init,
                                         (self.max_seq_length, self.hidden_size))
    self.embedding_ln = nn.LayerNorm(epsilon=1e-12, dtype=self.dtype)
    self.embedding_dropout = Dropout(self.hidden_dropout_prob)
    self.blocks = [
        TransformerBlock(self.hidden_size, self.num_attention_heads, self.intermediate_size,
                         self.hidden_act, self.hidden_dropout_prob, self.attention_probs_dropout_prob,
                         self.initializer_range, self.dtype, name=f"block_{i}")
        for i in range(self.num_hidden_layers)
    ]
    self.head_dense = nn.Dense(self.hidden_size, kernel_init=init, dtype=self.dtype)
    self.head_ln = nn.LayerNorm(epsilon=1e-12, dtype=self.dtype)
    self.output_bias = self.param("output_bias", nn.initializers.zeros, (self.num_items,))

  def encode(self, item_ids, valid: Optional[jax.Array] = None, train: bool = False, last_only: bool = False,
             causal: Optional[bool] = None):
    """item_ids [B, L] int32 -> final hidden states [B, L, H] ([B, 1, H] with last_only: the
    last block then computes the last position only, the same numbers for less work).

    `valid` [B, L] bool marks real positions (default: item_ids != PAD). Attention never
    reads a non-valid key, so whatever sits in padded slots cannot change any output.
    `causal` (default: kind == "sasrec") reads the window SASRec's way, shifted and causal,
    whatever the kind: BERT4Rec's next-item auxiliary loss runs its own encoder so.
    """
    if valid is None:
      valid = item_ids != 0
    if causal is None:
      causal = self.kind == "sasrec"
    if causal:  # position i sees items < i: shift right by one, attend causally
      item_ids = jnp.pad(item_ids[:, :-1], ((0, 0), (1, 0)))
      valid = jnp.pad(valid[:, :-1], ((0, 0), (1, 0)))
    # Right-aligned: the newest item always sits at the last position, so a shorter input
    # (sequence-length warmup) takes the last rows of the position table.
    x = self.item_embedding(item_ids) + self.position_embedding[None, self.max_seq_length - item_ids.shape[1]:]
    x = self.embedding_dropout(self.embedding_ln(x.astype(self.dtype)), deterministic=not train)
    attention_mask = nn.make_attention_mask(jnp.ones_like(valid), valid)  # [B, 1, Lq, Lk]
    if causal:
      attention_mask = nn.combine_masks(attention_mask, nn.make_causal_mask(valid))
    for i, block in enumerate(self.blocks):
      x = block(x, attention_mask, train, last_only=last_only and i == len(self.blocks) - 1)
    return x[:, -1:] if last_only and not self.blocks else x

  def head(self, hidden):
    """The masked-item head's transform: dense + activation + LayerNorm, [..., H] -> [..., H]."""
    return self.head_ln(ACTIVATIONS[self.hidden_act](self.head_dense(hidden)))

  def item_table(self):
    """The output rows of the N real items [N, H] (row j = token j + 1), tied to the embedding."""
    return self.item_embedding.embedding[1:self.num_items + 1].astype(self.dtype)

  def item_logits(self, hidden):
    """hidden [..., H] -> logits [..., N] over real items (column j = token j + 1)."""
    return (self.head(hidden) @ self.item_table().T).astype(jnp.float32) + self.output_bias

  def item_ce(self, hidden, labels, chunk_elements: int = 0):
    """The full softmax's cross-entropy at item columns labels [...] from hidden [..., H]: the
    same as softmax cross-entropy of item_logits(hidden), without holding those logits at once
    (losses.full_softmax_ce) -> [...] float32."""
    return losses.full_softmax_ce(self.head(hidden), self.item_table(), self.output_bias, labels, chunk_elements)

  def sampled_ce(self, picked, targets, candidates, log_q, chunk_elements: int = 0):
    """The sampled softmax's cross-entropy (losses.sampled_softmax_ce) from final hidden states
    `picked` [..., H] gathered at the target positions, targets [...] (tokens, 0 = unused),
    shared candidate columns [C] drawn with log-probabilities log_q [N] -> [...] float32.
    Only C + |targets| rows of the output matrix are touched, however large the catalogue."""
    h = self.head(picked)  # [..., H]
    table = self.item_embedding.embedding
    own = losses.target_logits(h, table[targets].astype(self.dtype), self.output_bias[jnp.maximum(targets - 1, 0)])
    return losses.sampled_softmax_ce(own, h, table[candidates + 1].astype(self.dtype), self.output_bias[candidates],
                                     targets - 1, candidates, log_q, chunk_elements)

  def __call__(self, item_ids, positions, valid=None, train: bool = False,
               causal: Optional[bool] = None) -> Tuple[jax.Array, jax.Array]:
    """Logits and hidden states at `positions` only: ([..., N], [..., H]); see `gather`."""
    picked = gather(self.encode(item_ids, valid, train, causal=causal), positions)  # [B, P, H] or [T, H]
    return self.item_logits(picked), picked

  def query_last(self, item_ids, valid=None):
    """At the last position (the [MASK] slot at evaluation and inference): the head output
    that meets the item table, and the final hidden state: ([B, H], [B, H]). The last block
    computes that position only. read_last="causal" reads a BERT4Rec SASRec's way (the kind's
    own reading otherwise)."""
    causal = True if self.read_last == "causal" else None
    hidden = self.encode(item_ids, valid, last_only=True, causal=causal)[:, 0]  # [B, H]
    return self.head(hidden), hidden

  def output_table(self):
    """[N, H + 1]: tied item embeddings with the output bias as a last column, so that
    logits = [head(h), 1] @ table.T."""
    items = self.item_embedding.embedding[1:self.num_items + 1]
    return jnp.concatenate([items, self.output_bias[:, None]], axis=1).astype(jnp.float32)


def gather(hidden, positions):
  """hidden [B, L, H] at positions [B, P] (per row) -> [B, P, H], or at positions [T] (flat
  indices row * L + position, for targets compacted across the batch) -> [T, H]."""
  if positions.ndim == 1:
    return hidden.reshape((-1, hidden.shape[-1]))[positions]
  return jnp.take_along_axis(hidden, positions[..., None], axis=1)


def from_config(model_config, num_items: int, dtype=jnp.float32) -> BERT4Rec:
  kind = model_config.get("kind", "bert4rec")
  if kind not in KINDS:  # what config_checks refuses in a run's config; here also a saved one's
    raise ConfigError(f"model.kind={kind!r}: one of {', '.join(KINDS)}")
  return BERT4Rec(num_items=num_items, dtype=dtype, **model_config.to_dict())
