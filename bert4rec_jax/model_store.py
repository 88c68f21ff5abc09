"""The model store: what a model folder is, and the only code that reads or writes one.

A model folder is an identity. `<workdir>/models/<name>/` holds

  identity.json       what made the model: every setting that changes it, the key of the input
                      it was prepared from, and the content hashes of the prepared data and of
                      the vocabulary (written once, when the folder is made)
  config.json         the whole config of the run that made it (written once, never rewritten)
  vocab/              items.parquet, users.parquet: what test and inference encode with
  checkpoints/        Orbax; damaged_checkpoints/ holds any that failed to restore
  checksums.json      sha256 of every file of every finished checkpoint, checked before a restore
  selection.json      the validation curve that selects the checkpoint used (`selection`)
  train_time.json, valid_time.json, train_devices.json, metrics.jsonl, wandb/

Any run that would resume, evaluate or serve a folder under another identity stops before any
work with one line naming what differs and the two ways out (another model name, or
`--config.train.overwrite=True`, which replaces the folder and its results). Read-only modes
(`evaluate`, `predict`, tasks `test` and `inference`) never create, move or rewrite anything
under `models/`. Only real corruption moves a checkpoint aside; a checkpoint of another shape
is a config error. One lock per model name keeps two runs from training or writing the same
results at once.
"""
import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import time
from typing import Dict, List, Optional, Tuple

import flax.serialization
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from bert4rec_jax import baselines, dataset, io_utils, parallel, selection
from bert4rec_jax.errors import ConfigError, DataError, MissingError

IDENTITY_FILE = "identity.json"
CONFIG_FILE = "config.json"
TRAIN_TIME_FILE = "train_time.json"  # {step: training seconds of every invocation that led to it}
TRAIN_DEVICES_FILE = "train_devices.json"  # {step: the devices of the invocation that saved it}
VALID_TIME_FILE = "valid_time.json"  # {step: seconds of periodic validation inside those training seconds}
CHECKSUMS_FILE = "checksums.json"  # {step: {file under checkpoints/<step>: sha256}}
# [N] float32: each item's count in the training sequences of the model's task (held-out items not
# counted): the popularity row and fallback of `test`, `inference` and `Recommender`, as its run's.
TRAIN_COUNTS_FILE = os.path.join("vocab", "train_counts.npy")

# Fields that do not change the trained model, left out of its identity (and name), so that,
# e.g., a different log period or device count resumes the same model.
NOT_IN_IDENTITY = {
    "project", "wandb", "tracking", "eval", "predict", "model_name", "model.read_last", "data.path", "data.tfds_name", "data.tfds_split", "data.tfds_data_dir", "data.chunk_rows",
    "data.num_buckets", "distributed", "train.overwrite",
    "train.log_every_steps", "train.eval_every_steps", "train.eval_every_epochs", "train.checkpoint_every_steps",
    "train.keep_checkpoints", "train.training_time_limit_seconds", "train.max_training_minutes", "train.prefetch", "train.num_devices",
    "train.logit_chunk_elements", "train.target_shapes",
    # What the recipe turns into steps (recipe.resolve runs before a model is named): the steps are the identity.
    "train.budget_per_interaction", "train.auto_validations",
}
# Fields added after models were first trained: part of the identity only when set away from
# this value, so that adding a field never renames (and so never orphans) an existing model.
ONLY_IF_CHANGED = {"model.kind": "bert4rec", "train.warmup_seq_length": 0, "train.warmup_seq_steps": 0,
                   "train.next_item_loss_weight": 0.0, "train.select_metric": "ndcg@10", "train.patience": 0,
                   "train.num_epochs": 0.0, "train.num_warmup_epochs": 0.0, "train.length_buckets": False,
                   "train.target_weighting": "batch", "train.next_item_positions": 0, "train.masked_loss_every": 1,
                   "train.spike_clip": 0.0, "masking.last_keep_prob": 0.0}
# Fields added after other models' names were fixed that only BERT4Rec's masked-item loss reads: out of
# every other kind's identity, so that the recipe setting one renames no SASRec or baseline model.
MASKED_ONLY = ("masking.last_keep_prob",)
# What the periodic validation's metrics measure, so which checkpoint is selected and where early
# stopping ends training: part of the identity of a run that validates during training, when set
# away from these values (the sampled protocol's settings only when a sampled metric selects). A
# run that changes one is another model, never a resume that selects across two scales.
SELECTION_SCALE = {"eval.exclude_history": True}
SAMPLED_SCALE = {"eval.num_negatives": 100, "eval.negative_sampling": "popularity"}
# What a schedule in epochs replaces (the step counts then follow from the data).
BY_EPOCHS = {"train.num_epochs": "train.num_train_steps", "train.num_warmup_epochs": "train.num_warmup_steps"}
# Switches that change speed, not the model: in the name's hash (existing names keep their hash),
# but a run that changes one resumes the same model.
SPEED_ONLY = {"train.compact_targets", "train.donate_buffers"}
# The identity's settings that decide how a trained model is served: its network, how histories are
# read, and the seed (the sampled protocol's negatives). config.json must agree with identity.json there.
SERVING = ("model.", "data.", "seed")
# What every refusal of a damaged model folder says to do.
DAMAGED = "the model folder is damaged; put back an intact copy, or train the model anew (train.overwrite=true)"
DATA_KEYS = {"data.input": "the input file or its data settings", "data.content": "the prepared data",
             "data.vocab": "the item vocabulary (items or their counts)"}


