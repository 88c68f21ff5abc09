"""The importable entry point: `run(config, workdir, mode)` for every task and mode.

Tasks (config.task), with the TF2 pipeline's semantics:
  train_val_test  test = last item, validation = second to last, training on the rest
  train_val       validation = last item, training on the rest (the final model)
  train_test      test = last item, training on the rest, no validation split (the BERT4Rec
                  paper's protocol: a fixed number of steps, nothing selected on held-out data)
  test            evaluate a trained model on the last item of each sequence of a file
  inference       whole history as input: top-K next items (and embeddings) per user

Files (DESIGN.md):
  <workdir>/data/processed/<hash>/   prepared dataset, reused while inputs are unchanged
  <workdir>/models/<model_name>/     checkpoints/, config.json, metrics.jsonl, vocab/ (items + users
                                     the model was trained on: test and inference read them, never rebuild)
  <workdir>/results/<model_name>/    {valid,test}_metrics.json, per-user files, predictions.parquet
"""
import hashlib
import json
import logging
import os
import shutil
from typing import Optional

import jax
import ml_collections
import numpy as np
import pandas as pd

from bert4rec_jax import (baselines, dataset, evaluate, io_utils, model as model_lib, parallel, predict, preprocess,
                          train)
from bert4rec_jax.errors import ConfigError
from bert4rec_jax.tracking import Tracker

TASKS = ("train_val_test", "train_val", "train_test", "test", "inference")
TRAINING_TASKS = ("train_val_test", "train_val", "train_test")
MODES = ("prepare", "train", "evaluate", "predict", "all")
_TASK_MODES = {"train_val_test": MODES, "train_val": MODES, "train_test": MODES, "test": ("prepare", "evaluate", "all"),
               "inference": ("prepare", "predict", "all")}

# Fields that do not change the trained model, left out of its name hash so that, e.g., a
# different log period or device count resumes the same model.
_NOT_IN_MODEL_HASH = {
    "project", "wandb", "eval", "predict", "model_name", "model.read_last", "data.path", "data.chunk_rows",
    "data.num_buckets", "distributed",
    "train.log_every_steps", "train.eval_every_steps", "train.checkpoint_every_steps",
    "train.keep_checkpoints", "train.training_time_limit_seconds", "train.prefetch", "train.num_devices",
}

# Fields added after models were first trained: hashed only when set away from this value, so
# that adding a field never renames (and so never orphans) an existing model.
_HASHED_ONLY_IF_CHANGED = {"model.kind": "bert4rec", "train.warmup_seq_length": 0, "train.warmup_seq_steps": 0,
                           "train.next_item_loss_weight": 0.0}


def model_name(config, data_hash: str = "") -> str:
  """The seed's scheme `hs64_msl50_mpps10_nts2000_lr0.001` plus a hash of every other setting
  that changes the model, including the prepared data's content hash."""
  flat = {"data_hash": data_hash}

  def walk(d, prefix=""):
    for k, v in d.items():
      key = prefix + k
      if key in _NOT_IN_MODEL_HASH or (key in _HASHED_ONLY_IF_CHANGED and v == _HASHED_ONLY_IF_CHANGED[key]):
        continue
      if isinstance(v, dict):
        walk(v, key + ".")
      else:
        flat[key] = v

  walk(config.to_dict())
  digest = hashlib.sha256(json.dumps(flat, sort_keys=True, default=list).encode()).hexdigest()[:8]
  m, t = config.model, config.train
  if m.kind in baselines.KINDS:
    return f"{m.kind}_{digest}"
  return (f"hs{m.hidden_size}_msl{m.max_seq_length}_mpps{config.masking.max_predictions_per_seq}"
          f"_nts{t.num_train_steps}_lr{t.learning_rate:g}_{digest}")


def task_splits(task: str, seqs):
  """(training sequences, {split name: EvalSplit}) of a training task: train_val_test holds out
  the last item (test) and the one before (valid); train_val and train_test the last item."""
  if task == "train_val_test":
    train_seqs, valid, test = preprocess.leave_one_out(seqs)
    return train_seqs, {"valid": valid, "test": test}
  if task not in ("train_val", "train_test"):
    raise ConfigError(f"task {task!r} has no training split")
  return seqs.drop_last(1), {"test" if task == "train_test" else "valid": preprocess.last_item_split(seqs)}


def min_seq_length(config) -> int:
  need = preprocess.TASK_MIN_LENGTH[config.task]
  value = config.data.min_seq_length
  if value < 0:
    return need
  if value < need:
    raise ConfigError(f"config.data.min_seq_length={value} is below the {need} items task {config.task!r} needs")
  return value


