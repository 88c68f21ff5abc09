"""The recipe (configs/default.py): settings chosen from the data, resolved before the model is
named, saved in its config.json, and the CLI trained end to end on a file it has never seen."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bert4rec_jax import config_checks, model_store, preprocess, recipe
from bert4rec_jax.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _seqs(lengths):
  lengths = np.asarray(lengths, np.int64)
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  return preprocess.Sequences(offsets, np.ones(int(lengths.sum()), np.int32))


def _reference_length(lengths):
  """Written out: the 99th percentile taken as the element at rank ceil(0.99 (n - 1)) of the
  sorted lengths, one more slot for [MASK], rounded up to a multiple of 50, at most 200."""
  ordered = sorted(int(x) for x in lengths)
  p = ordered[math.ceil(0.99 * (len(ordered) - 1))]
  length = 50
  while length < p + 1:
    length += 50
  return min(length, 200)


@pytest.mark.parametrize("seed", range(6))
def test_sequence_length_matches_the_rule_written_out(seed):
  rng = np.random.default_rng(seed)
  lengths = rng.lognormal(rng.uniform(1, 5), 1.0, rng.integers(1, 3000)).astype(np.int64) + 1
  assert recipe.sequence_length(lengths) == _reference_length(lengths)


def test_the_paper_lengths_come_out_of_the_rule():
  # Beauty's training sequences: 99% have at most 39 items -> 50; ML-1M's: far beyond 200 -> 200.
  assert recipe.sequence_length([39] * 199 + [300]) == 50  # the longest 0.5% do not count
  assert recipe.sequence_length([49] * 100) == 50 and recipe.sequence_length([50] * 100) == 100
  assert recipe.sequence_length([904] * 100) == 200


def test_resolve_fills_only_what_is_left_to_the_data():
  from configs import default
  c = default.get_config()
  seqs = _seqs([5] * 1000)  # window 50; every batch (length buckets) 8 wide
  lines = recipe.resolve(c, seqs, num_items=40_000)
  assert c.model.max_seq_length == 50
  assert c.masking.max_predictions_per_seq == math.ceil(c.masking.masked_lm_prob * 50)
  assert c.train.loss == "sampled"  # 40,000 items > 2 x 8,192
  # 120 on sparse data, raised for at least 1,000 steps of 256 x 8 positions, cut to the time target.
  floor = 10 * math.ceil(1000 * 256 * 8 / 5000 / 10)
  budget = min(max(120, floor), 10 * math.floor(_allowed("bert4rec", 5, 40_000) / 10))
  assert c.train.budget_per_interaction == budget
  assert c.train.num_train_steps == math.ceil(budget * 5000 / (256 * 8))
  assert c.train.num_warmup_steps == round(0.02 * c.train.num_train_steps)
  assert c.train.eval_every_steps == math.ceil(c.train.num_train_steps / c.train.auto_validations)
  # 5,000 training interactions over 40,000 items: sparse data, the faster rate with strong regularisation.
  assert (c.train.learning_rate, c.train.weight_decay, c.model.hidden_dropout_prob) == recipe.SPARSE_SETTINGS
  assert c.train.max_training_minutes == 10  # 85 minutes per 300k training interactions, at least 10
  assert c.train.masked_loss_every == 1  # sparse: the masked-item loss on every window
  assert c.train.spike_clip == recipe.SAMPLED_SPIKE_CLIP == 2  # the sampled softmax: its spikes clipped
  assert c.eval.max_valid_users == 2000  # 1,000 users: every one of them, as base()'s 2,000 validated them
  assert len(lines) == 14 and not recipe.auto_fields(c)
  assert "train.learning_rate=0.003: 0.1 training interactions per item < 23 (sparse data)" in lines
  big = default.get_config()
  recipe.resolve(big, _seqs([50] * 20_000), num_items=40_000)  # 1M training interactions
  assert big.train.max_training_minutes == round(85 * 1_000_000 / 300_000, 1)
  config_checks.validate(c)  # what was chosen is a valid config

  # Given values are kept; a catalogue within 2 x num_negatives trains on the full softmax.
  c = default.get_config()
  c.model.max_seq_length, c.train.num_train_steps, c.train.learning_rate = 30, 700, 5e-4
  recipe.resolve(c, seqs, num_items=16_384)
  assert (c.model.max_seq_length, c.train.num_train_steps, c.train.loss) == (30, 700, "full")
  assert c.train.spike_clip == 0  # the full softmax: no spike clipping
  assert c.train.budget_per_interaction == 0  # steps given: no budget to choose
  assert (c.train.learning_rate, c.train.weight_decay, c.model.hidden_dropout_prob) == (5e-4, 0.3, 0.5)
  assert c.train.eval_every_steps == 35 and c.masking.max_predictions_per_seq == math.ceil(
      c.masking.masked_lm_prob * 30)


def test_spike_clipping_follows_the_softmax_the_step_computes():
  """train.spike_clip from the data: 2 where the step computes the sampled softmax, 0 (off) where it
  computes the full one (chosen by the recipe, given, or a sampled one with at least as many draws
  as items); a value given is kept; unresolved, the optimizer refuses it; off is no part of the name."""
  from configs import default
  from bert4rec_jax import trainer
  seqs = _seqs([5] * 1000)
  cases = (("auto", 8192, 40_000, 2.0), ("auto", 8192, 16_384, 0.0), ("sampled", 100, 600, 2.0),
           ("sampled", 8192, 600, 0.0), ("full", 8192, 40_000, 0.0))
  for loss, negatives, num_items, expected in cases:
    c = default.get_config()
    c.train.loss, c.train.num_negatives = loss, negatives
    with pytest.raises(ValueError, match="left to the data"):
      trainer.make_optimizer(c.train)
    lines = recipe.resolve(c, seqs, num_items=num_items)
    assert c.train.spike_clip == expected, (loss, negatives, num_items)
    assert [x for x in lines if x.startswith(f"train.spike_clip={expected:g}: ")], lines
    config_checks.validate(c)
    trainer.make_optimizer(c.train)
    if not expected:
      given = default.get_config()
      given.train.loss, given.train.num_negatives, given.train.spike_clip = loss, negatives, 0.0
      recipe.resolve(given, seqs, num_items=num_items)
      assert model_store.identity(c, "") == model_store.identity(given, "")  # the same model as before the rule
  for given in (0.0, 3.0):
    c = default.get_config()
    c.train.spike_clip = given
    recipe.resolve(c, seqs, num_items=40_000)
    assert c.train.spike_clip == given
  config_checks.validate(default.get_config())  # -1: from the data
  for bad in (-0.5, -2.0, 1.0):
    c = default.get_config()
    c.train.spike_clip = bad
    with pytest.raises(ConfigError, match=f"config.train.spike_clip={bad}"):
      config_checks.validate(c)


def _reference_validation_users(c, lengths, num_items):
  """Written out: each user's encoder read at the power of two above its history and the [MASK] slot
  (at most the window) and the output layer against every item, at the step estimate's rates, and 2
  nanoseconds per item for the ranking; as
  many users as fit 5% of the planned training time over the validations, at least 2,000, 0 for all."""
  m = c.model
  h, total = m.hidden_size, 0.0
  for n in lengths:
    width = 8
    while width < n + 1:
      width *= 2
    width = min(width, m.max_seq_length)
    total += m.num_hidden_layers * (8 * h * h + 4 * h * m.intermediate_size + 4 * width * h) * width / 28e9
  each = total / len(lengths) + 2 * h * num_items / 78e9 + num_items * 2e-9
  seqs = _seqs(lengths)
  planned = (recipe.position_seconds(c, num_items, recipe.estimate_batches(c, seqs)) * c.train.batch_size
             * recipe.mean_width(c, seqs) * c.train.num_train_steps)
  validations = math.ceil(c.train.num_train_steps / c.train.eval_every_steps)
  if len(lengths) <= 2000:
    return 2000  # every user, under the name such a model had before the rule
  chosen = min(len(lengths), max(2000, int(0.05 * planned / (validations * each))))
  return 0 if chosen == len(lengths) else chosen


def test_validation_users_follow_the_time_the_validations_take():
  """eval.max_valid_users = -1: every validation user while the validations' estimated time fits 5% of
  the estimated training time, else as many as fit, at least 2,000; a value given is kept."""
  from configs import default
  rng = np.random.default_rng(0)
  for users, num_items, expect in ((1_500, 2_000_000, "small"), (3_000, 40_000, "all"), (30_000, 200_000, "cut"),
                                   (30_000, 2_000_000, "floor")):
    lengths = rng.integers(3, 12, users)
    c = default.get_config()
    lines = recipe.resolve(c, _seqs(lengths), num_items=num_items)
    got = c.eval.max_valid_users
    assert got == _reference_validation_users(c, lengths, num_items), (users, num_items)
    assert {"all": got == 0, "cut": 2000 < got < users, "floor": got == 2000, "small": got == 2000}[expect], \
        (users, num_items, got)
    assert [x for x in lines if x.startswith(f"eval.max_valid_users={got}: ")], lines
    config_checks.validate(c)
    given = default.get_config()
    given.eval.max_valid_users = got
    recipe.resolve(given, _seqs(lengths), num_items=num_items)
    assert model_store.identity(c, "") == model_store.identity(given, "")  # the same model either way
  for kept in (0, 300, 5_000):
    c = default.get_config()
    c.eval.max_valid_users = kept
    recipe.resolve(c, _seqs([5] * 3000), num_items=40_000)
    assert c.eval.max_valid_users == kept
  c = default.get_config()
  c.train.eval_every_steps, c.train.patience = 0, 0  # no periodic validation: nothing to cut
  lines = recipe.resolve(c, _seqs([5] * 3000), num_items=2_000_000)
  assert c.eval.max_valid_users == 2000 and "eval.max_valid_users=2000: no periodic validation" in lines
  for bad in (-2, -100):  # ml_collections refuses a float or a string itself
    c = default.get_config()
    c.eval.max_valid_users = bad
    with pytest.raises(ConfigError, match="config.eval.max_valid_users="):
      config_checks.validate(c)


def test_the_rate_and_regularisation_follow_training_interactions_per_item():
  """Fewer than 23 training interactions per item: 3e-3, weight decay 0.3, dropout 0.5; at 23
  and above: 1e-3, 0.01, 0.2 (the boundary is dense). Only what is left to the data changes."""
  from configs import default
  seqs = _seqs([23] * 100)  # 2,300 training interactions
  for num_items, expected in ((101, recipe.SPARSE_SETTINGS), (100, recipe.DENSE_SETTINGS),
                              (1, recipe.DENSE_SETTINGS)):
    c = default.get_config()
    recipe.resolve(c, seqs, num_items=num_items)
    assert (c.train.learning_rate, c.train.weight_decay, c.model.hidden_dropout_prob) == expected, num_items
    assert c.model.attention_probs_dropout_prob == 0.2
  c = default.get_config()
  c.train.weight_decay, c.model.hidden_dropout_prob = 0.0, 0.1
  lines = recipe.resolve(c, seqs, num_items=101)
  assert (c.train.learning_rate, c.train.weight_decay, c.model.hidden_dropout_prob) == (3e-3, 0.0, 0.1)
  assert [x.split("=")[0] for x in lines if "interactions per item" in x] == ["train.learning_rate"]


def _reference_position_seconds(kind, length, num_items, negatives=8192, every=1):
  """Written out for windows that all hold `length` items (< 50: the window is 50 and every batch
  the next power of two at or above `length`), with the recipe's model (hidden 64, 2 blocks,
  feed-forward 256, batch 256): matrix products of the forward pass x 3 for the backward, the
  output layer at every target slot the step computes (each width's most used slots: all windows
  alike here, so exactly theirs).
  every: train.masked_loss_every (BERT4Rec's masked pass and its targets on one window in every)."""
  width = min(50, max(8, 2 ** math.ceil(math.log2(length))))
  h, inner, blocks = 64, 256, 2
  full = num_items <= 2 * negatives
  candidates = num_items if full else negatives
  per_layer = 4 * (2 * h * h) + 2 * (2 * h * inner) + 2 * (2 * width * h)  # Q, K, V, O; FFN in, out; scores, mix
  if kind == "sasrec":
    passes, slots = 1, length - 1
  else:  # slots for 20% of the items rounded up (at least 1, at most 10 of 50), and the next-item loss's
    passes, slots = 1 + 1 / every, min(10, max(1, math.ceil(0.2 * length))) / every + (length - 1)
  encoder, output = 3 * passes * blocks * per_layer * width, 3 * slots * 2 * h * candidates  # per window
  return ((encoder / recipe.CPU_ENCODER_FLOPS_PER_SECOND + output / recipe.CPU_OUTPUT_FLOPS_PER_SECOND) / width
          + recipe.CPU_STEP_SECONDS / (256 * width))


def _allowed(*args):
  """Window positions per training interaction that 80 minutes per 300k interactions allow."""
  return 80 * 60 / 300_000 / _reference_position_seconds(*args)


@pytest.mark.parametrize("kind,length,num_items,every", [("bert4rec", 23, 100, 1), ("sasrec", 23, 100, 1),
                                                         ("bert4rec", 7, 40_000, 1), ("sasrec", 40, 16_000, 1),
                                                         ("bert4rec", 40, 16_385, 1), ("bert4rec", 40, 16_000, 4),
                                                         ("bert4rec", 23, 100, 2)])
def test_the_estimated_time_of_a_position_matches_the_rule_written_out(kind, length, num_items, every):
  from configs import default
  c = default.get_config()
  c.model.kind, c.train.masked_loss_every = kind, every
  seqs = _seqs([length] * 300)
  lines = recipe.resolve(c, seqs, num_items=num_items)
  width = recipe.mean_width(c, seqs)
  assert width == min(50, max(8, 2 ** math.ceil(math.log2(length))))
  assert recipe.position_seconds(c, num_items, recipe.estimate_batches(c, seqs)) == pytest.approx(
      _reference_position_seconds(kind, length, num_items, every=every), rel=1e-6)
  if every > 1:  # a cheaper step: more of it in the same time (where the time cuts the budget)
    (line,) = [x for x in lines if x.startswith("train.budget_per_interaction=")]
    assert f"at most {_allowed(kind, length, num_items, 8192, every):.0f} in 80 minutes" in line
    assert _allowed(kind, length, num_items, 8192, every) > _allowed(kind, length, num_items)


@pytest.mark.parametrize("kind,every,buckets", [("bert4rec", 1, True), ("bert4rec", 2, True), ("sasrec", 1, True),
                                                ("bert4rec", 1, False), ("sasrec", 1, False)])
def test_the_estimate_counts_the_target_slots_the_training_steps_compute(kind, every, buckets):
  """The time estimate's batches are the training stream's first batches with their widths and the
  output layer's target slots as a CPU run bounds them (each width's most used slots with length
  buckets, each batch's rounded bound without): over a schedule of exactly those batches the
  trainer's batches carry the same bounds. The slots are more than the targets (padding)."""
  import jax
  from bert4rec_jax import input_pipeline, losses
  from configs import default
  rng = np.random.default_rng(3)
  seqs = _seqs(np.maximum(2, rng.lognormal(2.2, 0.9, 900).astype(int)).tolist())
  c = default.get_config()
  c.model.kind, c.train.masked_loss_every, c.train.length_buckets = kind, every, buckets
  recipe.resolve(c, seqs, num_items=500)
  batches = recipe.estimate_batches(c, seqs, max_steps=60, min_steps=20)
  assert len(batches) == 20 and c.seed == 0
  if buckets:
    assert len({w for w, _ in batches}) > 1
  c.train.num_train_steps = len(batches)
  made = input_pipeline.training_batches(c, seqs, 0, jax.local_devices(backend="cpu")[:1])
  trained = [(int(b["item_ids"].shape[-1]), int(np.sum(n))) for b, n in (next(made) for _ in batches)]
  assert trained == batches
  stream = input_pipeline.make_stream(c, seqs)
  masked, following = losses.mean_targets(c, stream.window_lengths())
  targets = (masked + following) * c.train.batch_size
  assert np.mean([n for _, n in batches]) > targets


@pytest.mark.parametrize("kind", ["bert4rec", "sasrec"])
def test_without_target_compaction_the_estimate_counts_every_slot(kind):
  """train.compact_targets=False: the output layer runs at every window's P masked slots (on the
  windows the masked-item loss reads) and at every column for the next-item loss."""
  from configs import default
  rng = np.random.default_rng(3)
  seqs = _seqs(np.maximum(2, rng.lognormal(2.2, 0.9, 900).astype(int)).tolist())
  c = default.get_config()
  c.model.kind, c.train.compact_targets = kind, False
  recipe.resolve(c, seqs, num_items=500)
  every, p = c.train.masked_loss_every, c.masking.max_predictions_per_seq
  batches = recipe.estimate_batches(c, seqs, max_steps=30, min_steps=10)
  assert len({w for w, _ in batches}) > 1
  for width, slots in batches:
    assert slots == (256 // every * p if kind == "bert4rec" else 0) + 256 * width


def test_dense_data_gets_the_masked_loss_on_one_window_in_four():
  """train.masked_loss_every = 0 (the recipe's): 4 for BERT4Rec with the next-item loss on dense
  data (at least 23 training interactions per item), or the largest divisor of a device's rows
  below 4; 1 on sparse data, for SASRec and without the next-item loss; a given value is kept."""
  from configs import default

  def chosen(num_items, devices=1, **fields):
    c = default.get_config()
    for k, v in fields.items():
      section, name = k.split("__")
      c[section][name] = v
    lines = recipe.resolve(c, _seqs([40] * 200), num_items=num_items, num_devices=devices)
    return c.train.masked_loss_every, [x for x in lines if x.startswith("train.masked_loss_every=")]

  every, (line,) = chosen(300)  # 8,000 training interactions over 300 items: 26.7 per item, dense
  assert every == 4 and line == ("train.masked_loss_every=4: the masked-item loss on one window in 4 (dense data, "
                                 "26.7 per item: a cheaper step, more of them in the time target)")
  assert chosen(400)[0] == 1 and "(sparse data, 20.0 per item)" in chosen(400)[1][0]
  assert chosen(300, model__kind="sasrec")[0] == 1
  assert chosen(300, train__next_item_loss_weight=0.0) == (1, ["train.masked_loss_every=1: the masked-item loss on "
                                                               "every window (no next-item loss)"])
  assert chosen(300, train__masked_loss_every=2) == (2, [])
  assert chosen(300, devices=8)[0] == 4  # 32 rows a device
  every, (line,) = chosen(300, devices=2, train__batch_size=12)  # 6 rows a device
  assert every == 3 and line.endswith("; 4 does not divide a device's 6 rows)")


def _resolved(lengths, num_items, kind="bert4rec", **pinned):
  """The recipe resolved for windows of these lengths over num_items items, train fields pinned."""
  from configs import default
  c = default.get_config()
  c.model.kind = kind
  for k, v in pinned.items():
    c.train[k] = v
  return c, recipe.resolve(c, _seqs(lengths), num_items=num_items)


def test_the_budget_follows_the_density_within_the_time_target(monkeypatch):
  """Sparse data: 120 window positions per training interaction, dense: 360, each cut to what 80
  minutes per 300k training interactions allow at the estimated time of a position (rounded down
  to a multiple of 10). A pinned budget is kept. (The floor of steps for small datasets, which
  would lengthen some of these, has its own test below.)"""
  from configs import default
  monkeypatch.setattr(recipe, "MIN_STEPS", 1)
  resolved = _resolved

  # Long windows over a small catalogue: cheap positions (for SASRec), nothing cut.
  assert _allowed("sasrec", 45, 100) > 360 and _allowed("bert4rec", 45, 200) > 120
  c, lines = resolved([45] * 100, 100, "sasrec")  # 45 training interactions per item: dense
  assert c.train.budget_per_interaction == 360 and c.train.num_train_steps == math.ceil(360 * 4500 / (256 * 50))
  (line,) = [x for x in lines if x.startswith("train.budget_per_interaction=")]
  assert line.startswith(f"train.budget_per_interaction=360: 360 on dense data, at most {_allowed('sasrec', 45, 100):.0f} in ")
  c, _ = resolved([45] * 100, 200)  # 22.5 per item: sparse
  assert c.train.budget_per_interaction == 120 and c.train.num_train_steps == math.ceil(120 * 4500 / (256 * 50))
  # A full softmax over 16,000 items at every position: the time target cuts the budget, less for
  # BERT4Rec (two passes and both losses) than for SASRec.
  for kind, wanted in (("bert4rec", 360), ("sasrec", 360)):
    c, lines = resolved([40] * 10_000, 16_000, kind)  # 25 per item: dense
    every = 4 if kind == "bert4rec" else 1  # dense: BERT4Rec's masked-item loss on one window in 4
    assert c.train.masked_loss_every == every
    expected = 10 * math.floor(_allowed(kind, 40, 16_000, 8192, every) / 10)
    assert expected < wanted and c.train.budget_per_interaction == expected, kind
    assert f"at most {_allowed(kind, 40, 16_000, 8192, every):.0f} in 80 minutes" in " ".join(lines)
  assert resolved([40] * 10_000, 16_000)[0].train.budget_per_interaction < resolved(
      [40] * 10_000, 16_000, "sasrec")[0].train.budget_per_interaction
  # Never below 10 positions; a pinned budget is the user's, kept whatever it costs.
  c = default.get_config()
  c.model.hidden_size, c.model.intermediate_size = 1024, 4096
  recipe.resolve(c, _seqs([40] * 1000), num_items=1000)
  assert c.train.budget_per_interaction == 10
  c, _ = resolved([40] * 10_000, 16_000, budget_per_interaction=500.0)
  assert c.train.budget_per_interaction == 500 and c.train.num_train_steps == math.ceil(500 * 400_000 / (256 * 50))


def test_a_small_dataset_gets_a_floor_of_steps_within_the_time_target():
  """A budget that gives fewer than recipe.MIN_STEPS steps is raised to give that many (rounded
  up to a multiple of 10 positions), and still cut to what the time target allows; a dataset
  large enough for the steps keeps its density's budget, and a pinned budget is kept."""
  def resolved(lengths, num_items, **pinned):
    c, lines = _resolved(lengths, num_items, **pinned)
    (line,) = [x for x in lines if x.startswith("train.budget_per_interaction=")] or [""]
    return c, line

  assert recipe.MIN_STEPS == 1000
  # 2,000 users of 20 items over 4,000 items: 10 training interactions per item (sparse), batches 32
  # wide; 120 positions per interaction give 586 steps, the floor 210, which the time allows.
  floor, allowed = 10 * math.ceil(1000 * 256 * 32 / 40_000 / 10), _allowed("bert4rec", 20, 4000)
  assert math.ceil(120 * 40_000 / (256 * 32)) == 586 and floor == 210 < allowed
  c, line = resolved([20] * 2000, 4000)
  assert c.train.budget_per_interaction == floor and c.train.num_train_steps == math.ceil(floor * 40_000 / (256 * 32))
  assert c.train.num_train_steps >= 1000
  assert line == (f"train.budget_per_interaction={floor}: 120 on sparse data, {floor} for at least 1,000 steps, "
                  f"at most {allowed:.0f} in 80 minutes of a 2-core CPU per 300k training interactions (an estimated "
                  f"{80 * 60 / 300_000 / allowed * 1e6:.0f} microseconds per window position; the time target is 90)")
  # A quarter of the users: the floor (820) is over what the time allows, which cuts it: fewer steps.
  floor, allowed = 10 * math.ceil(1000 * 256 * 32 / 10_000 / 10), _allowed("bert4rec", 20, 1000)
  c, line = resolved([20] * 500, 1000)
  assert 120 < c.train.budget_per_interaction == 10 * math.floor(allowed / 10) < floor == 820
  assert c.train.num_train_steps < 1000 and f", {floor} for at least 1,000 steps, at most {allowed:.0f} in " in line
  # Enough interactions for 1,000 steps at 120 (8,000 users: 2,344 steps): no floor.
  c, line = resolved([20] * 8000, 16_000)
  assert c.train.budget_per_interaction == 120 and c.train.num_train_steps == math.ceil(120 * 160_000 / (256 * 32))
  assert line.startswith("train.budget_per_interaction=120: 120 on sparse data, at most ")
  c, line = resolved([20] * 500, 1000, budget_per_interaction=30.0)  # pinned: kept, whatever the steps
  assert c.train.budget_per_interaction == 30 and c.train.num_train_steps == math.ceil(30 * 10_000 / (256 * 32))
  assert line == ""


def test_a_schedule_in_epochs_is_resolved_before_the_validation_period_left_to_the_data():
  from configs import default
  c = default.get_config()
  c.train.num_epochs, c.train.batch_size = 4.0, 100
  recipe.resolve(c, _seqs([10] * 1000), num_items=50)
  assert c.train.num_train_steps == 40  # 1,000 windows / 100 a step x 4 epochs
  assert c.train.eval_every_steps == 2 and c.train.num_warmup_steps == 1


def test_absurd_recipe_settings_are_named_in_one_error():
  from configs import default
  c = default.get_config()
  c.train.budget_per_interaction, c.train.auto_validations = -1.0, 0
  c.train.num_warmup_steps, c.train.eval_every_steps, c.train.loss = -2, -3, "autoo"
  c.train.learning_rate, c.train.weight_decay, c.model.hidden_dropout_prob = -1.0, -0.5, -0.2
  with pytest.raises(ConfigError) as e:
    config_checks.validate(c)
  text = str(e.value)
  assert text.startswith("8 settings need fixing")
  for field in ("budget_per_interaction", "auto_validations", "num_warmup_steps", "eval_every_steps", "train.loss",
                "learning_rate", "weight_decay"):
    assert f"config.train.{field.split('.')[-1]}=" in text
  assert "config.model.hidden_dropout_prob=-0.2" in text


def test_shipped_configs_leave_nothing_to_the_data():
  from configs import beauty, default, ml1m, synthetic
  for c in (default.base(), synthetic.get_config(), synthetic.get_config("tiny"), beauty.get_config(),
            ml1m.get_config()):
    assert recipe.auto_fields(c) == []
  assert set(recipe.auto_fields(default.get_config())) == {
      "model.max_seq_length", "masking.max_predictions_per_seq", "train.loss", "train.num_train_steps",
      "train.num_warmup_steps", "train.eval_every_steps", "train.learning_rate", "train.weight_decay",
      "model.hidden_dropout_prob", "train.budget_per_interaction", "train.max_training_minutes",
      "train.masked_loss_every", "train.spike_clip", "eval.max_valid_users"}


def _interactions(path, users, seed, items=30):
  """A CSV with string ids and timestamps, rows shuffled: each user walks a cycle of `items`
  items with one of 3 strides (a next-item pattern a sequence model can learn)."""
  rng = np.random.default_rng(seed)
  rows = []
  for u in range(users):
    stride, pos = rng.integers(1, 4), rng.integers(items)
    for t in range(rng.integers(4, 14)):
      rows.append((f"user-{u}", f"item-{(pos + stride * t) % items:03d}", 1_600_000_000 + 60 * t))
  frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"]).sample(frac=1.0, random_state=seed)
  frame.to_csv(path, index=False)
  return frame


def _cli(workdir, *args):
  env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_DIR=str(workdir), WANDB_CACHE_DIR=str(workdir),
             MPLCONFIGDIR=str(workdir))
  return subprocess.run([sys.executable, "-m", "bert4rec_jax.main", f"--workdir={workdir}",
                         "--config=configs/default.py", "--config.data.format=csv", *args, "--config.wandb.mode=disabled"],
                        cwd=REPO, capture_output=True, text=True, timeout=900, env=env)


@pytest.mark.slow
def test_the_recipe_trains_a_file_it_has_never_seen(tmp_path):
  """configs/default.py with only the data's format and path: the choices (the budget too) are
  logged and saved in config.json, the name carries them, the selected checkpoint is tested
  once, a rerun chooses the same and resumes nothing, and another file is another model."""
  data = tmp_path / "interactions.csv"
  frame = _interactions(data, users=300, seed=0)
  out = _cli(tmp_path, f"--config.data.path={data}")
  log = out.stdout + out.stderr
  assert out.returncode == 0, log[-3000:]
  for line in ("From the data: model.max_seq_length=50", "From the data: train.loss='full'",
               "From the data: train.num_train_steps=", "From the data: train.learning_rate=0.001: ",
               "From the data: model.hidden_dropout_prob=0.2: ",  # about 70 training interactions per item: dense
               "From the data: train.budget_per_interaction=",
               "From the data: train.spike_clip=0: off with the full softmax"):
    assert line in log
  budget = float(log.split("From the data: train.budget_per_interaction=")[1].split(":")[0])
  assert 10 <= budget <= 360 and budget % 10 == 0 and f"budget_per_interaction={budget:g}: 360 on dense data, " in log
  assert " for at least 1,000 steps, at most " in log  # too few interactions for 1,000 steps: the time decides
  (name,) = os.listdir(tmp_path / "models")
  assert name.startswith("bert4rec_hs64_msl50_mpps")
  saved = json.loads((tmp_path / "models" / name / "config.json").read_text())["config"]
  train_interactions = len(frame) - 2 * frame.user.nunique()  # validation and test items held out
  width = float(log.split("x mean width ")[1].split(")")[0])  # length buckets: the mean batch width
  assert 8 <= width <= 16  # windows of 2 to 11 items
  steps = math.ceil(budget * train_interactions / (256 * width))
  assert f"({train_interactions:,})" in log
  assert saved["model"]["max_seq_length"] == 50 and abs(saved["train"]["num_train_steps"] - steps) <= 1  # width rounded in the log
  steps = saved["train"]["num_train_steps"]
  assert saved["train"]["budget_per_interaction"] == budget
  assert saved["train"]["loss"] == "full" and saved["train"]["eval_every_steps"] == math.ceil(steps / 20)
  assert not recipe.auto_fields(model_store.Folder(str(tmp_path / "models" / name)).saved_config())
  test = json.loads((tmp_path / "results" / name / "test_metrics.json").read_text())
  assert test["selection"]["metric"] == "ndcg@10" and test["checkpoint_step"] == test["selection"]["step"]
  assert test["metrics"]["bert4rec"]["ndcg@10"] > test["metrics"]["popularity"]["ndcg@10"] + 0.1

  again = _cli(tmp_path, f"--config.data.path={data}", "--mode=train")
  assert again.returncode == 0 and "nothing to train" in again.stdout + again.stderr
  assert os.listdir(tmp_path / "models") == [name]

  other = tmp_path / "other.csv"
  _interactions(other, users=200, seed=1, items=600)  # about 2 training interactions per item: sparse
  # Sampled over 100 draws of its 600 items: spike clipping chosen too.
  third = _cli(tmp_path, f"--config.data.path={other}", "--config.train.budget_per_interaction=20",
               "--config.train.num_negatives=100", "--mode=train")
  assert third.returncode == 0, third.stderr[-2000:]
  assert "From the data: train.learning_rate=0.003: " in third.stdout + third.stderr
  assert "From the data: train.spike_clip=2: the sampled softmax" in third.stdout + third.stderr
  models = sorted(os.listdir(tmp_path / "models"))
  assert len(models) == 2 and name in models  # another file: another model, the first untouched
  sparse = json.loads((tmp_path / "models" / next(m for m in models if m != name) / "config.json").read_text())
  assert (sparse["config"]["train"]["learning_rate"], sparse["config"]["train"]["weight_decay"],
          sparse["config"]["model"]["hidden_dropout_prob"]) == (3e-3, 0.3, 0.5)
  assert (sparse["config"]["train"]["loss"], sparse["config"]["train"]["spike_clip"]) == ("sampled", 2.0)
  # A window the data leaves too short for a warmup that is set is refused once the window is known.
  refused = _cli(tmp_path, f"--config.data.path={other}", "--config.train.warmup_seq_length=60", "--mode=train")
  assert refused.returncode == 1 and "config.train.warmup_seq_length=60" in refused.stderr
  assert "max_seq_length - 1 = 49" in refused.stderr
  assert sorted(os.listdir(tmp_path / "models")) == models
  # A batch that would hold each training window more than 1,000 times a step: refused before any work.
  huge = _cli(tmp_path, f"--config.data.path={other}", "--config.train.batch_size=1000000", "--mode=train")
  errors = [x for x in huge.stderr.splitlines() if x.startswith("error:")]
  assert huge.returncode == 1 and len(errors) == 1 and "Traceback" not in huge.stderr, huge.stderr[-2000:]
  assert errors[0].startswith("error: config.train.batch_size=1000000 would hold each of the ")
  assert "lower it to at most" in errors[0]
  assert sorted(os.listdir(tmp_path / "models")) == models


def test_mean_width_of_a_small_dataset_does_not_hang_on_the_seed():
  """A few batches make an epoch of a small dataset: the mean batch width (and so the number of
  steps) is measured over at least 400 batches, close to the long-run mean, not the first epoch's;
  and it is the data's, the same for every seed, so seeds of one model differ in the seed alone."""
  from configs import default
  rng = np.random.default_rng(0)
  seqs = _seqs(np.maximum(2, rng.lognormal(2.0, 0.9, 700).astype(int)).tolist())
  widths = []
  for seed in (0, 1, 2):
    c = default.get_config()
    c.seed, c.model.max_seq_length = seed, 100
    widths.append(recipe.mean_width(c, seqs))
  c = default.get_config()
  c.model.max_seq_length = 100
  long_run = recipe.mean_width(c, seqs, min_steps=1600)
  assert widths == [widths[0]] * 3 and abs(widths[0] / long_run - 1) < 0.05, (widths, long_run)
  resolved = []
  for seed in (0, 1):
    c = default.get_config()
    c.seed = seed
    recipe.resolve(c, seqs, num_items=300)
    resolved.append({k: v for k, v in model_store.settings(c).items() if k != "seed"})
  assert resolved[0] == resolved[1] and resolved[0]["train.num_train_steps"] > 0


def test_mean_width_of_a_batch_far_larger_than_the_data_measures_few_batches(monkeypatch):
  """A batch of 4,096 windows over 5 histories: the mean width is measured over at most 400
  batches' worth of 1,024 windows (100 of its batches), not over 400 of its own batches; a batch
  of 256 still over 400."""
  from bert4rec_jax import input_pipeline
  from configs import default
  calls = []
  width = input_pipeline.TrainStream.width
  monkeypatch.setattr(input_pipeline.TrainStream, "width", lambda self, step: calls.append(step) or width(self, step))
  seqs = _seqs([3, 9, 17, 30, 44])
  c = default.get_config()
  c.model.max_seq_length, c.train.batch_size = 50, 4096
  mean = recipe.mean_width(c, seqs)
  assert len(calls) == 100 and 8 <= mean <= 50
  calls.clear()
  c.train.batch_size = 256
  recipe.mean_width(c, seqs)
  assert len(calls) == 400
