"""Ablation sweeps: a sweep file names a base config and the points to run; this script runs
them (one at a time or N processes at once), resumably, and tabulates and plots the results.

  python experiments/sweep.py experiments/sweeps/mask_prob.py                  # synthetic, minutes
  python experiments/sweep.py experiments/sweeps/mask_prob.py --parallel=2     # 2 runs at a time
  python experiments/sweep.py experiments/sweeps/mask_prob.py --config=configs/ml1m.py \\
      --set=train.num_train_steps=2000 --workdir=sweeps/mask_prob_ml1m        # the same on ML-1M

A sweep file is plain Python:

  CONFIG = "configs/synthetic.py"                     # base config (a ":variant" suffix is allowed)
  SETTINGS = {"train.num_train_steps": 400}           # applied to every run, before the point
  SEEDS = (0, 1, 2)                                   # every point runs once per seed
  def sweep(add):                                     # grid, random search, anything
    for p in (0.1, 0.2, 0.4):
      add(**{"masking.masked_lm_prob": p})

Each run is `pipeline.run(config, <workdir>, "train")` then `"evaluate"` in a fresh process, in
its own model folder (named by the config, see bert4rec_jax/pipeline.py), logged to W&B in one
group per sweep. Finished runs are skipped; an interrupted run resumes from its last
checkpoint; runs that share a trained model (points differing only in `eval.*`) share it and
run one after another. Output under --workdir (default sweeps/<sweep name>):

  runs/<run>.json          one record per finished run: overrides, seed, model, metrics, steps, and
                           the settings and data that determined it
  logs/<run>.log           the run's output
  results.csv              one row per run
  results.md               mean +- std over seeds per point, ranked by validation; the chosen point
  plots/<metric>__<key>.png  each validation metric against each swept setting, one line per other setting

A record counts as the run's only when it was made with the settings this command gives that run
(base config, SETTINGS, --config, --set, the point and seed) on the same data (the input file's
content): records made otherwise are refused, never reused or replaced; give such a sweep its own
--workdir. Records written before they kept their settings are refused too, unless
--adopt_old_records says this same command made them (they are then stamped with its settings).

Points are ranked, and one is chosen, by the validation split only (the base config's
train.select_metric, on the selected checkpoint of each run; tasks train_val_test and
train_val). The test numbers stand beside them, reported once for what was chosen, never used to
choose. None is chosen when the points have different numbers of finished seeds, or when the
sweep file sets CHOOSE = False (rows of one table, e.g. models side by side). A sweep without a validation split (train_test)
lists its points unranked.
"""
import argparse
import concurrent.futures
import hashlib
import importlib.util
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(REPO, "bert4rec_jax")):  # a checkout (installed: the package is importable)
  sys.path.insert(0, REPO)

from bert4rec_jax.errors import UserError, one_line  # noqa: E402

# Metrics shown in the table (test split) and plotted (validation split); all others stay in results.csv.
METRICS = ("ndcg@10", "hr@10", "mrr", "sampled_ndcg@10", "sampled_hr@10")


def shipped_sweep(path: str) -> str:
  """`path` when it is a file; else a shipped sweep's name (`recipe`, `recipe.py`,
  `experiments/sweeps/recipe.py` outside a checkout) as that file."""
  if os.path.isfile(path):
    return path
  name = os.path.basename(path)
  candidate = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sweeps",
                           name if name.endswith(".py") else name + ".py")
  if os.path.isfile(candidate):
    return candidate
  raise SystemExit(f"error: {path}: no such sweep file, nor a shipped sweep of that name (see experiments/sweeps/)")


def load_sweep(path: str) -> dict:
  """The sweep file's CONFIG, SETTINGS, SEEDS and list of points (dicts of overrides)."""
  spec = importlib.util.spec_from_file_location("sweep_file", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "sweep"):
    raise SystemExit(f"{path}: a sweep file defines sweep(add) (see experiments/sweep.py)")
  points = []
  module.sweep(lambda **overrides: points.append(dict(overrides)))
  if not points:
    raise SystemExit(f"{path}: sweep(add) added no points")
  return {"config": getattr(module, "CONFIG", "configs/synthetic.py"), "settings": dict(getattr(module, "SETTINGS", {})),
          "seeds": tuple(getattr(module, "SEEDS", (0,))), "points": points, "choose": bool(getattr(module, "CHOOSE", True)),
          "description": (module.__doc__ or "").strip()}


