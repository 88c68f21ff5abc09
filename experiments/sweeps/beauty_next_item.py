"""Beauty: does adding SASRec's next-item loss to BERT4Rec's masked-item loss lift its
full-ranking numbers? The same encoder, read causally over the unmasked windows, is trained on
every next-item transition as well (train.next_item_loss_weight); it is still evaluated as
BERT4Rec, bidirectionally with [MASK] in the last slot. The weight against configs/beauty.py with
the paper's objective at the short budget of beauty_choices (2,000 steps), then at 6,000 steps, to
set beside that config's 16,000-step model (.0235); the 6,000-step point is now configs/beauty.py. A step with the extra loss costs ~1.7x one without;
~10, ~22 and ~65 minutes on 2 CPU cores:

  python experiments/sweep.py experiments/sweeps/beauty_next_item.py
"""
CONFIG = "configs/beauty.py"
SETTINGS = {"train.num_train_steps": 2000, "train.next_item_loss_weight": 0.0,  # the first row: the paper's objective
            "train.learning_rate": 1e-3, "model.read_last": "mask",
            "train.weight_decay": 0.01, "train.eval_every_steps": 0, "eval.max_valid_users": 0}
SEEDS = (0,)


def sweep(add):
  add()  # configs/beauty.py as committed, on the short budget
  add(**{"train.next_item_loss_weight": 1.0})
  add(**{"train.next_item_loss_weight": 1.0, "train.num_train_steps": 6000})
