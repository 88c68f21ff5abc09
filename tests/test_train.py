"""Training: data parallelism is exact, resume is exact, the optimizer is the one promised."""
import itertools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert4rec_jax import config_checks, input_pipeline, losses as loss_lib, model_store, parallel, pipeline, trainer
from bert4rec_jax.errors import ConfigError, DivergedError, UserError


def trained_params(config, workdir, stop_at=None):
  """Trains (mode=train) and loads the parameters. Without periodic validation (these tests compare
  parameters and losses) the validation that would select the last step anyway is skipped."""
  if not config.train.eval_every_steps:
    config.train.select_metric = ""
  out = pipeline.run(config, str(workdir), mode="train", stop_at=stop_at)
  return out, pipeline.load_params(config, out["model_dir"], num_items=config.data.synthetic.num_items)


def losses(model_dir):
  with open(os.path.join(model_dir, "metrics.jsonl")) as f:
    return [r["train/loss"] for r in map(json.loads, f) if "train/loss" in r]


def random_sequences(rng, num_items: int, low: int, high: int, users: int):
  """`users` sequences of random items, lengths drawn from [low, high)."""
  from bert4rec_jax.preprocess import Sequences
  lengths = rng.integers(low, high, users)
  return Sequences(offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                   items=rng.integers(1, num_items + 1, lengths.sum()).astype(np.int32))


def sgd_start(config, num_items: int):
  """(initial state, the same parameters under SGD with rate 1: new params = params - gradient)."""
  import optax
  start = trainer.create_state(config, num_items)
  return start, trainer.TrainState.create(apply_fn=start.apply_fn, params=start.params, tx=optax.sgd(1.0))


@pytest.mark.parametrize("masked_every", [1, 2])
def test_four_devices_train_the_same_model_as_one(tiny_config, tmp_path, masked_every):
  """Dropout on: every random draw (masks and dropout) is keyed by the example, not the device;
  with the masked-item loss on one window in two (and the next-item loss), its rows are the global
  batch's whatever the devices; so is spike clipping's running mean of the norm."""
  assert jax.local_device_count() == 4
  c = tiny_config
  if masked_every > 1:
    c.train.next_item_loss_weight, c.train.masked_loss_every = 1.0, masked_every
    c.train.spike_clip = 1.2
  c.model.hidden_dropout_prob = c.model.attention_probs_dropout_prob = 0.3
  c.train.num_train_steps, c.train.num_warmup_steps, c.train.log_every_steps, c.train.eval_every_steps = 6, 2, 1, 0
  runs = {}
  for d in (1, 4):
    c.train.num_devices = d
    out, params = trained_params(c, tmp_path / f"d{d}")
    runs[d] = (losses(out["model_dir"]), params)
  np.testing.assert_allclose(runs[1][0], runs[4][0], rtol=1e-5)
  assert len(runs[1][0]) == 6
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4), runs[1][1], runs[4][1])


def test_resume_equals_uninterrupted(tiny_config, tmp_path):
  """With length buckets (steps of widths 8 and 16, stopped inside a pool): the plain stream's
  resume is kept by the warmup, selection and kill tests."""
  c = tiny_config  # dropout on: its randomness is keyed by step too
  c.train.num_train_steps, c.train.checkpoint_every_steps, c.train.eval_every_steps = 20, 100, 0
  c.train.length_buckets = True
  _, straight = trained_params(c, tmp_path / "straight")
  out, _ = trained_params(c, tmp_path / "resumed", stop_at=10)
  assert out["step"] == 10
  first = model_store.training_seconds(out["model_dir"], 10)
  assert first > 0
  out, resumed = trained_params(c, tmp_path / "resumed")
  assert out["step"] == 20
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), straight, resumed)
  # Training time adds up over the invocations that made the model.
  assert model_store.training_seconds(out["model_dir"], 20) > first == model_store.training_seconds(out["model_dir"], 15)
  # The devices of each invocation are recorded beside it (one kind here: listed once).
  assert model_store.training_devices(out["model_dir"], 20) == [parallel.describe_devices(parallel.local_devices(0))]
  assert model_store.training_devices(out["model_dir"], 5) == []
  # A model whose first invocation predates the device record says so.
  os.rename(os.path.join(out["model_dir"], model_store.TRAIN_DEVICES_FILE), os.path.join(tmp_path, "devices.json"))
  assert model_store.training_devices(out["model_dir"], 20) == ["unrecorded devices"]


def test_sequence_length_warmup_switches_shape_and_resumes_exactly(tiny_config, tmp_path):
  """Warmup windows of 3 items, shorter than the 4 masked slots: they use what slots they have
  (the rest stay unused), then training goes on to full windows; resuming inside the warmup is exact."""
  c = tiny_config
  c.train.warmup_seq_length, c.train.warmup_seq_steps = 3, 8
  assert c.train.warmup_seq_length < c.masking.max_predictions_per_seq
  c.train.prefetch = 0
  from bert4rec_jax import parallel, preprocess
  from tests.test_preprocess import random_interactions
  seqs = preprocess.prepare(random_interactions(9), drop_duplicates=False, min_seq_length=1).sequences
  devices = parallel.local_devices(4)
  widths = [b["item_ids"].shape[-1] for b, _ in itertools.islice(input_pipeline.training_batches(c, seqs, 0, devices), 12)]
  assert widths == [3] * 8 + [c.model.max_seq_length] * 4
  again = next(input_pipeline.training_batches(c, seqs, 7, devices))[0]["item_ids"]  # a resumed run's first batch
  first = list(itertools.islice(input_pipeline.training_batches(c, seqs, 0, devices), 8))[-1][0]["item_ids"]
  np.testing.assert_array_equal(np.asarray(again), np.asarray(first))
  # Through the pipeline: trains (two step shapes), and resuming inside the warmup is exact.
  c.train.num_train_steps, c.train.checkpoint_every_steps, c.train.eval_every_steps = 14, 100, 0
  c.train.log_every_steps = 1
  out, straight = trained_params(c, tmp_path / "straight")
  assert len(losses(out["model_dir"])) == 14 and all(map(np.isfinite, losses(out["model_dir"])))
  trained_params(c, tmp_path / "resumed", stop_at=5)
  _, resumed = trained_params(c, tmp_path / "resumed")
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), straight, resumed)
  c.train.warmup_seq_length = c.model.max_seq_length
  with pytest.raises(ConfigError, match="warmup_seq_length"):
    config_checks.validate(c, "train", 4)


def test_training_reduces_loss(tiny_config, tmp_path):
  c = tiny_config
  c.train.num_train_steps, c.train.log_every_steps, c.train.eval_every_steps = 100, 10, 0
  out, _ = trained_params(c, tmp_path)
  curve = losses(out["model_dir"])
  assert np.mean(curve[-2:]) < curve[0] - 0.25  # the last two logs (steps 90, 100): one is noisy at lr 1e-2


def test_weight_decay_spares_biases_and_layernorm(tiny_config):
  state = trainer.create_state(tiny_config, num_items=20)
  flat = {"/".join(k): v for k, v in jax.tree_util.tree_flatten_with_path(state.params)[0]
          and __import__("flax").traverse_util.flatten_dict(state.params).items()}
  decayed = {k for k in flat if k.split("/")[-1] not in trainer.NO_DECAY}
  assert any(k.endswith("item_embedding/embedding") for k in decayed)
  assert any(k.endswith("query/kernel") for k in decayed)
  assert not any(k.endswith(("bias", "scale")) for k in decayed)
  # One optimizer step on zero gradients: only the decayed leaves move.
  zero = jax.tree.map(np.zeros_like, state.params)
  tc = tiny_config.train
  tc.num_warmup_steps = 0
  tx = trainer.make_optimizer(tc)
  params = jax.tree.map(lambda x: x + 1.0, state.params)  # LayerNorm biases start at 0: shift so decay shows
  updates, _ = tx.update(zero, tx.init(params), params)
  moved = {"/".join(k) for k, v in __import__("flax").traverse_util.flatten_dict(updates).items()
           if np.abs(np.asarray(v)).max() > 0}
  assert moved == decayed


def test_learning_rate_schedule(tiny_config):
  tc = tiny_config.train
  tc.num_train_steps, tc.num_warmup_steps, tc.learning_rate = 100, 10, 1.0
  s = trainer.learning_rate_schedule(tc)
  assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(0.5)
  assert float(s(10)) == pytest.approx(1.0) and float(s(55)) == pytest.approx(0.5) and float(s(100)) == 0.0


