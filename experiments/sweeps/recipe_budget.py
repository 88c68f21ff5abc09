"""The recipe's budget on dense data: BERT4Rec and SASRec with cross-entropy through the recipe
(configs/default.py) at 120 window positions per training interaction (its budget until
2026-12-04) and at three times that. On full MovieLens-1M both selected one of their last
validations with about a third of the time target used (docs/recipe.md), so the question is
whether more steps lift BERT4Rec more than SASRec-CE. Decided on development sets' validation (docs/recipe.md says which), never on a
reported dataset's test:

  python experiments/sweep.py experiments/sweeps/recipe_budget.py --set=data.format=text \\
      --set=data.path=ml1m_first600.txt --workdir=sweeps/recipe_budget_ml600

The sweep ranks the four points by validation; a budget is compared within a model kind.
"""
CONFIG = "configs/default.py"
SETTINGS = {"wandb.mode": "disabled"}
SEEDS = (0,)


def sweep(add):
  for kind in ("bert4rec", "sasrec"):
    for budget in (120.0, 360.0):
      add(**{"model.kind": kind, "train.budget_per_interaction": budget})
