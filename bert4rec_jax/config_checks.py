"""Every setting checked in one place, before any data is read or anything is compiled.

`validate(config, mode, num_devices)` collects every problem of the config and raises one
ConfigError that names each bad field on a line of its own, so a run never fails after an hour
of training on a setting that could have been refused at once. `pipeline.run` calls it first.
"""
import math
import os
from typing import List, Optional

from bert4rec_jax import baselines, masking, model as model_lib, selection, sources
from bert4rec_jax.errors import ConfigError
from bert4rec_jax.preprocess import TASK_MIN_LENGTH

TASKS = ("train_val_test", "train_val", "train_test", "test", "inference")
TRAINING_TASKS = ("train_val_test", "train_val", "train_test")
MODES = ("prepare", "train", "evaluate", "predict", "all")
TASK_MODES = {"train_val_test": MODES, "train_val": MODES, "train_test": MODES, "test": ("prepare", "evaluate", "all"),
              "inference": ("prepare", "predict", "all")}
READ_LAST = ("",) + model_lib.READINGS  # "": as the trained model was read (its saved config)
WANDB_MODES = ("offline", "online", "disabled")
MAX_NAME_BYTES = 150  # a model name's longest file (a results lock: <name>.<task>-<input>-<key>.lock) stays under 255
SAMPLERS = ("popularity", "uniform")


class _Problems:
  """Collects one line per bad field."""

  def __init__(self):
    self.lines: List[str] = []

  def need(self, ok: bool, field: str, value, rule: str) -> bool:
    if not ok:
      self.lines.append(f"config.{field}={value!r}: {rule}")
    return ok

  def one_of(self, field: str, value, allowed) -> bool:
    return self.need(value in allowed, field, value, f"use one of {', '.join(repr(a) for a in allowed)}")

  def at_least(self, field: str, value, low) -> bool:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= low
    finite = not isinstance(value, float) or math.isfinite(value)
    return self.need(ok, field, value, f"must be >= {low}" if finite else f"must be a finite number >= {low}")

  def fraction(self, field: str, value, closed_top: bool = False) -> bool:
    ok = isinstance(value, (int, float)) and (0.0 <= value <= 1.0 if closed_top else 0.0 <= value < 1.0)
    return self.need(ok, field, value, f"must be in [0, 1{']' if closed_top else ')'}")


def validate(config, mode: str = "all", num_devices: Optional[int] = None) -> None:
  """Raises ConfigError naming every invalid field (one line each); returns None when all are fine.

  num_devices: the devices one global training batch is split over (None: not checked). For the
  test and inference tasks the model's own settings come from its folder, so only the fields that
  run uses are checked here.
  """
  p = _Problems()
  if not p.one_of("task", config.task, TASKS):
    raise ConfigError(_message(p))
  if mode not in TASK_MODES[config.task]:
    p.lines.append(f"--mode={mode!r} does not apply to task {config.task!r}: use one of "
                   f"{', '.join(TASK_MODES[config.task])}")
  p.need(isinstance(config.seed, int) and 0 <= config.seed < 2 ** 32, "seed", config.seed,
         "must be an integer in [0, 2**32)")
  training = config.task in TRAINING_TASKS
  name = config.model_name
  if training:
    p.need(not name or (os.sep not in name and name not in (".", "..") and "/" not in name), "model_name", name,
           "a training run's model name is a folder name under <workdir>/models (no '/')")
    p.need(len(name.encode()) <= MAX_NAME_BYTES, "model_name", name[:20] + "...", f"at most {MAX_NAME_BYTES} bytes "
           f"(it has {len(name.encode())}): files named after the model add to it, and a file name has at most 255")
  elif not name:
    p.lines.append(f"config.model_name='': task {config.task!r} needs the trained model's folder name under "
                   "<workdir>/models, or a path to it")
  _check_data(p, config)
  p.one_of("model.read_last", config.model.get("read_last", ""), READ_LAST)
  if training:
    _check_model(p, config)
    _check_training(p, config)
    if num_devices and isinstance(config.train.batch_size, int) and config.train.batch_size >= 1:
      _check_devices(p, config, num_devices)
  if training or config.task == "test":
    _check_eval(p, config.eval)
  if training or config.task == "inference":
    _check_predict(p, config.predict, config.model.get("kind", "bert4rec") if training else "")
  p.one_of("wandb.mode", config.wandb.mode, WANDB_MODES)
  _check_finite(p, config.to_dict())
  if p.lines:
    raise ConfigError(_message(p))


