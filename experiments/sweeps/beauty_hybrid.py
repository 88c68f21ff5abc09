"""Beauty with the next-item loss (configs/beauty.py as committed, train.next_item_loss_weight
1.0): which change moves full ranking further, on the short budget of beauty_next_item (2,000
steps; the committed config there: full NDCG@10 .0156)? A higher peak learning rate (the model
had not levelled off at 6,000 steps, so faster progress per step is worth most on a 2-core
budget), then at the committed 6,000 steps, and a heavier next-item weight. ~25 minutes a
2,000-step point on 2 CPU cores, ~75 at 6,000:

  python experiments/sweep.py experiments/sweeps/beauty_hybrid.py
"""
CONFIG = "configs/beauty.py"
SETTINGS = {"train.num_train_steps": 2000, "train.eval_every_steps": 0, "eval.max_valid_users": 0}
SEEDS = (0,)


def sweep(add):
  add(**{"train.learning_rate": 3e-3})
  add(**{"train.learning_rate": 3e-3, "train.num_train_steps": 6000})  # the committed config's budget
  add(**{"train.next_item_loss_weight": 3.0})
