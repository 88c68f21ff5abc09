"""The recipe (configs/default.py) on a dataset it has never seen: BERT4Rec and SASRec with
cross-entropy through the same recipe (every data-dependent setting chosen the same way, the
same selection on validation and early stopping), beside the Markov chain. Give the data with
--set; nothing else is set:

  python experiments/sweep.py experiments/sweeps/recipe.py --set=data.format=text \\
      --set=data.path=my_interactions.txt --workdir=sweeps/recipe_mydata

The issue's targets, on test: BERT4Rec's full NDCG@10 at least 1.10 x the Markov chain's and
at least SASRec's, in under 90 minutes of a 2-core CPU for 300k interactions (train_seconds in
results.csv). All three are rows of one table; nothing is chosen among them.
"""
CONFIG = "configs/default.py"
SETTINGS = {"wandb.mode": "disabled"}
SEEDS = (0,)
CHOOSE = False  # models side by side: no point is chosen among them


def sweep(add):
  for kind in ("bert4rec", "sasrec", "markov"):
    add(**{"model.kind": kind})