def load_config(spec: str):
  """`configs/x.py[:variant]` (a path from the working folder or the checkout) or a shipped
  config's name (`x`, `x:variant`) -> the ConfigDict, locked (unknown fields raise)."""
  from bert4rec_jax import config_files
  from bert4rec_jax.errors import ConfigError
  path, variant = config_files.split_variant(spec)
  if not os.path.isabs(path) and not os.path.isfile(path) and os.path.isfile(os.path.join(REPO, path)):
    path = os.path.join(REPO, path)
  try:
    config = config_files.load(path + (":" + variant if variant else ""))
  except ConfigError as e:
    raise SystemExit(f"error: {e}") from None
  config.lock()
  return config


def set_field(config, key: str, value):
  """config['a.b.c'] = value, with ConfigDict's type checks; unknown fields are an error."""
  *path, field = key.split(".")
  node = config
  for name in path:
    node = node[name]
  if field not in node:
    raise SystemExit(f"unknown config field {key!r}")
  old = node[field]
  if isinstance(old, bool) and isinstance(value, str):
    value = value.lower() in ("1", "true", "yes")
  elif isinstance(value, str) and not isinstance(old, str):
    value = type(old)(value)  # from --set
  node[field] = tuple(value) if isinstance(old, tuple) else value


def run_id(point: dict, seed: int) -> str:
  """A readable, file-safe, unique name for one (point, seed)."""
  parts = [f"{k.split('.')[-1]}={v}" for k, v in sorted(point.items())] + [f"seed={seed}"]
  text = "_".join(parts)
  safe = "".join(ch if ch.isalnum() or ch in "=.-_" else "-" for ch in text)[:80]
  digest = hashlib.sha256(json.dumps([sorted(point.items()), seed], default=str).encode()).hexdigest()[:6]
  return f"{safe}_{digest}"


# What a run's numbers depend on beyond its model's settings (model_store.settings, the model's
# identity): how it is evaluated and read, which checkpoint validation selects, where training ends.
RESULT_FIELDS = ("eval.exclude_history", "eval.num_negatives", "eval.negative_sampling", "eval.ks", "eval.rank_method",
                 "eval.max_valid_users", "eval.popularity_baseline", "model.read_last", "train.max_training_minutes",
                 "train.eval_every_steps", "train.eval_every_epochs", "train.budget_per_interaction",
                 "train.auto_validations", "data.tfds_name", "data.tfds_split")
DATA_FIELD = "data.input"  # the input data's key (dataset.input_key: the file's content and data settings)


def data_key(config) -> str:
  """dataset.input_key of the run's input: a changed file (the same path) is other data. A tfds
  input is known by its name and split only (read into a file when a run starts)."""
  from bert4rec_jax import dataset, pipeline
  if config.data.format == "tfds":
    return ""
  return dataset.input_key(config.data, pipeline.min_seq_length(config))


def determined_by(config, data: str) -> dict:
  """{setting: value} of everything a run's numbers depend on, as JSON keeps it: the model's
  settings (minus speed-only switches), RESULT_FIELDS, and the input data's key (None: not known
  here, as for --report_only without the data file)."""
  from bert4rec_jax import model_store
  out = {k: v for k, v in model_store.settings(config).items() if k not in model_store.SPEED_ONLY}
  for key in RESULT_FIELDS:
    try:
      out[key] = get_field(config, key)
    except (KeyError, AttributeError):  # a field an older config does not have
      continue
  out[DATA_FIELD] = data
  return json.loads(json.dumps(out, sort_keys=True, default=list))


