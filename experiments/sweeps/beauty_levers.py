"""Beauty: what might lift BERT4Rec's full-ranking numbers, each lever alone against the
committed configs/beauty.py at its own 16,000 steps: the softmax over all 54,542 items instead
of 8,192 sampled negatives, a wider model (hidden 128), and a lower mask rate (0.4 instead of
the paper's 0.6). About 2 minutes each on one H100, ~1.5 hours each on 2 CPU cores:

  SWEEPS=beauty_levers bash experiments/gpu_reproduce.sh 370    # on a lent GPU (README, "On a GPU")
  python experiments/sweep.py experiments/sweeps/beauty_levers.py
"""
CONFIG = "configs/beauty.py"
SETTINGS = {"train.num_train_steps": 16_000, "train.next_item_loss_weight": 0.0,  # the config they were run against
            "train.learning_rate": 1e-3, "model.read_last": "mask",
            "train.weight_decay": 0.01, "train.eval_every_steps": 0, "eval.max_valid_users": 0}
SEEDS = (0,)


def sweep(add):
  add(**{"train.loss": "full"})
  add(**{"model.hidden_size": 128, "model.intermediate_size": 512})
  add(**{"masking.masked_lm_prob": 0.4})