def settings(config) -> Dict:
  """{dotted field: value} of every setting that changes the trained model."""
  flat = {}

  def walk(d, prefix=""):
    for k, v in d.items():
      key = prefix + k
      if key in NOT_IN_IDENTITY or (key in ONLY_IF_CHANGED and v == ONLY_IF_CHANGED[key]):
        continue
      if isinstance(v, dict):
        walk(v, key + ".")
      else:
        flat[key] = list(v) if isinstance(v, tuple) else v

  tree = config.to_dict() if hasattr(config, "to_dict") else config
  walk(tree)
  for epochs, steps in BY_EPOCHS.items():
    if flat.get(epochs):
      flat.pop(steps, None)
  if tree.get("model", {}).get("kind", "bert4rec") != "bert4rec":
    for key in MASKED_ONLY:  # read by the masked-item loss only: no other model's name changes with them
      flat.pop(key, None)
  train = tree.get("train", {})
  validates = tree.get("task") in ("train_val_test", "train_val") and bool(
      train.get("eval_every_steps") or train.get("eval_every_epochs"))
  if validates:
    scale = dict(SELECTION_SCALE)
    if str(train.get("select_metric", "ndcg@10")).startswith("sampled_"):
      scale.update(SAMPLED_SCALE)
    for key, default in scale.items():
      value = tree.get("eval", {}).get(key.split(".", 1)[1], default)
      if value != default:
        flat[key] = list(value) if isinstance(value, tuple) else value
  if train.get("patience"):  # early stopping: when (and on which users) validation runs decides where training ends
    flat["eval.max_valid_users"] = tree.get("eval", {}).get("max_valid_users")
    by_epochs = bool(train.get("eval_every_epochs"))
    flat["train.eval_every_epochs" if by_epochs else "train.eval_every_steps"] = train.get(
        "eval_every_epochs" if by_epochs else "eval_every_steps")
  return flat


def model_name(config, data_key: str = "") -> str:
  """The model kind and the seed's scheme, `bert4rec_hs64_msl50_mpps10_nts2000_lr0.001`, plus a hash of every other setting
  that changes the model, including the key of the input data (`dataset.input_key`)."""
  flat = {"data_hash": data_key, **settings(config)}
  digest = hashlib.sha256(json.dumps(flat, sort_keys=True, default=list).encode()).hexdigest()[:8]
  m, t = config.model, config.train
  if m.kind in baselines.KINDS:
    return f"{m.kind}_{digest}"
  length = f"ne{t.num_epochs:g}" if t.get("num_epochs") else f"nts{t.num_train_steps}"
  return (f"{m.get('kind', 'bert4rec')}_hs{m.hidden_size}_msl{m.max_seq_length}"
          f"_mpps{config.masking.max_predictions_per_seq}_{length}_lr{t.learning_rate:g}_{digest}")


def find_name(models_dir: str, config, data_key: str = "") -> str:
  """The automatic name of a config's model in `models_dir`: `model_name`, or the name the same
  model had before names began with the model kind (`hs64_..._<hash>`, the same hash) when only
  a folder of that name is there, so that no model trained before is orphaned."""
  name = model_name(config, data_key)
  kind = config.model.get("kind", "bert4rec")
  legacy = name[len(kind) + 1:] if name.startswith(kind + "_hs") else ""
  if legacy and not os.path.isdir(os.path.join(models_dir, name)) and os.path.isdir(os.path.join(models_dir, legacy)):
    logging.info("Using models/%s, the name this model had before names began with the model kind", legacy)
    return legacy
  return name


def identity(config, data_key: str, fingerprint: Optional[Dict] = None) -> Dict:
  """What makes a model: its settings (minus speed-only switches), the input key and, once the
  data is prepared, the content hashes of the prepared data and vocabulary."""
  out = {k: v for k, v in settings(config).items() if k not in SPEED_ONLY}
  out["data.input"] = data_key
  for k in ("content", "vocab"):
    if fingerprint and fingerprint.get(k):
      out[f"data.{k}"] = fingerprint[k]
  return out


def identity_hash(ident: Dict) -> str:
  return hashlib.sha256(json.dumps(ident, sort_keys=True, default=list).encode()).hexdigest()[:16]