def _check_finite(p: _Problems, tree: dict, prefix: str = "") -> None:
  """NaN or an infinity in any numeric field (or tuple of them) is refused, whatever the field's
  own rule (a NaN passes every comparison's negation; an infinite weight or clip trains nothing)."""
  named = {line.split("=", 1)[0] for line in p.lines}
  for key, value in tree.items():
    field = prefix + key
    if isinstance(value, dict):
      _check_finite(p, value, field + ".")
      continue
    values = value if isinstance(value, (tuple, list)) else (value,)
    bad = [v for v in values if isinstance(v, float) and not math.isfinite(v)]
    if bad and f"config.{field}" not in named:
      p.need(False, field, value, "must be a finite number")


def _message(p: _Problems) -> str:
  if len(p.lines) == 1:
    return p.lines[0]
  return f"{len(p.lines)} settings need fixing:\n  " + "\n  ".join(p.lines)


def _check_data(p: _Problems, config) -> None:
  d = config.data
  if not p.one_of("data.format", d.format, sources.FORMATS):
    return
  if d.format == "tfds":
    p.need(bool(d.get("tfds_name")), "data.tfds_name", d.get("tfds_name"), "name the TFDS dataset, e.g. movielens/1m-ratings")
  elif d.format != "synthetic":
    p.need(bool(d.path), "data.path", d.path, f"format {d.format!r} reads from a file: set the input's path")
  if d.format in ("synthetic", "tfds"):  # a path there would be ignored, and the wrong data used in silence
    p.need(not d.path, "data.path", d.path, f"format {d.format!r} reads no file: give the file's format "
           f"(data.format, one of {', '.join(f for f in sources.FORMATS if f not in ('synthetic', 'tfds'))}) "
           "or leave data.path empty")
  p.at_least("data.chunk_rows", d.chunk_rows, 0)
  if d.chunk_rows > 0:
    p.need(d.format in sources.CHUNKED_FORMATS, "data.chunk_rows", d.chunk_rows,
           f"format {d.format!r} is read whole; chunked reading supports {', '.join(sources.CHUNKED_FORMATS)}")
  p.at_least("data.num_buckets", d.num_buckets, 1)
  need = TASK_MIN_LENGTH[config.task]
  p.need(d.min_seq_length == -1 or d.min_seq_length >= need, "data.min_seq_length", d.min_seq_length,
         f"task {config.task!r} needs at least {need} items per user (-1 = that minimum)")
  p.at_least("data.min_rating", d.min_rating, 0)
  for field in ("user_col", "item_col"):
    p.need(bool(d[field]), f"data.{field}", d[field], "name the column")
  if d.format == "synthetic":
    s = d.synthetic
    p.at_least("data.synthetic.num_users", s.num_users, 1)
    p.at_least("data.synthetic.num_items", s.num_items, 2)
    p.at_least("data.synthetic.min_length", s.min_length, 1)
    p.at_least("data.synthetic.max_length", s.max_length, s.min_length)
    p.at_least("data.synthetic.num_strides", s.num_strides, 1)
    p.fraction("data.synthetic.noise", s.noise, closed_top=True)


