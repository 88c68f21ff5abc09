"""Beauty beyond the committed schedule: BERT4Rec trained 1.5x longer (24,000 steps), and SASRec
with cross-entropy over all items (the model Klenitskiy & Vasilev, RecSys 2023, found stronger
than BERT4Rec on this file) on the committed 16,000 steps. About 2 minutes each on one H100:

  SWEEPS=beauty_long bash experiments/gpu_reproduce.sh 540    # on a lent GPU (README, "On a GPU")
  python experiments/sweep.py experiments/sweeps/beauty_long.py
"""
CONFIG = "configs/beauty.py"
SETTINGS = {"train.num_train_steps": 16_000, "train.next_item_loss_weight": 0.0,  # the config they were run against
            "train.learning_rate": 1e-3, "model.read_last": "mask",
            "train.weight_decay": 0.01, "train.eval_every_steps": 0, "eval.max_valid_users": 0}
SEEDS = (0,)


def sweep(add):
  add(**{"train.num_train_steps": 24_000})
  add(**{"model.kind": "sasrec", "train.loss": "full"})