def differences(saved: Dict, wanted: Dict) -> List[str]:
  """Human-readable differences between a folder's identity and a run's. A data hash that one
  side does not know (a folder from before identities were kept) is not a difference; a setting
  that one side lacks counts as its neutral value (ONLY_IF_CHANGED) when it has one."""
  out = []
  for key in sorted(set(saved) | set(wanted)):
    if key in SPEED_ONLY:
      continue
    if key in DATA_KEYS:
      if key in saved and key in wanted and saved[key] != wanted[key]:
        out.append(f"{DATA_KEYS[key]} changed")
      continue
    missing = object()
    a, b = saved.get(key, ONLY_IF_CHANGED.get(key, missing)), wanted.get(key, ONLY_IF_CHANGED.get(key, missing))
    if a != b:
      out.append(f"{key}: {'(not set)' if a is missing else repr(a)} -> {'(not set)' if b is missing else repr(b)}")
  return out


def read_record(path: str, reader, keys=()):
  """`reader(path)` of a file of a model folder (a dict holding `keys`): a missing or damaged one is
  one line that names it, never a traceback or another file's contents."""
  try:
    out = reader(path)
    for key in keys:
      out[key]  # noqa: B018 (what the file must hold)
    return out
  except FileNotFoundError as e:
    raise MissingError(f"{path}: missing from the model folder; put back an intact copy, or train the model anew "
                       "(train.overwrite=true)") from e
  except (OSError, ValueError, KeyError, TypeError, EOFError) as e:  # JSON, Parquet (ArrowInvalid: ValueError)
    raise DataError(f"{path} cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:100]}): {DAMAGED}") from e


class Folder:
  """One model folder: its identity, config, vocabulary, checkpoints and training records."""

  def __init__(self, model_dir: str):
    self.path = model_dir
    self.checkpoints = os.path.join(model_dir, "checkpoints")

  def file(self, name: str) -> str:
    return os.path.join(self.path, name)

  @property
  def exists(self) -> bool:
    """Whether anything but what a killed run left (temporaries) is there."""
    return os.path.isdir(self.path) and any(not f.startswith(io_utils.TMP_PREFIX) for f in os.listdir(self.path))

  @property
  def is_model(self) -> bool:
    return os.path.isfile(self.file(CONFIG_FILE))

  def saved(self) -> Dict:
    """config.json: {'config': ..., 'model_name': ..., 'data_dir': ...}."""
    return read_record(self.file(CONFIG_FILE), io_utils.read_json, ("config", "model_name"))

  def vocab(self) -> "dataset.preprocess.ItemVocab":
    """The model's item vocabulary, checked against the fingerprint its identity recorded: another
    vocabulary (rows reordered, another model's) would map every token to the wrong item."""
    folder = self.file("vocab")
    vocab = read_record(os.path.join(folder, "items.parquet"), lambda _: dataset.load_vocab(folder))
    recorded = None
    if os.path.isfile(self.file(IDENTITY_FILE)):
      recorded = (self.saved_identity() or {}).get("data.vocab")
    else:
      logging.warning("%s has no %s: its vocabulary cannot be checked against the one it was trained with",
                      self.path, IDENTITY_FILE)
    if recorded and dataset.vocab_fingerprint(vocab) != recorded:
      raise DataError(f"{folder}: not the vocabulary this model was trained with (its fingerprint is not the one "
                      f"{IDENTITY_FILE} records); put back the model's own")
    return vocab

  def saved_config(self) -> ml_collections.ConfigDict:
    """config.json's config, checked against identity.json where it decides how the weights are
    served (SERVING: the network, the data reading, the seed of the sampled protocol): an edited
    config (another model kind, size, activation or data cleaning) would build another model
    around these weights, so it is a damaged folder, named in one line, never a model served
    quietly under its old name. Settings of training alone are not compared: an identity written
    before a rule about them was added may lack them."""
    path = self.file(CONFIG_FILE)
    raw = self.saved()["config"]
    missing = [k for k in ("model", "train", "data") if not isinstance(raw, dict) or not isinstance(raw.get(k), dict)]
    if missing:
      raise DataError(f"{path} holds no model config (no {', '.join(missing)} section): {DAMAGED}")
    config = ml_collections.ConfigDict(raw)
    if os.path.isfile(self.file(IDENTITY_FILE)):
      ident = self.saved_identity()
      if not isinstance(ident, dict):
        raise DataError(f"{self.file(IDENTITY_FILE)} holds no identity: {DAMAGED}")
      again = identity(config, ident.get("data.input", ""), {k: ident.get(f"data.{k}") for k in ("content", "vocab")})
      serving = lambda d: {k: v for k, v in d.items() if k.startswith(SERVING)}  # noqa: E731
      diff = differences(serving(ident), serving(again))
      if diff:
        raise DataError(f"{path}: not the config this model was trained with ({IDENTITY_FILE} -> {CONFIG_FILE}: "
                        f"{'; '.join(diff)[:200]}): {DAMAGED}")
    for field in ("max_seq_length", "hidden_size"):  # what every reader builds from
      if field not in config.model:
        raise DataError(f"{path} holds no model config (no model.{field}): {DAMAGED}")
    return config

  def saved_identity(self) -> Optional[Dict]:
    """identity.json, or for a folder made before identities were kept, the identity its
    config.json and vocabulary describe (with the prepared data's hash when that data is still
    on disk). None when the folder holds no record at all."""
    if os.path.isfile(self.file(IDENTITY_FILE)):
      return read_record(self.file(IDENTITY_FILE), io_utils.read_json, ("identity",))["identity"]
    if not self.is_model:
      return None
    saved = self.saved()
    data_dir = saved.get("data_dir", "")
    fingerprint = {}
    vocab_dir = self.file("vocab")
    if os.path.isfile(os.path.join(vocab_dir, "items.parquet")):
      fingerprint["vocab"] = dataset.vocab_fingerprint(dataset.load_vocab(vocab_dir))
    if data_dir and os.path.isfile(os.path.join(data_dir, "meta.json")):
      with contextlib.suppress(Exception):  # a damaged old artifact only means less to compare
        fingerprint["content"] = dataset.fingerprint(data_dir)["content"]
    return identity(ml_collections.ConfigDict(saved["config"]), os.path.basename(data_dir), fingerprint)

  def training_popularity(self, vocab) -> np.ndarray:
    """[N] float32 popularity the model's training run ranked by: its training sequences' item
    counts (TRAIN_COUNTS_FILE); for a model made before they were kept, its input's counts, held-out
    items included (said in the log)."""
    path = self.file(TRAIN_COUNTS_FILE)
    if os.path.isfile(path):
      counts = read_record(path, lambda p: np.load(p, allow_pickle=False))
      if not isinstance(counts, np.ndarray):  # an .npz archive under that name
        raise DataError(f"{path}: not an array of training counts: {DAMAGED}")
      if counts.shape == (vocab.num_items,):
        if counts.dtype.kind not in "iuf" or not np.isfinite(counts).all() or (counts < 0).any():
          raise DataError(f"{path}: not training counts ({counts.dtype} values, some not finite counts): {DAMAGED}")
        return counts.astype(np.float32)
      logging.warning("%s holds %s counts for %d items: using the vocabulary's", path, counts.shape, vocab.num_items)
    else:
      logging.info("%s was made before its training counts were kept: popularity counts every interaction of "
                   "its input, held-out items included (training it again for one step more keeps them)",
                   os.path.basename(self.path))
    return vocab.counts.astype(np.float32)

  def reading(self) -> str:
    """How the model was read when it was made (model.read_last of its config; 'mask' if unset)."""
    return (self.saved()["config"].get("model", {}).get("read_last") or "mask") if self.is_model else "mask"


