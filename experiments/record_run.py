"""Keep what a comparison needs of trained models, without their checkpoints: a record per model
that experiments/compare_models.py takes wherever it takes a model, on any machine that has the data.

  python experiments/record_run.py --workdir=projects/recipe_ml1m --models=<model>[,<model>...] \\
      --out=docs/runs/recipe_ml1m

A record is the folder <out>/<model>: config.json (the model's saved config; a data.path inside
BERT4REC_DATA_DIR is written as $BERT4REC_DATA_DIR/<file>, so the record names no machine's
folders), and for each split of the model's task <split>_metrics.json and <split>_per_user.parquet
(user, target, rank[, sampled_rank]: no top items) of the evaluation compare_models reads, the
model being evaluated first when it has no per-user file yet or one of another checkpoint than the
one it selects now (a model whose training is not over is refused); record.json names the model and the
content hashes of the data it was trained on (compare_models refuses models of other data). With it
a model trained in one session (or on a GPU machine) is compared, paired by user, with models
trained elsewhere, seeds joined by "+" as for models, after its checkpoints are gone. A record is
written whole or not at all, and an existing record that differs (another run under the same name)
is refused, never replaced.
"""
import argparse
import filecmp
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if os.path.isdir(os.path.join(REPO, "bert4rec_jax")):  # a checkout (installed: the package is importable)
  sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

import compare_models  # noqa: E402  (a sibling script)
from bert4rec_jax.errors import UserError, one_line  # noqa: E402

DATA_VAR = "$BERT4REC_DATA_DIR"
RECORD_MARK = compare_models.RECORD_MARK


def data_dir() -> str:
  """The shipped configs' data folder (configs/default.py: BERT4REC_DATA_DIR, else its default)."""
  from bert4rec_jax.configs import default  # a checkout's configs/ or the installed ones
  return default.DATA_DIR


def portable_path(path: str) -> str:
  """A data file inside the data folder as $BERT4REC_DATA_DIR/<file>; any other path as it is."""
  root = data_dir()
  if root and os.path.abspath(path).startswith(os.path.abspath(root) + os.sep):
    return DATA_VAR + "/" + os.path.relpath(os.path.abspath(path), os.path.abspath(root)).replace(os.sep, "/")
  if os.path.isabs(path):  # a record to share would name this machine's folder
    print(f"warning: {path} is outside the data folder {root or '(none)'}, so the record names it as it is; "
          "set BERT4REC_DATA_DIR to the folder holding it to record it as $BERT4REC_DATA_DIR/<file>",
          file=sys.stderr, flush=True)
  return path


def local_path(path: str) -> str:
  """The inverse of portable_path on this machine."""
  if path.startswith(DATA_VAR + "/"):
    root = data_dir()
    if not root:
      raise UserError(f"{path}: set BERT4REC_DATA_DIR to the folder holding the record's data file")
    return os.path.join(root, path[len(DATA_VAR) + 1:])
  return path


SPLITS = {"train_val_test": ("valid", "test"), "train_val": ("valid",), "train_test": ("test",)}


def splits_of(config) -> tuple:
  """The held-out splits a model's training task evaluates (pipeline.task_splits)."""
  return SPLITS[config.task]


