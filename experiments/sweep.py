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

  runs/<run>.json          one record per finished run: overrides, seed, model, metrics
  logs/<run>.log           the run's output
  results.csv              one row per run
  results.md               mean +- std over seeds per point, ranked by validation; the chosen point
  plots/<metric>__<key>.png  each validation metric against each swept setting, one line per other setting

Points are ranked, and one is chosen, by the validation split only (the base config's
train.select_metric, on the selected checkpoint of each run; tasks train_val_test and
train_val). The test numbers stand beside them, reported once for what was chosen, never used to
choose. A sweep without a validation split (train_test) lists its points unranked.
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

from bert4rec_jax.errors import one_line  # noqa: E402

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
          "seeds": tuple(getattr(module, "SEEDS", (0,))), "points": points,
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
  from bert4rec_jax import io_utils, model_store, pipeline
  config = ml_collections.ConfigDict(spec["config"])
  config.wandb.name = spec["run"]
  t0 = time.time()
  trained = pipeline.run(config, spec["workdir"], mode="train")
  if not trained.get("finished", True):  # baselines train nothing and are always finished
    raise SystemExit(f"training stopped at step {trained['step']} of "
                     f"{trained.get('num_train_steps', config.train.num_train_steps)}")
  out = pipeline.run(config, spec["workdir"], mode="evaluate")
  kind = config.model.kind
  last = trained["step"]
  record = {"run": spec["run"], "point": spec["point"], "seed": spec["seed"], "model_name": out["model_name"],
            "model_dir": out["model_dir"], "results_dir": out["results_dir"],
            "train_seconds": model_store.training_seconds(out["model_dir"], last),
            "validation_seconds": model_store.validation_seconds(out["model_dir"], last),
            "devices": model_store.training_devices(out["model_dir"], last),
            "wall_seconds": time.time() - t0, "steps_trained": last,
            "selection": {k: v for k, v in out.get("selection", {}).items() if k != "curve"},
            "valid": out.get("valid_metrics", {}).get(kind, {}), "test": out.get("test_metrics", {}).get(kind, {}),
            "test_popularity": out["test_metrics"].get("popularity", {})}
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