@pytest.mark.parametrize("field,value,match", [
    ("model.num_attention_heads", 3, "not divisible by config.model.num_attention_heads"),
    ("train.batch_size", 30, "not divisible by the 4 devices"),
    ("masking.max_predictions_per_seq", 17, "max_predictions_per_seq=17"),
    ("train.next_item_positions", -1, "next_item_positions=-1: must be an integer >= 0"),
    ("train.max_training_minutes", -2, "max_training_minutes=-2.0: must be >= 0"),
    ("train.masked_loss_every", -1, "masked_loss_every=-1: must be an integer >= 0"),
    ("train.masked_loss_every", 2, "masked_loss_every=2: needs model.kind='bert4rec' with train.next_item_loss_weight > 0"),
    ("train.masked_loss_every", 3, "masked_loss_every=3: must divide train.batch_size=32"),
    ("train.masked_loss_every", 16, "masked_loss_every=16 must divide each device's share of the batch "
                                    r"\(32 / 4 devices = 8\); use a batch size that is a multiple of 64"),
    # NaN or an infinity anywhere, whatever the field's own rule
    ("train.next_item_loss_weight", float("inf"), "next_item_loss_weight=inf: must be a finite number"),
    ("train.max_grad_norm", float("nan"), "max_grad_norm=nan: must be a finite number >= 0"),
    ("masking.masked_lm_prob", float("nan"), "masked_lm_prob=nan: must be"),
    ("model.hidden_dropout_prob", float("inf"), "hidden_dropout_prob=inf: must be"),
    ("train.weight_decay", float("-inf"), "weight_decay=-inf: must be"),
    ("train.spike_clip", 1.0, r"spike_clip=1.0: must be > 1 \(a multiple of the recent gradient norm"),
    ("train.spike_clip", -2.0, "spike_clip=-2.0: must be > 1"),
])
def test_config_errors(tiny_config, tmp_path, field, value, match):
  section, name = field.split(".")
  tiny_config[section][name] = value
  if field == "train.masked_loss_every" and value != 2:
    tiny_config.train.next_item_loss_weight = 1.0
  with pytest.raises(ConfigError, match=match):
    pipeline.run(tiny_config, str(tmp_path), mode="train")


def test_sampled_softmax_matches_reference_and_estimates_full_softmax():
  rng = np.random.default_rng(0)
  n, rows, c = 300, 6, 7
  logits = rng.normal(size=(rows, n)).astype(np.float32) * 2
  targets = rng.integers(0, n, rows)
  q = rng.random(n) + 0.1
  q /= q.sum()
  cand = rng.integers(0, n, c)
  cand[0] = targets[0]  # an accidental hit
  def sampled(columns, log_q):  # logits[:, columns] as hidden [rows, rows] = I times table [C, rows]
    return np.asarray(loss_lib.sampled_softmax_ce(
        jnp.asarray(logits[np.arange(rows), targets]), jnp.eye(rows), jnp.asarray(logits[:, columns].T),
        jnp.zeros(len(columns)), jnp.asarray(targets), jnp.asarray(columns), log_q))

  got = sampled(cand, jnp.log(jnp.asarray(q, jnp.float32)))
  for r in range(rows):  # plain NumPy reference
    own = logits[r, targets[r]]
    others = [logits[r, j] - np.log(c * q[j]) for j in cand if j != targets[r]]
    want = np.log(np.exp(own) + np.sum(np.exp(others))) - own
    assert got[r] == pytest.approx(want, rel=1e-5)
  # With many uniform draws it converges to the full softmax cross-entropy.
  big = rng.integers(0, n, 200_000)
  uniform = jnp.full(n, -np.log(n), jnp.float32)
  est = sampled(big, uniform)
  full = np.log(np.exp(logits).sum(1)) - logits[np.arange(rows), targets]
  np.testing.assert_allclose(est, full, rtol=0.02)


def _ce_reference(h, table, bias, labels, weights, cand=None, log_q=None):
  """Plain float64 NumPy, row by row: each row's cross-entropy over the columns its softmax runs
  on (every item; or, sampled, the target then each draw but accidental hits, corrected by
  -log(C q)), and the gradients of sum_r weights_r ce_r by the textbook formula (softmax minus
  one-hot) with respect to h, table and bias."""
  h, table, bias = (np.asarray(x, np.float64) for x in (h, table, bias))
  ce, dh, dt, db = np.zeros(len(h)), np.zeros_like(h), np.zeros_like(table), np.zeros_like(bias)
  for r in range(len(h)):
    if cand is None:
      cols, shift = list(range(len(table))), np.zeros(len(table))
    else:
      kept = [j for j in cand if j != labels[r]]
      cols, shift = [labels[r]] + kept, np.array([0.0] + [-np.log(len(cand) * np.exp(log_q[j])) for j in kept])
    target = labels[r] if cand is None else 0
    z = table[cols] @ h[r] + bias[cols] + shift
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    ce[r] = -np.log(p[target])
    dz = p.copy()
    dz[target] -= 1
    dz *= weights[r]
    dh[r] = dz @ table[cols]
    np.add.at(dt, cols, np.outer(dz, h[r]))
    np.add.at(db, cols, dz)
  return ce, (dh, dt, db)


@pytest.mark.parametrize("sampled", [False, True])
@pytest.mark.parametrize("chunk", [1, 7 * 23, 10 ** 9])  # one row (column) a chunk, a ragged last chunk, one chunk
# Rows against the 23 items (full) and the 10 draws (sampled): the backward pass by blocks of columns
# where there are fewer rows than columns, by blocks of rows otherwise.
@pytest.mark.parametrize("t", [5, 17, 40])
def test_losses_by_chunks_match_numpy(sampled, chunk, t):
  """The full and the sampled softmax cross-entropies, their logits formed a chunk at a time with a
  hand-written gradient, against the NumPy reference: values, and gradients for hidden states,
  output table and bias (the sampled one with repeated draws and accidental hits)."""
  rng = np.random.default_rng(1)
  n, hdim = 23, 5
  h, table = rng.normal(size=(t, hdim)).astype(np.float32), rng.normal(size=(n, hdim)).astype(np.float32)
  bias, labels, weights = rng.normal(size=n).astype(np.float32), rng.integers(0, n, t), rng.random(t).astype(np.float32)
  cand = np.concatenate([labels[:3], labels[:1], rng.integers(0, n, 6)])  # hits, a repeat
  log_q = np.log(rng.dirichlet(np.ones(n))).astype(np.float32)

  def ce_of(h, tb, b):  # [t, 1]: a leading shape kept
    hh, y = h.reshape(t, 1, hdim), jnp.asarray(labels).reshape(t, 1)
    if not sampled:
      return loss_lib.full_softmax_ce(hh, tb, b, y, chunk)
    own = jnp.sum(hh * tb[y], -1) + b[y]
    return loss_lib.sampled_softmax_ce(own, hh, tb[jnp.asarray(cand)], b[jnp.asarray(cand)], y, jnp.asarray(cand),
                                       jnp.asarray(log_q), chunk)

  args = (jnp.asarray(h), jnp.asarray(table), jnp.asarray(bias))
  ce = ce_of(*args)
  grads = jax.grad(lambda *a: jnp.sum(jnp.asarray(weights) * ce_of(*a)[:, 0]), (0, 1, 2))(*args)
  want, want_grads = _ce_reference(h, table, bias, labels, weights, *((cand, log_q) if sampled else ()))
  assert ce.shape == (t, 1)
  np.testing.assert_allclose(np.asarray(ce)[:, 0], want, rtol=1e-5)
  for got, ref in zip(grads, want_grads):
    np.testing.assert_allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("draws", [2, 3])  # the backward pass by blocks of rows (2 rows, 2 draws), of columns (3)
