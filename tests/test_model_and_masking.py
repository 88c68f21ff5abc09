"""The model's shapes and padding invariance; masking semantics and determinism."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert4rec_jax import masking
from bert4rec_jax.model import BERT4Rec

N, L = 40, 12


@pytest.fixture(scope="module")
def model_and_params():
  m = BERT4Rec(num_items=N, max_seq_length=L, hidden_size=16, num_attention_heads=2, intermediate_size=32)
  params = m.init(jax.random.PRNGKey(0), jnp.ones((1, L), jnp.int32), jnp.zeros((1, 1), jnp.int32))["params"]
  return m, params


def test_output_shapes(model_and_params):
  m, params = model_and_params
  ids = jax.random.randint(jax.random.PRNGKey(1), (3, L), 1, N + 2)
  positions = jnp.array([[0, 5], [L - 1, 2], [3, 3]])
  logits, hidden = m.apply({"params": params}, ids, positions)
  assert logits.shape == (3, 2, N) and hidden.shape == (3, 2, 16)
  assert m.apply({"params": params}, ids, method=m.encode).shape == (3, L, 16)
  assert params["item_embedding"]["embedding"].shape == (N + 2, 16)  # PAD, N items, MASK
  assert params["output_bias"].shape == (N,)  # PAD and MASK are never scored


def test_scoring_the_last_position_only_is_exact(model_and_params):
  m, params = model_and_params
  ids = jax.random.randint(jax.random.PRNGKey(7), (4, L), 0, N + 2).at[:, -1].set(N + 1)
  logits, hidden = m.apply({"params": params}, ids, jnp.full((4, 1), L - 1))
  query, fast_hidden = m.apply({"params": params}, ids, method=m.query_last)
  table = m.apply({"params": params}, method=m.output_table)  # [N, H + 1]
  fast_logits = jnp.concatenate([query, jnp.ones((4, 1))], axis=1) @ table.T
  np.testing.assert_allclose(fast_hidden, hidden[:, 0], atol=1e-5)
  np.testing.assert_allclose(fast_logits, logits[:, 0], atol=1e-5)


def test_padded_positions_cannot_change_outputs(model_and_params):
  m, params = model_and_params
  real = 5
  ids = jnp.concatenate([jnp.zeros((1, L - real), jnp.int32), jnp.arange(1, real + 1)[None]], axis=1)
  valid = ids != 0
  junk = ids.at[0, :L - real].set(jnp.arange(7, 7 + L - real))  # items written into padded slots
  h1 = m.apply({"params": params}, ids, valid, method=m.encode)
  h2 = m.apply({"params": params}, junk, valid, method=m.encode)
  np.testing.assert_allclose(h1[0, L - real:], h2[0, L - real:], atol=1e-6)
  # ... whereas changing a real item does change the outputs.
  h3 = m.apply({"params": params}, ids.at[0, L - 2].set(20), valid, method=m.encode)
  assert not np.allclose(h1[0, L - 1], h3[0, L - 1], atol=1e-4)


def test_a_shorter_window_is_the_right_aligned_part_of_the_full_one(model_and_params):
  """Sequence-length warmup trains on [B, l] windows: they must mean what the same items mean
  right-aligned in [B, L] (the newest at position L - 1, PAD before), at every real position."""
  m, params = model_and_params
  short = np.array(jax.random.randint(jax.random.PRNGKey(5), (3, 5), 1, N + 1))
  short[1, :2] = 0  # a window with fewer items than l
  full = np.concatenate([np.zeros((3, L - 5), np.int32), short], axis=1)
  h_short = m.apply({"params": params}, jnp.asarray(short), method=m.encode)
  h_full = m.apply({"params": params}, jnp.asarray(full), method=m.encode)[:, -5:]
  real = short != 0
  np.testing.assert_allclose(np.asarray(h_short)[real], np.asarray(h_full)[real], rtol=1e-5, atol=1e-5)


def test_head_is_tied_to_item_embeddings(model_and_params):
  m, params = model_and_params
  hidden = jax.random.normal(jax.random.PRNGKey(2), (2, 16))
  p2 = jax.tree.map(lambda x: x, params)
  p2["item_embedding"]["embedding"] = params["item_embedding"]["embedding"].at[3].add(
      jnp.linspace(-1.0, 2.0, 16))  # token 3 -> logit column 2 (not a constant shift: LayerNorm output sums to 0)
  l1 = m.apply({"params": params}, hidden, method=m.item_logits)
  l2 = m.apply({"params": p2}, hidden, method=m.item_logits)
  changed = np.flatnonzero(np.abs(np.asarray(l1 - l2)).max(axis=0) > 1e-6)
  np.testing.assert_array_equal(changed, [2])


def test_dropout_is_a_drop_rate():
  """The seed passed keep-prob (0.9) as the drop rate. Here 0.1 must keep ~90% of units."""
  m = BERT4Rec(num_items=N, max_seq_length=L, hidden_size=64, num_hidden_layers=0, hidden_dropout_prob=0.1,
               intermediate_size=64)
  ids = jax.random.randint(jax.random.PRNGKey(3), (64, L), 1, N + 1)
  params = m.init(jax.random.PRNGKey(0), ids, jnp.zeros((64, 1), jnp.int32))["params"]
  h = m.apply({"params": params}, ids, None, True, method=m.encode, rngs={"dropout": jax.random.PRNGKey(4)})
  assert float(jnp.mean(h == 0)) == pytest.approx(0.1, abs=0.02)


@pytest.mark.parametrize("keep", [0.9, 0.8, 0.5, 0.123456])
def test_keep_masks_draw_at_their_rate_with_independent_halves(keep):
  """16 bits an element, two elements to a 32-bit draw: the kept share is the returned
  probability (keep rounded to 1/65536), also for the pairs that share a draw, and for odd sizes."""
  from bert4rec_jax.model import keep_mask
  shape = (501, 999)  # odd: the last draw's second half is unused
  mask, kp = keep_mask(jax.random.PRNGKey(7), keep, shape)
  mask = np.asarray(mask)
  assert mask.shape == shape and mask.dtype == bool
  assert abs(kp - keep) <= 0.5 / 65536 and kp * 65536 == round(kp * 65536)
  n = mask.size
  assert mask.mean() == pytest.approx(kp, abs=5 * np.sqrt(kp * (1 - kp) / n))
  flat = mask.reshape(-1)[: n - n % 2].reshape(-1, 2)  # the two halves of each draw
  both = flat.all(axis=1).mean()
  assert both == pytest.approx(kp * kp, abs=5 * np.sqrt(kp * kp * (1 - kp * kp) / len(flat)))
  other, _ = keep_mask(jax.random.PRNGKey(8), keep, shape)
  assert (np.asarray(other) != mask).any()  # another key, another mask
  assert keep_mask(jax.random.PRNGKey(7), 1e-9, (4,))[1] == 1 / 65536  # never a zero keep probability


def test_hash_bits_against_a_reference_and_free_of_pattern_over_keys_and_positions():
  """model.hash_bits against a pure-Python reference of the same counter hash (for default and typed
  keys), and its keep masks as the trainer draws them (one key per example, fold_in of consecutive
  example ids): the kept share the same at every position and for every key (chi-square), and no
  dependence between neighbouring positions or between consecutive examples' keys."""
  from bert4rec_jax.model import hash_bits, keep_mask
  m = 0xFFFFFFFF

  def fmix(x):
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & m
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & m
    return x ^ (x >> 16)

  for key in (jax.random.PRNGKey(0), jax.random.PRNGKey(12345), jax.random.key(3)):
    words = [int(w) for w in np.asarray(jax.random.key_data(key) if key.dtype != jnp.uint32 else key)]
    want = []
    for i in range(37):
      x = (i * 0x9E3779B9) & m
      for w in words:
        x = fmix(x ^ w)
      want.append(x)
    np.testing.assert_array_equal(np.asarray(hash_bits(key, 37)), np.asarray(want, np.uint32))
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(5), i))(jnp.arange(4096))
  for keep in (0.5, 0.9):
    masks, kp = jax.vmap(lambda k: keep_mask(k, keep, (256,)))(keys)
    x, kp = np.asarray(masks, np.float64), float(kp[0])  # [keys, positions]
    var = kp * (1 - kp)
    for axis in (0, 1):  # every position over the keys; every key over the positions
      chi2 = ((x.mean(axis) - kp) ** 2 / (var / x.shape[axis])).sum()
      dof = x.shape[1 - axis]
      assert abs(chi2 - dof) < 6 * np.sqrt(2 * dof), (keep, axis, chi2, dof)
    for a, b in ((x[:, :-1], x[:, 1:]), (x[:, :-2], x[:, 2:]), (x[:-1], x[1:])):  # neighbours, keys j and j + 1
      both = (a * b).mean()
      assert both == pytest.approx(kp * kp, abs=5 * np.sqrt(kp * kp * (1 - kp * kp) / a.size)), keep
  with pytest.raises(ValueError, match="32-bit"):
    hash_bits(jax.random.PRNGKey(0), 2**32)