def run_group(group, workdir, logs_dir) -> list:
  """Runs one group's runs in order in child processes; returns the failures."""
  failures = []
  for r in group:
    spec = {"config": r["config"].to_dict(), "workdir": workdir, "run": r["run"], "point": r["point"],
            "seed": r["seed"], "record": r["record"],
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


def results_frame(records, values):
  """One row per run; `values[run]` holds every swept key's effective value for that run (the
  base config's where the run's point does not set it)."""
  import pandas as pd
  rows = []
  for rec in records:
    row = {"run": rec["run"], "seed": rec["seed"], **{k: _cell(v) for k, v in values[rec["run"]].items()}}
    row.update({f"test/{k}": v for k, v in rec["test"].items()})
    row.update({f"valid/{k}": v for k, v in rec["valid"].items()})
    row.update({"train_seconds": rec["train_seconds"], "validation_seconds": rec.get("validation_seconds"),
                "model_name": rec["model_name"],
                "selected_step": rec.get("selection", {}).get("step")})
    rows.append(row)
  return pd.DataFrame(rows)


def _cell(v):
  return str(tuple(v)) if isinstance(v, (list, tuple)) else v


def summarize(frame, keys, split="test", metrics=METRICS):
  """Mean and std over seeds of one split's metrics for each point (the swept keys' values)."""
  cols = [f"{split}/{m}" for m in metrics if f"{split}/{m}" in frame]
  grouped = frame.groupby(keys, sort=False, dropna=False) if keys else frame.groupby(lambda _: 0)
  mean, std, count = grouped[cols].mean(), grouped[cols].std(ddof=1), grouped["seed"].count()
  return mean, std.fillna(0.0), count


def _point(keys, idx) -> str:
  """"a.b=1, c=x" for one point, plain Python values (not numpy reprs)."""
  values = idx if isinstance(idx, tuple) else (idx,)
  return ", ".join(f"{k}={v.item() if hasattr(v, 'item') else v}" for k, v in zip(keys, values))


def markdown(frame, keys, sweep, command, devices=(), select="ndcg@10") -> str:
  """The results table: one row per point, ranked by the validation metric `select` (mean over
  seeds) when the runs have a validation split, with the test metrics beside it; the chosen point
  is the first by validation. Without a validation split the points keep their order, unranked."""
  mean, std, count = summarize(frame, keys)
  vmean, vstd, _ = summarize(frame, keys, "valid", (select,))
  ranked = f"valid/{select}" in vmean and vmean[f"valid/{select}"].notna().all()
  order = list(vmean[f"valid/{select}"].sort_values(ascending=False, kind="stable").index) if ranked else list(mean.index)
  cols = list(mean.columns)
  seeds = ", ".join(map(str, sorted(frame["seed"].unique())))
  lines = ["# Sweep results", "", sweep["description"], "",
           f"Made by `{command}`" + (f", trained on {' and '.join(devices)}." if devices else "."), ""]
  if ranked:
    lines += [f"Ranked by validation {select} (mean over seeds {seeds}, each run's selected checkpoint); the test "
              "columns are reported beside it and were not used to rank or choose. Mean ± std over seeds. Full "
              "ranking excludes the history as configured; sampled_* is the sampled protocol.", ""]
  else:
    lines += [f"No validation split (task {frame.attrs.get('task', 'train_test')}): the points are listed, not "
              f"ranked, and none is chosen; test split, mean ± std over seeds ({seeds}). Full ranking excludes the "
              "history as configured; sampled_* is the sampled protocol.", ""]
  head = keys + ["seeds"] + ([f"valid {select}"] if ranked else []) + [c.split("/", 1)[1] for c in cols]
  lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for idx in order:
    values = list(idx) if isinstance(idx, tuple) else [idx]
    cells = [str(v) for v in values[:len(keys)]] + [str(int(count.loc[idx]))]
    if ranked:
      cells.append(f"{vmean.loc[idx, f'valid/{select}']:.4f} ± {vstd.loc[idx, f'valid/{select}']:.4f}")
    cells += [f"{mean.loc[idx, c]:.4f} ± {std.loc[idx, c]:.4f}" for c in cols]
    lines.append("| " + " | ".join(cells) + " |")
  if ranked and keys:
    best = order[0]
    test = f"; its test ndcg@10 {mean.loc[best, 'test/ndcg@10']:.4f} ± {std.loc[best, 'test/ndcg@10']:.4f}" if (
        "test/ndcg@10" in mean) else ""
    lines += ["", f"Chosen by validation {select}: {_point(keys, best)} ({vmean.loc[best, f'valid/{select}']:.4f})"
              f"{test}, over {int(count.loc[best])} seed(s)."]
  split = "valid" if ranked else "test"
  both, _, _ = summarize(frame, keys, split, ("ndcg@10", "sampled_ndcg@10"))
  if f"{split}/ndcg@10" in both and f"{split}/sampled_ndcg@10" in both and len(both) >= 3:
    tau = kendall_tau(list(both[f"{split}/ndcg@10"]), list(both[f"{split}/sampled_ndcg@10"]))
    best_full = _point(keys, both[f"{split}/ndcg@10"].idxmax())
    best_sampled = _point(keys, both[f"{split}/sampled_ndcg@10"].idxmax())
    lines += ["", f"Sampled vs full ranking ({'validation' if ranked else 'test'} split, a comparison of the two "
              f"protocols, not a choice): Kendall's tau between the points' mean NDCG@10 under the two protocols = "
              f"{tau:.3f} over {len(both)} points; best point by full ranking: {best_full}, by sampled metrics: "
              f"{best_sampled}" + (" (the same)." if best_full == best_sampled else " (they disagree).")]
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
  runs = []
  for point, seed in itertools.product(sweep["points"], seeds):
    rid = run_id(point, seed)
    runs.append({"run": rid, "point": point, "seed": seed, "record": os.path.join(runs_dir, rid + ".json"),
                 "config": build_config(sweep, point, seed, args.config, args.set, name)})
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
      futures = {pool.submit(run_group, g, workdir, logs_dir): g for g in groups}
      for fut in concurrent.futures.as_completed(futures):
        failures += fut.result()
        bar.update(len(futures[fut]))

  records = []
  for r in runs:
    if os.path.exists(r["record"]):
      with open(r["record"]) as f:
        records.append(json.load(f))
  if records:
    frame = results_frame(records, {r["run"]: {k: get_field(r["config"], k) for k in keys} for r in runs})
    frame.to_csv(os.path.join(workdir, "results.csv"), index=False)
    # The command that makes these results: how many at a time, or a table-only rebuild, does not change them.
    command = " ".join(["python experiments/sweep.py", args.sweep]
                       + [f"--config={args.config}"] * bool(args.config) + [f"--set={s}" for s in args.set]
                       + [f"--seeds={args.seeds}"] * bool(args.seeds) + [f"--workdir={args.workdir}"] * bool(args.workdir))
    devices = sorted({d for rec in records for d in rec.get("devices", [])})
    present = [k for k in keys if k in frame]
    select = runs[0]["config"].train.select_metric or "ndcg@10"
    frame.attrs["task"] = runs[0]["config"].task
    text = markdown(frame, present, sweep, command, devices, select)
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
