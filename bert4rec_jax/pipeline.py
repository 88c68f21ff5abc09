"""The importable entry point: `run(config, workdir, mode)` for every task and mode.

Tasks (config.task), with the TF2 pipeline's semantics:
  train_val_test  test = last item, validation = second to last, training on the rest; the
                  checkpoint with the best validation metric is kept (train.select_metric,
                  early stopping with train.patience) and test is evaluated once, on it
  train_val       validation = last item, training on the rest (the final model), selected the same way
  train_test      test = last item, training on the rest, no validation split (the BERT4Rec
                  paper's protocol: a fixed number of steps, the last checkpoint; the code selects
                  nothing on the test split, so any setting of such a run must be chosen elsewhere,
                  on a validation split, to be an honest test number)
  test            evaluate a trained model on the last item of each sequence of a file
  inference       whole history as input: top-K next items (and embeddings) per user

Files (DESIGN.md):
  <workdir>/data/processed/<hash>/   prepared dataset, reused while inputs are unchanged
  <workdir>/models/<model_name>/     a model folder (see model_store): identity.json, config.json,
                                     vocab/, checkpoints/, training records
  <workdir>/results/<model_name>/    {valid,test}_metrics.json, per-user files, predictions.parquet,
                                     settings.json (what made them); outputs made with other
                                     evaluation or prediction settings go to eval-<key>/ or
                                     predict-<key>/ beside them, and test / inference outputs to
                                     test-<input>-<key>/ and inference-<input>-<key>/, keyed by the
                                     input's content and every setting, so no run overwrites
                                     another's results
  <workdir>/locks/                   one lock per model name: one run at a time trains or writes it

Every setting is checked first (config_checks), and a model folder that another config or data
made is refused before any work (model_store).
"""
import contextlib
import hashlib
import json
import logging
import os
from typing import Optional

import jax
import numpy as np
import pandas as pd

from bert4rec_jax import (baselines, config_checks, dataset, evaluate, io_utils, model as model_lib, model_store,
                          parallel, predict, preprocess, recipe, selection, tfds_source, trainer)
from bert4rec_jax.errors import ConfigError, DataError, InUseError, MissingError
from bert4rec_jax.tracking import Tracker

TASKS, TRAINING_TASKS, MODES = config_checks.TASKS, config_checks.TRAINING_TASKS, config_checks.MODES
model_name = model_store.model_name  # the automatic name of a config's model (part of the API)
SETTINGS_FILE = "settings.json"

# What makes each kind of output, beyond the model: a run whose settings differ writes beside the
# first run's outputs, never over them.
_OUTPUT_SETTINGS = {
    "eval": ("eval.ks", "eval.num_negatives", "eval.negative_sampling", "eval.exclude_history",
             "eval.per_user_top_k", "eval.popularity_baseline", "model.read_last", "seed"),
    "predict": ("predict.top_k", "predict.exclude_history", "predict.with_embeddings", "predict.users_per_part",
                "model.read_last"),
}


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
  """Users with fewer raw items are dropped: config.data.min_seq_length, or the task's minimum."""
  value = config.data.min_seq_length
  return config_checks.TASK_MIN_LENGTH[config.task] if value < 0 else value


def run(config, workdir: str, mode: str = "all", stop_at: Optional[int] = None) -> dict:
  """Runs one mode (or all of the task's modes in order). Returns what it produced.

  Every setting is checked before anything is read; `config` itself is never changed. The
  programs the run compiled are released when it ends, so a process may run the pipeline any
  number of times.
  """
  try:
    return _run(config, workdir, mode, stop_at)
  finally:
    # JAX's staging caches keep a run's compiled programs after the run's objects are gone; on CPU
    # each keeps about a dozen memory mappings (a small model's run about 1,300), and Linux's
    # default limit of 65,530 per process made a process that ran ~50 runs (an ablation loop, a
    # test worker) segfault inside XLA. Used again, programs compile again (or come from the
    # persistent cache).
    jax.clear_caches()


