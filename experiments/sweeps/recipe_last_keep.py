"""The recipe's keep share at the last position (`masking.last_keep_prob`): 0 (every picked position
becomes [MASK]) against 1 (a picked last position shows its own item and stays a target: the masked-item
loss there reads it bidirectionally). The masking defect fixed on 2026-12-06 did the latter on windows
narrower than the target slots, and the recipe's Beauty runs with the defect validated and tested above
those without it (docs/recipe.md). Decided on development sets' validation, three seeds, never on a
reported dataset's test; at equal steps (the recipe's bound on training minutes lifted, as runs sharing
the cores would otherwise end at different steps).

  python experiments/sweep.py experiments/sweeps/recipe_last_keep.py --set=data.format=text \\
      --set=data.path=beauty_dev.txt --workdir=sweeps/recipe_last_keep --parallel=2

The sweep ranks the two points by validation (mean over the seeds).
"""
CONFIG = "configs/default.py"
SETTINGS = {"wandb.mode": "disabled", "train.max_training_minutes": 0.0}
SEEDS = (0, 1, 2)


def sweep(add):
  for p in (0.0, 1.0):
    add(**{"masking.last_keep_prob": p})
