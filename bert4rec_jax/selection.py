"""Model selection on the validation split: the best checkpoint, early stopping, the curve.

With a validation split (tasks train_val_test and train_val) and `train.select_metric` set (by
default full-ranking "ndcg@10"), every periodic validation (`train.eval_every_steps`, on
`eval.max_valid_users` users) is checkpointed with its value, the checkpoint with the best value
is kept beside the newest ones, and evaluation, prediction, test and inference use it. With
`train.patience` > 0 training stops once that many validations in a row have not improved on the
best. Ties go to the earlier step. The test split is never read during training: it is
evaluated once, on the selected checkpoint.

The curve lives in `<model folder>/selection.json`, written before the checkpoint of the
validation it records: a run resumed from step S keeps the entries up to S, so a resumed run
selects exactly what an uninterrupted one does. The checkpoint manager keeps the selected step
(model_store.KeepSteps) beside the newest ones.
"""
import logging
import os
import re
from typing import Dict, List, Optional

from bert4rec_jax import io_utils, parallel
from bert4rec_jax.errors import DataError

SELECTION_FILE = "selection.json"
_METRIC = re.compile(r"^(sampled_)?(?:(hr|ndcg)@([1-9][0-9]*)|mrr)$")


def metric_problem(name: str, num_negatives: int) -> Optional[str]:
  """Why `name` cannot be selected on with these evaluation settings (None when it can). Every
  selectable metric is one where higher is better."""
  if name == "":
    return None
  m = _METRIC.match(name)
  if not m:
    return "use a metric where higher is better: ndcg@k, hr@k, mrr, or sampled_ of any"
  sampled, k = bool(m.group(1)), m.group(3)
  if sampled and not num_negatives:
    return "a sampled metric needs config.eval.num_negatives > 0"
  if k is not None and sampled and int(k) > 100:
    return "sampled metrics stop at k=100"
  return None


def cutoffs(ks, metric: str) -> tuple:
  """config.eval.ks plus the selection metric's cut-off (selecting on ndcg@10 computes it even
  when the cut-offs asked for do not include 10)."""
  m = _METRIC.match(metric or "")
  k = int(m.group(3)) if m and m.group(3) else None
  return tuple(sorted(set(ks) | ({k} if k else set())))


class Selection:
  """The validation curve of one model and what it selects.

  curve: [{"step": s, "value": v, "metrics": {...}}] in step order."""

  def __init__(self, metric: str, patience: int, curve: Optional[List[Dict]] = None, users: int = 0,
               read_last: str = ""):
    self.metric, self.patience, self.users, self.read_last = metric, patience, users, read_last
    self.measured = None  # (users, reading) of the validations a resumed curve holds
    self.curve = list(curve or [])

  @property
  def best(self) -> Optional[Dict]:
    if not self.curve:
      return None
    return max(self.curve, key=lambda e: (e["value"], -e["step"]))

  @property
  def since_best(self) -> int:
    """Validations after the best one."""
    best = self.best
    return 0 if best is None else sum(e["step"] > best["step"] for e in self.curve)

  @property
  def should_stop(self) -> bool:
    return bool(self.patience) and self.since_best >= self.patience

  def add(self, step: int, metrics: Dict) -> bool:
    """Records one validation; True when it is the best so far."""
    value = float(metrics[self.metric])
    before = self.best
    self.curve = [e for e in self.curve if e["step"] < step]
    self.curve.append({"step": int(step), "value": value, "metrics": dict(metrics)})
    return before is None or value > before["value"]

  def record(self) -> Dict:
    """What results files and the tracker keep: the metric, the selected step and value, whether
    patience ran out, the curve."""
    best = self.best or {}
    return {"metric": self.metric, "step": best.get("step"), "value": best.get("value"),
            "validated_users": self.users, "read_last": self.read_last, "patience": self.patience, "stopped_early": self.should_stop,
            "curve": [[e["step"], e["value"]] for e in self.curve]}

  def save(self, model_dir: str) -> None:
    if parallel.is_primary():
      io_utils.write_json(os.path.join(model_dir, SELECTION_FILE),
                          {"metric": self.metric, "patience": self.patience, "validated_users": self.users,
                           "read_last": self.read_last, "curve": self.curve})


def load(model_dir: str, metric: str, patience: int, up_to_step: int, users: int = 0,
         read_last: str = "") -> Selection:
  """The selection recorded in a model folder, as it stood at `up_to_step` (the checkpoint a run
  resumes from): later entries belong to steps that run will train again. `scale_problem` says
  whether this run's validation would measure otherwise than the curve's did."""
  found = of_folder(model_dir, up_to_step)
  if found is not None and found.metric != metric:
    logging.warning("%s selected on %s, this run on %s: starting the curve again", model_dir, found.metric, metric)
    found = None
  out = Selection(metric, patience, found.curve if found is not None else [], users, read_last)
  out.measured = (found.users, found.read_last) if found is not None and found.curve else None
  return out


def scale_problem(sel: Selection, model_dir: str) -> Optional[str]:
  """Why a run that will validate (and train) on from `sel`'s curve must not: its validation would
  measure on other users or read the history otherwise (eval.max_valid_users, model.read_last: not
  part of the model without early stopping), and one curve never mixes two scales. None when fine."""
  if sel.measured is None:
    return None
  differ = [f"{what}: {then} -> {now}" for what, then, now in (
      ("users validated (eval.max_valid_users)", sel.measured[0], sel.users),
      ("model.read_last", sel.measured[1], sel.read_last)) if then and now and then != now]
  if not differ:
    return None
  return (f"{model_dir}: its validations so far were measured otherwise ({'; '.join(differ)}); resume with the "
          "settings it validated with, so that one curve selects its checkpoint")


def of_folder(model_dir: str, latest_step: int) -> Optional[Selection]:
  """The folder's own selection (its metric, patience and curve) up to its newest checkpoint
  `latest_step`; None without one (a run without selection, or from before selection was kept)."""
  saved = recorded(model_dir)
  if not saved:
    return None
  return Selection(saved["metric"], saved.get("patience", 0), [e for e in saved["curve"] if e["step"] <= latest_step],
                   saved.get("validated_users", 0), saved.get("read_last", ""))


def recorded(model_dir: str) -> Optional[Dict]:
  """The saved selection of a model folder ({"metric", "patience", "curve", ...}), None without one.
  A damaged one is an error: another checkpoint (the newest) would pass for the selected one, and a
  resumed run would select on half a curve."""
  path = os.path.join(model_dir, SELECTION_FILE)
  if not os.path.isfile(path):
    return None
  try:
    saved = io_utils.read_json(path)
    [(int(e["step"]), float(e["value"])) for e in saved["curve"]]  # noqa: B018 (the shape a curve has)
    str(saved["metric"])
    return saved
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise DataError(f"{path} cannot be read ({type(e).__name__}: {str(e)[:100]}): it records which checkpoint "
                    "validation selected; put back an intact copy, or train the model anew "
                    "(train.overwrite=true)") from e


def selected_step(model_dir: str, latest_step: int) -> Optional[int]:
  """The step the folder's validation curve selects, up to its newest checkpoint (None without a
  curve: a run without selection, or from before selection was kept)."""
  found = of_folder(model_dir, latest_step)
  return found.best["step"] if found is not None and found.best is not None else None


def stopped_early(model_dir: str, latest_step: int) -> bool:
  """Whether training of this folder ended early (its patience ran out by `latest_step`)."""
  found = of_folder(model_dir, latest_step)
  return found is not None and found.should_stop