def setting_differences(recorded: dict, now: dict) -> list:
  """What differs between a record's determined_by and this command's, readably; the data is
  compared only where it is known now."""
  out = []
  for key in sorted(set(recorded) | set(now)):
    if key == DATA_FIELD:
      if now.get(key) is not None and recorded.get(key) != now[key]:
        out.append("the input data (its file's content or data settings)")
    elif recorded.get(key) != now.get(key):
      out.append(f"{key} {recorded.get(key)!r} then, {now.get(key)!r} now")
  return out


def check_records(runs, runs_dir: str, adopt: bool) -> None:
  """Refuses a workdir whose run records were made with other settings or data than this command
  gives their runs, before anything runs or is tabled: they would pass for this command's. Records
  from before records kept their settings are refused too, or with `adopt` taken as this command's
  and stamped so."""
  from bert4rec_jax import io_utils
  old = []
  for r in runs:
    if not os.path.exists(r["record"]):
      continue
    record = io_utils.read_json(r["record"])
    if "determined_by" not in record:
      old.append((r, record))
      continue
    differs = setting_differences(record["determined_by"], r["determined_by"])
    if differs:
      point = ", ".join(f"{k}={v}" for k, v in r["point"].items()) or "the base config"
      raise UserError(f"{r['record']}: run {point}, seed {r['seed']}, "
                      f"was made with other settings than this command gives it ({'; '.join(differs[:3])}"
                      f"{f'; {len(differs) - 3} more' if len(differs) > 3 else ''}): give this sweep another "
                      "--workdir (the records there are kept as they are)")
  if old and not adopt:
    raise UserError(f"{runs_dir}: {len(old)} run record(s) from before records kept the settings that made them, so "
                    "whether this command made them cannot be checked: give this sweep another --workdir, or, if this "
                    "same command made them, run it with --adopt_old_records")
  for r, record in old:
    if r["determined_by"][DATA_FIELD] is None:
      raise UserError(f"{r['record']}: the input data cannot be read here, so the record cannot be adopted: run "
                      "--adopt_old_records where the data file is")
    io_utils.write_json(r["record"], {**record, "determined_by": r["determined_by"]})
  if old:
    print(f"adopted {len(old)} record(s) made before records kept their settings, as this command's", flush=True)


def build_config(sweep: dict, point: dict, seed: int, base_override: str, sets, sweep_name: str):
  config = load_config(base_override or sweep["config"])
  for key, value in sweep["settings"].items():
    set_field(config, key, value)
  for item in sets:
    key, value = item.split("=", 1)
    set_field(config, key, value)
  for key, value in point.items():
    set_field(config, key, value)
  config.seed = seed
  config.eval.per_user_top_k = max(config.eval.per_user_top_k, 10)  # per-user files for compare_models.py
  if not config.wandb.group:
    config.wandb.group = sweep_name
  return config


def child(spec_json: str) -> None:
  """One run, in its own process: train (resuming), evaluate, write the record atomically."""
  spec = json.loads(spec_json)
  _die_with_parent(spec["parent_pid"])
  import ml_collections
  from bert4rec_jax import baselines, io_utils, model_store, pipeline
  config = ml_collections.ConfigDict(spec["config"])
  config.wandb.name = spec["run"]
  t0 = time.time()
  trained = pipeline.run(config, spec["workdir"], mode="train")
  if not trained.get("finished", True):  # baselines train nothing and are always finished
    raise SystemExit(f"training stopped at step {trained['step']} of "
                     f"{trained.get('num_train_steps', config.train.num_train_steps)}")
  out = pipeline.run(config, spec["workdir"], mode="evaluate")
  kind = config.model.kind
  fitted = kind in baselines.KINDS  # counted when evaluated: no steps
  last = trained["step"]
  record = {"run": spec["run"], "point": spec["point"], "seed": spec["seed"], "model_name": out["model_name"],
            "model_dir": out["model_dir"], "results_dir": out["results_dir"],
            "train_seconds": model_store.training_seconds(out["model_dir"], last),
            "validation_seconds": model_store.validation_seconds(out["model_dir"], last),
            "devices": model_store.training_devices(out["model_dir"], last),
            "wall_seconds": time.time() - t0, "steps_trained": None if fitted else last,
            "steps_planned": None if fitted else trained.get("num_train_steps"), "parallel": spec["parallel"],
            "selection": {k: v for k, v in out.get("selection", {}).items() if k != "curve"},
            "valid": out.get("valid_metrics", {}).get(kind, {}), "test": out.get("test_metrics", {}).get(kind, {}),
            "test_popularity": out.get("test_metrics", {}).get("popularity", {}),
            "determined_by": spec["determined_by"]}
  io_utils.write_json(spec["record"], record)


