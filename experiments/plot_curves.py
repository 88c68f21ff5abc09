"""Training and validation curves of one or more models, from their metrics.jsonl, in one figure.

  python experiments/plot_curves.py projects/beauty/models/<name> [more models or metrics.jsonl ...] \\
      [--metric=ndcg@10] [--out=curves.png]

Left: the training loss per logged step. Right: the periodic validation metric (`valid/<metric>`,
on eval.max_valid_users users) per step, the step validation selected marked with a circle when
the model kept one (selection.json). A resumed run's records are read in order; a step logged
twice (a run resumed from an earlier checkpoint) keeps its last value. Each curve is one run:
there are no error bars.
"""
import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(REPO, "bert4rec_jax")):  # a checkout (installed: the package is importable)
  sys.path.insert(0, REPO)

from bert4rec_jax.errors import one_line  # noqa: E402


def read_curves(path: str, metric: str) -> dict:
  """{'train': [(step, loss)], 'valid': [(step, value)], 'selected': step or None, 'users': n} of a
  model folder or a metrics.jsonl file."""
  records = path if path.endswith(".jsonl") else os.path.join(path, "metrics.jsonl")
  if not os.path.isfile(records):
    raise SystemExit(f"error: {records}: no such file (give a model folder or its metrics.jsonl)")
  train, valid, users = {}, {}, None
  with open(records) as f:
    for number, line in enumerate(f, 1):
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        if line.strip():  # a line a killed run cut short: the curve is the rest
          print(f"{records}: line {number} is not JSON; skipped", file=sys.stderr)
        continue
      step = record.get("step")
      if step is None:
        continue  # the final evaluation of a split (all users), not a point of the curve
      if "train/loss" in record:
        train[int(step)] = float(record["train/loss"])
      if f"valid/{metric}" in record:
        valid[int(step)] = float(record[f"valid/{metric}"])
        users = record.get("valid/num_users", users)
  from bert4rec_jax import selection
  saved = selection.recorded(os.path.dirname(os.path.abspath(records)))
  best = selection.Selection(saved["metric"], 0, saved["curve"]).best if saved else None
  selected = best["step"] if best else None
  return {"train": sorted(train.items()), "valid": sorted(valid.items()), "selected": selected, "users": users}


def plot(curves: dict, metric: str, out: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  users = sorted({c["users"] for c in curves.values() if c["users"]})
  for label, c in curves.items():
    if c["train"]:
      left.plot(*zip(*c["train"]), label=label, lw=1.2)
    if c["valid"]:
      line, = right.plot(*zip(*c["valid"]), marker=".", label=label, lw=1.2)
      chosen = dict(c["valid"]).get(c["selected"])
      if chosen is not None:
        right.plot([c["selected"]], [chosen], "o", mfc="none", ms=10, color=line.get_color())
  left.set_title("training loss")
  left.set_xlabel("step (optimizer updates)")
  left.set_ylabel("train/loss (cross-entropy, nats)")
  right.set_title(f"validation {metric}" + (f" ({', '.join(f'{u:,}' for u in users)} users)" if users else ""))
  right.set_xlabel("step (optimizer updates)")
  right.set_ylabel(f"{metric} (mean over validation users)")
  for ax in (left, right):
    ax.grid(alpha=0.3)
    if len(curves) > 1:
      ax.legend(fontsize=7)
  fig.suptitle("one run per curve (no error bars); circle: the step validation selected", fontsize=9)
  fig.tight_layout()
  fig.savefig(out, dpi=120)
  plt.close(fig)


@one_line
def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("models", nargs="+", help="model folders (models/<name>) or metrics.jsonl files")
  ap.add_argument("--metric", default="ndcg@10", help="the validation metric plotted (valid/<metric>)")
  ap.add_argument("--out", default="curves.png", help="the figure (PNG)")
  args = ap.parse_args(argv)
  curves = {}
  for path in args.models:
    label = os.path.basename(os.path.normpath(path if not path.endswith(".jsonl") else os.path.dirname(path)))
    curves[label if label not in curves else path] = read_curves(path, args.metric)
  if not any(c["train"] or c["valid"] for c in curves.values()):
    raise SystemExit(f"error: no training or validation records in {', '.join(args.models)}")
  plot(curves, args.metric, args.out)
  print(args.out)


if __name__ == "__main__":
  main()