def test_a_row_whose_every_draw_is_its_own_target_has_a_finite_loss_and_gradient(draws):
  own = jnp.asarray([1.5, 0.5])
  cand = jnp.full(draws, 4)
  f = lambda hh: jnp.sum(loss_lib.sampled_softmax_ce(own, hh, jnp.ones((draws, 3)), jnp.zeros(draws),  # noqa: E731
                                                      jnp.asarray([4, 1]), cand, jnp.zeros(6), 1))
  hh = jnp.asarray([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
  grad = np.asarray(jax.grad(f)(hh))
  np.testing.assert_array_equal(grad[0], 0.0)  # row 0 has nothing to compete with: no gradient
  # Row 1 (target 1; every draw item 4): autodiff through the plain formula.
  plain = lambda h1: jnp.logaddexp(own[1], jax.nn.logsumexp(jnp.ones((draws, 3)) @ h1 - jnp.log(draws))) - own[1]  # noqa: E731
  np.testing.assert_allclose(grad[1], jax.grad(plain)(hh[1]), rtol=1e-6)
  ce = loss_lib.sampled_softmax_ce(own, hh, jnp.ones((draws, 3)), jnp.zeros(draws), jnp.asarray([4, 1]), cand,
                                   jnp.zeros(6), 1)
  assert ce[0] == 0.0 and ce[1] > 0  # row 0: nothing but its own target to compete with


@pytest.mark.parametrize("loss", ["full", "sampled"])
def test_the_step_does_not_depend_on_the_loss_chunk(tiny_config, loss):
  """One step with the masked-item and next-item losses, their logits formed three rows at a time
  (a ragged last chunk), over two devices, moves the parameters as the step forming them at once."""
  c = tiny_config
  c.train.loss, c.train.num_negatives, c.train.prefetch, c.train.batch_size = loss, 16, 0, 32
  c.train.next_item_loss_weight = 0.5
  n = c.data.synthetic.num_items
  rng = np.random.default_rng(0)
  seqs = random_sequences(rng, n, 2, 12, 80)
  devices = parallel.local_devices(2)
  start, sgd = sgd_start(c, n)

  def step(chunk_elements):
    c.train.logit_chunk_elements = chunk_elements
    p_step, sampler = trainer.make_step(c, n, devices, seqs)
    batch, bound = next(input_pipeline.batch_iterator(c, input_pipeline.make_stream(c, seqs), 3, devices))
    new, m = p_step(parallel.replicate(sgd, devices), batch, sampler, bound)
    return parallel.unreplicate(new.params), parallel.unreplicate(m)

  width = n if loss == "full" else c.train.num_negatives
  chunked, m_chunked = step(3 * width)
  whole, m_whole = step(10 ** 9)
  assert m_chunked["loss_sum"] == pytest.approx(m_whole["loss_sum"], rel=1e-5)
  assert m_chunked["next_loss_sum"] == pytest.approx(m_whole["next_loss_sum"], rel=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), chunked, whole)
  assert not np.allclose(whole["output_bias"], start.params["output_bias"], atol=1e-4)  # the step moved it


@pytest.mark.parametrize("overrides", [dict(loss="sampled", num_negatives=16), dict(loss_positions="all"),
                                       dict(donate_buffers=False, prefetch=0)])
def test_speed_switches_still_train(tiny_config, tmp_path, overrides):
  c = tiny_config
  c.train.num_train_steps, c.train.log_every_steps, c.train.eval_every_steps = 100, 10, 0
  for k, v in overrides.items():
    c.train[k] = v
  out, _ = trained_params(c, tmp_path)
  curve = losses(out["model_dir"])
  assert np.isfinite(curve).all() and curve[-1] < curve[0] - 0.2


def test_gathered_compacted_and_all_position_losses_agree(tiny_config, tmp_path):
  """Computing the output layer only at masked positions, and only at the used ones, are
  optimisations, not changes."""
  c = tiny_config
  c.model.hidden_dropout_prob = c.model.attention_probs_dropout_prob = 0.0
  c.data.synthetic.min_length = 3  # short windows leave most of the P slots unused
  c.train.num_train_steps, c.train.log_every_steps, c.train.eval_every_steps = 3, 1, 0
  curves = {}
  for positions, compact in (("masked", True), ("masked", False), ("all", False)):
    c.train.loss_positions, c.train.compact_targets = positions, compact
    out, _ = trained_params(c, tmp_path / f"{positions}{compact}")
    curves[positions, compact] = losses(out["model_dir"])
  np.testing.assert_allclose(curves["masked", True], curves["masked", False], rtol=1e-5)
  np.testing.assert_allclose(curves["masked", True], curves["all", False], rtol=1e-5)


def test_one_step_shape_a_run_trains_as_a_shape_per_batch(tiny_config, tmp_path):
  """train.target_shapes="run" (an accelerator's default): every step gets the bound of the
  schedule's fullest batch, so the step compiles once; the padding slots change nothing."""
  c = tiny_config
  c.model.hidden_dropout_prob = c.model.attention_probs_dropout_prob = 0.0
  c.data.synthetic.min_length = 3  # windows of many lengths: per-batch bounds differ
  c.train.next_item_loss_weight = 0.5  # two slot kinds, two bounds
  c.train.num_train_steps, c.train.log_every_steps, c.train.eval_every_steps = 6, 1, 0
  curves = {}
  for shapes in ("batch", "run"):
    c.train.target_shapes = shapes
    out, _ = trained_params(c, tmp_path / shapes)
    curves[shapes] = losses(out["model_dir"])
  np.testing.assert_allclose(curves["run"], curves["batch"], rtol=1e-5)


def test_the_run_bound_is_the_largest_batch_bound_from_any_resumed_step(tiny_config):
  from bert4rec_jax.preprocess import Sequences
  c = tiny_config
  c.train.next_item_loss_weight = 0.5
  c.train.batch_size, c.train.num_train_steps = 64, 40
  rng = np.random.default_rng(0)
  lengths = np.where(rng.random(400) < 0.01, 3 * c.model.max_seq_length, rng.integers(1, 6, size=400))  # a few long
  seqs = Sequences(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                   rng.integers(1, 50, size=int(lengths.sum())).astype(np.int32))
  devices = jax.local_devices()[:2]
  c.train.prefetch = 0

  def bounds(shapes, start):
    c.train.target_shapes = shapes
    batches = input_pipeline.training_batches(c, seqs, start, devices)
    return [next(batches)[1] for _ in range(start, c.train.num_train_steps)]

  per_batch = bounds("batch", 0)
  largest = tuple(map(max, *per_batch))
  assert len(set(per_batch)) > 1  # the data gives batches of different bounds
  # Resume after the last batch that needs the largest next-item slot bound: the rest need less.
  start = 1 + max(i for i, b in enumerate(per_batch) if b[1] == largest[1])
  assert start < c.train.num_train_steps and max(b[1] for b in per_batch[start:]) < largest[1]
  assert bounds("batch", start) == per_batch[start:]
  assert set(bounds("run", 0)) == set(bounds("run", start)) == {largest}  # one shape, resumed or not
  c.train.target_shapes = "auto"
  assert input_pipeline.target_shapes(c, devices) == "batch"
  gpu = type("Device", (), {"platform": "gpu"})()
  assert input_pipeline.target_shapes(c, [gpu]) == "run"


def test_sampled_loss_with_as_many_draws_as_items_is_the_full_softmax(tiny_config, tmp_path):
  """Drawing at least N negatives costs more than the N logits of the full softmax and is only an
  estimate of it: the step computes the full softmax instead (same curve); fewer draws do not."""
  c = tiny_config
  n = c.data.synthetic.num_items
  c.train.num_train_steps, c.train.log_every_steps, c.train.eval_every_steps = 3, 1, 0
  curves = {}
  for loss, num in (("full", 8192), ("sampled", n), ("sampled", n - 1)):
    c.train.loss, c.train.num_negatives = loss, num
    assert loss_lib.step_loss(c.train, n) == ("sampled" if num < n else "full")
    out, _ = trained_params(c, tmp_path / f"{loss}{num}")
    curves[loss, num] = losses(out["model_dir"])
  np.testing.assert_allclose(curves["sampled", n], curves["full", 8192], rtol=1e-6)
  assert not np.allclose(curves["sampled", n - 1], curves["full", 8192], rtol=1e-3)


def test_target_bucket_bounds_the_used_slots():
  from configs import default
  mc = default.base().masking
  mc.masked_lm_prob, mc.max_predictions_per_seq = 0.3, 5
  rng = np.random.default_rng(0)
  ids = (rng.random((64, 20)) < rng.random((64, 1))).astype(np.int32)
  ids = np.sort(ids, axis=1)  # right-aligned
  import jax.numpy as jnp
  from bert4rec_jax import masking
  mb = masking.mask_batch(jax.random.PRNGKey(0), jnp.asarray(ids), jnp.arange(64),
                          **masking.masking_kwargs(mc, num_items=5))
  used = np.asarray(mb.weights).reshape(4, -1).sum(1).max()
  bound = input_pipeline.target_bucket((ids != 0).sum(1), 20, mc, 4)
  assert used <= bound <= 16 * 5


def test_bucket_steps_between_powers_of_two():
  from bert4rec_jax.input_pipeline import bucket
  for n in range(1, 5000):
    assert bucket(n) == max(16, 1 << (n - 1).bit_length())  # the next power of two
    for steps in (2, 4):
      b = bucket(n, floor=32, steps=steps)
      grid = {(1 << k) + j * (1 << k) // steps for k in range(4, 14) for j in range(steps)}
      assert b >= max(n, 32) and b in grid and b <= max(32, n) * (1 + 1 / steps)
      assert all(not max(n, 32) <= g < b for g in grid)  # the smallest grid value that holds n


def test_sampled_negatives_follow_the_sampler(tiny_config):
  """q is popularity (training counts + 1), and the step's draws follow it."""
  from bert4rec_jax import preprocess
  from tests.test_preprocess import random_interactions
  p = preprocess.prepare(random_interactions(16, num_items=40), drop_duplicates=False, min_seq_length=3)
  c = tiny_config
  c.train.loss, c.train.num_negatives = "sampled", 8
  sampler = loss_lib.negative_sampler(c.train, p.sequences, p.vocab.num_items)
  q = np.exp(sampler.log_q.astype(np.float64))
  assert q.sum() == pytest.approx(1.0, rel=1e-5)
  counts = np.bincount(p.sequences.items, minlength=p.vocab.num_items + 1)[1:] + 1.0
  np.testing.assert_allclose(q, counts / counts.sum(), rtol=1e-5)
  draws = np.asarray(loss_lib.draw_negatives(jax.random.PRNGKey(0), sampler, 200_000))
  np.testing.assert_allclose(np.bincount(draws, minlength=len(q)) / len(draws), q, atol=0.004)


def test_every_item_of_a_skewed_million_item_catalogue_can_be_drawn():
  """The sampler draws every item with the probability logQ assumes (exactly, from its own
  tables), also the tail of a skewed 1M-item catalogue, where a float32 CDF leaves most tail items
  undrawable (their CDF steps round to nothing) while logQ counts on them."""
  n = 1_000_000
  counts = np.floor(1e7 / np.arange(1, n + 1) ** 1.2) + 1.0  # Zipf-like counts + 1, as the sampler smooths
  want = counts / counts.sum()
  float32_steps = np.diff(np.concatenate([[0.0], np.cumsum(want.astype(np.float32), dtype=np.float32)]))
  assert (float32_steps <= 0).sum() > n // 10  # the failure this guards against, on this very distribution
  sampler = loss_lib.alias_sampler(counts)
  # The exact probability of each column, recomputed from the tables in plain Python terms.
  thr, alias = sampler.threshold.astype(np.float64), sampler.alias
  exact = (thr + np.bincount(alias, weights=2.0 ** 32 - thr, minlength=n)) / (n * 2.0 ** 32)
  assert (exact > 0).all()
  np.testing.assert_allclose(exact, want, rtol=1e-4)  # within 2**-32 per slot of the intended
  np.testing.assert_allclose(np.exp(sampler.log_q.astype(np.float64)), exact, rtol=1e-6)  # logQ is the sampler's


@pytest.mark.parametrize("every, stop, good, curve", [
    ({"checkpoint_every_steps": 10, "eval_every_steps": 0, "log_every_steps": 5}, 15, 10, None),
    # A validation step that is neither a log nor a checkpoint step (15) saves too: checked first,
    # never validated, selected or saved diverged.
    ({"checkpoint_every_steps": 100, "eval_every_steps": 5, "log_every_steps": 20}, 15, 10, [5, 10]),
    ({"checkpoint_every_steps": 100, "eval_every_steps": 15, "log_every_steps": 20}, 15, None, []),
    # Step 13's update diverged (its gradient), its loss not yet (the loss is of the model before it).
    ({"checkpoint_every_steps": 100, "eval_every_steps": 13, "log_every_steps": 20}, 13, None, []),
])
def test_diverging_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path,
                                                                                    monkeypatch, every, stop, good,
                                                                                    curve):
  c = tiny_config
  c.train.num_train_steps = 30
  c.train.update(every)
  make_step = trainer.make_step

  def diverging_after_step_12(*args, **kwargs):  # step 13's update is NaN: its gradient, then every loss
    step, sampler = make_step(*args, **kwargs)
    calls = iter(range(10 ** 6))

    def wrapped(state, batch, sampler, num_targets):
      new, m = step(state, batch, sampler, num_targets)
      call = next(calls)
      if call < 12:
        return new, m
      nan = new.replace(params=jax.tree.map(lambda x: x * np.nan, new.params))
      return nan, dict(m, grad_norm=m["grad_norm"] * np.nan, loss_sum=m["loss_sum"] * (np.nan if call > 12 else 1))
    return wrapped, sampler

  monkeypatch.setattr(trainer, "make_step", diverging_after_step_12)
  shown = "nan" if stop > 13 else "[0-9.]+"
  with pytest.raises(DivergedError,
                     match=f"non-finite training loss {shown} \\(train/grad_norm nan\\) at step {stop}; ") as e:
    pipeline.run(c, str(tmp_path), mode="train")
  assert (f"the last good checkpoint (step {good}) is kept" if good else "no checkpoint was saved before it") \
      in str(e.value)
  assert isinstance(e.value, UserError) and "\n" not in str(e.value)  # the command line's one line
  (name,) = os.listdir(tmp_path / "models")
  folder = tmp_path / "models" / name
  root, chosen = folder / "checkpoints", folder / "selection.json"
  steps = [int(d) for d in os.listdir(root) if d.isdigit()] if root.exists() else []
  assert max(steps, default=None) == good  # none after the divergence
  if curve is not None:
    assert [e["step"] for e in (json.loads(chosen.read_text())["curve"] if chosen.exists() else [])] == curve


def test_next_item_targets_match_reference():
  rng = np.random.default_rng(0)
  ids = np.zeros((5, 7), np.int32)
  for r, n in enumerate([0, 1, 2, 5, 7]):
    ids[r, 7 - n:] = rng.integers(1, 30, n)
  got = loss_lib.next_item_targets(jnp.asarray(ids))
  for r in range(5):
    for i in range(7):
      want = ids[r, i] != 0 and i > 0 and ids[r, i - 1] != 0  # a real item with a real item before it
      assert got.weights[r, i] == float(want)
      assert got.targets[r, i] == (ids[r, i] if want else 0) and got.positions[r, i] == i
  np.testing.assert_array_equal(got.inputs, ids)
  assert input_pipeline.target_bucket((ids != 0).sum(1), 7, None, 1, kind="sasrec") == 32  # 0 + 0 + 1 + 4 + 6 used, bucketed


def test_keep_some_targets_keeps_a_uniform_random_few_of_each_rows_targets():
  """losses.keep_some_targets against a NumPy count: each row keeps min(K, its targets) of its own
  targets (positions and items intact, none twice), and over many draws every target of a row is
  kept K / its targets of the time; a row's draw depends on its example id, not its batch slot."""
  rng = np.random.default_rng(0)
  ids = np.zeros((6, 9), np.int32)
  for r, n in enumerate([0, 1, 2, 4, 7, 9]):
    ids[r, 9 - n:] = rng.integers(1, 50, n)
  full = loss_lib.next_item_targets(jnp.asarray(ids))
  count = np.asarray(full.weights).sum(1)  # 0, 0, 1, 3, 6, 8 targets
  k, draws = 3, 3000
  got = jax.vmap(lambda key: loss_lib.keep_some_targets(key, full, jnp.arange(6), k))(
      jax.random.split(jax.random.PRNGKey(0), draws))
  positions, targets, weights = (np.asarray(x) for x in (got.positions, got.targets, got.weights))  # [draws, 6, k]
  assert positions.shape == (draws, 6, k)
  np.testing.assert_array_equal(weights.sum(2), np.broadcast_to(np.minimum(count, k), (draws, 6)))
  seen = np.zeros(ids.shape)
  for d in range(draws):
    for r in range(6):
      kept = positions[d, r][weights[d, r] > 0]
      assert len(set(kept.tolist())) == len(kept)  # none twice
      assert (np.asarray(full.weights)[r, kept] == 1).all() and (targets[d, r][weights[d, r] > 0] == ids[r, kept]).all()
      seen[r, kept] += 1
  for r in range(2, 6):
    share = seen[r][np.asarray(full.weights[r]) > 0] / draws
    np.testing.assert_allclose(share, min(1.0, k / count[r]), atol=0.04)
  # The draw follows the example id: the same rows in another order keep the same targets.
  order = np.array([5, 3, 4, 0, 2, 1])
  shuffled = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)[order]), full)
  a = loss_lib.keep_some_targets(jax.random.PRNGKey(7), full, jnp.arange(6), k)
  b = loss_lib.keep_some_targets(jax.random.PRNGKey(7), shuffled, jnp.asarray(order), k)
  np.testing.assert_array_equal(np.asarray(a.positions)[order], b.positions)
  assert loss_lib.keep_some_targets(jax.random.PRNGKey(0), full, jnp.arange(6), 9) is full  # K >= L: all kept
  # The bound: the used slots (0 + 0 + 1 + 3 + 3 + 3) bucketed, at most every kept slot (6 x K).
  assert input_pipeline.target_bucket((ids != 0).sum(1), 9, None, 1, "sasrec", next_item_positions=k) == 6 * k
  assert input_pipeline.target_bucket(np.full(40, 9), 9, None, 1, "sasrec", next_item_positions=k) == 40 * k