def _run(config, workdir, mode, stop_at):
  config_checks.validate(config, mode)
  devices = parallel.local_devices(config.train.num_devices)
  config_checks.check_devices(config, parallel.global_device_count(devices))
  config = config.copy_and_resolve_references()
  logging.info("JAX %s on %d %s device(s)", jax.__version__, len(devices), devices[0].platform)
  if config.data.format == "tfds":  # read once into a Parquet file of the workdir, then a Parquet run
    tfds_source.as_parquet(config, workdir)
  if config.task in TRAINING_TASKS:
    return _run_training_task(config, workdir, mode, devices, stop_at)
  return _run_trained_model_task(config, workdir, mode, devices)


@contextlib.contextmanager
def _lock(path: str, what: str, active: bool = True, shared: bool = False):
  """A lock in `<workdir>/locks/` (one model name: its folder and results; or one test /
  inference output), taken by the first process; every process learns whether it was free, so
  that all of them stop together when it is not."""
  with contextlib.ExitStack() as stack:
    error = None
    if active and parallel.is_primary():
      try:
        stack.enter_context(io_utils.lock(path, what, shared=shared))
      except InUseError as e:
        error = e
    if active and parallel.any_process(error is not None)[0]:
      raise error or InUseError(f"{what} is in use by another run (the first process found it locked)")
    yield


def model_lock(model_dir: str, workdir: str = "") -> str:
  """The lock file of a model folder: in the locks/ of the workdir that holds it (where its
  training runs lock it), or of `workdir` for a folder elsewhere ("" for none: no lock). The same
  file however the folder is reached (links, `..`, a relative path), so two spellings of one
  workdir never train one model at once."""
  real = os.path.realpath(model_dir)
  for path in (real, os.path.abspath(model_dir)):  # a models/ folder that is itself a link: as spelled
    parent = os.path.dirname(path)
    if os.path.basename(parent) == "models":
      root = os.path.realpath(os.path.dirname(parent))
      break
  else:
    if not workdir:
      return ""
    root = os.path.realpath(workdir)
  return os.path.join(root, "locks", f"{os.path.basename(real)}.lock")


def _run_training_task(config, workdir, mode, devices, stop_at):
  min_length = min_seq_length(config)
  data_key = dataset.input_key(config.data, min_length)
  loaded = None  # the prepared dataset, once read (its folder is content-addressed: never rewritten)
  if recipe.auto_fields(config):  # settings left to the data are chosen before the model is named
    loaded = _load_or_prepare(config.data, workdir, min_length)
    recipe.resolve(config, task_splits(config.task, loaded[0].sequences)[0], loaded[0].vocab.num_items,
                   parallel.global_device_count(devices))
    config_checks.validate(config, mode)  # what the chosen values allow (e.g. a warmup length below the window)
  name = config.model_name or model_store.find_name(os.path.join(workdir, "models"), config, data_key)
  folder = model_store.Folder(os.path.join(workdir, "models", name))
  results_root = os.path.join(workdir, "results", name)
  is_baseline = config.model.kind in baselines.KINDS
  training = mode in ("train", "all") and not is_baseline
  overwrite = bool(config.train.get("overwrite", False)) and mode in ("train", "all")

  with _lock(model_lock(folder.path, workdir), f"model {name} (in {workdir})", active=mode != "prepare"):
    if training:  # what a killed run left in the folder (the checkpoints' own are Orbax's to clean)
      for parent in (os.path.dirname(folder.path), os.path.dirname(results_root)):
        io_utils.clean_leftovers(parent)  # folders a stopped overwrite was removing
      io_utils.clean_leftovers(folder.path)
      io_utils.clean_leftovers(folder.file("vocab"))
    if mode != "prepare" and not is_baseline:  # before any work: the folder's identity against this config's
      model_store.check(folder, model_store.identity(config, data_key), training=training, overwrite=overwrite,
                        results_dir=results_root)
    if mode != "prepare" and is_baseline and folder.exists:
      raise ConfigError(f"models/{name} holds a trained model: a {config.model.kind} baseline needs another "
                        "config.model_name")
    prepared, data_dir = loaded or _load_or_prepare(config.data, workdir, min_length)
    if dataset.input_key(config.data, min_length) != data_key:  # rewritten since the model was named after it
      raise DataError(f"{config.data.path}: the file changed while this run read it; run again once it is written")
    result = {"data_dir": data_dir, "data_key": data_key}
    if mode == "prepare":
      return result
    identity = model_store.identity(config, data_key, dataset.fingerprint(data_dir))
    if not is_baseline:  # the prepared data itself (a reader change, another vocabulary), before training
      model_store.check(folder, identity, training=training, overwrite=overwrite, results_dir=results_root)
      config.model.read_last = config.model.read_last or (folder.reading() if folder.is_model else "mask")
    _check_results(results_root, identity, overwrite, training)
    train_seqs, splits = task_splits(config.task, prepared.sequences)
    if not is_baseline:  # a schedule in epochs becomes steps of this data (saved so in config.json)
      trainer.resolve_schedule(config, train_seqs)
    if training:
      parallel.barrier("model folder checked")  # every process has read the folder before it is made
      model_store.create(folder, config, identity, data_dir,
                         train_counts=evaluate.popularity_params(train_seqs, prepared.vocab.num_items))
      parallel.barrier("model folder written")
    result.update(model_dir=folder.path, results_dir=results_root, model_name=name)
    return _train_evaluate_predict(config, mode, devices, stop_at, prepared, train_seqs, splits, folder,
                                   results_root, identity, result)