def run(config, workdir: str, mode: str = "all", stop_at: Optional[int] = None) -> dict:
  """Runs one mode (or all of the task's modes in order). Returns what it produced."""
  if config.task not in TASKS:
    raise ConfigError(f"config.task={config.task!r}: use one of {', '.join(TASKS)}")
  if mode not in _TASK_MODES[config.task]:
    raise ConfigError(f"--mode={mode!r} does not apply to task {config.task!r}: use one of "
                      f"{', '.join(_TASK_MODES[config.task])}")
  devices = parallel.local_devices(config.train.num_devices)
  logging.info("JAX %s on %d %s device(s)", jax.__version__, len(devices), devices[0].platform)
  if config.task in TRAINING_TASKS:
    return _run_training_task(config, workdir, mode, devices, stop_at)
  return _run_trained_model_task(config, workdir, mode, devices)


def _run_training_task(config, workdir, mode, devices, stop_at):
  train.validate(config, parallel.global_device_count(devices))
  prepared, data_dir = _load_or_prepare(config.data, workdir, min_seq_length(config))
  result = {"data_dir": data_dir}
  if mode == "prepare":
    return result

  seqs = prepared.sequences
  train_seqs, splits = task_splits(config.task, seqs)
  name = config.model_name or model_name(config, os.path.basename(data_dir))
  model_dir, results_dir = _model_dir(workdir, name), os.path.join(workdir, "results", name)
  if mode in ("train", "all"):  # evaluate/predict only read the model folder
    if parallel.is_primary():
      _write_model_folder(config, model_dir, name, data_dir)
    parallel.barrier("model folder written")
  result.update(model_dir=model_dir, results_dir=results_dir, model_name=name)
  num_items = prepared.vocab.num_items

  def evaluator(split, max_users=0):
    return evaluate.Evaluator(split, prepared.vocab, eval_config=config.eval,
                              max_seq_length=config.model.max_seq_length, devices=devices,
                              seed=config.seed, max_users=max_users)

  if config.model.kind in baselines.KINDS:
    return _run_baseline(config, mode, result, prepared, train_seqs, splits, evaluator, devices)

  # Training curves live with the model; an evaluate/predict-only run logs beside its results,
  # so re-evaluating never changes the model folder (a DVC stage output).
  tracker = Tracker(config, model_dir if mode in ("train", "all") else results_dir, name, job_type=mode)
  try:
    if mode in ("train", "all"):
      result["step"] = train.train(config, model_dir, train_seqs,
                                   evaluator(splits["valid"], config.eval.max_valid_users) if "valid" in splits
                                   else None,
                                   num_items, tracker, devices, stop_at=stop_at)
      if result["step"] < config.train.num_train_steps:
        logging.info("Training stopped at step %d of %d: run the same command again to continue",
                     result["step"], config.train.num_train_steps)
        return result
    if mode in ("evaluate", "predict", "all"):
      params = load_params(config, model_dir, num_items)
      scorer = evaluate.model_scorer(model_lib.from_config(config.model, num_items))
    if mode in ("evaluate", "all"):
      popularity = evaluate.popularity_params(train_seqs, num_items)
      for split_name, split in splits.items():
        result[f"{split_name}_metrics"] = _evaluate_split(
            config, evaluator(split), scorer, params, popularity, prepared, split_name, name,
            os.path.join(results_dir, f"{split_name}_metrics.json"),
            os.path.join(results_dir, f"{split_name}_per_user.parquet"), tracker, stats=prepared.stats,
            kind=config.model.kind)
    if mode in ("predict", "all"):
      path = os.path.join(results_dir, "predictions.parquet")
      predict.predict(scorer, params, seqs, prepared.users, prepared.vocab, predict_config=config.predict,
                      max_seq_length=config.model.max_seq_length, devices=devices, path=path)
      if parallel.is_primary():
        print(f"\npredictions -> {path}", flush=True)
      result["predictions"] = path
      tracker.artifact(f"predictions-{name}", "predictions", [path])
    if mode in ("evaluate", "all"):
      tracker.artifact(f"results-{name}", "results", [results_dir])
    if mode in ("train", "all"):
      tracker.artifact(f"model-{name}", "model", [model_dir])
  finally:
    tracker.close()
  return result


