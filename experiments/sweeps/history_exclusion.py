"""History exclusion in evaluation: ranking items the user already has against the target, or
not. Same trained models (eval.* is not part of a model's identity, so each model trains once
and is evaluated both ways); the gap is what a protocol detail alone moves the metrics."""
CONFIG = "configs/synthetic.py"
SETTINGS = {"train.num_train_steps": 400, "train.eval_every_steps": 0}
SEEDS = (0, 1, 2)


def sweep(add):
  for exclude in (True, False):
    add(**{"eval.exclude_history": exclude})
