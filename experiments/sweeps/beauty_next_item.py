"""Beauty: does adding SASRec's next-item loss to BERT4Rec's masked-item loss lift its
full-ranking numbers? The same encoder, read causally over the unmasked windows, is trained on
every next-item transition as well (train.next_item_loss_weight); it is still evaluated as
BERT4Rec, bidirectionally with [MASK] in the last slot. Each weight against the committed
configs/beauty.py at the short budget of beauty_choices. ~10 minutes for the first point and
~20 for each other on 2 CPU cores:

  python experiments/sweep.py experiments/sweeps/beauty_next_item.py
"""
CONFIG = "configs/beauty.py"
SETTINGS = {"train.num_train_steps": 2000, "train.eval_every_steps": 0, "eval.max_valid_users": 0}
SEEDS = (0,)


def sweep(add):
  add()  # configs/beauty.py as committed, on the short budget
  add(**{"train.next_item_loss_weight": 1.0})
