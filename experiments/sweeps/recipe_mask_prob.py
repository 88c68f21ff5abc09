"""The recipe's [MASK] share (`masking.mask_prob`): 1.0, the paper's (every picked position becomes
[MASK]), against 0.8, BERT's 80/10/10 (else a random item or the item kept, half each; the original
BERT4Rec code's). A mask-last example's last item is [MASK] either way. Full Beauty's validation
put 0.8 above 1.0 (docs/recipe.md); decided on development sets' validation, three seeds, never on
a reported dataset's test. At equal steps: the recipe's bound on training minutes is lifted, as
runs sharing the cores would otherwise end at different steps, by load rather than by setting.

  python experiments/sweep.py experiments/sweeps/recipe_mask_prob.py --set=data.format=text \\
      --set=data.path=beauty_core7.txt --workdir=sweeps/recipe_mask_prob_core7 --parallel=2

The sweep ranks the two points by validation (mean over the seeds).
"""
CONFIG = "configs/default.py"
SETTINGS = {"wandb.mode": "disabled", "train.max_training_minutes": 0.0}
SEEDS = (0, 1, 2)


def sweep(add):
  for p in (1.0, 0.8):
    add(**{"masking.mask_prob": p})