def test_dropout_layer_and_attention_dropout_against_a_reference():
  """The Dropout layer: kept values divided by the drawn keep probability, dropped ones 0, the
  identity when deterministic. Attention: without dropout it is flax's dot_product_attention;
  with it, softmax weights times one keep mask per (query, key) shared by every head, computed
  here in NumPy."""
  from flax import linen as nn
  from bert4rec_jax.model import Dropout, attention, keep_mask
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 8))
  k = jax.random.PRNGKey(1)
  out = np.asarray(Dropout(0.3).apply({}, x, False, rngs={"dropout": k}))
  np.testing.assert_array_equal(np.asarray(Dropout(0.3).apply({}, x, True)), np.asarray(x))
  kept = out != 0
  np.testing.assert_allclose(out[kept], np.asarray(x)[kept] / keep_mask(k, 0.7, x.shape)[1], rtol=1e-6)
  assert 0.5 < kept.mean() < 0.9
  b, lq, heads, d = 2, 6, 3, 4
  q, kk, v = (jax.random.normal(jax.random.PRNGKey(i), (b, lq, heads, d)) for i in (2, 3, 4))
  allowed = jnp.asarray(np.random.default_rng(0).random((b, 1, lq, lq)) < 0.8) | jnp.eye(lq, dtype=bool)
  np.testing.assert_allclose(attention(q, kk, v, mask=allowed, deterministic=True),
                             nn.dot_product_attention(q, kk, v, mask=allowed, deterministic=True), rtol=1e-5, atol=1e-6)
  got = np.asarray(attention(q, kk, v, mask=allowed, dropout_rng=k, dropout_rate=0.4, deterministic=False))
  keep, kp = keep_mask(k, 0.6, (1, 1, lq, lq))
  qn, kn, vn, an = (np.asarray(a, np.float64) for a in (q, kk, v, allowed))
  logits = np.einsum("bqhd,bkhd->bhqk", qn, kn) / np.sqrt(d)
  logits = np.where(an, logits, -np.inf)
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w = w / w.sum(-1, keepdims=True) * np.asarray(keep) / kp
  np.testing.assert_allclose(got, np.einsum("bhqk,bkhd->bqhd", w, vn), rtol=1e-5, atol=1e-6)
  # Wired into flax's multi-head attention as the model does: dropout in training only, drawn from
  # the "dropout" stream; flax's per-head dropout is refused rather than silently broadcast.
  mha = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8, dropout_rate=0.5, attention_fn=attention)
  xs = jax.random.normal(jax.random.PRNGKey(5), (2, 6, 8))
  params = mha.init(jax.random.PRNGKey(6), xs, deterministic=True)
  train = lambda key: mha.apply(params, xs, deterministic=False, rngs={"dropout": key})  # noqa: E731
  np.testing.assert_array_equal(train(k), train(k))
  assert not np.allclose(train(k), mha.apply(params, xs, deterministic=True))
  assert not np.allclose(train(k), train(jax.random.PRNGKey(9)))
  with pytest.raises(NotImplementedError, match="broadcast"):
    nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8, dropout_rate=0.5, attention_fn=attention,
                                    broadcast_dropout=False).apply(params, xs, deterministic=False, rngs={"dropout": k})