def prepare_and_group(runs, workdir):
  """Prepares each distinct dataset once (children then only read it) and groups runs that
  share a trained model, in order."""
  from bert4rec_jax import pipeline
  groups, data_hash = {}, {}
  for r in runs:
    data_key = json.dumps([r["config"].data.to_dict(), r["config"].task], sort_keys=True, default=str)
    if data_key not in data_hash:
      data_hash[data_key] = pipeline.run(r["config"], workdir, mode="prepare")["data_key"]
    groups.setdefault(pipeline.model_name(r["config"], data_hash[data_key]), []).append(r)
  return list(groups.values())


def _die_with_parent(parent_pid: int) -> None:
  """First thing in a run's process: ask Linux to SIGKILL it when the sweep process dies,
  however that happens, so a killed sweep never leaves runs behind (elsewhere: a no-op). Done in
  the child itself, not in a pre-exec hook, which is unsafe in the multithreaded sweep process."""
  if not sys.platform.startswith("linux"):
    return
  try:
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    return
  if os.getppid() != parent_pid:  # the sweep died before the request took effect
    os._exit(1)


_CHILDREN = set()
_LAUNCH = threading.Lock()  # held while a run starts, so a stop never misses a run being started
_STOPPING = threading.Event()


def _terminate_children(signum, frame):
  """SIGTERM: start no more runs; ask the running ones to stop (each saves a checkpoint after its
  current step and exits, so the next invocation resumes it) and exit once they have. A second
  signal, or a SIGKILL, ends everything at once: the runs die with this process."""
  if _STOPPING.is_set():
    for proc in list(_CHILDREN):
      proc.kill()
    raise SystemExit(128 + signum)
  _STOPPING.set()  # before the lock: a nested second signal then takes the branch above, never the lock
  with _LAUNCH:  # a run being started right now is in _CHILDREN once this is acquired
    for proc in list(_CHILDREN):
      proc.send_signal(signal.SIGTERM)
  raise SystemExit(128 + signum)


def run_group(group, workdir, logs_dir, parallel: int = 1) -> list:
  """Runs one group's runs in order in child processes; returns the failures."""
  failures = []
  for r in group:
    spec = {"config": r["config"].to_dict(), "workdir": workdir, "run": r["run"], "point": r["point"],
            "seed": r["seed"], "record": r["record"], "determined_by": r["determined_by"], "parallel": parallel,
            "parent_pid": os.getpid()}
    log = os.path.join(logs_dir, r["run"] + ".log")
    with open(log, "a") as f:
      with _LAUNCH:
        if _STOPPING.is_set():
          break
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--_run=" + json.dumps(spec, default=list)],
                                stdout=f, stderr=subprocess.STDOUT)  # in this folder: paths mean the same
        _CHILDREN.add(proc)
      try:
        proc.wait()
      finally:
        _CHILDREN.discard(proc)
    if proc.returncode != 0:
      failures.append(f"{r['run']} (exit {proc.returncode}, see {log})")
  return failures


# ----------------------------------------------------------------------------- tables and plots


def kendall_tau(a, b) -> float:
  """Kendall's tau-b of two equally long sequences (ties counted in neither direction)."""
  concordant = discordant = ties_a = ties_b = 0
  for i, j in itertools.combinations(range(len(a)), 2):
    da, db = a[i] - a[j], b[i] - b[j]
    if da == 0 and db == 0:
      continue
    if da == 0:
      ties_a += 1
    elif db == 0:
      ties_b += 1
    elif (da > 0) == (db > 0):
      concordant += 1
    else:
      discordant += 1
  denom = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
  return (concordant - discordant) / denom if denom else float("nan")