def initial_state(folder: Folder, create):
  """create(): the initial state built from a model folder's saved config. In a folder without
  identity.json (nothing to check config.json against), a config that builds no model is the
  folder's fault, named in one line, not a traceback from deep inside the model; with it, any
  failure is ours and keeps its traceback."""
  if os.path.isfile(folder.file(IDENTITY_FILE)):
    return create()
  try:
    return create()
  except (AssertionError, AttributeError, KeyError, TypeError, ConfigError) as e:
    raise DataError(f"{folder.file(CONFIG_FILE)} describes no model these weights fit ({type(e).__name__}: "
                    f"{' '.join(str(e).split())[:120]}): put back the model's own config.json") from e


def check(folder: Folder, wanted: Dict, *, training: bool, overwrite: bool, results_dir: str = "") -> None:
  """Stops (ConfigError) when `folder` holds a model other than `wanted`, before any work.

  training: the run may create the folder; with `overwrite` it replaces a folder (and its results)
  that another config or data made. Read-only runs need the folder to exist.
  """
  if not folder.exists:
    if training:
      return
    raise MissingError(f"{folder.path}: no trained model there; train it first (--mode=train or --mode=all)")
  saved = folder.saved_identity()
  if saved is None:
    why = "holds files but no record of what made them (no config.json)"
  else:
    diff = differences(saved, wanted)
    if not diff:
      return
    why = "was made by another config or data: " + "; ".join(diff)
  name = os.path.basename(folder.path)
  if training and overwrite:
    logging.warning("Replacing %s, which %s, and its results, as config.train.overwrite=True asks", folder.path, why)
    parallel.barrier("model folder read")  # every process has decided before anything goes
    if parallel.is_primary():
      if results_dir and os.path.isdir(results_dir):  # the results first: a stop between leaves no results
        io_utils.remove_tree(results_dir)              # beside a folder that made none of them
      io_utils.remove_tree(folder.path)
    parallel.barrier("model folder replaced")
    return
  ways = ("use another config.model_name (or leave it empty for an automatic one), or "
          "--config.train.overwrite=True to replace it and its results" if training else
          "use the config and data it was trained with, or another config.model_name")
  raise ConfigError(f"models/{name} {why}. To go on, {ways}")


