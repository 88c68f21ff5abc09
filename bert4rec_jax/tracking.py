"""Run tracking at the edge: metrics.jsonl in the model folder, plus Weights & Biases.

W&B runs offline by default (no account or network needed); `config.wandb.mode=disabled`
turns it off (the tests do), `online` syncs when the user has an account.
"""
import json
import logging
import os
import subprocess
import time
from typing import Dict, Optional

from bert4rec_jax import parallel


def git_commit() -> str:
  """The commit of the code being run, or '' outside a git checkout."""
  try:
    here = os.path.dirname(os.path.abspath(__file__))
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                          timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return ""


class Tracker:
  """Appends every logged record to metrics.jsonl and mirrors it to W&B. With several processes
  only the first one records (the others' calls do nothing)."""

  def __init__(self, config, model_dir: str, model_name: str, job_type: str = "train"):
    self.path = os.path.join(model_dir, "metrics.jsonl")
    self._active = parallel.is_primary()
    if self._active:
      os.makedirs(model_dir, exist_ok=True)
    self._run = None
    wb = config.wandb
    self._mode = wb.mode
    if wb.mode != "disabled" and self._active:
      import wandb  # imported lazily: slow to import and not needed when disabled
      os.environ.setdefault("WANDB_SILENT", "true")
      self._run = wandb.init(
          project=wb.project, entity=wb.entity or None, name=wb.name or model_name,
          group=wb.group or None, tags=list(wb.tags) or None, mode=wb.mode, job_type=job_type,
          dir=model_dir, config=config.to_dict(), reinit="finish_previous",
          settings=wandb.Settings(console="off"))
      self._run.config.update({"git_commit": git_commit(), "model_name": model_name}, allow_val_change=True)

  def log(self, record: Dict, step: Optional[int] = None) -> None:
    if not self._active:
      return
    record = dict(record, time=time.time(), **({"step": int(step)} if step is not None else {}))
    with open(self.path, "a") as f:
      f.write(json.dumps(record, default=float) + "\n")
    if self._run is not None:
      self._run.log({k: v for k, v in record.items() if k not in ("step", "time")}, step=step)

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
    if self._run is not None:
      try:
        self._run.finish()
      except Exception as e:  # tracking must never lose the results already written
        logging.warning("W&B finish failed: %s", e)
      self._run = None