def _train_evaluate_predict(config, mode, devices, stop_at, prepared, train_seqs, splits, folder, results_root,
                            identity, result):
  name = result["model_name"]
  seqs = prepared.sequences
  num_items = prepared.vocab.num_items
  eval_dir = output_dir(results_root, "eval", config) if mode in ("evaluate", "all") else results_root
  predict_dir = output_dir(results_root, "predict", config) if mode in ("predict", "all") else results_root
  result["results_dir"] = eval_dir if mode in ("evaluate", "all") else predict_dir

  def evaluator(split, max_users=0):
    return evaluate.Evaluator(split, prepared.vocab, eval_config=config.eval,
                              max_seq_length=config.model.max_seq_length, devices=devices,
                              seed=config.seed, max_users=max_users)

  if config.model.kind in baselines.KINDS:
    return _run_baseline(config, mode, result, prepared, train_seqs, splits, evaluator, devices, eval_dir, predict_dir,
                         identity)

  # Training curves live with the model; an evaluate/predict-only run logs beside its results,
  # so re-evaluating never changes the model folder (a DVC stage output).
  tracker = Tracker(config, folder.path if mode in ("train", "all") else result["results_dir"], name, job_type=mode)
  tracker.describe(result)
  scorer = evaluate.model_scorer(model_lib.from_config(config.model, num_items))  # validation's and evaluation's
  try:
    if mode in ("train", "all"):
      trained = trainer.train(config, folder.path, train_seqs,
                            evaluator(splits["valid"], config.eval.max_valid_users) if "valid" in splits else None,
                            num_items, tracker, devices, stop_at=stop_at, scorer=scorer)
      result["step"], result["finished"] = trained.step, trained.finished
      result["num_train_steps"] = config.train.num_train_steps  # as resolved from the data
      if not trained.finished:
        logging.info("Training stopped at step %d of %d: run the same command again to continue",
                     trained.step, config.train.num_train_steps)
        return result
    if mode in ("evaluate", "predict", "all"):
      params, step, chosen = model_store.load_params(folder, trainer.create_state(config, num_items),
                                                     config.train.num_train_steps, trainer.time_bound_seconds(config))
      result["checkpoint_step"] = step
      if chosen:
        result["selection"] = chosen
        tracker.summary({f"selection/{k}": v for k, v in chosen.items() if k != "curve"})
      timing = model_store.training_time(folder.path)
      if timing:
        result["training_time"] = timing
        tracker.summary({f"training_time/{k}": v for k, v in timing.items() if v is not None})
    _claim_outputs(config, mode, identity, eval_dir, predict_dir)
    if mode in ("evaluate", "all"):
      popularity = evaluate.popularity_params(train_seqs, num_items)
      for split_name, split in splits.items():
        result[f"{split_name}_metrics"] = _evaluate_split(
            config, evaluator(split), scorer, params, popularity, prepared, split_name, name, eval_dir,
            tracker, stats=prepared.stats, kind=config.model.kind, checkpoint_step=step, chosen=chosen,
            timing=result.get("training_time"))
      tracker.artifact(f"results-{name}", "results", [eval_dir])
    if mode in ("predict", "all"):
      path = os.path.join(predict_dir, "predictions.parquet")
      predict.predict(scorer, params, seqs, prepared.users, prepared.vocab, predict_config=config.predict,
                      max_seq_length=config.model.max_seq_length, devices=devices, path=path)
      if parallel.is_primary():  # which checkpoint made them, beside them (as the metrics files say)
        io_utils.write_json(os.path.join(predict_dir, "predictions_meta.json"), {
            "model_name": name, "checkpoint_step": step, "num_train_steps": config.train.num_train_steps})
      _announce(path)
      result["predictions"] = path
      tracker.artifact(f"predictions-{name}", "predictions", [path])
    if mode in ("train", "all"):
      tracker.artifact(f"model-{name}", "model", [folder.path])
  finally:
    tracker.close()
  return result


