"""The importable entry point: `run(config, workdir, mode)` does prepare/train/evaluate/predict.

Files (DESIGN.md):
  <workdir>/data/processed/<hash>/    prepared dataset, reused while inputs are unchanged
  <workdir>/models/<model_name>/      checkpoints/, config.json, metrics.jsonl
  <workdir>/results/<model_name>/     valid_metrics.json, test_metrics.json, predictions.parquet
"""
import hashlib
import json
import logging
import os
from typing import Optional

import jax
import numpy as np

from bert4rec_jax import dataset, evaluate, io_utils, model as model_lib, parallel, predict, preprocess, train
from bert4rec_jax.errors import ConfigError
from bert4rec_jax.tracking import Tracker

MODES = ("prepare", "train", "evaluate", "predict", "all")

# Fields that do not change the trained model, left out of its name hash so that, e.g., a
# different log period or device count resumes the same model.
_NOT_IN_MODEL_HASH = {
    "project", "wandb", "eval", "predict",
    "train.log_every_steps", "train.eval_every_steps", "train.checkpoint_every_steps",
    "train.keep_checkpoints", "train.training_time_limit_seconds", "train.prefetch", "train.num_devices",
}


def model_name(config) -> str:
  """The seed's scheme `hs64_msl50_mpps10_nts2000_lr0.001` plus a hash of every other setting."""
  flat = {}

  def walk(d, prefix=""):
    for k, v in d.items():
      key = prefix + k
      if key in _NOT_IN_MODEL_HASH:
        continue
      if isinstance(v, dict):
        walk(v, key + ".")
      else:
        flat[key] = v

  walk(config.to_dict())
  digest = hashlib.sha256(json.dumps(flat, sort_keys=True, default=list).encode()).hexdigest()[:8]
  m, t = config.model, config.train
  return (f"hs{m.hidden_size}_msl{m.max_seq_length}_mpps{config.masking.max_predictions_per_seq}"
          f"_nts{t.num_train_steps}_lr{t.learning_rate:g}_{digest}")


def run(config, workdir: str, mode: str = "all", stop_at: Optional[int] = None) -> dict:
  """Runs one mode (or all of them in order). Returns what it produced (paths, metrics)."""
  if mode not in MODES:
    raise ConfigError(f"--mode={mode!r}: use one of {', '.join(MODES)}")
  if config.data.min_seq_length < 3:
    raise ConfigError("config.data.min_seq_length must be at least 3 (train, validation and test items)")
  devices = parallel.local_devices(config.train.num_devices)
  train.validate(config, len(devices))
  logging.info("JAX %s on %d %s device(s)", jax.__version__, len(devices), devices[0].platform)

  prepared, data_dir = dataset.load_or_prepare(config.data, workdir)
  result = {"data_dir": data_dir}
  if mode == "prepare":
    return result

  train_seqs, valid, test = preprocess.leave_one_out(prepared.sequences)
  name = model_name(config)
  model_dir = os.path.join(workdir, "models", name)
  results_dir = os.path.join(workdir, "results", name)
  os.makedirs(model_dir, exist_ok=True)
  io_utils.write_json(os.path.join(model_dir, "config.json"),
                      {"config": config.to_dict(), "model_name": name, "data_dir": os.path.abspath(data_dir)})
  result.update(model_dir=model_dir, results_dir=results_dir, model_name=name)
  num_items = prepared.vocab.num_items

  def evaluator(split, max_users=0):
    return evaluate.Evaluator(split, prepared.vocab, eval_config=config.eval,
                              max_seq_length=config.model.max_seq_length, devices=devices,
                              seed=config.seed, max_users=max_users)

  tracker = Tracker(config, model_dir, name, job_type=mode)
  try:
    if mode in ("train", "all"):
      result["step"] = train.train(config, model_dir, train_seqs, evaluator(valid, config.eval.max_valid_users),
                                   num_items, tracker, devices, stop_at=stop_at)
      if stop_at is not None and result["step"] < config.train.num_train_steps:
        return result
    params = None
    if mode in ("evaluate", "predict", "all"):
      params = load_params(config, model_dir, num_items)
    if mode in ("evaluate", "all"):
      model = model_lib.from_config(config.model, num_items)
      pop = evaluate.popularity_params(train_seqs, num_items)
      for split_name, split in (("valid", valid), ("test", test)):
        ev = evaluator(split)
        rows = {"bert4rec": ev.metrics(evaluate.model_scorer(model), params)}
        if config.eval.popularity_baseline:
          rows["popularity"] = ev.metrics(evaluate.popularity_scorer, pop)
        path = os.path.join(results_dir, f"{split_name}_metrics.json")
        io_utils.write_json(path, {"model_name": name, "split": split_name, "metrics": rows})
        keys = list(rows["bert4rec"])
        print(f"\n{split_name} metrics ({rows['bert4rec']['num_users']} users) -> {path}\n"
              + evaluate.format_table(rows, keys), flush=True)
        tracker.log({f"{split_name}/{k}": v for k, v in rows["bert4rec"].items()}, step=config.train.num_train_steps)
        tracker.summary({f"{split_name}/{k}": v for k, v in rows["bert4rec"].items()})
        result[f"{split_name}_metrics"] = rows
    if mode in ("predict", "all"):
      path = os.path.join(results_dir, "predictions.parquet")
      predict.predict(params, model_lib.from_config(config.model, num_items), prepared.sequences,
                      prepared.users, prepared.vocab, predict_config=config.predict,
                      max_seq_length=config.model.max_seq_length, devices=devices, path=path)
      print(f"\npredictions -> {path}", flush=True)
      result["predictions"] = path
  finally:
    tracker.close()
  return result


def load_params(config, model_dir: str, num_items: int):
  """Parameters of the latest checkpoint; a clear error when the model was never trained."""
  manager = train.checkpoint_manager(model_dir, config.train)
  try:
    state = train.restore_latest(manager, train.create_state(config, num_items))
  finally:
    manager.close()
  if state is None:
    raise FileNotFoundError(f"no checkpoint in {os.path.join(model_dir, 'checkpoints')}: "
                            "run with --mode=train (or --mode=all) first")
  if int(state.step) < config.train.num_train_steps:
    logging.warning("Using a partly trained model (step %d of %d)", int(state.step), config.train.num_train_steps)
  return state.params
