"""Run tracking at the edge: metrics.jsonl in the model folder, plus Weights & Biases and,
optionally, TensorBoard event files.

W&B runs offline by default (no account or network needed); `config.wandb.mode=disabled`
turns it off (the tests do), `online` syncs when the user has an account. W&B's own WANDB_MODE
variable, when set (online, offline, disabled; dryrun = offline, run = online), wins over the
config, as a user who sets it expects.
`config.tracking.tensorboard=True` also writes every numeric scalar logged (the same names and
steps as W&B, "@" written "_" as TensorBoard's tag rules want: valid/ndcg_10) to
`<folder>/tensorboard/`, through tensorboardX (the `tensorboard` extra); a record logged without
a step (a final evaluation) takes the last step logged.
"""
import json
import logging
import os
import subprocess
import time
from typing import Dict, Optional

from bert4rec_jax import parallel
from bert4rec_jax.errors import ConfigError


def _git(*args) -> str:
  """What `git <args>` prints in the package's checkout ('' outside one, or without git)."""
  try:
    here = os.path.dirname(os.path.abspath(__file__))
    return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return ""


def git_commit() -> str:
  """The commit of the code being run, or '' outside a git checkout."""
  return _git("rev-parse", "HEAD")


def uncommitted_changes() -> bool:
  """Whether the checkout's tracked files differ from git_commit() (False outside a git checkout):
  a measurement made on such a tree is not the commit's alone."""
  return bool(_git("status", "--porcelain", "--untracked-files=no"))


ENV_MODES = {"online": "online", "offline": "offline", "disabled": "disabled", "dryrun": "offline", "run": "online"}


def wandb_mode(configured: str) -> str:
  """The W&B mode of a run: WANDB_MODE when the environment sets it, else config.wandb.mode."""
  env = os.environ.get("WANDB_MODE", "").strip().lower()
  if not env:
    return configured
  if env not in ENV_MODES:
    raise ConfigError(f"WANDB_MODE={env!r}: use one of {', '.join(ENV_MODES)} (or unset it to use config.wandb.mode)")
  if ENV_MODES[env] != configured:
    logging.info("W&B mode %s from WANDB_MODE (config.wandb.mode=%s)", ENV_MODES[env], configured)
  return ENV_MODES[env]


class Tracker:
  """Appends every logged record to metrics.jsonl and mirrors it to W&B. With several processes
  only the first one records (the others' calls do nothing)."""

  def __init__(self, config, model_dir: str, model_name: str, job_type: str = "train"):
    self.path = os.path.join(model_dir, "metrics.jsonl")
    self._active = parallel.is_primary()
    if self._active:
      os.makedirs(model_dir, exist_ok=True)
    self._run = None
    self.run_dir = None  # the W&B run's folder (what `wandb sync` takes), when W&B is on
    self._tb, self._last_step = None, 0
    if config.get("tracking", {}).get("tensorboard", False) and self._active:
      try:
        from tensorboardX import SummaryWriter
      except ImportError:
        raise ConfigError('tracking.tensorboard=True needs tensorboardX: pip install "bert4rec_jax[tensorboard]" '
                          "(or pip install tensorboardX)") from None
      self._tb = SummaryWriter(logdir=os.path.join(model_dir, "tensorboard"), flush_secs=30)
    wb = config.wandb
    self._mode = wandb_mode(wb.mode)
    if self._mode != "disabled" and self._active:
      import wandb  # imported lazily: slow to import and not needed when disabled
      os.environ.setdefault("WANDB_SILENT", "true")
      self._run = wandb.init(
          project=wb.project, entity=wb.entity or None, name=wb.name or model_name,
          group=wb.group or None, tags=list(wb.tags) or None, mode=self._mode, job_type=job_type,
          dir=model_dir, config=config.to_dict(), reinit="finish_previous",
          settings=wandb.Settings(console="off"))
      self._run.config.update({"git_commit": git_commit(), "model_name": model_name}, allow_val_change=True)
      self.run_dir = os.path.dirname(os.path.abspath(self._run.dir))  # <dir>/wandb/<mode>-run-<time>-<id>

  def describe(self, result: Dict) -> None:
    """Adds the W&B run's folder and mode to a run's `result` (what the command line prints)."""
    if self.run_dir:
      result["wandb_run_dir"], result["wandb_mode"] = self.run_dir, self._mode

  def log(self, record: Dict, step: Optional[int] = None) -> None:
    if not self._active:
      return
    record = dict(record, time=time.time(), **({"step": int(step)} if step is not None else {}))
    with open(self.path, "a") as f:
      f.write(json.dumps(record, default=float) + "\n")
    if self._run is not None:
      self._run.log({k: v for k, v in record.items() if k not in ("step", "time")}, step=step)
    if self._tb is not None:
      self._last_step = int(step) if step is not None else self._last_step  # unstepped: the final evaluation
      for k, v in record.items():
        if k not in ("step", "time") and isinstance(v, (int, float)) and not isinstance(v, bool):
          self._tb.add_scalar(k.replace("@", "_"), v, self._last_step)  # TensorBoard's tag rules

  def summary(self, values: Dict) -> None:
    if self._run is not None:
      self._run.summary.update(values)

  def artifact(self, name: str, kind: str, paths) -> None:
    """Uploads files/folders as a W&B artifact, only when the run is online (offline runs
    would copy every checkpoint into the local W&B folder for nothing)."""
    if self._run is None or self._mode != "online":
      return
    import wandb
    art = wandb.Artifact(name.replace("/", "-"), type=kind)
    for p in paths:
      if os.path.isdir(p):
        art.add_dir(p, name=os.path.basename(p))
      elif os.path.isfile(p):
        art.add_file(p)
    self._run.log_artifact(art)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None
    if self._run is not None:
      try:
        self._run.finish()
      except Exception as e:  # tracking must never lose the results already written
        logging.warning("W&B finish failed: %s", e)
      self._run = None