def record_files(workdir: str, name: str, staging: str) -> None:
  """Writes model `name`'s record into the empty folder `staging`."""
  import pandas as pd
  from bert4rec_jax import baselines, io_utils
  folder = compare_models.model_folder(workdir, name)
  if compare_models.is_record(folder):
    raise UserError(f"{folder} is a record already: copy it as it is")
  config, model_name = compare_models.saved_config(folder)
  if config.model.kind in baselines.KINDS:
    raise UserError(f"{name} is a {config.model.kind} baseline: compare_models --baselines refits it, no record needed")
  state = compare_models.training_state(folder, config)
  if state["how"] == "partly trained":
    raise UserError(f"{model_name} is partly trained (step {state['newest']:,} of {state['planned']:,}): finish "
                    "its training (run its command again) before recording it")
  results = os.path.join(workdir, "results", model_name)
  splits = splits_of(config)
  why = next((w for w in (compare_models.stale(results, s, folder, state) for s in splits) if w), "")
  if why:  # no ranks yet, or ranks of another checkpoint than the model's now
    print(f"{model_name}: {why}; evaluating it first", flush=True)
    results = compare_models.evaluate_model(config, workdir)[1]
  for split in splits:
    for needed in (f"{split}_metrics.json", f"{split}_per_user.parquet"):
      if not os.path.isfile(os.path.join(results, needed)):
        raise UserError(f"{os.path.join(results, needed)} is missing: evaluate {model_name} first")
    shutil.copyfile(os.path.join(results, f"{split}_metrics.json"), os.path.join(staging, f"{split}_metrics.json"))
    table = pd.read_parquet(os.path.join(results, f"{split}_per_user.parquet"))
    table.drop(columns=["top_items"], errors="ignore").to_parquet(os.path.join(staging, f"{split}_per_user.parquet"),
                                                                   index=False)
  saved = io_utils.read_json(os.path.join(folder, "config.json"))
  saved["config"]["data"]["path"] = portable_path(saved["config"]["data"]["path"])
  saved.pop("data_dir", None)  # this machine's prepared-data folder
  io_utils.write_json(os.path.join(staging, "config.json"), saved)
  io_utils.write_json(os.path.join(staging, RECORD_MARK), {"model_name": model_name, "splits": list(splits),
                                                          "data": compare_models.data_hashes(folder)})


def same_record(a: str, b: str) -> bool:
  names = sorted(os.listdir(a))
  if names != sorted(os.listdir(b)):
    return False
  # parquet bytes carry the writer's version: compare the tables, the rest byte for byte
  import pandas as pd
  for n in names:
    pa, pb = os.path.join(a, n), os.path.join(b, n)
    if n.endswith(".parquet"):
      if not pd.read_parquet(pa).equals(pd.read_parquet(pb)):
        return False
    elif not filecmp.cmp(pa, pb, shallow=False):
      return False
  return True


def record(workdir: str, name: str, out: str) -> str:
  """Writes (or finds identical) the record of model `name` at <out>/<model name>; returns its path."""
  from bert4rec_jax import io_utils
  os.makedirs(out, exist_ok=True)
  io_utils.clean_leftovers(out)  # what a killed recording left
  staging = io_utils.make_temp_dir(out, "record")  # a normal folder's permissions once renamed
  try:
    record_files(workdir, name, staging)
    model_name = io_utils.read_json(os.path.join(staging, RECORD_MARK))["model_name"]
    target = os.path.join(out, model_name)
    if not os.path.exists(target):
      try:  # whole or not at all; onto a record another recording made meanwhile, it fails: compared below
        os.rename(staging, target)
      except OSError:
        if not os.path.isdir(target):
          raise
      else:
        print(f"{model_name}: recorded in {target}")
        return target
    if not (os.path.isdir(target) and same_record(staging, target)):
      raise UserError(f"{target} holds another record of {model_name} (other results or config): "
                      "choose another --out, or remove that record if it is yours to drop")
    print(f"{model_name}: already recorded in {target} (the same)")
    return target
  finally:
    shutil.rmtree(staging, ignore_errors=True)


@one_line
def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True, help="the project folder holding models/ and results/")
  ap.add_argument("--models", required=True, help="comma-separated model names (folders in <workdir>/models)")
  ap.add_argument("--out", required=True, help="the folder the records go into, one sub-folder per model")
  args = ap.parse_args()
  names = [n for n in args.models.split(",") if n]
  if not names:
    raise UserError("--models names no model: give the model names (folders in <workdir>/models), comma-separated")
  for name in names:
    record(args.workdir, name, args.out)


if __name__ == "__main__":
  main()