def _run_baseline(config, mode, result, prepared, train_seqs, splits, evaluator, devices, eval_dir, predict_dir,
                  identity):
  """most_popular / markov: fitted from the training split when used (counting is instant),
  evaluated with the same evaluator, negatives and metrics as a model."""
  name = result["model_name"]
  num_items = prepared.vocab.num_items
  popularity = evaluate.popularity_params(train_seqs, num_items)
  chain = baselines.MarkovChain(train_seqs, num_items) if config.model.kind == "markov" else None
  if mode in ("train", "all"):
    result["step"] = config.train.num_train_steps  # nothing to train: counts are taken when used
    logging.info("%s: a baseline, fitted from the %d training sequences when evaluated", config.model.kind,
                 len(train_seqs))
  tracker = Tracker(config, result["results_dir"], name, job_type=mode)
  tracker.describe(result)
  _claim_outputs(config, mode, identity, eval_dir, predict_dir)
  try:
    if mode in ("evaluate", "all"):
      for split_name, split in splits.items():
        ev = evaluator(split)
        ranks = baselines.split_ranks(config.model.kind, ev, train_seqs, num_items, config.eval.exclude_history,
                                      chain)
        result[f"{split_name}_metrics"] = _write_split_results(
            config, ranks, {}, prepared, ev, split_name, name, eval_dir, tracker, prepared.stats, config.model.kind,
            checkpoint_step=None)
    if mode in ("predict", "all"):
      path = os.path.join(predict_dir, "predictions.parquet")
      seqs, k = prepared.sequences, min(config.predict.top_k, num_items)
      if chain is None:
        predict.predict(evaluate.popularity_scorer, popularity, seqs, prepared.users, prepared.vocab,
                        predict_config=config.predict, max_seq_length=config.model.max_seq_length,
                        devices=devices, path=path)
      elif parallel.is_primary():  # counting on the host: one file, written by the first process
        tokens = chain.top_items(seqs, k, exclude_history=config.predict.exclude_history)
        if os.path.isdir(path):
          io_utils.remove_path(path)  # an earlier run's parts, where one file goes now (gone as one)
        with io_utils.atomic_path(path) as tmp:
          pd.DataFrame({"user": prepared.users, "items": [prepared.vocab.decode(t) for t in tokens]}).to_parquet(
              tmp, index=False)
      _announce(path)
      result["predictions"] = path
  finally:
    tracker.close()
  return result


