"""Where a trained model puts its probability by item popularity, against where the targets are.

  python experiments/popularity_calibration.py --workdir=projects/beauty --model=<name> \\
      [--split=valid] [--push_users=300] [--draws=8] [--betas=0.5,1] [--select_beta=0.5,1,1.5,2] [--out=F]

Items are grouped by their training count, at the quintiles of the split's targets' counts (as
`compare_models.py` groups users). For each group, over the split's users (the model's selected
checkpoint, the scores `Recommender.recommend` ranks): the share of the targets in it, the model's
mean softmax mass on its items, its share of the top-10 lists (history excluded as the model's
config says) and NDCG@10 of the users whose target is in it. A model whose mass follows the target
share is calibrated by popularity; one that puts more mass on rarely seen items than their targets
take ranks popular targets too low.

--push_users > 0 also measures, on that many of the split's users, the expected push of one target's
loss on each group's logits (the gradient of the cross-entropy on the logits of the items other
than the target): the full softmax's (its softmax mass) beside the sampled softmax's as the model's
config trains it (train.num_negatives drawn from its sampler, logQ-corrected, the target's own draws
removed), averaged over --draws draws of the negatives. Where the sampled push on rare items falls
short of the full one, training leaves their confident scores unpunished.

--betas: NDCG@10 with beta x log(1 + training count) added to every item's score, a diagnostic of
how far the ranking is from the popularity it would need (read on the split given; it chooses
nothing).

--select_beta: the same term as a rule, measured honestly: the weights given (and 0, the model as it
is) are read on validation, the best is chosen there (ties to the smaller weight), and test is read
once, for the model as it is and with the chosen weight only. Prints JSON.
"""
import argparse
import contextlib
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if os.path.isdir(os.path.join(REPO, "bert4rec_jax")):  # a checkout (installed: the package is importable)
  sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import benchmark  # noqa: E402  (sibling scripts)
import selection_noise  # noqa: E402
from bert4rec_jax.errors import UserError, one_line  # noqa: E402

CHUNK = 512  # users scored at a time


def group_edges(target_counts: np.ndarray, groups: int = 5) -> np.ndarray:
  """Lower bounds of the popularity groups after the first (which starts at 0): the distinct
  quintiles of the targets' training counts."""
  edges = np.unique(np.quantile(target_counts, np.linspace(0, 1, groups + 1)[1:-1]))
  return edges[edges > 0] if len(edges) else edges


