"""The Beauty schedule's choices, each against its alternative at one short, equal budget of
steps: learning rate (paper 1e-4 vs ours 1e-3), loss (full softmax over 54,542 items vs 8,192
popularity-sampled negatives with logQ correction), and how often an example masks only its
last item (the inference case). ~1 hour on 2 CPU cores:

  python experiments/sweep.py experiments/sweeps/beauty_choices.py
"""
CONFIG = "configs/beauty.py"
SETTINGS = {"train.num_train_steps": 2000, "train.next_item_loss_weight": 0.0,  # the objective it was run with
            "train.learning_rate": 1e-3, "model.read_last": "mask",
            "train.weight_decay": 0.01, "train.eval_every_steps": 0, "eval.max_valid_users": 0}
SEEDS = (0,)


def sweep(add):
  add()  # configs/beauty.py as committed, on the short budget
  add(**{"train.learning_rate": 1e-4})
  add(**{"train.loss": "full"})
  add(**{"masking.mask_last_prob": 0.3})