def _check_model(p: _Problems, config) -> None:
  m, k = config.model, config.masking
  kinds = model_lib.KINDS + baselines.KINDS
  p.one_of("model.kind", m.kind, kinds)
  sizes_ok = all([p.at_least("model.hidden_size", m.hidden_size, 1),
                  p.at_least("model.num_attention_heads", m.num_attention_heads, 1)])
  if sizes_ok and m.hidden_size % m.num_attention_heads:
    p.lines.append(f"config.model.hidden_size={m.hidden_size} is not divisible by "
                   f"config.model.num_attention_heads={m.num_attention_heads}")
  p.at_least("model.num_hidden_layers", m.num_hidden_layers, 0)
  p.at_least("model.intermediate_size", m.intermediate_size, 1)
  p.one_of("model.hidden_act", m.hidden_act, sorted(model_lib.ACTIVATIONS))
  d = m.hidden_dropout_prob
  p.need(isinstance(d, (int, float)) and (d == -1 or 0.0 <= d < 1.0), "model.hidden_dropout_prob", d,
         "must be in [0, 1) (-1 = from the data)")
  p.fraction("model.attention_probs_dropout_prob", m.attention_probs_dropout_prob)
  p.need(m.initializer_range > 0 and math.isfinite(m.initializer_range), "model.initializer_range",
         m.initializer_range, "must be > 0")
  auto_length = m.max_seq_length == 0  # from the data (recipe); checked again once resolved
  length_ok = auto_length or p.need(isinstance(m.max_seq_length, int) and m.max_seq_length >= 2, "model.max_seq_length",
                                    m.max_seq_length, "must be >= 2 (0 = from the data)")

  if p.one_of("masking.mode", k.mode, masking.MODES):
    if k.mode == "static":
      p.at_least("masking.dupe_factor", k.dupe_factor, 1)
      p.need(m.kind != "sasrec", "masking.mode", k.mode, "does not apply to config.model.kind='sasrec' "
             "(it has no masking)")
  p.need(0.0 < k.masked_lm_prob <= 1.0, "masking.masked_lm_prob", k.masked_lm_prob, "must be in (0, 1]")
  if length_ok and k.max_predictions_per_seq != 0:  # 0: from masked_lm_prob x the length (recipe)
    p.need(1 <= k.max_predictions_per_seq <= (m.max_seq_length or k.max_predictions_per_seq),
           "masking.max_predictions_per_seq", k.max_predictions_per_seq,
           f"must be between 1 and config.model.max_seq_length={m.max_seq_length} (0 = from the masking rate)")
  p.fraction("masking.mask_prob", k.mask_prob, closed_top=True)
  p.fraction("masking.mask_last_prob", k.mask_last_prob, closed_top=True)
  p.fraction("masking.last_keep_prob", k.get("last_keep_prob", 0.0), closed_top=True)


def check_devices(config, num_devices: int) -> None:
  """The global training batch must split evenly over the devices in use (known only once they
  are): a ConfigError naming both, for a training task."""
  p = _Problems()
  if config.task in TRAINING_TASKS:
    _check_devices(p, config, num_devices)
  if p.lines:
    raise ConfigError(_message(p))


def _check_devices(p: _Problems, config, num_devices: int) -> None:
  if config.train.batch_size % num_devices:
    p.lines.append(f"config.train.batch_size={config.train.batch_size} is not divisible by the {num_devices} "
                   f"devices in use; use a multiple of {num_devices}")
    return
  every, shard = config.train.get("masked_loss_every", 1), config.train.batch_size // num_devices
  if isinstance(every, int) and every > 1 and shard % every:
    # The rows a step's masked-item loss reads are those of the global batch only when each shard's are.
    p.lines.append(f"config.train.masked_loss_every={every} must divide each device's share of the batch "
                   f"({config.train.batch_size} / {num_devices} devices = {shard}); use a batch size that is a "
                   f"multiple of {num_devices * every}")