MASK_KW = dict(num_items=N, masked_lm_prob=0.3, max_predictions=5, mask_prob=0.8,
               mask_last_prob=0.0)


def make_batch(b=200, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, N + 1, size=(b, L)).astype(np.int32)
  lengths = rng.integers(1, L + 1, size=b)
  ids[np.arange(L)[None, :] < (L - lengths)[:, None]] = 0  # right-aligned
  return jnp.asarray(ids), lengths


def test_masking_picks_the_right_number_of_real_positions():
  ids, lengths = make_batch()
  mb = masking.mask_batch(jax.random.PRNGKey(0), ids, jnp.arange(len(lengths)), **MASK_KW)
  ids_np, inputs, pos, tgt, w = map(np.asarray, (ids, mb.inputs, mb.positions, mb.targets, mb.weights))
  for r, n in enumerate(lengths):
    k = int(w[r].sum())
    assert k == min(max(1, round(n * 0.3)), 5, n)
    used = pos[r, :k]
    assert len(set(used)) == k and (used >= L - n).all()  # distinct, real positions
    np.testing.assert_array_equal(tgt[r, :k], ids_np[r, used])  # targets are the original items
    untouched = np.setdiff1d(np.arange(L), used)
    np.testing.assert_array_equal(inputs[r, untouched], ids_np[r, untouched])
    assert (tgt[r, k:] == 0).all()
  picked = w > 0
  replaced = np.take_along_axis(inputs, pos, 1)[picked]
  frac_mask = np.mean(replaced == N + 1)
  assert frac_mask == pytest.approx(0.8, abs=0.07)
  kept = np.mean(replaced == tgt[picked])  # the rest: half kept, half a random item
  assert kept == pytest.approx(0.1, abs=0.05) and 1 - frac_mask - kept == pytest.approx(0.1, abs=0.05)
  assert (replaced >= 1).all() and (replaced <= N + 1).all()