def _run_trained_model_task(config, workdir, mode, devices):
  """test / inference: everything about the model comes from its folder, never from the data.
  The model is read as it was trained (its saved config's reading and seed) unless this run sets
  model.read_last; outputs are keyed by the input's content and every setting that made them."""
  given = config.model_name
  model_dir = given if os.path.isdir(given) else os.path.join(workdir, "models", given)  # a path, or a name
  # Shared: any number of test / inference runs read a model at once, but none while a run
  # trains, evaluates or replaces it.
  with _lock(model_lock(model_dir, workdir), f"model {given}", shared=True):
    return _run_on_trained_model(config, workdir, mode, devices, model_store.Folder(model_dir))


def _run_on_trained_model(config, workdir, mode, devices, folder):
  model_dir = folder.path
  if not folder.is_model:
    raise MissingError(f"{model_dir}: no trained model there (no config.json); train one with task "
                       "train_val_test, train_val or train_test first")
  saved = folder.saved()
  identity = folder.saved_identity() or {}
  trained = folder.saved_config()
  name = saved["model_name"]
  if trained.model.get("kind", "bert4rec") in baselines.KINDS:
    raise ConfigError(f"{model_dir} is the {trained.model.kind} baseline: it has no trained parameters; "
                      "evaluate it with a training task (train_val_test, train_val, train_test) instead")
  # How the model reads its input is the trained model's: its reading (unless this run sets one),
  # its seed (the sampled protocol's negatives), its data cleaning and, for test, its minimum length.
  config.model.read_last = config.model.read_last or trained.model.get("read_last") or "mask"
  config.seed = trained.seed
  config.data.drop_duplicates = trained.data.drop_duplicates
  min_length = min_seq_length(config)
  if config.task == "test" and config.data.min_seq_length < 0:
    # The very input the model was trained from (same bytes, same data settings): the users its
    # training run held out, so the metrics are that run's own; any other input: the task's minimum.
    trained_min = min_seq_length(trained)
    if dataset.input_key(config.data, trained_min) == identity.get("data.input"):
      min_length = max(min_length, trained_min)
  vocab_dir = folder.file("vocab")
  vocab = folder.vocab()
  prepared, data_dir = _load_or_prepare(config.data, workdir, min_length, vocab=vocab,
                                        vocab_fingerprint=dataset.vocab_fingerprint(vocab))
  stats = dict(prepared.stats)
  try:  # a statistic only: a model folder without its user list still predicts
    users, trained_users = preprocess.comparable(prepared.users, dataset.load_users(vocab_dir))
    stats["users_unseen_in_training"] = int((~np.isin(users, trained_users)).sum())
  except (OSError, ValueError, KeyError) as e:
    logging.warning("%s cannot be read (%s): users unseen in training not counted", vocab_dir, type(e).__name__)
    stats["users_unseen_in_training"] = None
  logging.info("Against the model's vocabulary: %s", json.dumps(
      {k: v for k, v in stats.items() if "unknown" in k or "unseen" in k or "without" in k}))
  result = {"data_dir": data_dir, "model_dir": model_dir, "stats": stats}
  if mode == "prepare":
    return result

  state = model_store.initial_state(folder, lambda: trainer.create_state(trained, vocab.num_items))
  params, step, chosen = model_store.load_params(folder, state, trained.train.num_train_steps,
                                                 trainer.time_bound_seconds(trained))
  trained.model.read_last = config.model.read_last
  empty = bool((prepared.sequences.lengths == 0).any()) or config.task == "test" and bool(
      (prepared.sequences.lengths[prepared.last_item_known] <= 1).any())
  inner = evaluate.model_scorer(model_lib.from_config(trained.model, vocab.num_items))
  popularity = folder.training_popularity(vocab)  # the training sequences' item counts, saved with the model
  # Users with no known history are ranked by popularity; without any, the plain model scorer
  # (the very computation of the training run's own evaluation).
  scorer, model_params = ((evaluate.with_popularity_fallback(inner), (params, popularity)) if empty
                          else (inner, params))
  L = trained.model.max_seq_length
  source = "synthetic" if config.data.format == "synthetic" else dataset.file_sha256(config.data.path)
  kind = "eval" if config.task == "test" else "predict"
  made_by = {"input": source, "data": config.data.to_dict(), "min_seq_length": min_length,
             "model": model_store.identity_hash(identity), "checkpoint_step": step,
             **_settings(config, kind)}
  stem = os.path.splitext(os.path.basename(config.data.path).removesuffix(".gz"))[0] or config.data.format
  out_dir = os.path.join(workdir, "results", name, f"{config.task}-{_safe(stem)}-{_key(made_by)}")
  with _lock(os.path.join(workdir, "locks", f"{name}.{os.path.basename(out_dir)}.lock"),
             f"the {config.task} output {out_dir}"):
    io_utils.clean_leftovers(out_dir)
    result["results_dir"] = out_dir
    return _test_or_inference(config, devices, result, stats, prepared, vocab, name, out_dir, made_by, scorer,
                              model_params, popularity, L, step, stem, trained, chosen)