def get_field(config, key: str):
  node = config
  for name in key.split("."):
    node = node[name]
  return node


def results_frame(records, values, planned=None):
  """One row per run; `values[run]` holds every swept key's effective value for that run (the
  base config's where the run's point does not set it); `planned[run]` its config's
  num_train_steps, for records that did not keep the steps their run planned."""
  import pandas as pd
  rows = []
  for rec in records:
    row = {"run": rec["run"], "seed": rec["seed"], **{k: _cell(v) for k, v in values[rec["run"]].items()}}
    row.update({f"test/{k}": v for k, v in rec["test"].items()})
    row.update({f"valid/{k}": v for k, v in rec["valid"].items()})
    selection = rec.get("selection", {})
    trained = rec.get("steps_trained")
    steps = rec["steps_planned"] if "steps_planned" in rec else (planned or {}).get(rec["run"])
    steps = steps if steps and steps > 0 else None  # -1: left to the data (recipe), not kept by older records
    ended = ("fitted" if trained is None else "all steps" if steps is None or trained >= steps else
             "stopped early" if selection.get("stopped_early") else "time bound")  # a run ends only so
    row.update({"train_seconds": rec["train_seconds"], "validation_seconds": rec.get("validation_seconds"),
                "model_name": rec["model_name"], "selected_step": selection.get("step"),
                "steps_trained": trained, "steps_planned": steps, "ended_by": ended})
    rows.append(row)
  return pd.DataFrame(rows)


def _cell(v):
  return str(tuple(v)) if isinstance(v, (list, tuple)) else v


def _grouped(frame, keys):
  return frame.groupby(keys, sort=False, dropna=False) if keys else frame.groupby(lambda _: 0)


def summarize(frame, keys, split="test", metrics=METRICS):
  """Mean and std over seeds of one split's metrics for each point (the swept keys' values); the
  std is NaN for a point of one seed (no spread measured)."""
  cols = [f"{split}/{m}" for m in metrics if f"{split}/{m}" in frame]
  grouped = _grouped(frame, keys)
  return grouped[cols].mean(), grouped[cols].std(ddof=1), grouped["seed"].count()


def _mean_std(mean: float, std: float) -> str:
  if math.isnan(mean):
    return "–"
  return f"{mean:.4f} ± " + ("–" if math.isnan(std) else f"{std:.4f}")  # –: one seed, no spread


def steps_cells(frame, keys) -> dict:
  """{point: "trained of planned (how training ended)"} per point: steps trained (a range over
  seeds) of the steps planned, marked where training ended at its time bound or stopped early."""
  cells = {}
  for idx, sub in _grouped(frame, keys):
    trained, planned = sub["steps_trained"].dropna(), sub["steps_planned"].dropna()
    if trained.empty:
      cells[idx if isinstance(idx, tuple) else (idx,)] = "–"  # a baseline: fitted, not trained
      continue
    lo, hi = int(trained.min()), int(trained.max())
    text = f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"
    if not planned.empty:
      plo, phi = int(planned.min()), int(planned.max())
      text += f" of {plo:,}" if plo == phi else f" of {plo:,}–{phi:,}"
    ended = [how for how in ("time bound", "stopped early") if (sub["ended_by"] == how).any()]
    cells[idx if isinstance(idx, tuple) else (idx,)] = text + (f" ({', '.join(ended)})" if ended else "")
  return cells


def _point(keys, idx) -> str:
  """"a.b=1, c=x" for one point, plain Python values (not numpy reprs)."""
  values = idx if isinstance(idx, tuple) else (idx,)
  return ", ".join(f"{k}={v.item() if hasattr(v, 'item') else v}" for k, v in zip(keys, values))