@pytest.mark.parametrize("kind", ["bert4rec", "sasrec"])
def test_next_item_loss_on_a_few_positions_compacts_and_spreads_alike(tiny_config, tmp_path, kind):
  """train.next_item_positions: the next-item loss over the kept targets only, whether the output
  layer runs at the compacted used slots, at every kept slot or at all L positions (the same
  curve), over four devices; it logs min(K, n - 1) targets a window and differs from every target."""
  c = tiny_config
  c.model.kind = kind
  c.model.hidden_dropout_prob = c.model.attention_probs_dropout_prob = 0.0
  c.train.next_item_loss_weight = 1.0
  c.train.num_train_steps, c.train.log_every_steps, c.train.eval_every_steps = 3, 1, 0
  curves = {}
  for keep, positions, compact in ((2, "masked", True), (2, "masked", False), (2, "all", False), (0, "masked", True)):
    c.train.next_item_positions, c.train.loss_positions, c.train.compact_targets = keep, positions, compact
    out, _ = trained_params(c, tmp_path / f"{keep}{positions}{compact}")
    with open(os.path.join(out["model_dir"], "metrics.jsonl")) as f:
      rows = [r for r in map(json.loads, f) if "train/loss" in r]
    curves[keep, positions, compact] = [[r["train/loss"], r.get("train/next_item_loss", 0.0)] for r in rows]
  np.testing.assert_allclose(curves[2, "masked", True], curves[2, "masked", False], rtol=1e-5)
  np.testing.assert_allclose(curves[2, "masked", True], curves[2, "all", False], rtol=1e-5)
  assert not np.allclose(curves[2, "masked", True], curves[0, "masked", True], rtol=1e-3)


def test_sasrec_trains_and_beats_popularity(tiny_config, tmp_path):
  c = tiny_config
  c.model.kind = "sasrec"
  c.train.num_train_steps, c.train.log_every_steps, c.train.eval_every_steps = 150, 10, 0
  c.data.synthetic.noise = 0.05
  out = pipeline.run(c, str(tmp_path), mode="all")
  curve = losses(out["model_dir"])
  assert curve[-1] < curve[0] - 0.5
  with open(os.path.join(out["model_dir"], "metrics.jsonl")) as f:
    logged = [r for r in map(json.loads, f) if "train/loss" in r]
  assert len(logged) == 15 and all(r["train/grad_norm"] > 0 and 0 <= r["train/clipped_fraction"] <= 1 for r in logged)
  with open(os.path.join(out["results_dir"], "test_metrics.json")) as f:
    rows = json.load(f)["metrics"]
  assert rows["sasrec"]["ndcg@10"] > 2 * rows["popularity"]["ndcg@10"]