@pytest.mark.parametrize("width", [1, 3, 8])
def test_windows_narrower_than_the_slots_keep_every_target_hidden(width):
  """A window narrower than max_predictions (a length bucket, sequence-length warmup) clamps its
  spare slots to the last position; they must not write the last item back over its [MASK]."""
  rng = np.random.default_rng(width)
  b, p = 400, 20
  ids = rng.integers(1, N + 1, size=(b, width)).astype(np.int32)
  lengths = rng.integers(1, width + 1, size=b)
  ids[np.arange(width)[None, :] < (width - lengths)[:, None]] = 0
  kw = dict(MASK_KW, max_predictions=p, masked_lm_prob=0.5, mask_prob=1.0)
  mb = masking.mask_batch(jax.random.PRNGKey(1), jnp.asarray(ids), jnp.arange(b), **kw)
  inputs, pos, tgt, w = map(np.asarray, (mb.inputs, mb.positions, mb.targets, mb.weights))
  for r in range(b):  # reference: the input is the sequence with exactly the used positions masked
    k = int(w[r].sum())
    assert k == min(max(1, round(lengths[r] * 0.5)), lengths[r])
    expected = ids[r].copy()
    expected[pos[r, :k]] = N + 1
    np.testing.assert_array_equal(inputs[r], expected)
    np.testing.assert_array_equal(tgt[r, :k], ids[r, pos[r, :k]])
  assert ((pos == width - 1) & (w > 0)).any()  # the case at risk occurred


def test_masking_depends_on_example_id_not_batch_slot():
  ids, _ = make_batch(b=16)
  ex = jnp.arange(100, 116)
  a = masking.mask_batch(jax.random.PRNGKey(5), ids, ex, **MASK_KW)
  perm = np.random.default_rng(0).permutation(16)
  b = masking.mask_batch(jax.random.PRNGKey(5), ids[perm], ex[perm], **MASK_KW)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(np.asarray(x)[perm], np.asarray(y))


