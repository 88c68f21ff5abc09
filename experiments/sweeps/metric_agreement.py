"""Sampled vs full-ranking metrics: do 100-negative sampled metrics order models the same way
as ranking the whole catalogue? (Krichene & Rendle, KDD 2020: not reliably.) A random search
over model size, training length and learning rate gives models of varied quality; the table
reports Kendall's tau between the two protocols' orderings of them."""
import random

CONFIG = "configs/synthetic.py"
SETTINGS = {"train.eval_every_steps": 0}
SEEDS = (0,)


def sweep(add):
  rng = random.Random(0)  # a fixed draw, so the sweep's points (and its resumability) are stable
  for _ in range(10):
    hidden = rng.choice((16, 32, 64))
    add(**{"model.hidden_size": hidden, "model.intermediate_size": 4 * hidden,
           "train.num_train_steps": rng.choice((50, 100, 200, 400)),
           "train.learning_rate": round(10 ** rng.uniform(-3.5, -2.0), 5)})