@pytest.mark.parametrize("loss", ["full", "sampled"])
def test_next_item_loss_adds_sasrecs_gradient_to_bert4recs(tiny_config, loss):
  """train.next_item_loss_weight = w: the step's gradient is BERT4Rec's masked-item gradient plus
  w times the gradient SASRec's step takes from the same weights and windows (checked through
  SGD with rate 1, where new params = params - gradient), over two devices, with and without
  target compaction; the logged losses are each objective's own."""
  import copy
  c = tiny_config
  c.model.hidden_dropout_prob = c.model.attention_probs_dropout_prob = 0.0
  c.train.loss, c.train.num_negatives, c.train.prefetch, c.train.batch_size = loss, 16, 0, 32
  n, L, P = c.data.synthetic.num_items, c.model.max_seq_length, c.masking.max_predictions_per_seq
  rng = np.random.default_rng(0)
  seqs = random_sequences(rng, n, 2, 7, 80)  # short: compaction drops most slots of both losses
  devices = parallel.local_devices(2)
  start, sgd = sgd_start(c, n)

  def step(kind, weight, compact=True):
    cc = copy.deepcopy(c)
    cc.model.kind, cc.train.next_item_loss_weight, cc.train.compact_targets = kind, weight, compact
    p_step, sampler = trainer.make_step(cc, n, devices, seqs)
    batch, bound = next(input_pipeline.batch_iterator(cc, input_pipeline.make_stream(cc, seqs), 3, devices))
    new, m = p_step(parallel.replicate(sgd, devices), batch, sampler, bound)
    return bound, parallel.unreplicate(new.params), parallel.unreplicate(m)

  bound, mixed, m = step("bert4rec", 0.5)
  rows = c.train.batch_size // len(devices)
  assert isinstance(bound, tuple) and 0 < bound[0] < rows * P and 0 < bound[1] < rows * L
  _, masked_only, m_masked = step("bert4rec", 0.0)
  _, sasrec, m_sasrec = step("sasrec", 0.0)
  assert m["loss_sum"] == pytest.approx(m_masked["loss_sum"], rel=1e-5) and m["count"] == m_masked["count"]
  assert m["next_loss_sum"] == pytest.approx(m_sasrec["loss_sum"], rel=1e-5) and m["next_count"] == m_sasrec["count"]
  assert "next_count" not in m_masked
  want = jax.tree.map(lambda p0, a, b: p0 - (p0 - a) - 0.5 * (p0 - b), start.params, masked_only, sasrec)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), mixed, want)
  assert not np.allclose(mixed["output_bias"], masked_only["output_bias"], atol=1e-6)
  _, uncompacted, _ = step("bert4rec", 0.5, compact=False)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), mixed, uncompacted)
  # The logged gradient norm is the global norm of the whole objective's gradient (before the
  # optimizer's clip), and `clipped` says whether train.max_grad_norm is below it.
  grads = jax.tree.leaves(jax.tree.map(lambda p0, a: np.asarray(p0, np.float64) - np.asarray(a), start.params, mixed))
  norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads))
  assert m["grad_norm"] == pytest.approx(norm, rel=1e-4) and m["clipped"] == float(norm > c.train.max_grad_norm)
  for bound_, want_clipped in ((norm / 2, 1.0), (norm * 2, 0.0), (0.0, 0.0)):
    c.train.max_grad_norm = float(bound_)
    assert step("bert4rec", 0.5)[2]["clipped"] == want_clipped


def test_spike_clip_matches_a_numpy_reference():
  """clip_spikes against a plain loop: the limit is factor x the weighted mean of the earlier steps'
  clipped norms; a spike is scaled to it and does not raise it; slow growth passes unclipped;
  `clip_limit` reports the limit the step used (with max_grad_norm, the smaller)."""
  rng = np.random.default_rng(0)
  factor, decay = 2.0, trainer.SPIKE_DECAY
  norms = np.concatenate([np.full(30, 3.0) * np.linspace(1, 1.3, 30), [40.0, 3.9, 100.0], 4 + rng.random(20)])
  tx = trainer.clip_spikes(factor)
  params = {"a": jnp.zeros((3, 4)), "b": jnp.zeros(5)}
  state = tx.init(params)
  norm_sum = weights = 0.0
  for t, n in enumerate(norms):
    g = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=5)}
    g_norm = np.sqrt(sum(float(np.sum(v * v)) for v in g.values()))
    g = {k: jnp.asarray(v * n / g_norm, jnp.float32) for k, v in g.items()}
    want_limit = np.inf if t == 0 else factor * norm_sum / weights
    assert float(trainer.spike_limit(state, factor)) == pytest.approx(want_limit, rel=1e-5)
    assert float(trainer.clip_limit(state, 0.0, factor)) == pytest.approx(want_limit, rel=1e-5)
    assert float(trainer.clip_limit(state, 7.0, factor)) == pytest.approx(min(7.0, want_limit), rel=1e-5)
    out, state = tx.update(g, state)
    kept = min(n, want_limit)
    for k in g:
      np.testing.assert_allclose(out[k], np.asarray(g[k]) * (kept / n), rtol=1e-5, atol=1e-7)
    norm_sum, weights = decay * norm_sum + kept, decay * weights + 1.0
    assert (kept < n) == (t in (30, 32))  # the two spikes only: not the growth, not the step after a spike
  assert float(trainer.clip_limit(tx.init(params), 0.0, factor)) == np.inf
  # A step without gradient (or a non-finite one) is not counted: it never sets a limit of 0.
  state = tx.init(params)
  for g in (0.0, np.nan, 3.0):
    _, state = tx.update({"a": jnp.full((3, 4), g), "b": jnp.zeros(5)}, state)
  assert int(state.count) == 1
  assert float(trainer.spike_limit(state, factor)) == pytest.approx(factor * 3.0 * np.sqrt(12))


def test_spike_clip_trains_resumes_and_is_part_of_the_model(tiny_config, tmp_path):
  """train.spike_clip in the optimizer: a run stopped and resumed equals one straight run (the
  running mean is in the checkpoint), the step's `clipped` counts its clips, and a model trained
  without it is another model (its name changes only when the field is set)."""
  c = tiny_config
  c.train.num_train_steps, c.train.checkpoint_every_steps, c.train.eval_every_steps, c.train.log_every_steps = 12, 100, 0, 1
  c.train.spike_clip, c.train.max_grad_norm = 1.05, 0.0  # tight: binds on some steps
  _, straight = trained_params(c, tmp_path / "straight")
  out, _ = trained_params(c, tmp_path / "resumed", stop_at=5)
  out, resumed = trained_params(c, tmp_path / "resumed")
  assert out["step"] == 12
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), straight, resumed)
  with open(os.path.join(out["model_dir"], "metrics.jsonl")) as f:
    clipped = [r["train/clipped_fraction"] for r in map(json.loads, f) if "train/clipped_fraction" in r]
  assert clipped[0] == 0.0 and 0 < sum(clipped) < len(clipped)
  plain = tiny_config.copy_and_resolve_references()
  plain.train.spike_clip = 0.0
  assert model_store.model_name(plain) != model_store.model_name(c)
  assert "spike_clip" not in json.dumps(model_store.identity(plain, ""))


def test_last_keep_prob_trains_another_model_named_only_when_set(tiny_config, tmp_path):
  """masking.last_keep_prob through training: it resumes as one straight run, trains other weights
  than the same run without it (the shown last items change the masked-item loss), and it enters
  the model's identity only when set, so models trained before it existed keep their names."""
  c = tiny_config
  c.train.num_train_steps, c.train.checkpoint_every_steps, c.train.eval_every_steps = 8, 100, 0
  c.train.log_every_steps = 1
  plain = c.copy_and_resolve_references()
  c.masking.last_keep_prob = 1.0
  _, straight = trained_params(c, tmp_path / "straight")
  out, _ = trained_params(c, tmp_path / "resumed", stop_at=4)
  out, resumed = trained_params(c, tmp_path / "resumed")
  assert out["step"] == 8 and all(np.isfinite(losses(out["model_dir"])))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), straight, resumed)
  _, without = trained_params(plain, tmp_path / "without")
  assert max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(without))) > 1e-4
  assert model_store.model_name(plain) != model_store.model_name(c)
  assert "last_keep_prob" not in json.dumps(model_store.identity(plain, ""))
  for kind in ("sasrec", "markov"):  # no other model reads it: their names stay as they were
    plain.model.kind = c.model.kind = kind
    assert model_store.model_name(plain) == model_store.model_name(c)


