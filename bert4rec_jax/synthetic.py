"""A deterministic synthetic dataset with planted sequential structure.

Each user walks the catalogue with a fixed stride: next = (current + stride) mod N, except
that with probability `noise` a step is a random item drawn by a Zipf popularity. The stride
is visible from the last two items, so a sequence model can predict the next item far better
than popularity can, which makes this a real test that training works. Item ids are shuffled
(the walk is over hidden positions) and user ids are strings, so id decoding is exercised.
"""
import numpy as np
import pandas as pd


def generate(num_users: int, num_items: int, min_length: int, max_length: int, num_strides: int,
             noise: float, seed: int = 0) -> pd.DataFrame:
  """Returns an Interactions frame (`user`: str, `item`: int64), rows in time order per user."""
  if not 2 <= min_length <= max_length:
    raise ValueError(f"synthetic: need 2 <= min_length <= max_length, got {min_length}, {max_length}")
  if num_strides >= num_items:
    raise ValueError("synthetic: num_strides must be smaller than num_items")
  rng = np.random.default_rng(seed)
  popularity = 1.0 / np.arange(1, num_items + 1) ** 0.8
  popularity /= popularity.sum()
  lengths = rng.integers(min_length, max_length + 1, size=num_users)
  strides = rng.integers(1, num_strides + 1, size=num_users)

  walk = np.empty((num_users, max_length), dtype=np.int64)  # hidden positions [U, T]
  walk[:, 0] = rng.choice(num_items, size=num_users, p=popularity)
  for t in range(1, max_length):  # a loop over time steps, vectorised over users
    jump = rng.random(num_users) < noise
    random_items = rng.choice(num_items, size=num_users, p=popularity)
    walk[:, t] = np.where(jump, random_items, (walk[:, t - 1] + strides) % num_items)

  keep = np.arange(max_length)[None, :] < lengths[:, None]  # [U, T]
  item_ids = rng.permutation(num_items) + 1  # hidden position -> public item id (1-based)
  users = np.repeat(np.array([f"user_{u:06d}" for u in range(num_users)]), lengths)
  return pd.DataFrame({"user": users, "item": item_ids[walk[keep]]})