def _check_training(p: _Problems, config) -> None:
  t, m = config.train, config.model
  p.at_least("train.batch_size", t.batch_size, 1)
  p.at_least("train.num_train_steps", t.num_train_steps, 0)  # 0: from the data (recipe)
  p.need(t.num_warmup_steps == -1 or (isinstance(t.num_warmup_steps, int) and t.num_warmup_steps >= 0),
         "train.num_warmup_steps", t.num_warmup_steps, "must be >= 0 (-1 = 2% of the steps)")
  if not t.num_train_steps and not t.get("num_epochs"):
    p.need(isinstance(t.budget_per_interaction, (int, float)) and math.isfinite(t.budget_per_interaction)
           and t.budget_per_interaction >= 0, "train.budget_per_interaction", t.budget_per_interaction,
           "must be > 0 (it sets the steps when config.train.num_train_steps=0; 0 = from the data)")
  p.at_least("train.auto_validations", t.auto_validations, 1)
  for field in ("num_epochs", "num_warmup_epochs", "eval_every_epochs"):
    p.at_least(f"train.{field}", t[field], 0)
  problem = selection.metric_problem(t.select_metric, config.eval.num_negatives) if isinstance(
      t.select_metric, str) else "must be a metric name, or '' for the last checkpoint"
  p.need(problem is None, "train.select_metric", t.select_metric, problem)
  if p.at_least("train.patience", t.patience, 0) and t.patience:
    p.need(config.task != "train_test", "train.patience", t.patience,
           "task 'train_test' has no validation split to stop on (use train_val_test, or 0)")
    p.need(bool(t.select_metric), "train.patience", t.patience, "early stopping needs config.train.select_metric")
    p.need(bool(t.eval_every_steps or t.eval_every_epochs), "train.patience", t.patience,
           "early stopping needs periodic validation (config.train.eval_every_steps or eval_every_epochs > 0)")
  p.need(t.learning_rate >= 0 and math.isfinite(t.learning_rate), "train.learning_rate", t.learning_rate,
         "must be > 0 (0 = from the data)")
  w = t.weight_decay
  p.need(isinstance(w, (int, float)) and math.isfinite(w) and (w == -1 or w >= 0), "train.weight_decay", w,
         "must be >= 0 (-1 = from the data)")
  p.fraction("train.adam_b1", t.adam_b1)
  p.fraction("train.adam_b2", t.adam_b2)
  p.need(t.adam_eps > 0 and math.isfinite(t.adam_eps), "train.adam_eps", t.adam_eps, "must be > 0")
  p.at_least("train.max_grad_norm", t.max_grad_norm, 0)
  spike = t.get("spike_clip", 0.0)
  p.need(isinstance(spike, (int, float)) and (spike in (0, -1) or spike > 1), "train.spike_clip", spike,
         "must be > 1 (a multiple of the recent gradient norm; at most 1 would clip every step to a shrinking "
         "limit), 0 to turn it off or -1 for from the data")
  p.need(t.prop_sliding_window <= 0 or t.prop_sliding_window <= 1, "train.prop_sliding_window",
         t.prop_sliding_window, "must be in (0, 1] (a step of at most one window), or <= 0 for no sliding")
  if t.warmup_seq_length and m.max_seq_length:
    p.need(2 <= t.warmup_seq_length < m.max_seq_length, "train.warmup_seq_length", t.warmup_seq_length,
           f"must be between 2 and config.model.max_seq_length - 1 = {m.max_seq_length - 1} (0 turns the "
           "warmup off)")
  p.at_least("train.warmup_seq_steps", t.warmup_seq_steps, 0)
  p.one_of("train.length_buckets", t.get("length_buckets", False), (False, True))
  p.one_of("train.target_weighting", t.get("target_weighting", "batch"), ("batch", "epoch", "example"))
  p.one_of("train.target_shapes", t.get("target_shapes", "auto"), ("auto", "batch", "run"))
  p.one_of("train.loss", t.loss, ("full", "sampled", "auto"))
  if t.loss in ("sampled", "auto"):
    p.need(t.num_negatives >= 1, "train.num_negatives", t.num_negatives, "must be >= 1 with the sampled loss")
  p.one_of("train.negative_sampler", t.negative_sampler, SAMPLERS[::-1])
  p.one_of("train.loss_positions", t.loss_positions, ("masked", "all"))
  p.need(t.next_item_loss_weight >= 0, "train.next_item_loss_weight", t.next_item_loss_weight,
         "next_item_loss_weight must be >= 0 (0 turns the next-item loss off)")
  keep = t.get("next_item_positions", 0)
  p.need(isinstance(keep, int) and not isinstance(keep, bool) and keep >= 0, "train.next_item_positions", keep,
         "must be an integer >= 0 (0: the next-item loss at every target)")
  every = t.get("masked_loss_every", 1)
  p.need(isinstance(every, int) and not isinstance(every, bool) and every >= 0, "train.masked_loss_every", every,
         "must be an integer >= 0 (1: the masked-item loss on every window; 0: from the data)")
  if isinstance(every, int) and every > 1:
    p.need(m.kind == "bert4rec" and t.next_item_loss_weight > 0, "train.masked_loss_every", every,
           "needs model.kind='bert4rec' with train.next_item_loss_weight > 0 (without the next-item loss it "
           "would train on a smaller batch: set train.batch_size instead)")
    p.need(t.batch_size % every == 0, "train.masked_loss_every", every,
           f"must divide train.batch_size={t.batch_size}")
  p.one_of("train.compute_dtype", t.compute_dtype, ("float32", "bfloat16"))
  p.at_least("train.num_devices", t.num_devices, 0)
  p.at_least("train.log_every_steps", t.log_every_steps, 1)
  p.need(t.eval_every_steps == -1 or (isinstance(t.eval_every_steps, int) and t.eval_every_steps >= 0),
         "train.eval_every_steps", t.eval_every_steps, "must be >= 0 (0 = only at the end, -1 = "
         "config.train.auto_validations over the schedule)")
  p.at_least("train.checkpoint_every_steps", t.checkpoint_every_steps, 1)
  p.at_least("train.keep_checkpoints", t.keep_checkpoints, 1)
  p.at_least("train.training_time_limit_seconds", t.training_time_limit_seconds, 0)
  bound = t.get("max_training_minutes", 0)
  p.need(isinstance(bound, (int, float)) and not isinstance(bound, bool) and math.isfinite(bound)
         and (bound == -1 or bound >= 0), "train.max_training_minutes", bound,
         "must be >= 0 (minutes of training after which it ends; 0 = no bound, -1 = from the data)")
  p.at_least("train.prefetch", t.prefetch, 0)
  p.at_least("train.logit_chunk_elements", t.get("logit_chunk_elements", 0), 0)


