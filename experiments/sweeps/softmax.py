"""Full vs sampled softmax: cross-entropy over every item, or over a shared set of negatives
drawn by popularity (or uniformly) with the logQ correction. Sampling is what makes large
catalogues affordable; this shows what it costs in quality at each number of negatives."""
CONFIG = "configs/synthetic.py"
SETTINGS = {"train.num_train_steps": 400, "train.eval_every_steps": 0}
SEEDS = (0, 1, 2)


def sweep(add):
  add(**{"train.loss": "full"})
  for sampler in ("popularity", "uniform"):
    for negatives in (16, 64):
      add(**{"train.loss": "sampled", "train.negative_sampler": sampler, "train.num_negatives": negatives})