@pytest.mark.parametrize("every", [2, 4])
def test_masked_loss_on_one_window_in_k_is_those_windows_masked_gradient(tiny_config, every):
  """train.masked_loss_every = k (with the next-item loss): the step's gradient is the masked-item
  gradient of one row in every k consecutive rows of each shard, at the same offset on both
  devices (so the same rows of the global batch whatever the devices), over those rows' targets,
  plus w times SASRec's gradient over every window (SGD with rate 1, two devices, compacted slots
  against the rows' own step uncompacted); the logged masked loss is those rows' own."""
  import copy
  c = tiny_config
  c.model.hidden_dropout_prob = c.model.attention_probs_dropout_prob = 0.0
  c.train.prefetch, c.train.batch_size = 0, 32
  n = c.data.synthetic.num_items
  seqs = random_sequences(np.random.default_rng(1), n, 2, 20, 80)
  devices = parallel.local_devices(2)
  start, sgd = sgd_start(c, n)

  def step(kind, weight, k=1, rows=None, at=3):
    cc = copy.deepcopy(c)
    cc.model.kind, cc.train.next_item_loss_weight, cc.train.masked_loss_every = kind, weight, k
    p_step, sampler = trainer.make_step(cc, n, devices, seqs)
    batch, bound = next(input_pipeline.batch_iterator(cc, input_pipeline.make_stream(cc, seqs), at, devices))
    if rows is not None:  # only these rows of each device's shard, every slot
      batch, bound = jax.tree.map(lambda x: np.asarray(x)[:, rows], batch), 0
    new, m = p_step(parallel.replicate(sgd, devices), batch, sampler, bound)
    return parallel.unreplicate(new.params), parallel.unreplicate(m)

  sasrec, m_sasrec = step("sasrec", 0.0)
  matched = []
  for at in (3, 4, 5):  # the offset is drawn per step
    mixed, m = step("bert4rec", 0.5, every, at=at)
    if at == 3:
      assert m["next_loss_sum"] == pytest.approx(m_sasrec["loss_sum"], rel=1e-5) and m["next_count"] == m_sasrec["count"]
    for offset in range(every):
      own, m_own = step("bert4rec", 0.0, rows=slice(offset, None, every), at=at)
      if m_own["count"] != m["count"] or not np.isclose(m_own["loss_sum"], m["loss_sum"], rtol=1e-5):
        continue
      if at == 3:
        want = jax.tree.map(lambda p0, a, b: p0 - (p0 - a) - 0.5 * (p0 - b), start.params, own, sasrec)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), mixed, want)
      matched.append(offset)
  assert len(matched) == 3  # at each step the rows of exactly one offset
  every_row, _ = step("bert4rec", 0.5, at=5)
  assert not np.allclose(mixed["output_bias"], every_row["output_bias"], atol=1e-6)


def test_masked_rows_take_one_row_of_each_group_at_a_uniform_offset():
  x = jnp.arange(24).reshape(12, 2)
  assert loss_lib.masked_rows(jax.random.PRNGKey(0), x, 1) is x
  picks = []
  for s in range(400):
    got = np.asarray(loss_lib.masked_rows(jax.random.PRNGKey(s), x, 4))
    offset = got[0, 0] // 2
    np.testing.assert_array_equal(got, np.asarray(x)[offset::4])
    picks.append(offset)
  counts = np.bincount(picks, minlength=4)
  assert ((counts - 100) ** 2 / 100).sum() < 16.3  # chi-square, 3 degrees of freedom, p = .001


def test_target_bounds_hold_the_rows_the_masked_loss_reads():
  """With train.masked_loss_every = k a shard's masked-item slots are bounded by the fullest row of
  each group of k (any offset fits) and by its k-th of the rows' slots, a tighter bound than all rows'."""
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, 41, 64)
  mk = type("M", (), {"max_predictions_per_seq": 8, "masked_lm_prob": 0.2})()
  used = input_pipeline._used_slots(lengths, 40, mk, "bert4rec", 0).reshape(2, -1)
  for k in (2, 4):
    bound = input_pipeline.target_bucket(lengths, 40, mk, 2, "bert4rec", every=k)
    assert bound <= 32 // k * 8
    for offset in range(k):
      assert used[:, offset::k].sum(axis=1).max() <= bound
    assert bound < input_pipeline.target_bucket(lengths, 40, mk, 2, "bert4rec")


def test_next_item_loss_config(tiny_config, tmp_path):
  # SASRec's loss is the next-item loss already: a config that sets the weight switches with one flag.
  tiny_config.train.next_item_loss_weight = 0.5
  tiny_config.model.kind = "sasrec"
  assert loss_lib.next_item_loss_weight(tiny_config) == 0.0
  tiny_config.model.kind = "bert4rec"
  assert loss_lib.next_item_loss_weight(tiny_config) == 0.5
  tiny_config.train.next_item_loss_weight = -1.0
  with pytest.raises(ConfigError, match="next_item_loss_weight must be >= 0"):
    pipeline.run(tiny_config, str(tmp_path), mode="train")
  tiny_config.train.next_item_loss_weight = 1.0
  tiny_config.model.read_last = "sideways"
  with pytest.raises(ConfigError, match="read_last='sideways': use one of '', 'mask', 'causal'"):
    pipeline.run(tiny_config, str(tmp_path), mode="train")
  # How the last slot is read is not part of the model: both readings name (and evaluate) one model.
  tiny_config.model.read_last = "mask"
  name = pipeline.model_name(tiny_config)
  tiny_config.model.read_last = "causal"
  assert pipeline.model_name(tiny_config) == name
  tiny_config.train.masked_loss_every = 2  # another objective: another model
  assert pipeline.model_name(tiny_config) != name


def test_model_names_never_change():
  """A model's name is how a later run finds it: the shipped configs' names are those they had
  before identities, output keys and the labels rule were added (so no trained model is orphaned)."""
  from configs import beauty, ml1m, synthetic
  tiny = synthetic.get_config("tiny")
  tiny.model.num_hidden_layers = 2  # the tiny model as it was before it had one layer
  names = [model_store.model_name(c, "abc") for c in (synthetic.get_config(), tiny, beauty.get_config(),
                                                      ml1m.get_config(), synthetic.get_config("tiny"))]
  # New names begin with the kind; the rest (and the hash) is the name such a model always had.
  assert names == ["bert4rec_" + n for n in (
      "hs64_msl30_mpps8_nts1500_lr0.001_28ee1f4b", "hs32_msl16_mpps4_nts300_lr0.01_e06ea48b",
      "hs64_msl50_mpps30_nts6000_lr0.003_23e1dc87", "hs64_msl200_mpps40_nts30000_lr0.001_7512995d",
      "hs32_msl16_mpps4_nts300_lr0.01_cd1c350b")]  # the one-layer tiny model: another model, another name


def test_what_periodic_validation_measures_is_part_of_the_model(tiny_config, tmp_path):
  """Validation during training selects the checkpoint (and ends training early): a setting that
  changes its metric's scale names another model, so a rerun or a resume never selects across two
  scales; without periodic validation it stays out (one model, evaluated either way)."""
  c = tiny_config
  c.train.num_train_steps, c.train.eval_every_steps = 4, 2
  c.train.select_metric, c.eval.num_negatives = "sampled_hr@10", 20
  first = pipeline.run(c, str(tmp_path), mode="train")
  c.eval.num_negatives = 5  # an easier sampled protocol: every validation scores higher
  second = pipeline.run(c, str(tmp_path), mode="train")
  assert second["model_name"] != first["model_name"] and second["step"] == 4
  assert sorted(os.listdir(tmp_path / "models")) == sorted([first["model_name"], second["model_name"]])
  c.train.select_metric = "ndcg@10"  # full ranking: the sampled protocol does not select
  name = pipeline.model_name(c)
  c.eval.num_negatives = 20
  assert pipeline.model_name(c) == name
  c.eval.exclude_history = False  # the full ranking's own scale
  assert pipeline.model_name(c) != name
  c.train.eval_every_steps = 0  # no periodic validation: nothing selected, the eval settings stay out
  c.eval.exclude_history = True
  plain = pipeline.model_name(c)
  c.eval.exclude_history = False
  assert pipeline.model_name(c) == plain


def test_a_model_named_before_names_began_with_its_kind_is_still_found(tiny_config, tmp_path):
  """A folder of the old scheme (no kind prefix) is the same model: a run of its config resumes
  it instead of starting a new one beside it; a new model gets the new name."""
  tiny_config.train.num_train_steps = 4
  first = pipeline.run(tiny_config, str(tmp_path), mode="train")
  assert first["model_name"].startswith("bert4rec_hs32_")
  legacy = first["model_name"][len("bert4rec_"):]
  os.rename(tmp_path / "models" / first["model_name"], tmp_path / "models" / legacy)
  again = pipeline.run(tiny_config, str(tmp_path), mode="train")
  assert again["model_name"] == legacy and again["step"] == 4
  assert os.listdir(tmp_path / "models") == [legacy]
  tiny_config.model.kind = "sasrec"  # another model: the new scheme, beside it
  assert pipeline.run(tiny_config, str(tmp_path), mode="train")["model_name"].startswith("sasrec_hs32_")


def _skewed_sequences(seed=0, users=3000):
  from bert4rec_jax import preprocess
  rng = np.random.default_rng(seed)
  lengths = np.minimum(1 + rng.lognormal(1.5, 1.0, users).astype(np.int64), 300)
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  return preprocess.Sequences(offsets, rng.integers(1, 500, int(lengths.sum())).astype(np.int32))