def _run_baseline(config, mode, result, prepared, train_seqs, splits, evaluator, devices):
  """most_popular / markov: fitted from the training split when used (counting is instant),
  evaluated with the same evaluator, negatives and metrics as a model."""
  name, results_dir = result["model_name"], result["results_dir"]
  num_items = prepared.vocab.num_items
  popularity = evaluate.popularity_params(train_seqs, num_items)
  chain = baselines.MarkovChain(train_seqs, num_items) if config.model.kind == "markov" else None
  if mode in ("train", "all"):
    result["step"] = config.train.num_train_steps  # nothing to train: counts are taken when used
    logging.info("%s: a baseline, fitted from the %d training sequences when evaluated", config.model.kind,
                 len(train_seqs))
  tracker = Tracker(config, results_dir, name, job_type=mode)
  try:
    if mode in ("evaluate", "all"):
      for split_name, split in splits.items():
        ev = evaluator(split)
        ranks = baselines.split_ranks(config.model.kind, ev, train_seqs, num_items, config.eval.exclude_history,
                                      chain)
        result[f"{split_name}_metrics"] = _write_split_results(
            config, ranks, {}, prepared, ev, split_name, name, os.path.join(results_dir, f"{split_name}_metrics.json"),
            os.path.join(results_dir, f"{split_name}_per_user.parquet"), tracker, prepared.stats, config.model.kind)
    if mode in ("predict", "all"):
      path = os.path.join(results_dir, "predictions.parquet")
      seqs, k = prepared.sequences, min(config.predict.top_k, num_items)
      if chain is None:
        predict.predict(evaluate.popularity_scorer, popularity, seqs, prepared.users, prepared.vocab,
                        predict_config=config.predict, max_seq_length=config.model.max_seq_length,
                        devices=devices, path=path)
      elif parallel.is_primary():  # counting on the host: one file, written by the first process
        tokens = chain.top_items(seqs, k, exclude_history=config.predict.exclude_history)
        with io_utils.atomic_path(path) as tmp:
          pd.DataFrame({"user": prepared.users, "items": list(prepared.vocab.decode(tokens))}).to_parquet(
              tmp, index=False)
      if parallel.is_primary():
        print(f"\npredictions -> {path}", flush=True)
      result["predictions"] = path
  finally:
    tracker.close()
  return result


def _run_trained_model_task(config, workdir, mode, devices):
  """test / inference: everything about the model comes from its folder, never from the data."""
  if not config.model_name:
    raise ConfigError(f"task {config.task!r} needs config.model_name: the trained model's folder name under "
                      f"{os.path.join(workdir, 'models')} or a path to it")
  model_dir = config.model_name if os.path.isdir(config.model_name) else _model_dir(workdir, config.model_name)
  if not os.path.isfile(os.path.join(model_dir, "config.json")):
    raise FileNotFoundError(f"{model_dir}: no trained model there (no config.json); train one with task "
                            "train_val_test, train_val or train_test first")
  saved = io_utils.read_json(os.path.join(model_dir, "config.json"))
  trained = ml_collections.ConfigDict(saved["config"])
  name = saved["model_name"]
  if trained.model.get("kind", "bert4rec") in baselines.KINDS:
    raise ConfigError(f"{model_dir} is the {trained.model.kind} baseline: it has no trained parameters; "
                      "evaluate it with a training task (train_val_test, train_val, train_test) instead")
  vocab_dir = os.path.join(model_dir, "vocab")
  vocab = dataset.load_vocab(vocab_dir)
  prepared, data_dir = _load_or_prepare(config.data, workdir, min_seq_length(config), vocab=vocab,
                                               vocab_fingerprint=dataset.file_sha256(
                                                   os.path.join(vocab_dir, "items.parquet")))
  stats = dict(prepared.stats)
  stats["users_unseen_in_training"] = int((~np.isin(prepared.users, dataset.load_users(vocab_dir))).sum())
  logging.info("Against the model's vocabulary: %s", json.dumps(
      {k: v for k, v in stats.items() if "unknown" in k or "unseen" in k or "without" in k}))
  result = {"data_dir": data_dir, "model_dir": model_dir, "stats": stats}
  if mode == "prepare":
    return result

  results_dir = os.path.join(workdir, "results", name)
  stem = os.path.basename(config.data.path).split(".")[0] or "synthetic"
  params = load_params(trained, model_dir, vocab.num_items)
  trained.model.read_last = config.model.read_last  # how to read the history: this run's choice, not the model's
  scorer = evaluate.with_popularity_fallback(
      evaluate.model_scorer(model_lib.from_config(trained.model, vocab.num_items)))
  popularity = vocab.counts.astype(np.float32)  # training-data item counts, saved with the model
  L = trained.model.max_seq_length
  tracker = Tracker(config, results_dir, name, job_type=config.task)
  try:
    if config.task == "test":
      eligible = np.flatnonzero(prepared.last_item_known & (prepared.sequences.lengths >= 1))
      stats["users_evaluated"] = int(len(eligible))
      stats["users_without_known_history"] = int((prepared.sequences.lengths[eligible] == 1).sum())
      if not len(eligible):
        raise ConfigError(f"{config.data.path}: no user's last item is known to the model: nothing to evaluate")
      split = preprocess.last_item_split(prepared.sequences, eligible)
      ev = evaluate.Evaluator(split, vocab, eval_config=config.eval, max_seq_length=L, devices=devices,
                              seed=config.seed)
      result["test_metrics"] = _evaluate_split(
          config, ev, scorer, (params, popularity), popularity, prepared, "test", name,
          os.path.join(results_dir, f"test_{stem}_metrics.json"),
          os.path.join(results_dir, f"test_{stem}_per_user.parquet"), tracker, stats=stats,
          kind=trained.model.get("kind", "bert4rec"))
    else:
      path = os.path.join(results_dir, f"predictions_{stem}.parquet")
      predict.predict(scorer, (params, popularity), prepared.sequences, prepared.users, vocab,
                      predict_config=config.predict, max_seq_length=L, devices=devices, path=path)
      if parallel.is_primary():
        io_utils.write_json(os.path.join(results_dir, f"predictions_{stem}_meta.json"),
                            {"model_name": name, "input": config.data.path, "data_stats": stats})
      print(f"\npredictions -> {path}\n{json.dumps(stats, indent=1)}", flush=True)
      result["predictions"] = path
      tracker.artifact(f"predictions-{name}-{stem}", "predictions", [path])
    tracker.summary({f"data/{k}": v for k, v in stats.items()})
  finally:
    tracker.close()
  return result


