"""Dynamic vs static masking: fresh masks every step, drawn on device (ours), against the
original pipeline's dupe_factor fixed, pre-masked copies of every window (10 copies). Static
copies see the same masks every epoch; dynamic masking never repeats one."""
CONFIG = "configs/synthetic.py"
SETTINGS = {"train.num_train_steps": 600, "train.eval_every_steps": 0}
SEEDS = (0, 1, 2)


def sweep(add):
  add(**{"masking.mode": "dynamic"})
  for copies in (1, 10):
    add(**{"masking.mode": "static", "masking.dupe_factor": copies})