def create(folder: Folder, config, ident: Dict, data_dir: str, train_counts: Optional[np.ndarray] = None) -> None:
  """Makes a new model folder: identity.json first (a run killed at any moment after it leaves a
  folder the same config completes), then config.json, the vocabulary it is trained on and its
  training sequences' item counts. Written once: an existing folder (same identity, checked
  before) keeps its files (a folder from before the counts were kept gets them: the same data)."""
  if not parallel.is_primary():
    return
  os.makedirs(folder.path, exist_ok=True)
  if not os.path.isfile(folder.file(IDENTITY_FILE)):  # also adopts a folder from before identities
    io_utils.write_json(folder.file(IDENTITY_FILE), {"identity": ident, "hash": identity_hash(ident)})
  if not os.path.isfile(folder.file(CONFIG_FILE)):
    io_utils.write_json(folder.file(CONFIG_FILE), {"config": config.to_dict(), "model_name": os.path.basename(folder.path),
                                                   "data_dir": os.path.abspath(data_dir), "versions": versions()})
  for f in ("items.parquet", "users.parquet"):
    target = os.path.join(folder.file("vocab"), f)
    if not os.path.isfile(target):
      with io_utils.atomic_path(target) as tmp:
        shutil.copyfile(os.path.join(data_dir, f), tmp)
  target = folder.file(TRAIN_COUNTS_FILE)
  if train_counts is not None and not os.path.isfile(target):
    with io_utils.atomic_path(target) as tmp:
      with open(tmp, "wb") as f:
        np.save(f, np.asarray(train_counts, np.float32), allow_pickle=False)


# --- checkpoints ---------------------------------------------------------------------------------

class KeepSteps:
  """An Orbax preservation policy: keeps the checkpoints of the steps in `steps`, a set its owner
  updates (training: the step the validation curve selects). Orbax deletes old checkpoints only
  after the newest is committed, so the one selected before is gone only once a newer one is on
  disk to resume from."""

  def __init__(self):
    self.steps = set()

  def should_preserve(self, checkpoints, *, context=None):
    del context
    return [c.step in self.steps for c in checkpoints]


def checkpoint_manager(folder: Folder, keep: int = 1, writable: bool = True, protect: Optional[KeepSteps] = None
                       ) -> ocp.CheckpointManager:
  """Orbax's manager of the folder's checkpoints. Writable: keeps the newest `keep` (and the steps
  `protect` names: the selected checkpoint, see `selection`) and removes what a killed save left
  behind; read-only: creates and deletes nothing."""
  if writable and protect is not None:
    policies = ocp.checkpoint_managers
    options = ocp.CheckpointManagerOptions(
        create=True, cleanup_tmp_directories=True,
        preservation_policy=policies.AnyPreservationPolicy([policies.LatestN(n=keep), protect]))
  elif writable:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True)
  else:
    options = ocp.CheckpointManagerOptions(read_only=True, create=False)
  return ocp.CheckpointManager(os.path.abspath(folder.checkpoints), options=options,
                               item_handlers=ocp.StandardCheckpointHandler())  # so metadata is readable first