def _check_eval(p: _Problems, e) -> None:
  p.at_least("eval.batch_size", e.batch_size, 1)
  ks = tuple(e.ks) if isinstance(e.ks, (tuple, list)) else (e.ks,)
  p.need(len(ks) > 0 and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in ks), "eval.ks",
         e.ks, "cut-offs must be whole numbers >= 1, e.g. (1, 5, 10)")
  p.at_least("eval.num_negatives", e.num_negatives, 0)
  p.one_of("eval.negative_sampling", e.negative_sampling, SAMPLERS)
  v = e.max_valid_users
  p.need(isinstance(v, int) and not isinstance(v, bool) and v >= -1, "eval.max_valid_users", v,
         "must be a whole number >= 0 (0 = all; -1 = from the data)")
  p.at_least("eval.item_chunk_size", e.item_chunk_size, 1)
  p.one_of("eval.rank_method", e.rank_method, ("count", "sort"))
  p.one_of("eval.print_metrics", e.get("print_metrics", "short"), ("short", "all"))
  p.at_least("eval.per_user_top_k", e.per_user_top_k, 0)


def _check_predict(p: _Problems, pc, kind: str) -> None:
  p.at_least("predict.top_k", pc.top_k, 1)
  p.at_least("predict.batch_size", pc.batch_size, 1)
  p.at_least("predict.item_chunk_size", pc.item_chunk_size, 1)
  p.at_least("predict.users_per_part", pc.users_per_part, 0)
  if kind in baselines.KINDS:  # counts, not a network: what they cannot write is refused, not left out
    p.need(not pc.with_embeddings, "predict.with_embeddings", pc.with_embeddings,
           f"the {kind} baseline has no hidden state to write")
    p.need(kind != "markov" or not pc.users_per_part, "predict.users_per_part", pc.users_per_part,
           "the markov baseline writes its predictions as one file")
