"""Maximum sequence length: how much history the model reads (the paper: 200 on ML-1M, 50 on
Beauty). Longer windows cost attention time quadratically; the synthetic users have 8-40 items."""
CONFIG = "configs/synthetic.py"
SETTINGS = {"train.num_train_steps": 400, "train.eval_every_steps": 0}
SEEDS = (0, 1, 2)


def sweep(add):
  for length in (5, 10, 20, 40):
    add(**{"model.max_seq_length": length, "masking.max_predictions_per_seq": max(2, round(length * 0.3))})