def _test_or_inference(config, devices, result, stats, prepared, vocab, name, out_dir, made_by, scorer, model_params,
                       popularity, L, step, stem, trained, chosen=None):
  if config.task == "test":  # before anything is written: a refused input leaves no output folder
    eligible = np.flatnonzero(prepared.last_item_known & (prepared.sequences.lengths >= 1))
    if not len(eligible):
      raise ConfigError(f"{config.data.path}: no user's last item is known to the model: nothing to evaluate")
  tracker = Tracker(config, out_dir, name, job_type=config.task)
  tracker.describe(result)
  try:
    if parallel.is_primary():
      io_utils.write_json(os.path.join(out_dir, SETTINGS_FILE), {"made_by": made_by, "input_path": config.data.path})
    if config.task == "test":
      stats["users_evaluated"] = int(len(eligible))
      stats["users_without_known_history"] = int((prepared.sequences.lengths[eligible] == 1).sum())
      split = preprocess.last_item_split(prepared.sequences, eligible)
      ev = evaluate.Evaluator(split, vocab, eval_config=config.eval, max_seq_length=L, devices=devices,
                              seed=config.seed)
      result["test_metrics"] = _evaluate_split(
          config, ev, scorer, model_params, popularity, prepared, "test", name, out_dir, tracker, stats=stats,
          kind=trained.model.get("kind", "bert4rec"), checkpoint_step=step, chosen=chosen)
    else:
      path = os.path.join(out_dir, "predictions.parquet")
      meta = os.path.join(out_dir, "predictions_meta.json")  # written once the predictions are all in place
      predict.predict(scorer, model_params, prepared.sequences, prepared.users, vocab,
                      predict_config=config.predict, max_seq_length=L, devices=devices, path=path)
      if parallel.is_primary():
        io_utils.write_json(meta,
                            {"model_name": name, "input": config.data.path, "checkpoint_step": step,
                             "data_stats": stats})
        print(f"\npredictions -> {path}\n{json.dumps(stats, indent=1)}", flush=True)
      result["predictions"] = path
      tracker.artifact(f"predictions-{name}-{stem}", "predictions", [path])
    tracker.summary({f"data/{k}": v for k, v in stats.items()})
  finally:
    tracker.close()
  return result


def _settings(config, kind: str) -> dict:
  """The settings that make an output of `kind` ("eval" or "predict"), beyond the model."""
  out = {}
  for field in _OUTPUT_SETTINGS[kind]:
    value = config
    for part in field.split("."):
      value = value[part]
    out[field] = list(value) if isinstance(value, tuple) else value
  return out


def _key(obj) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _safe(text: str, max_bytes: int = 40) -> str:
  """`text` as part of a file name: letters, digits, '_' and '.', at most `max_bytes` bytes (a
  letter of another script takes several), so a results lock named with it stays under 255."""
  out = "".join(ch if ch.isalnum() or ch in "_." else "_" for ch in text)
  return out.encode()[:max_bytes].decode(errors="ignore")  # a letter cut in two is dropped


