"""ML-1M on a longer schedule (30,000 steps, 5x the 6,000 first committed): does the authors'
dropout (0.2) or BERT's 0.1 train the better model when the schedule is long? Both points share
every other setting of configs/ml1m.py, which took the winner (0.1) and this schedule. About 6
minutes each on one H100 shared by four runs, ~10 hours each on 2 CPU cores:

  SWEEPS=ml1m_long bash experiments/gpu_reproduce.sh 540     # on a lent GPU (README, "On a GPU")
  python experiments/sweep.py experiments/sweeps/ml1m_long.py
"""
CONFIG = "configs/ml1m.py"
SETTINGS = {"train.num_train_steps": 30_000, "train.checkpoint_every_steps": 2_500,
            "model.hidden_dropout_prob": 0.2, "model.attention_probs_dropout_prob": 0.2}
SEEDS = (0,)


def sweep(add):
  add()  # the authors' dropout, 0.2
  add(**{"model.hidden_dropout_prob": 0.1, "model.attention_probs_dropout_prob": 0.1})
