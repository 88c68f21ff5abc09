"""A development subset of a `user item` text file (the SASRec/BERT4Rec format: one interaction
per line, a user's lines in time order): the first --users users (by id), then the k-core
filter applied again until it holds (every kept user and item has at least --core interactions),
as public sequential datasets are prepared. Subsetting users alone leaves most items with one or
two interactions, a sparser set than any public one; --core=0 keeps that.

  python experiments/dev_subset.py --input=beauty.txt --users=20000 --core=5 --output=beauty_dev.txt

Prints one JSON line: users, items, interactions, training interactions per item (two items per
user held out for validation and test).
"""
import argparse
import json
import os
import sys

import numpy as np
import pandas as pd

if os.path.isdir(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bert4rec_jax")):  # a checkout
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bert4rec_jax import sources  # noqa: E402
from bert4rec_jax.errors import DataError, one_line  # noqa: E402


def read_pairs(path: str):
  """The file's (users, items) through the project's own text reader (.gz, short lines and bad
  ids named as in training); the user cut needs integer ids."""
  try:
    df = sources.read_text(path)
  except DataError as e:
    raise SystemExit(str(e))
  if not all(pd.api.types.is_integer_dtype(df[c]) for c in ("user", "item")):
    raise SystemExit(f"{path}: expected integer user and item ids, one `user item` pair per line")
  return df["user"].to_numpy(), df["item"].to_numpy()


def k_core(users: np.ndarray, items: np.ndarray, core: int) -> np.ndarray:
  """The rows kept once every remaining user and item has at least `core` rows (iterated)."""
  keep = np.ones(len(users), bool)
  while core > 0:
    _, u_inv, u_count = np.unique(users[keep], return_inverse=True, return_counts=True)
    _, i_inv, i_count = np.unique(items[keep], return_inverse=True, return_counts=True)
    ok = (u_count[u_inv] >= core) & (i_count[i_inv] >= core)
    if ok.all():
      break
    keep[np.flatnonzero(keep)[~ok]] = False
  return keep


@one_line
def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--input", required=True)
  ap.add_argument("--output", required=True)
  ap.add_argument("--users", type=int, required=True, help="keep users whose id is at most this")
  ap.add_argument("--core", type=int, default=5, help="k-core filter applied after the cut (0 = none)")
  args = ap.parse_args()
  users, items = read_pairs(args.input)
  rows = users <= args.users
  users, items = users[rows], items[rows]
  keep = k_core(users, items, args.core)
  users, items = users[keep], items[keep]
  if not len(users):
    raise SystemExit(f"nothing left: no user and item of the first {args.users} users has {args.core} interactions")
  try:
    np.savetxt(args.output, np.stack([users, items], 1), fmt="%d")
  except OSError as e:
    raise SystemExit(f"{args.output}: cannot write ({e.strerror or e})")
  n_users, n_items = len(np.unique(users)), len(np.unique(items))
  print(json.dumps({"output": args.output, "users": n_users, "items": n_items, "interactions": int(len(users)),
                    "training_interactions_per_item": round((len(users) - 2 * n_users) / n_items, 2)}))


if __name__ == "__main__":
  main()