@pytest.mark.parametrize("mask_prob,last_keep_prob", [(1.0, 0.0), (0.8, 0.0), (0.0, 0.0), (1.0, 1.0)])
@pytest.mark.parametrize("forced", [False, True])
def test_mask_last_only(mask_prob, last_keep_prob, forced):
  """A mask-last example is the inference case: its last item is always [MASK], whatever share of
  other picks mask_prob or last_keep_prob keeps or replaces (else its target would show in its input)."""
  ids, lengths = make_batch(b=200)
  kw = dict(MASK_KW, mask_last_prob=0.0 if forced else 1.0, mask_prob=mask_prob, last_keep_prob=last_keep_prob)
  only_last = jnp.ones((200,), jnp.bool_) if forced else None  # static masking's mask-last copies
  mb = masking.mask_batch(jax.random.PRNGKey(0), ids, jnp.arange(200), only_last, **kw)
  np.testing.assert_array_equal(np.asarray(mb.weights).sum(1), 1)
  np.testing.assert_array_equal(np.asarray(mb.positions)[:, 0], L - 1)
  np.testing.assert_array_equal(np.asarray(mb.inputs)[:, -1], N + 1)
  np.testing.assert_array_equal(np.asarray(mb.inputs)[:, :-1], np.asarray(ids)[:, :-1])


@pytest.mark.parametrize("keep", [0.0, 0.4, 1.0])
@pytest.mark.parametrize("width,mask_prob,mask_last_prob", [(6, 1.0, 0.0), (16, 0.8, 0.2)])
def test_a_picked_last_position_shows_its_item_at_the_keep_rate(keep, width, mask_prob, mask_last_prob):
  """masking.last_keep_prob: a picked last position keeps its own item (still a target) with this
  probability; a mask-last example's last item stays [MASK]; every other draw (picks, mask-last
  examples, BERT's random and kept items) is the one made without the setting. Windows narrower and
  wider than the target slots."""
  rng = np.random.default_rng(3)
  b, p = 3000, 10
  ids = rng.integers(1, N + 1, size=(b, width)).astype(np.int32)
  lengths = rng.integers(3, width + 1, size=b)  # at least 3 items: a plain example picks at least 2 (rate 0.5)
  ids[np.arange(width)[None, :] < (width - lengths)[:, None]] = 0
  kw = dict(MASK_KW, max_predictions=p, masked_lm_prob=0.5, mask_prob=mask_prob, mask_last_prob=mask_last_prob)
  key, ex = jax.random.PRNGKey(7), jnp.arange(b)
  plain = masking.mask_batch(key, jnp.asarray(ids), ex, **kw)
  mb = masking.mask_batch(key, jnp.asarray(ids), ex, **kw, last_keep_prob=keep)
  for x, y in zip(mb[1:], plain[1:]):  # positions, targets, weights
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  inputs, before, pos, w = (np.asarray(x) for x in (mb.inputs, plain.inputs, mb.positions, mb.weights))
  np.testing.assert_array_equal(inputs[:, :-1], before[:, :-1])
  mask_last = w.sum(1) == 1  # only a mask-last example has a single target here
  assert (mask_last.sum() > 0) == (mask_last_prob > 0) and (pos[mask_last, 0] == width - 1).all()
  np.testing.assert_array_equal(inputs[mask_last, -1], N + 1)
  picked = ~mask_last & ((pos == width - 1) & (w > 0)).any(1)  # a plain example whose last position is a target
  np.testing.assert_array_equal(inputs[~picked, -1], before[~picked, -1])
  hidden = picked & (before[:, -1] != ids[:, -1])  # masked or replaced without the setting
  shown = inputs[:, -1] == ids[:, -1]
  assert (shown[picked & ~hidden]).all()  # an item kept without it is kept with it
  assert hidden.sum() > 300
  assert abs(shown[hidden].mean() - keep) < 0.06
  if mask_prob < 1:  # the rest of BERT's draw: not kept ones stay as drawn ([MASK] or the same random item)
    np.testing.assert_array_equal(inputs[hidden & ~shown, -1], before[hidden & ~shown, -1])


