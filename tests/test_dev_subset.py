"""experiments/dev_subset.py: a user cut then the k-core filter, against a plain-Python reference."""
import collections
import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def reference(rows, max_user, core):
  rows = [(u, i) for u, i in rows if u <= max_user]
  while True:
    users, items = collections.Counter(u for u, _ in rows), collections.Counter(i for _, i in rows)
    kept = [(u, i) for u, i in rows if users[u] >= core and items[i] >= core]
    if len(kept) == len(rows):
      return kept
    rows = kept


def test_subset_matches_the_reference_and_keeps_each_users_order(tmp_path):
  rng = np.random.default_rng(0)
  rows = [(int(u), int(np.floor(60 * rng.random() ** 2)) + 1) for u in range(1, 301) for _ in range(rng.integers(1, 12))]
  src = tmp_path / "in.txt"
  src.write_text("".join(f"{u} {i}\n" for u, i in rows))
  for max_user, core in ((200, 5), (300, 3), (150, 0)):
    out = tmp_path / f"out_{max_user}_{core}.txt"
    done = subprocess.run([sys.executable, "experiments/dev_subset.py", f"--input={src}", f"--users={max_user}",
                           f"--core={core}", f"--output={out}"], cwd=REPO, capture_output=True, text=True, check=True)
    want = reference(rows, max_user, core)
    got = [tuple(map(int, line.split())) for line in out.read_text().splitlines()]
    assert got == want and len(want) > 100
    summary = json.loads(done.stdout)
    assert (summary["users"], summary["items"], summary["interactions"]) == (
        len({u for u, _ in want}), len({i for _, i in want}), len(want))
  empty = subprocess.run([sys.executable, "experiments/dev_subset.py", f"--input={src}", "--users=3", "--core=50",
                          f"--output={tmp_path / 'none.txt'}"], cwd=REPO, capture_output=True, text=True)
  assert empty.returncode != 0 and "nothing left" in empty.stderr
  (tmp_path / "names.txt").write_text("u1 i1\nu1 i2\n")
  for bad, why in (("names.txt", "integer user and item ids"), ("absent.txt", "No such file")):
    done = subprocess.run([sys.executable, "experiments/dev_subset.py", f"--input={tmp_path / bad}", "--users=3",
                           f"--output={tmp_path / 'none.txt'}"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode != 0 and why in done.stderr and "Traceback" not in done.stderr