def group_of(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
  """Each count's group: 0 below edges[0], g for edges[g - 1] <= count < edges[g]."""
  return np.searchsorted(edges, counts, side="right")


def group_labels(counts: np.ndarray, groups: np.ndarray, num: int) -> list:
  labels = []
  for g in range(num):
    c = counts[groups == g]
    labels.append(f"{int(c.min())}-{int(c.max())}" if len(c) else "")
  return labels


def ranks(scores: np.ndarray, targets: np.ndarray, excluded) -> np.ndarray:
  """0-based rank of each row's target column: the other columns scoring at least as high, the
  row's excluded columns (its history, never its target) left out."""
  s = scores.copy()
  for r, cols in enumerate(excluded):
    cols = np.asarray(cols, np.int64)
    s[r, cols[cols != targets[r]]] = -np.inf
  own = s[np.arange(len(s)), targets]
  return (s >= own[:, None]).sum(axis=1) - 1


def ndcg10(rank: np.ndarray) -> np.ndarray:
  return np.where(rank < 10, 1.0 / np.log2(np.minimum(rank, 10) + 2.0), 0.0)


def softmax(scores: np.ndarray) -> np.ndarray:
  e = np.exp(scores - scores.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


def sampled_push(logits: np.ndarray, target: int, q: np.ndarray, num: int, draws: int, rng) -> np.ndarray:
  """[N] expected gradient of one target's sampled-softmax cross-entropy on each item's logit (the
  items other than the target; the target's own is left at 0): `num` draws with replacement from q,
  each drawn item's term exp(s_j) / (num q_j), the target's draws removed, the partition function
  exp(s_target) plus those terms (`losses.sampled_softmax_ce`), over `draws` independent draws."""
  e = np.exp(logits - logits.max())
  out = np.zeros(len(logits))
  for _ in range(draws):
    k = np.bincount(rng.choice(len(q), size=num, p=q), minlength=len(q)).astype(np.float64)
    k[target] = 0.0
    terms = k * e / (num * q)
    out += terms / (e[target] + terms.sum())
  return out / draws


@one_line
def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--model", required=True, help="the model's name under <workdir>/models")
  p.add_argument("--split", default="valid", choices=["valid", "test"])
  p.add_argument("--users", type=int, default=0, help="the split's first this many users (0: all)")
  p.add_argument("--push_users", type=int, default=0, help="users the sampled softmax's push is measured on")
  p.add_argument("--draws", type=int, default=8, help="draws of the negatives per user for the push")
  p.add_argument("--negatives", type=int, default=0, help="negatives per draw (0: the model's train.num_negatives)")
  p.add_argument("--betas", default="", help="comma-separated weights of log(1 + training count) added to scores")
  p.add_argument("--select_beta", default="", help="comma-separated weights to choose from on validation; test "
                 "is then read once with the chosen one")
  p.add_argument("--out", default="", help="also write the JSON here")
  args = p.parse_args()
  betas, candidates = weights("--betas", args.betas), weights("--select_beta", args.select_beta)
  if candidates and args.split != "valid":
    raise UserError(f"--select_beta chooses on validation: leave --split at valid (it is {args.split!r})")
  if args.users < 0 or args.push_users < 0 or args.draws < 1 or args.negatives < 0:
    raise UserError("--users, --push_users, --negatives: at least 0; --draws: at least 1")
  from bert4rec_jax import io_utils, pipeline
  model_dir = os.path.join(args.workdir, "models", args.model)
  lock_file = pipeline.model_lock(model_dir)  # shared: never while a run trains or replaces the model
  with io_utils.lock(lock_file, f"model {model_dir}", shared=True) if lock_file else contextlib.nullcontext():
    result = measure(args, sorted(set(betas) | set(candidates)), model_dir)
    if candidates:
      result["beta_selection"] = select_beta(args, candidates, model_dir, result)
  benchmark.emit_json(result, args.out)


def weights(flag: str, text: str) -> list:
  try:
    out = [float(b) for b in text.split(",") if b.strip()]
  except ValueError:
    raise UserError(f"{flag}={text!r}: numbers separated by commas") from None
  if not all(np.isfinite(out)):
    raise UserError(f"{flag}={text!r}: finite numbers only")
  return out


def select_beta(args, candidates: list, model_dir: str, valid: dict) -> dict:
  """The weight with the best validation NDCG@10 among 0 and `candidates` (ties: the smaller), and
  test read once: the model as it is and with that weight."""
  on_valid = {0.0: valid["ndcg@10"]}
  on_valid.update({b: valid["ndcg@10_with_popularity_added"][f"{b:g}"] for b in candidates if b})
  chosen = max(sorted(on_valid), key=lambda b: on_valid[b])  # max keeps the first (smallest) of ties
  test = measure(argparse.Namespace(**{**vars(args), "split": "test", "push_users": 0}), [chosen] if chosen else [],
                 model_dir)
  return {"chosen_on": "valid", "validation_ndcg@10": {f"{b:g}": v for b, v in sorted(on_valid.items())},
          "chosen_beta": chosen, "test_users": test["users"], "test_ndcg@10": test["ndcg@10"],
          "test_ndcg@10_with_chosen_beta": test["ndcg@10_with_popularity_added"].get(f"{chosen:g}", test["ndcg@10"])}


def measure(args, betas, model_dir: str) -> dict:
  from bert4rec_jax import pipeline
  from bert4rec_jax.api import Recommender
  _, config, prepared = selection_noise.trained_model(args.workdir, model_dir, "scores to calibrate")
  train_seqs, splits = pipeline.task_splits(config.task, prepared.sequences)
  if args.split not in splits:
    raise UserError(f"{model_dir}: its task {config.task!r} has no {args.split} split (it has {', '.join(splits)})")
  split = splits[args.split]
  vocab = prepared.vocab
  n = vocab.num_items
  rec = Recommender.load(model_dir)
  if not np.array_equal(np.asarray(rec.vocab.ids), np.asarray(vocab.ids)):
    raise UserError(f"{model_dir}: its item vocabulary is not the prepared data's")
  counts = train_seqs.token_counts(n + 2)[1:n + 1].astype(np.float64)  # column j: token j + 1
  users = len(split.targets) if not args.users else min(args.users, len(split.targets))
  targets = np.asarray(split.targets[:users], np.int64) - 1
  histories = [np.asarray(split.history[u], np.int64) - 1 for u in range(users)]
  edges = group_edges(counts[targets])
  item_group = group_of(counts, edges)
  num = len(edges) + 1
  exclude = bool(config.eval.get("exclude_history", True))
  _, table = rec.output_table()
  log_count = np.log1p(counts)
  mass = np.zeros(num)
  top = np.zeros(num)
  gains = {b: np.zeros(users) for b in [0.0] + betas}
  kept = []  # the scores of the users the push is measured on (the first --push_users)
  t0 = time.perf_counter()
  for a in range(0, users, CHUNK):
    b = min(users, a + CHUNK)
    q = rec.query_vectors([vocab.ids[h] for h in histories[a:b]])
    scores = (q @ table.T).astype(np.float64)
    kept.append(scores[:max(0, args.push_users - a)])
    p = softmax(scores)
    mass += np.stack([p[:, item_group == g].sum(axis=1) for g in range(num)], axis=1).sum(axis=0)
    excluded = histories[a:b] if exclude else [np.zeros(0, np.int64)] * (b - a)
    for beta in gains:
      gains[beta][a:b] = ndcg10(ranks(scores + beta * log_count, targets[a:b], excluded))
    hidden = scores.copy()
    for r, cols in enumerate(excluded):
      hidden[r, cols] = -np.inf
    top10 = np.argpartition(-hidden, 10, axis=1)[:, :10] if n > 10 else np.argsort(-hidden, axis=1)
    top += np.bincount(item_group[top10].ravel(), minlength=num)
    print(f"{b:,} of {users:,} users ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
  target_group = item_group[targets]
  labels = group_labels(counts, item_group, num)
  ndcg = gains[0.0]
  result = {
      "command": "python experiments/popularity_calibration.py " + " ".join(sys.argv[1:]),
      "date": time.strftime("%Y-%m-%d"), "model": args.model, "split": args.split, "users": users,
      "items": n, "training_interactions_per_item": float(counts.sum() / max(n, 1)),
      "ndcg@10": float(ndcg.mean()),
      "groups": [{"training_count": labels[g], "items": int((item_group == g).sum()),
                  "target_share": float((target_group == g).mean()), "predicted_mass": float(mass[g] / users),
                  "top10_share": float(top[g] / top.sum()),
                  "ndcg@10_of_its_targets": float(ndcg[target_group == g].mean()) if (target_group == g).any() else None}
                 for g in range(num)],
      "ndcg@10_with_popularity_added": {f"{b:g}": float(v.mean()) for b, v in gains.items() if b},
  }
  if args.push_users:
    result["push"] = push(args, config, np.concatenate(kept), counts, targets, item_group, num, labels)
  return result


def push(args, config, logits, counts, targets, item_group, num, labels) -> dict:
  """The full and the sampled softmax's mean push on each popularity group's logits (`sampled_push`),
  from `logits` [users, N], the scores of the split's first users."""
  from bert4rec_jax import losses
  kind = str(config.train.get("negative_sampler", "popularity"))
  weights = np.ones(len(counts)) if kind == "uniform" else counts + 1.0
  q = np.exp(np.asarray(losses.alias_sampler(weights).log_q, np.float64))  # what the sampler draws (a model
  # trained with the full softmax: what its config's sampler would have drawn)
  q /= q.sum()
  negatives = args.negatives or int(config.train.num_negatives)
  users = len(logits)
  rng = np.random.default_rng(0)
  full, sampled = np.zeros(num), np.zeros(num)
  for u in range(users):
    p = softmax(logits[u:u + 1])[0]
    p[targets[u]] = 0.0
    full += np.bincount(item_group, weights=p, minlength=num)
    sampled += np.bincount(item_group, weights=sampled_push(logits[u], targets[u], q, negatives, args.draws, rng),
                           minlength=num)
  return {"users": users, "negatives": negatives, "sampler": kind,
          "trained_with": losses.step_loss(config.train, len(counts)),
          "draws": args.draws,
          "groups": [{"training_count": labels[g], "full_softmax": float(full[g] / users),
                      "sampled_softmax": float(sampled[g] / users)} for g in range(num)]}


if __name__ == "__main__":
  main()