def test_length_buckets_only_regroup_each_pool_and_cut_no_item():
  """Pooled by length: each pool of POOL_BATCHES batches holds exactly the examples the plain
  stream puts there (so an epoch is still every example once, up to the pools at its ends), each
  batch's windows fit its width, the columns cut off are padding only, the mean width is far
  below L on skewed data, and any batch is a pure function of (seed, step)."""
  seqs = _skewed_sequences()
  pool = input_pipeline.POOL_BATCHES
  plain = input_pipeline.TrainStream(seqs, 32, 50, seed=3, prop_sliding_window=0.5)
  kw = dict(prop_sliding_window=0.5, length_buckets=True)
  stream = input_pipeline.TrainStream(seqs, 32, 50, seed=3, **kw)
  steps = range(3 * pool)
  for p in range(3):
    mine = np.concatenate([stream.example_ids(s) for s in steps[p * pool:(p + 1) * pool]])
    theirs = np.concatenate([plain.example_ids(s) for s in steps[p * pool:(p + 1) * pool]])
    assert sorted(mine) == sorted(theirs) and not np.array_equal(mine, theirs)
  widths = []
  for s in steps:
    lengths, width = stream.lengths(s), stream.width(s)
    assert width == input_pipeline.window_width(int(lengths.max()), 50) and lengths.max() <= width
    cut = stream.batch(s)["item_ids"]
    full = input_pipeline.right_aligned(seqs, stream.window_rows[stream.example_ids(s)], 50,
                                        ends=stream.window_ends[stream.example_ids(s)])
    assert cut.shape == (32, width) and (full[:, :50 - width] == 0).all()
    np.testing.assert_array_equal(full[:, 50 - width:], cut)
    widths.append(width)
  assert set(widths) >= {8, 16, 50} and np.mean(widths) < 25
  fresh = input_pipeline.TrainStream(seqs, 32, 50, seed=3, **kw)  # a resumed run, asked out of order
  for s in (70, 3, 40):
    np.testing.assert_array_equal(fresh.batch(s)["item_ids"], stream.batch(s)["item_ids"])
    np.testing.assert_array_equal(fresh.batch(s)["example_ids"], stream.batch(s)["example_ids"])
  block = slice(8, 16)  # a process's rows of the global batch
  np.testing.assert_array_equal(stream.batch(5, block)["item_ids"], stream.batch(5)["item_ids"][block])


def test_length_bucketed_batches_get_one_exact_bound_per_width(tiny_config):
  """With length buckets each width gets one target bound per loss (one compiled step per width):
  the most slots any shard of a batch of that width uses over the run, exactly, so every batch
  fits it, below the bound of full windows where a width's windows are seldom full; a resumed run gets the same bounds,
  a batch that needs more than its width's gets the full-window bound, and a step moves the
  parameters as the full-window bound's step does (the padded slots weigh nothing)."""
  c = tiny_config
  c.model.max_seq_length, c.masking.max_predictions_per_seq = 50, 10
  c.train.batch_size, c.train.length_buckets, c.train.prefetch = 256, True, 0
  c.train.next_item_loss_weight, c.train.num_train_steps = 0.5, 2 * input_pipeline.POOL_BATCHES
  n = c.data.synthetic.num_items
  seqs = _skewed_sequences()
  seqs = type(seqs)(seqs.offsets, (seqs.items % n + 1).astype(np.int32))
  devices = parallel.local_devices(2)
  stream = input_pipeline.make_stream(c, seqs)
  steps = c.train.num_train_steps
  got = [(batch["item_ids"].shape[-1], bound) for batch, bound in input_pipeline.batch_iterator(c, stream, 0, devices,
                                                                                                stop=steps)]
  assert len(got) == steps and len(set(got)) == len({w for w, _ in got}) >= 3
  most, full = {}, {}
  for step, (width, bound) in enumerate(got):
    lengths = stream.lengths(step)
    own = input_pipeline._shard_most(lengths, stream, c, 2, True, 0)
    assert all(o <= b for o, b in zip(own, bound))
    most[width] = tuple(map(max, most.get(width, (0, 0)), own))
    full[width] = input_pipeline._bounds(lengths, stream, c, 2, True, 0)
  assert dict(got) == {w: tuple(max(1, m) for m in ms) for w, ms in most.items()}
  # Never above the full windows' bound; the next-item loss's far below it where a width's windows are seldom full.
  assert all(b <= f for w, bound in got for b, f in zip(bound, full[w]))
  assert min(bound[1] / full[w][1] for w, bound in got) < 0.85
  resumed = input_pipeline.batch_iterator(c, input_pipeline.make_stream(c, seqs), 40, devices, stop=steps)
  assert [bound for _, bound in resumed] == [bound for _, bound in got[40:]]
  width = max(most)
  step_at = next(i for i, (w, _) in enumerate(got) if w == width)
  lengths = stream.lengths(step_at)
  assert input_pipeline._bounds(lengths, stream, c, 2, True, 0, {width: (1, 1)}) == full[width]
  c.train.target_shapes = "run"  # an accelerator's: full windows' bound per width, no pass over the schedule
  assert [bound for _, bound in input_pipeline.batch_iterator(c, stream, 0, devices, stop=steps)] == [
      full[w] for w, _ in got]
  c.train.target_shapes = "auto"

  start, sgd = sgd_start(c, n)
  p_step, sampler = trainer.make_step(c, n, devices, seqs)
  batch = parallel.put_sharded(stream.batch(step_at), devices)
  moved = [parallel.unreplicate(p_step(parallel.replicate(sgd, devices), batch, sampler, bound)[0].params)
           for bound in (dict(got)[width], full[width])]
  assert dict(got)[width] != full[width]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), *moved)
  assert not np.allclose(moved[0]["output_bias"], start.params["output_bias"], atol=1e-4)