def markdown(frame, keys, sweep, command, devices=(), select="ndcg@10", note="") -> str:
  """The results table: one row per point, ranked by the validation metric `select` (mean over
  seeds) when the runs have a validation split, with the test metrics beside it; the chosen point
  is the first by validation, unless the points have different numbers of seeds or the sweep file
  says nothing is chosen. Without a validation split the points keep their order, unranked, and
  none is named best."""
  mean, std, count = summarize(frame, keys)
  vmean, vstd, _ = summarize(frame, keys, "valid", (select,))
  ranked = f"valid/{select}" in vmean and vmean[f"valid/{select}"].notna().all()
  order = list(vmean[f"valid/{select}"].sort_values(ascending=False, kind="stable").index) if ranked else list(mean.index)
  cols = list(mean.columns)
  seeds = ", ".join(map(str, sorted(frame["seed"].unique())))
  steps = steps_cells(frame, keys) if "steps_trained" in frame else None
  lines = ["# Sweep results", "", sweep["description"], "",
           f"Made by `{command}`{note}" + (f", trained on {' and '.join(devices)}." if devices else "."), ""]
  about = ("Mean ± std over seeds (± –: one seed, no spread). Full ranking excludes the history as configured; "
           "sampled_* is the sampled protocol.")
  if steps is not None:
    about += " Steps: trained of planned, over the seeds."
    if (frame["ended_by"] == "time bound").any():
      about += (" A run marked time bound ended at train.max_training_minutes: how many steps it trained depends on "
                "the machine and on how many runs shared it (--parallel).")
  if ranked:
    beside = " The test columns are reported beside it and were not used to rank or choose." if cols else ""
    lines += [f"Ranked by validation {select} (mean over seeds {seeds}, each run's selected checkpoint).{beside} "
              f"{about}", ""]
  else:
    lines += [f"No validation split (task {frame.attrs.get('task', 'train_test')}): the points are listed, not "
              f"ranked, and none is chosen; every metric column is the test split's, seeds {seeds}. {about}", ""]
  head = (keys + ["seeds"] + (["steps"] if steps is not None else []) + ([f"valid {select}"] if ranked else [])
          + [f"test {c.split('/', 1)[1]}" for c in cols])
  lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for idx in order:
    values = list(idx) if isinstance(idx, tuple) else [idx]
    cells = [str(v) for v in values[:len(keys)]] + [str(int(count.loc[idx]))]
    if steps is not None:
      cells.append(steps[idx if isinstance(idx, tuple) else (idx,)])
    if ranked:
      cells.append(_mean_std(vmean.loc[idx, f"valid/{select}"], vstd.loc[idx, f"valid/{select}"]))
    cells += [_mean_std(mean.loc[idx, c], std.loc[idx, c]) for c in cols]
    lines.append("| " + " | ".join(cells) + " |")
  if ranked and keys:
    best = order[0]
    if not sweep.get("choose", True):
      lines += ["", "Nothing is chosen (as the sweep file says): the rows are ranked by validation to be read, not "
                "to pick one."]
    elif count.nunique() > 1:
      lines += ["", f"No point is chosen: the points have different numbers of finished seeds ({int(count.min())} "
                f"to {int(count.max())}), so their means are not alike; run the same command again to finish the "
                "missing runs (a failed run's output is in logs/)."]
    else:
      test = (f"; its test ndcg@10 {_mean_std(mean.loc[best, 'test/ndcg@10'], std.loc[best, 'test/ndcg@10'])}"
              if "test/ndcg@10" in mean else "")
      lines += ["", f"Chosen by validation {select}: {_point(keys, best)} ({vmean.loc[best, f'valid/{select}']:.4f})"
                f"{test}, over {int(count.loc[best])} seed(s)."]
  split = "valid" if ranked else "test"
  both, _, _ = summarize(frame, keys, split, ("ndcg@10", "sampled_ndcg@10"))
  if f"{split}/ndcg@10" in both and f"{split}/sampled_ndcg@10" in both and len(both) >= 3:
    tau = kendall_tau(list(both[f"{split}/ndcg@10"]), list(both[f"{split}/sampled_ndcg@10"]))
    text = (f"Sampled vs full ranking ({'validation' if ranked else 'test'} split, a comparison of the two "
            f"protocols, not a choice): Kendall's tau between the points' mean NDCG@10 under the two protocols = "
            f"{tau:.3f} over {len(both)} points")
    if ranked:  # on test no point is named best: the test split chooses nothing
      best_full = _point(keys, both[f"{split}/ndcg@10"].idxmax())
      best_sampled = _point(keys, both[f"{split}/sampled_ndcg@10"].idxmax())
      text += (f"; best point by full ranking: {best_full}, by sampled metrics: {best_sampled}"
               + (" (the same)." if best_full == best_sampled else " (they disagree)."))
    lines += ["", text + ("" if ranked else ".")]
  return "\n".join(lines) + "\n"