def _check_results(results_root: str, identity: dict, overwrite: bool, training: bool) -> None:
  """Results another model made under this name (its folder since removed or replaced) stop the
  run before any work, unless config.train.overwrite says to replace them."""
  path = os.path.join(results_root, SETTINGS_FILE)
  if not os.path.isfile(path):
    return
  recorded = io_utils.read_json(path).get("model_identity")
  if recorded in (None, model_store.identity_hash(identity)):
    return
  if overwrite:
    logging.warning("Replacing %s, which another model of this name made, as config.train.overwrite=True asks",
                    results_root)
    parallel.barrier("results checked")  # every process has read them before they go
    if parallel.is_primary():
      io_utils.remove_tree(results_root)
    parallel.barrier("results replaced")
    return
  way = ("--config.train.overwrite=True to replace them" if training else
         "train it again with --mode=train --config.train.overwrite=True, which replaces them")
  raise ConfigError(f"{results_root} holds results of another model of this name (made by another config or "
                    f"data). To go on, use another config.model_name, or {way}")


def output_dir(results_root: str, kind: str, config) -> str:
  """Where this run writes its `kind` outputs: the model's results folder when they are the first
  of their kind there or were made with the same settings; otherwise <kind>-<key>/ beside them,
  so that outputs of other settings never overwrite each other. Writes nothing (_claim_output_dir does)."""
  mine = _settings(config, kind)
  path = os.path.join(results_root, SETTINGS_FILE)
  record = io_utils.read_json(path) if os.path.isfile(path) else {}
  target = results_root
  unrecorded = not record and _made_outputs(results_root)  # from a version that kept no settings.json
  if unrecorded or record.get(kind) not in (None, mine):
    target = os.path.join(results_root, f"{kind}-{_key(mine)}")
    logging.info("%s settings differ from those of the outputs in %s: writing to %s", kind, results_root, target)
    path = os.path.join(target, SETTINGS_FILE)
    record = io_utils.read_json(path) if os.path.isfile(path) else {}
  return target


def _claim_outputs(config, mode: str, identity: dict, eval_dir: str, predict_dir: str) -> None:
  if mode in ("evaluate", "all"):
    _claim_output_dir(eval_dir, "eval", config, identity)
  if mode in ("predict", "all"):
    _claim_output_dir(predict_dir, "predict", config, identity)


def _claim_output_dir(target: str, kind: str, config, identity: dict) -> None:
  """Records in `target`'s settings.json the settings its `kind` outputs are made with: just before
  they are written (after training and the checkpoint's load), so a run stopped earlier leaves no
  claim to outputs it never made."""
  if not parallel.is_primary():
    return
  mine = _settings(config, kind)
  path = os.path.join(target, SETTINGS_FILE)
  record = io_utils.read_json(path) if os.path.isfile(path) else {}
  io_utils.clean_leftovers(target)
  if record.get(kind) != mine or record.get("model_identity") != model_store.identity_hash(identity):
    io_utils.write_json(path, {**record, kind: mine, "model_identity": model_store.identity_hash(identity)})


def _made_outputs(folder: str) -> bool:
  return os.path.isdir(folder) and any(f.endswith(("_metrics.json", ".parquet")) for f in os.listdir(folder))


def _announce(path: str) -> None:
  if parallel.is_primary():
    print(f"\npredictions -> {path}", flush=True)


def _evaluate_split(config, ev, scorer, params, popularity, prepared, split_name, name, out_dir, tracker, stats,
                    kind="bert4rec", checkpoint_step=None, chosen=None, timing=None):
  """Ranks one split for the model (and the popularity baseline), writes JSON (+ per-user file).
  The model's row is named by its kind (bert4rec | sasrec)."""
  ranks = ev.ranks(scorer, params, top_k=config.eval.per_user_top_k)
  extra = {"popularity": ev.metrics(evaluate.popularity_scorer, popularity)} if config.eval.popularity_baseline else {}
  return _write_split_results(config, ranks, extra, prepared, ev, split_name, name, out_dir, tracker, stats, kind,
                              checkpoint_step, chosen, timing)