def test_a_batch_larger_than_the_data_spans_epochs_each_its_own_permutation():
  """A batch of far more windows than the data has spans many epochs: its examples are still
  those of epoch p // W's permutation at p % W for every stream position p (a slow reference),
  for contiguous and for shuffled positions, so each window is in the batch B / W times."""
  seqs = _skewed_sequences(users=7)
  stream = input_pipeline.TrainStream(seqs, 2000, 50, seed=5)
  w = stream.num_examples
  assert w == 7

  def reference(pos):
    return np.array([np.random.default_rng([5, p // w]).permutation(w)[p % w] for p in pos])

  pos = 3 * 2000 + np.arange(2000, dtype=np.int64)
  np.testing.assert_array_equal(stream.example_ids(3), reference(pos))
  shuffled = np.random.default_rng(0).permutation(np.arange(10_000, dtype=np.int64))[:3000]
  np.testing.assert_array_equal(stream._examples_at(shuffled), reference(shuffled))
  assert len(stream._examples_at(np.arange(0, dtype=np.int64))) == 0
  counts = np.bincount(stream.example_ids(3), minlength=w)
  assert counts.min() >= 2000 // w - 1 and counts.max() <= 2000 // w + 1
  bucketed = input_pipeline.TrainStream(seqs, 2000, 50, seed=5, length_buckets=True)
  pool = np.concatenate([bucketed.example_ids(s) for s in range(input_pipeline.POOL_BATCHES)])
  assert sorted(pool) == sorted(reference(np.arange(input_pipeline.POOL_BATCHES * 2000)))
  # Each window more than MAX_REPEATS (1,000) times a step is refused, naming the field.
  input_pipeline.TrainStream(seqs, 7000, 50, seed=5)
  with pytest.raises(ConfigError, match=r"config.train.batch_size=7001 would hold each of the 7 training examples "
                                        r"about 1,000 times a step \(at most 1,000\): lower it to at most 7,000"):
    input_pipeline.TrainStream(seqs, 7001, 50, seed=5)


def test_mean_targets_are_the_targets_the_masks_draw(tiny_config):
  """losses.mean_targets against the slots the device's masking and next-item targets actually
  use, counted over every window of an epoch: dynamic masking (never and always mask-last, and a
  mix in between), static copies, SASRec and the next-item loss."""
  import copy
  from bert4rec_jax import masking
  seqs = _skewed_sequences(users=400)
  c = copy.deepcopy(tiny_config)
  c.model.max_seq_length, c.masking.max_predictions_per_seq, c.masking.masked_lm_prob = 40, 6, 0.3
  n = c.data.synthetic.num_items

  def counted(cc):
    stream = input_pipeline.make_stream(cc, seqs)
    ids = input_pipeline.right_aligned(seqs, stream.window_rows, 40, ends=stream.window_ends)
    following = loss_lib.next_item_targets(jnp.asarray(ids))
    if cc.train.next_item_positions:
      following = loss_lib.keep_some_targets(jax.random.PRNGKey(9), following, jnp.arange(len(ids)),
                                             cc.train.next_item_positions)
    following = float(following.weights.sum()) / len(ids)
    if cc.model.kind == "sasrec":
      return stream, following, 0.0
    kw = masking.masking_kwargs(cc.masking, n)
    copies = cc.masking.dupe_factor + 1 if cc.masking.mode == "static" else 1
    masked = 0.0
    for copy_ in range(copies):
      only_last = np.full(len(ids), cc.masking.mode == "static" and copy_ == copies - 1)
      m = masking.mask_batch(jax.random.PRNGKey(copy_), jnp.asarray(ids), jnp.arange(len(ids)), jnp.asarray(only_last), **kw)
      masked += float(m.weights.sum()) / len(ids) / copies
    return stream, masked, following if cc.train.next_item_loss_weight else 0.0

  def check(cc):
    stream, *want = counted(cc)
    got = loss_lib.mean_targets(cc, stream.window_lengths())
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # Examples with at least one target (train.target_weighting="example"): windows of 1 item have
    # no next-item target.
    has = loss_lib.mean_targets(cc, stream.window_lengths(), per_example=True)
    lengths = stream.window_lengths()
    np.testing.assert_allclose(has, [(lengths >= (2 if cc.model.kind == "sasrec" else 1)).mean(),
                                     (lengths >= 2).mean() if want[1] else 0.0], rtol=1e-6)
    return got

  c.masking.mask_last_prob = 0.0
  never = check(c)
  c.masking.mask_last_prob = 1.0
  always = check(c)
  assert always[0] == 1.0 < never[0]  # every window has an item: one target each
  c.masking.mask_last_prob = 0.3
  assert loss_lib.mean_targets(c, input_pipeline.make_stream(c, seqs).window_lengths())[0] == pytest.approx(
      0.7 * never[0] + 0.3 * always[0])
  c.masking.mode, c.masking.dupe_factor = "static", 3
  check(c)
  c.masking.mode, c.train.next_item_loss_weight = "dynamic", 2.0
  c.masking.mask_last_prob = 0.0
  all_next = check(c)[1]
  assert all_next > 0
  c.train.next_item_positions = 4  # the next-item loss at a few of each window's targets
  assert 0 < check(c)[1] < all_next
  # The masked-item loss on one window in 4 (losses.masked_rows: each with probability 1 / 4).
  lengths = input_pipeline.make_stream(c, seqs).window_lengths()
  every_window = loss_lib.mean_targets(c, lengths), loss_lib.mean_targets(c, lengths, per_example=True)
  c.train.masked_loss_every = 4
  assert loss_lib.mean_targets(c, lengths) == pytest.approx((every_window[0][0] / 4, every_window[0][1]), rel=1e-6)
  assert loss_lib.mean_targets(c, lengths, per_example=True) == pytest.approx(
      (every_window[1][0] / 4, every_window[1][1]), rel=1e-6)
  c.train.masked_loss_every = 1
  c.model.kind = "sasrec"
  check(c)
  c.train.next_item_positions = 0
  check(c)


def test_epoch_target_weighting_divides_by_the_epochs_mean_count(tiny_config):
  """train.target_weighting="epoch": each loss's gradient is the batch-weighted one times the
  batch's target count over the epoch's mean count per batch (checked through SGD with rate 1 on
  length-bucketed batches of two widths, over two devices, with the next-item loss), so a target
  weighs the same in a batch of short windows as in one of long windows."""
  import copy
  c = tiny_config
  c.model.hidden_dropout_prob = c.model.attention_probs_dropout_prob = 0.0
  c.model.max_seq_length, c.masking.max_predictions_per_seq = 32, 8
  c.train.prefetch, c.train.batch_size, c.train.length_buckets = 0, 32, True
  n = c.data.synthetic.num_items
  seqs = _skewed_sequences(users=2000)
  seqs = type(seqs)(seqs.offsets, (seqs.items % n + 1).astype(np.int32))
  devices = parallel.local_devices(2)
  start, sgd = sgd_start(c, n)

  def step(at, kind, weight, weighting):
    cc = copy.deepcopy(c)
    cc.model.kind, cc.train.next_item_loss_weight, cc.train.target_weighting = kind, weight, weighting
    p_step, sampler = trainer.make_step(cc, n, devices, seqs)
    batch, bound = next(input_pipeline.batch_iterator(cc, input_pipeline.make_stream(cc, seqs), at, devices))
    new, m = p_step(parallel.replicate(sgd, devices), batch, sampler, bound)
    return batch["item_ids"].shape[-1], parallel.unreplicate(new.params), parallel.unreplicate(m), trainer.target_norms(cc, seqs)

  stream = input_pipeline.make_stream(c, seqs)
  widths = {stream.width(s): s for s in range(input_pipeline.POOL_BATCHES)}
  assert min(widths) == 8 and max(widths) >= 16
  for width, at in sorted(widths.items())[::len(widths) - 1]:  # the narrowest and the widest batch
    got_width, mixed, _, norms = step(at, "bert4rec", 0.5, "epoch")
    assert got_width == width and norms[0] > 0 and norms[1] > 0
    _, masked_only, m_masked, none = step(at, "bert4rec", 0.0, "batch")
    _, sasrec, m_sasrec, _ = step(at, "sasrec", 0.0, "batch")
    assert none == ()
    scale_m, scale_n = m_masked["count"] / norms[0], m_sasrec["count"] / norms[1]
    # A batch of short windows holds fewer targets than the epoch's mean, one of long windows more.
    assert (scale_m < 1 and scale_n < 0.7) if width == 8 else (scale_m > 1 and scale_n > 1.5)
    want = jax.tree.map(lambda p0, a, b: p0 - scale_m * (p0 - a) - 0.5 * scale_n * (p0 - b),
                        start.params, masked_only, sasrec)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-6), mixed, want)
  c.train.target_weighting = "target"
  with pytest.raises(ConfigError, match="target_weighting"):
    config_checks.validate(c, "train", 4)


def test_example_weighting_weighs_every_example_the_same(tiny_config):
  """train.target_weighting="example": the step's gradient is the sum over the batch's examples of
  each one's own mean-over-its-targets gradient (one-example steps, each loss apart), divided by
  the epoch's mean number of examples with a target per batch (checked through SGD with rate 1,
  with the next-item loss, windows of 1 to 12 items)."""
  import copy
  c = tiny_config
  c.model.hidden_dropout_prob = c.model.attention_probs_dropout_prob = 0.0
  c.train.prefetch, c.train.batch_size, c.train.compact_targets = 0, 8, False
  c.train.donate_buffers = False  # every step starts from the same state (copying a pmapped state compiles per leaf)
  n = c.data.synthetic.num_items
  rng = np.random.default_rng(1)
  seqs = random_sequences(rng, n, 1, 13, 60)
  devices = parallel.local_devices(1)
  start, sgd = sgd_start(c, n)
  sgd = parallel.replicate(sgd, devices)

  steps = {}

  def stepped(kind, weight, weighting, rows):
    cc = copy.deepcopy(c)
    cc.model.kind, cc.train.next_item_loss_weight, cc.train.target_weighting = kind, weight, weighting
    if (kind, weighting) not in steps:  # one compiled step per kind and weighting, reused for every row
      steps[kind, weighting] = trainer.make_step(cc, n, devices, seqs)
    p_step, sampler = steps[kind, weighting]
    batch = input_pipeline.make_stream(cc, seqs).batch(3)
    batch = {k: v[rows] for k, v in batch.items()}
    new, _ = p_step(sgd, parallel.put_sharded(batch, devices), sampler, 0)
    return jax.tree.map(lambda p0, p: p0 - p, start.params, parallel.unreplicate(new.params)), trainer.target_norms(cc, seqs)

  got, norms = stepped("bert4rec", 0.5, "example", slice(None))
  batch_lengths = input_pipeline.make_stream(c, seqs).lengths(3)
  assert batch_lengths.min() == 1 and len(set(batch_lengths)) > 3  # a window with no next-item target; mixed counts
  want = jax.tree.map(np.zeros_like, start.params)
  for r in range(c.train.batch_size):
    masked, _ = stepped("bert4rec", 0.0, "batch", slice(r, r + 1))
    following, _ = stepped("sasrec", 0.0, "batch", slice(r, r + 1))
    want = jax.tree.map(lambda w, a, b: w + a / norms[0] + 0.5 * b / norms[1], want, masked, following)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-6), got, want)
  epoch, _ = stepped("bert4rec", 0.5, "epoch", slice(None))
  assert not np.allclose(epoch["output_bias"], got["output_bias"], atol=1e-5)


def test_run_records_name_the_cpu_and_its_vector_unit(tmp_path):
  """A CPU timing depends on the CPU's vector unit (AVX-512 about halves the recipe's step):
  describe_devices, kept with every checkpoint, names it."""
  x86 = tmp_path / "x86"
  x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9654\nflags\t\t: fpu sse2 avx avx2 fma avx512f\n\n"
                 "processor\t: 1\nmodel name\t: AMD EPYC 9654\nflags\t\t: fpu sse2 avx avx2 fma avx512f\n")
  assert parallel.describe_cpu(str(x86)) == "AMD EPYC 9654, AVX-512"
  x86.write_text("model name\t: Intel Xeon\nflags\t\t: fpu sse2 avx avx2 fma\n")
  assert parallel.describe_cpu(str(x86)) == "Intel Xeon, AVX2"
  arm = tmp_path / "arm"
  arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes\nCPU implementer\t: 0x41\n")
  assert parallel.describe_cpu(str(arm)) == "NEON"
  assert parallel.describe_cpu(str(tmp_path / "missing")) == ""
  here = parallel.describe_cpu()
  assert parallel.describe_devices(jax.devices("cpu")[:1]).endswith(f"CPU cores{': ' + here if here else ''})")