def plot(frame, keys, out_dir) -> list:
  """Each metric against each swept key, mean ± std over seeds: the validation split's when the
  runs have one (what points are judged by), else the test split's (titled so)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  os.makedirs(out_dir, exist_ok=True)
  written = []
  for key in keys:
    others = [k for k in keys if k != key]
    for metric in METRICS:
      split = "valid" if f"valid/{metric}" in frame and frame[f"valid/{metric}"].notna().all() else "test"
      col = f"{split}/{metric}"
      if col not in frame:
        continue
      fig, ax = plt.subplots(figsize=(5, 3.5))
      for label, sub in (frame.groupby(others, sort=False, dropna=False) if others else [("", frame)]):
        stats = sub.groupby(key, sort=False)[col].agg(["mean", "std", "count"]).fillna(0.0)
        xs = list(stats.index)
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
        order = sorted(range(len(xs)), key=lambda i: xs[i]) if numeric else range(len(xs))
        x = [xs[i] for i in order] if numeric else [str(xs[i]) for i in order]
        name = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(others, label if isinstance(label, tuple)
                                                                     else [label])) if others else None
        ax.errorbar(x, [stats["mean"].iloc[i] for i in order], yerr=[stats["std"].iloc[i] for i in order],
                    marker="o", capsize=3, label=name)
      ax.set_xlabel(key)
      ax.set_ylabel(f"{'validation' if split == 'valid' else 'test'} {metric}")
      ax.set_title(f"{'validation' if split == 'valid' else 'test'} {metric} (mean ± std over seeds)", fontsize=9)
      ax.grid(alpha=0.3)
      if others:
        ax.legend(fontsize=7)
      fig.tight_layout()
      path = os.path.join(out_dir, f"{metric.replace('@', '_at_')}__{key}.png")
      fig.savefig(path, dpi=110)
      plt.close(fig)
      written.append(path)
  return written


def made_by(args, records) -> tuple:
  """(the command that makes these results, a note): a table-only rebuild does not change them, but
  how many runs shared the machine can, where training ends at a time bound, so the --parallel the
  records were made with is part of the command (runs made at several: named in the note)."""
  parallel = sorted({rec["parallel"] for rec in records if rec.get("parallel")})
  command = " ".join(["python experiments/sweep.py", args.sweep]
                     + [f"--config={args.config}"] * bool(args.config) + [f"--set={s}" for s in args.set]
                     + [f"--seeds={args.seeds}"] * bool(args.seeds) + [f"--workdir={args.workdir}"] * bool(args.workdir)
                     + [f"--parallel={parallel[0]}"] * (len(parallel) == 1 and parallel[0] != 1))
  note = f" (its runs made at --parallel={' and '.join(map(str, parallel))})" if len(parallel) > 1 else ""
  return command, note


@one_line
def main():
  if len(sys.argv) == 2 and sys.argv[1].startswith("--_run="):
    return child(sys.argv[1][len("--_run="):])
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("sweep", help="sweep file, e.g. experiments/sweeps/mask_prob.py, or a shipped sweep's name (mask_prob)")
  ap.add_argument("--config", default="", help="base config instead of the sweep file's CONFIG")
  ap.add_argument("--set", action="append", default=[], help="a.b=value for every run (after SETTINGS)")
  ap.add_argument("--seeds", default="", help="comma-separated seeds instead of the sweep file's SEEDS")
  ap.add_argument("--parallel", type=int, default=1, help="runs at a time, each in its own process")
  ap.add_argument("--workdir", default="", help="default: sweeps/<sweep file name>")
  ap.add_argument("--report_only", action="store_true", help="only rebuild the table and plots from finished runs")
  ap.add_argument("--adopt_old_records", action="store_true", help="take run records written before records kept "
                  "their settings as this command's (only if this same command made them)")
  args = ap.parse_args()

  args.sweep = shipped_sweep(args.sweep)
  sweep = load_sweep(args.sweep)
  name = os.path.splitext(os.path.basename(args.sweep))[0]
  workdir = os.path.abspath(args.workdir or os.path.join("sweeps", name))
  runs_dir, logs_dir = os.path.join(workdir, "runs"), os.path.join(workdir, "logs")
  os.makedirs(runs_dir, exist_ok=True)
  os.makedirs(logs_dir, exist_ok=True)
  seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else sweep["seeds"]
  keys = list(dict.fromkeys(k for p in sweep["points"] for k in p))
  runs, data_keys = [], {}
  for point, seed in itertools.product(sweep["points"], seeds):
    rid = run_id(point, seed)
    config = build_config(sweep, point, seed, args.config, args.set, name)
    data = json.dumps([config.data.to_dict(), config.task], sort_keys=True, default=str)
    if data not in data_keys:
      try:
        data_keys[data] = data_key(config)
      except UserError:  # the data file is not here: a table-only rebuild checks the settings alone
        if not args.report_only:
          raise
        print(f"{config.data.path}: not readable here; the records' data is not checked", flush=True)
        data_keys[data] = None
    runs.append({"run": rid, "point": point, "seed": seed, "record": os.path.join(runs_dir, rid + ".json"),
                 "config": config, "determined_by": determined_by(config, data_keys[data])})
  check_records(runs, runs_dir, args.adopt_old_records)
  todo = [r for r in runs if not os.path.exists(r["record"])]
  print(f"sweep {name}: {len(sweep['points'])} points x {len(seeds)} seeds = {len(runs)} runs; "
        f"{len(runs) - len(todo)} finished, {len(todo)} to run, {args.parallel} at a time -> {workdir}", flush=True)

  failures = []
  signal.signal(signal.SIGTERM, _terminate_children)  # `kill <sweep pid>` stops its runs too
  signal.signal(signal.SIGINT, _terminate_children)  # Ctrl-C: the same (queued runs must not start)
  if todo and not args.report_only:
    from tqdm import tqdm
    groups = prepare_and_group(todo, workdir)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(args.parallel, 1)) as pool, \
         tqdm(total=len(todo), desc="sweep", unit="run") as bar:
      futures = {pool.submit(run_group, g, workdir, logs_dir, args.parallel): g for g in groups}
      for fut in concurrent.futures.as_completed(futures):
        failures += fut.result()
        bar.update(len(futures[fut]))

  records = []
  for r in runs:
    if os.path.exists(r["record"]):
      with open(r["record"]) as f:
        records.append(json.load(f))
  if records:
    frame = results_frame(records, {r["run"]: {k: get_field(r["config"], k) for k in keys} for r in runs},
                          {r["run"]: r["config"].train.num_train_steps for r in runs})
    frame.to_csv(os.path.join(workdir, "results.csv"), index=False)
    devices = sorted({d for rec in records for d in rec.get("devices", [])})
    present = [k for k in keys if k in frame]
    select = runs[0]["config"].train.select_metric or "ndcg@10"
    frame.attrs["task"] = runs[0]["config"].task
    command, note = made_by(args, records)
    text = markdown(frame, present, sweep, command, devices, select, note)
    with open(os.path.join(workdir, "results.md"), "w") as f:
      f.write(text)
    plots = plot(frame, present, os.path.join(workdir, "plots"))
    print("\n" + text)
    print(f"{len(records)}/{len(runs)} runs finished: {workdir}/results.csv, results.md, {len(plots)} plots in plots/")
  if failures:
    print("failed runs:\n  " + "\n  ".join(failures), file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  main()