def versions() -> Dict[str, Optional[str]]:
  """The installed versions of the libraries that write and read a model's files."""
  out = {}
  for name in ("bert4rec_jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


class _Damaged(Exception):
  """A checkpoint that does not restore. `proven`: its files differ from the checksums recorded when
  it was saved (or are missing); otherwise it carries no checksums and only failed to load, which a
  library that cannot read intact files would do as well."""

  def __init__(self, message: str, proven: bool):
    super().__init__(message)
    self.proven = proven


def _shapes(tree) -> Dict[str, tuple]:
  return {jax.tree_util.keystr(p): tuple(np.shape(x)) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _step_files(manager, step: int) -> Dict[str, str]:
  """{path under the step's folder: sha256} of one checkpoint's files."""
  root = os.path.join(str(manager.directory), str(step))
  out = {}
  for dirpath, _, files in os.walk(root):
    for name in files:
      path = os.path.join(dirpath, name)
      h = hashlib.sha256()
      with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          h.update(block)
      out[os.path.relpath(path, root)] = h.hexdigest()
  return out


def record_checksums(manager, model_dir: str) -> None:
  """Records the checksums of every finished checkpoint that has none yet (and forgets those of
  checkpoints no longer there). Called once a save has finished (Orbax saves asynchronously):
  before the next save and at the end of training, so it never waits on a save in flight."""
  manager.wait_until_finished()  # every process: with several, Orbax may synchronise them here
  if not parallel.is_primary():
    return
  path = os.path.join(model_dir, CHECKSUMS_FILE)
  record = io_utils.read_json(path) if os.path.exists(path) else {}
  steps = {str(s) for s in manager.all_steps()}
  new = {s: v for s, v in record.items() if s in steps}
  for step in steps - set(new):
    new[step] = _step_files(manager, int(step))
  if new != record:
    io_utils.write_json(path, new)


def _checksums(manager) -> Dict:
  path = os.path.join(os.path.dirname(str(manager.directory)), CHECKSUMS_FILE)
  return io_utils.read_json(path) if os.path.exists(path) else {}


def _verify_checksums(manager, step: int, checksums: Dict) -> bool:
  """True when every file of checkpoint `step` is what was recorded when it was saved; False when
  nothing was recorded (saved before checksums were kept, or killed before they were); _Damaged
  when a file is missing or differs."""
  recorded = checksums.get(str(step))
  if not recorded:
    return False
  found = _step_files(manager, step)
  for name, digest in sorted(recorded.items()):
    if found.get(name) != digest:
      raise _Damaged(f"{name} {'is missing' if name not in found else 'fails its checksum'}", proven=True)
  return True


_NOT_DAMAGE = ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory", "Too many open files")


def _check_structure(manager, step: int, state, verified: bool, writable: bool = True) -> None:
  """ConfigError when checkpoint `step` holds parameters of other names or shapes than `state`
  (another config made it); _Damaged when its metadata cannot be read from unverified files."""
  try:
    saved = manager.item_metadata(step).tree
    saved_params = _shapes({"params": dict(saved["params"])})
  except Exception as e:  # Orbax / TensorStore raise many types for damaged files
    if verified:
      raise
    raise _Damaged(f"{type(e).__name__}: {str(e)[:200]}", proven=False) from e
  wanted = _shapes({"params": flax.serialization.to_state_dict(state.params)})
  if saved_params != wanted:
    diff = sorted(set(saved_params.items()) ^ set(wanted.items()))
    where = diff[0][0]
    raise ConfigError(
        f"{manager.directory}/{step}: the checkpoint holds parameters of another model ({where}: "
        f"{saved_params.get(where, 'absent')} saved, {wanted.get(where, 'absent')} in this config): " + (
            "the folder was made by another config; use another config.model_name, or --config.train.overwrite=True "
            "to replace it" if writable else "not the model its folder's config describes; put back an intact copy of "
            "the folder"))


def restore_latest(manager: ocp.CheckpointManager, state, writable: bool = True, order: Optional[List[int]] = None):
  """(state, step) of the newest checkpoint that restores (or the first of `order` that does), or
  (None, 0) when there is none.

  A checkpoint that does not restore because its files are damaged (failing the checksums recorded
  when it was saved, or missing) is skipped with a warning and the one before it used; a writable
  run moves it to damaged_checkpoints/ (kept for inspection, out of the way of the step it will
  write again), a read-only run leaves it where it is. One without checksums (saved before they
  were kept, or by a run killed before it recorded them) that fails to load is skipped as well, but
  moved only once an older checkpoint restores (the libraries read that one, so its own files are
  the likelier fault; it is kept, not lost); when none does, a writable run stops (MissingError)
  and moves none of those, as libraries that cannot read the files would fail on every one. A
  checkpoint whose files are intact but do not restore (no memory, another library version) stops
  the run; one of another model is a ConfigError; neither is moved. With several processes every
  one takes the same branch: a step that fails on any fails on all.
  """
  proven, unproven, checksums = [], [], _checksums(manager)
  for step in (order if order is not None else sorted(manager.all_steps(), reverse=True)):
    restored, failure = None, None
    try:
      verified = _verify_checksums(manager, step, checksums)
      _check_structure(manager, step, state, verified, writable)
      try:
        restored = manager.restore(step, args=ocp.args.StandardRestore(state))
      except Exception as e:  # noqa: BLE001 (Orbax / TensorStore raise many types for damaged files)
        if verified or isinstance(e, MemoryError) or any(t in str(e) for t in _NOT_DAMAGE):
          raise  # intact files (or no memory): the failure is not the checkpoint's, and nothing moves
        raise _Damaged(f"{type(e).__name__}: {str(e)[:300]}", proven=False) from e
    except _Damaged as e:
      failure = e
    failed, was_proven = parallel.any_process(failure is not None, failure is not None and failure.proven)
    if failed:
      why = " ".join(str(failure).split()) if failure is not None else "it failed to restore on another process"
      logging.warning("Checkpoint at step %d in %s cannot be restored (%s); trying the previous one", step,
                      manager.directory, why)
      (proven if was_proven else unproven).append((step, why))
      continue
    _quarantine(manager, [s for s, _ in proven + unproven], writable)  # this one restores: theirs are at fault
    return restored, step
  _quarantine(manager, [s for s, _ in proven], writable)
  if unproven and writable:
    steps = ", ".join(str(s) for s, _ in unproven)
    moved = (f"; those failing their checksums were moved to damaged_checkpoints/ (steps "
             f"{', '.join(str(s) for s, _ in proven)})" if proven else "")
    raise MissingError(
        f"{manager.directory}: no checkpoint restores, and the one(s) without checksums (step(s) {steps}) could "
        f"be damaged or unreadable by these libraries, so they were not moved{moved}. Step {unproven[0][0]}: "
        f"{unproven[0][1]}. {_versions_hint(os.path.dirname(str(manager.directory)))} If their files are damaged, "
        f"move those step folders out of {manager.directory} and run again (training then starts anew)")
  if proven:
    logging.warning("No checkpoint in %s could be restored", manager.directory)
  return None, 0


def _versions_hint(model_dir: str) -> str:
  """Which installed library versions differ from those the model was made with (config.json)."""
  try:
    saved = io_utils.read_json(os.path.join(model_dir, CONFIG_FILE))
  except (OSError, ValueError):
    saved = None
  recorded = saved.get("versions") if isinstance(saved, dict) else None
  if not isinstance(recorded, dict):
    return "The library versions the model was made with are not recorded."
  now = versions()
  differ = [f"{k} {v} (installed: {now.get(k)})" for k, v in sorted(recorded.items()) if now.get(k) != v]
  return (f"It was made with {', '.join(differ)}: install those to read it." if differ
          else "It was made with the installed library versions, so its files are the likelier fault.")


def _quarantine(manager, damaged: List[int], writable: bool) -> None:
  if not damaged or not writable:
    return
  if parallel.is_primary():  # every process found the same ones; one moves them
    aside = os.path.join(os.path.dirname(str(manager.directory)), "damaged_checkpoints")
    os.makedirs(aside, exist_ok=True)
    for step in damaged:
      target = os.path.join(aside, f"{step}-{int(time.time())}")
      os.replace(os.path.join(str(manager.directory), str(step)), target)
      logging.warning("Moved the damaged checkpoint of step %d to %s", step, target)
  parallel.barrier("damaged checkpoints moved")
  manager.reload()


def load_params(folder: Folder, state, num_train_steps: int,
                bound_seconds: float = 0.0) -> Tuple[object, int, Optional[Dict]]:
  """(parameters, step, how it was selected) of the model's checkpoint, read without writing
  anything: the one with the best validation value when training selected on validation (and then
  the selection's record, `selection.Selection.record`), else the newest (and None). That
  checkpoint or none: when it is damaged or gone, a clear error (as for a model never trained), so
  that no other step's results pass for the model's."""
  if not os.path.isdir(folder.checkpoints):
    raise MissingError(f"no checkpoint in {folder.checkpoints}: run with --mode=train (or --mode=all) first")
  manager = checkpoint_manager(folder, writable=False)
  try:
    steps = set(manager.all_steps())
    latest = manager.latest_step() or 0
    found = selection.of_folder(folder.path, latest)
    chosen = found.best["step"] if found is not None and found.best is not None else None
    target = chosen if chosen is not None else latest
    restored, step = (restore_latest(manager, state, writable=False, order=[target]) if target in steps
                      else (None, None))
  finally:
    manager.close()
  if not steps:
    raise MissingError(f"no checkpoint in {folder.checkpoints}: run with --mode=train (or --mode=all) to train the model")
  if restored is None:
    raise MissingError(
        f"{folder.path}: the {'selected' if chosen is not None else 'newest'} checkpoint (step {target}) "
        + ("cannot be restored (damaged, or unreadable by these library versions)" if target in steps
           else "is not on disk") + ", and no other step's results pass for the model's. Run its training again "
        "(--mode=train): when that step is the newest, training moves a damaged checkpoint aside and trains it "
        "again from the one before (the same parameters), or says why it cannot; otherwise remove the "
        "model's folder and its results folder and train it anew (the same config and data train the same model)")
  if not training_ended(folder.path, latest, num_train_steps, bound_seconds):
    logging.warning("Using a partly trained model (step %d of %d%s)", latest, num_train_steps,
                    f"; selected step {step}" if step != latest else "")
  return restored.params, step, found.record() if chosen is not None else None


# --- training time and devices -----------------------------------------------------------------

def _record(model_dir: str, name: str) -> Dict[int, object]:
  path = os.path.join(model_dir, name)
  return {int(k): v for k, v in io_utils.read_json(path).items()} if os.path.exists(path) else {}


def _newest(record: Dict[int, object], step: int) -> Optional[int]:
  """The newest step of a {step: value} record at or before `step` (None: none)."""
  known = [s for s in record if s <= step]
  return max(known) if known else None


def training_seconds(model_dir: str, step: int) -> float:
  """Wall-clock training seconds that produced the checkpoint at `step`, summed over every
  invocation that contributed to it (0 when unknown)."""
  record = _record(model_dir, TRAIN_TIME_FILE)
  at = _newest(record, step)
  return float(record[at]) if at is not None else 0.0


def time_bound_spent(model_dir: str, step: int, bound_seconds: float) -> bool:
  """Whether training of the checkpoint at `step` ended at its time bound (train.max_training_minutes,
  in seconds; 0: none): its training seconds reached it."""
  return bool(bound_seconds) and training_seconds(model_dir, step) >= bound_seconds


def training_ended(model_dir: str, step: int, num_train_steps: int, bound_seconds: float = 0.0) -> bool:
  """Whether the model's training is over at its newest checkpoint `step`: all its steps, stopped
  early on validation, or its time bound spent (else it is partly trained and a rerun continues)."""
  return (step >= num_train_steps or selection.stopped_early(model_dir, step)
          or time_bound_spent(model_dir, step, bound_seconds))


def validation_seconds(model_dir: str, step: int) -> Optional[float]:
  """The part of `training_seconds(model_dir, step)` spent in periodic validation: 0 before any
  training, None when an invocation that led to `step` did not record it (a model trained before
  it was kept)."""
  at = _newest(_record(model_dir, TRAIN_TIME_FILE), step)
  if at is None:
    return 0.0
  valid = _record(model_dir, VALID_TIME_FILE)
  return float(valid[at]) if at in valid else None


def training_time(model_dir: str) -> Optional[dict]:
  """What training the model cost, to its newest checkpoint: {"step", "seconds",
  "validation_seconds", "validation_share"} (periodic validation's part of the seconds; both
  None when it was not recorded), or None for a folder with no record. A step's record is written
  just before its checkpoint, so a kill between the two leaves a record with no checkpoint: the
  newest record with one is the model's (the newest record where no recorded step has one)."""
  record = _record(model_dir, TRAIN_TIME_FILE)
  if not record:
    return None
  checkpoints = Folder(model_dir).checkpoints
  on_disk = [s for s in record if os.path.isdir(os.path.join(checkpoints, str(s)))]
  step = max(on_disk or record)
  valid = _record(model_dir, VALID_TIME_FILE).get(step)  # recorded at the same steps, when it was
  seconds, valid = float(record[step]), None if valid is None else float(valid)
  return {"step": step, "seconds": round(seconds, 2), "validation_seconds": valid,
          "validation_share": round(valid / seconds, 4) if valid is not None and seconds > 0 else None}


def training_devices(model_dir: str, step: int) -> list:
  """The devices (`parallel.describe_devices`) of the invocations that trained the checkpoint at
  `step`, in order, a repeat of the same devices listed once; "unrecorded devices" stands for
  invocations from before this was kept (their time is in train_time.json, their devices not)."""
  def steps(name):
    return sorted((s, v) for s, v in _record(model_dir, name).items() if s <= step)
  devices, timed = steps(TRAIN_DEVICES_FILE), steps(TRAIN_TIME_FILE)
  out = ["unrecorded devices"] if timed and (not devices or timed[0][0] < devices[0][0]) else []
  for _, d in devices:
    if not out or out[-1] != d:
      out.append(d)
  return out


def forget_times_after(model_dir: str, step: int) -> None:
  """Drops the time records of steps after `step`, the checkpoint a run resumes from: steps it trains
  again (a kill between a step's record and its checkpoint leaves a record of a step that has none)."""
  for name in (TRAIN_TIME_FILE, TRAIN_DEVICES_FILE, VALID_TIME_FILE):
    record = _record(model_dir, name)
    if any(s > step for s in record):
      io_utils.write_json(os.path.join(model_dir, name), {str(s): v for s, v in record.items() if s <= step})


def record_training_seconds(model_dir: str, step: int, seconds: float, devices: str,
                             valid_seconds: Optional[float] = None) -> None:
  """Records, for the checkpoint at `step`, the training seconds that led to it, the devices of
  this invocation and (when given) the seconds of periodic validation among them."""
  values = [(TRAIN_TIME_FILE, round(seconds, 2)), (TRAIN_DEVICES_FILE, devices)]
  if valid_seconds is not None:
    values.append((VALID_TIME_FILE, round(valid_seconds, 2)))
  for name, value in values:
    path = os.path.join(model_dir, name)
    record = io_utils.read_json(path) if os.path.exists(path) else {}
    record = {s: v for s, v in record.items() if int(s) < step}  # a re-run from an older checkpoint replaces later ones
    record[str(step)] = value
    io_utils.write_json(path, record)