def test_sasrec_reads_only_earlier_items():
  """kind=sasrec: the output at position i is a function of the items before i only, and
  scoring the last ([MASK]) slot is the same computation as the full forward pass."""
  m = BERT4Rec(num_items=N, max_seq_length=L, hidden_size=16, num_attention_heads=2, intermediate_size=32,
               kind="sasrec")
  params = m.init(jax.random.PRNGKey(0), jnp.ones((1, L), jnp.int32), jnp.zeros((1, 1), jnp.int32))["params"]
  ids = jnp.concatenate([jnp.zeros((2, 3), jnp.int32), jax.random.randint(jax.random.PRNGKey(3), (2, L - 3), 1, N + 1)], 1)
  h = np.asarray(m.apply({"params": params}, ids, method=m.encode))
  for i in range(4, L):
    changed = ids.at[:, i:].set(jax.random.randint(jax.random.PRNGKey(i), (2, L - i), 1, N + 2))
    h2 = np.asarray(m.apply({"params": params}, changed, method=m.encode))
    # Position i does not see item i. (Positions 0-3 have no earlier item: their outputs are never
    # used, and with no key to attend to they average over all of them.)
    np.testing.assert_allclose(h2[:, 4:i + 1], h[:, 4:i + 1], atol=1e-5)
    changed_before = ids.at[:, i - 1].set(ids[:, i - 1] % N + 1)
    h3 = np.asarray(m.apply({"params": params}, changed_before, method=m.encode))
    assert not np.allclose(h3[:, i], h[:, i], atol=1e-4)  # ... but does see item i - 1
  with_mask = ids.at[:, -1].set(N + 1)
  query, hidden = m.apply({"params": params}, with_mask, method=m.query_last)
  np.testing.assert_allclose(hidden, h[:, -1], atol=1e-5)  # the [MASK] token itself is never read


def test_bert4rec_weights_read_causally_are_sasrec():
  """encode(causal=True) on a BERT4Rec is SASRec's forward pass with the same weights (what the
  next-item auxiliary loss trains), and causal=False on a SASRec is BERT4Rec's."""
  kw = dict(num_items=N, max_seq_length=L, hidden_size=16, num_attention_heads=2, intermediate_size=32)
  bert, sasrec = BERT4Rec(**kw), BERT4Rec(kind="sasrec", **kw)
  params = bert.init(jax.random.PRNGKey(0), jnp.ones((1, L), jnp.int32), jnp.zeros((1, 1), jnp.int32))["params"]
  ids = jnp.concatenate([jnp.zeros((2, 3), jnp.int32), jax.random.randint(jax.random.PRNGKey(3), (2, L - 3), 1, N + 1)], 1)
  enc = lambda m, **k: np.asarray(m.apply({"params": params}, ids, method=m.encode, **k))
  np.testing.assert_allclose(enc(bert, causal=True), enc(sasrec), atol=1e-6)
  np.testing.assert_allclose(enc(sasrec, causal=False), enc(bert), atol=1e-6)
  assert not np.allclose(enc(bert), enc(sasrec), atol=1e-3)


def test_read_last_causal_scores_the_history_as_sasrec():
  """read_last="causal": a BERT4Rec's last-slot query is SASRec's with the same weights (what the
  next-item loss trains), never reads the [MASK] token, and differs from the bidirectional read."""
  kw = dict(num_items=N, max_seq_length=L, hidden_size=16, num_attention_heads=2, intermediate_size=32)
  bert, causal, sasrec = BERT4Rec(**kw), BERT4Rec(read_last="causal", **kw), BERT4Rec(kind="sasrec", **kw)
  params = bert.init(jax.random.PRNGKey(0), jnp.ones((1, L), jnp.int32), jnp.zeros((1, 1), jnp.int32))["params"]
  ids = jnp.concatenate([jnp.zeros((2, 3), jnp.int32), jax.random.randint(jax.random.PRNGKey(3), (2, L - 3), 1, N + 1)], 1)
  with_mask = ids.at[:, -1].set(N + 1)
  query = lambda m, x: np.asarray(m.apply({"params": params}, x, method=m.query_last)[0])
  np.testing.assert_allclose(query(causal, with_mask), query(sasrec, with_mask), atol=1e-6)
  np.testing.assert_allclose(query(causal, with_mask), query(causal, ids), atol=1e-6)  # the last token is never read
  # The same as the head over the full causal pass at the last position.
  full = np.asarray(bert.apply({"params": params}, ids, method=bert.encode, causal=True))[:, -1]
  head = np.asarray(bert.apply({"params": params}, jnp.asarray(full), method=bert.head))
  np.testing.assert_allclose(query(causal, with_mask), head, atol=1e-5)
  assert not np.allclose(query(causal, with_mask), query(bert, with_mask), atol=1e-3)