def _write_split_results(config, ranks, extra_rows, prepared, ev, split_name, name, out_dir, tracker, stats, kind,
                         checkpoint_step, chosen=None, timing=None):
  """`<split>_metrics.json` ({kind: metrics, **extra_rows}, the checkpoint step and how it was
  selected, the settings and the sampled protocol's real negative counts), the per-user file when
  config.eval.per_user_top_k > 0 (user, target, rank[, sampled_rank][, top_items]), the printed
  table and the tracker's record."""
  # The validation split also reports the selection metric (its cut-off may be missing from eval.ks).
  ks = selection.cutoffs(config.eval.ks, config.train.select_metric) if split_name == "valid" else config.eval.ks
  rows = {kind: evaluate.summarize_ranks(ranks, ks), **extra_rows}
  negatives = _negative_counts(ev, config.eval.num_negatives, split_name)
  if not parallel.is_primary():  # every process has every user's ranks; the first one writes
    return rows
  path = os.path.join(out_dir, f"{split_name}_metrics.json")
  io_utils.write_json(path, {"model_name": name, "split": split_name, "metrics": rows, "data_stats": stats,
                             "checkpoint_step": checkpoint_step, **({"selection": chosen} if chosen else {}),
                             **({"training_time": timing} if timing else {}),
                             "settings": _settings(config, "eval"),
                             **({"sampled_negatives": negatives} if negatives else {})})
  if config.eval.per_user_top_k:
    table = {"user": prepared.users[ev.rows], "target": prepared.vocab.decode(ev.targets), "rank": ranks["full"]}
    if "sampled" in ranks:
      table["sampled_rank"] = ranks["sampled"]
    if "top_items" in ranks:  # -inf marks no item (fewer left than asked, or scored NaN): never shown
      table["top_items"] = [prepared.vocab.decode(t[s > -np.inf]) for t, s in zip(ranks["top_items"],
                                                                                  ranks["top_scores"])]
    with io_utils.atomic_path(os.path.join(out_dir, f"{split_name}_per_user.parquet")) as tmp:
      pd.DataFrame(table).to_parquet(tmp, index=False)
  shown = list(rows[kind])
  if config.eval.get("print_metrics", "short") == "short":
    short = ("hr@10", "ndcg@10", "mrr", "sampled_hr@10", "sampled_ndcg@10")
    if split_name == "valid":
      short += (config.train.select_metric,)
    shown = [k for k in shown if k in short] or shown
  print(f"\n{split_name} metrics ({rows[kind]['num_users']} users) -> {path}\n"
        + evaluate.format_table(rows, shown), flush=True)
  tracker.log({f"{split_name}/{k}": v for k, v in rows[kind].items()})
  tracker.summary({f"{split_name}/{k}": v for k, v in rows[kind].items()})
  return rows


def _negative_counts(ev, asked: int, split_name: str) -> Optional[dict]:
  """The sampled protocol's real negatives per user: a warning, and a record, when some users have
  fewer eligible items outside their history than eval.num_negatives asks."""
  counts = ev.negative_counts()
  if counts is None or not len(counts):
    return None
  short = int((counts < asked).sum())
  if short:
    logging.warning("%s: %d of %d users have fewer than eval.num_negatives=%d eligible negatives (fewest %d): "
                    "their sampled ranks are out of fewer items", split_name, short, len(counts), asked,
                    int(counts.min()))
  return {"asked": asked, "fewest": int(counts.min()), "mean": float(counts.mean()), "users_with_fewer": short}


def _load_or_prepare(data_config, workdir: str, min_length: int, **kwargs):
  """dataset.load_or_prepare; with several processes the first one prepares (or finds) the
  dataset while the others wait, then they load what it wrote (a filesystem all can read)."""
  out = dataset.load_or_prepare(data_config, workdir, min_length, **kwargs) if parallel.is_primary() else None
  parallel.barrier("dataset prepared")
  return out if out is not None else dataset.load_or_prepare(data_config, workdir, min_length, **kwargs)


def load_params(config, model_dir: str, num_items: int):
  """Parameters of the latest checkpoint (read only); a clear error when the model was never trained."""
  params, _, _ = model_store.load_params(model_store.Folder(model_dir), trainer.create_state(config, num_items),
                                      config.train.num_train_steps)
  return params