def _evaluate_split(config, ev, scorer, params, popularity, prepared, split_name, name, path, per_user_path,
                    tracker, stats, kind="bert4rec"):
  """Ranks one split for the model (and the popularity baseline), writes JSON (+ per-user file).
  The model's row is named by its kind (bert4rec | sasrec)."""
  ranks = ev.ranks(scorer, params, top_k=config.eval.per_user_top_k)
  extra = {"popularity": ev.metrics(evaluate.popularity_scorer, popularity)} if config.eval.popularity_baseline else {}
  return _write_split_results(config, ranks, extra, prepared, ev, split_name, name, path, per_user_path, tracker,
                              stats, kind)


def _write_split_results(config, ranks, extra_rows, prepared, ev, split_name, name, path, per_user_path, tracker,
                         stats, kind):
  """`<split>_metrics.json` ({kind: metrics, **extra_rows}), the per-user file when
  config.eval.per_user_top_k > 0 (user, target, rank[, sampled_rank][, top_items]), the printed
  table and the tracker's record."""
  rows = {kind: evaluate.summarize_ranks(ranks, config.eval.ks), **extra_rows}
  if not parallel.is_primary():  # every process has every user's ranks; the first one writes
    return rows
  io_utils.write_json(path, {"model_name": name, "split": split_name, "metrics": rows, "data_stats": stats})
  if config.eval.per_user_top_k:
    table = {"user": prepared.users[ev.rows], "target": prepared.vocab.decode(ev.targets), "rank": ranks["full"]}
    if "sampled" in ranks:
      table["sampled_rank"] = ranks["sampled"]
    if "top_items" in ranks:
      table["top_items"] = list(prepared.vocab.decode(ranks["top_items"]))
    with io_utils.atomic_path(per_user_path) as tmp:
      pd.DataFrame(table).to_parquet(tmp, index=False)
  print(f"\n{split_name} metrics ({rows[kind]['num_users']} users) -> {path}\n"
        + evaluate.format_table(rows, list(rows[kind])), flush=True)
  tracker.log({f"{split_name}/{k}": v for k, v in rows[kind].items()})
  tracker.summary({f"{split_name}/{k}": v for k, v in rows[kind].items()})
  return rows


def _load_or_prepare(data_config, workdir: str, min_length: int, **kwargs):
  """dataset.load_or_prepare; with several processes the first one prepares (or finds) the
  dataset while the others wait, then they load what it wrote (a filesystem all can read)."""
  out = dataset.load_or_prepare(data_config, workdir, min_length, **kwargs) if parallel.is_primary() else None
  parallel.barrier("dataset prepared")
  return out if out is not None else dataset.load_or_prepare(data_config, workdir, min_length, **kwargs)


def _model_dir(workdir: str, name: str) -> str:
  return os.path.join(workdir, "models", name)


def _write_model_folder(config, model_dir: str, name: str, data_dir: str) -> None:
  """config.json plus the vocabulary and user index the model is trained on (self-contained)."""
  os.makedirs(os.path.join(model_dir, "vocab"), exist_ok=True)
  io_utils.write_json(os.path.join(model_dir, "config.json"),
                      {"config": config.to_dict(), "model_name": name, "data_dir": os.path.abspath(data_dir)})
  for f in ("items.parquet", "users.parquet"):
    target = os.path.join(model_dir, "vocab", f)
    if not os.path.isfile(target):
      with io_utils.atomic_path(target) as tmp:
        shutil.copyfile(os.path.join(data_dir, f), tmp)


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
