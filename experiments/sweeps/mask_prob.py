"""Mask probability: the fraction of a sequence's items hidden and predicted per example
(BERT4Rec paper, Fig. 4: 0.2 on ML-1M, 0.6 on Beauty; the best value grows as sequences get
shorter). 4 points x 3 seeds on the synthetic data, ~15 minutes on 2 CPU cores."""
CONFIG = "configs/synthetic.py"
SETTINGS = {"train.num_train_steps": 400, "train.eval_every_steps": 0, "masking.max_predictions_per_seq": 20}
SEEDS = (0, 1, 2)


def sweep(add):
  for p in (0.1, 0.2, 0.4, 0.6):
    add(**{"masking.masked_lm_prob": p})
