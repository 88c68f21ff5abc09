"""The ML-1M schedule's choices, each against its alternative at one short, equal budget of
steps: learning rate (paper 1e-4 vs ours 1e-3), dropout (the authors' 0.2 vs BERT's 0.1),
extra sliding windows over long histories (the authors' 0.5 vs only the last 200 items), and
how often an example masks only its last item. ~1.5 hours on 2 CPU cores:

  python experiments/sweep.py experiments/sweeps/ml1m_choices.py
"""
CONFIG = "configs/ml1m.py"
# The base is the config as it stood when this sweep chose its settings: the authors' dropout, 0.2.
SETTINGS = {"train.num_train_steps": 1000, "train.eval_every_steps": 0,
            "model.hidden_dropout_prob": 0.2, "model.attention_probs_dropout_prob": 0.2}
SEEDS = (0,)


def sweep(add):
  add()  # configs/ml1m.py with the authors' dropout, on the short budget
  add(**{"train.learning_rate": 1e-4})
  add(**{"model.hidden_dropout_prob": 0.1, "model.attention_probs_dropout_prob": 0.1})
  add(**{"train.prop_sliding_window": -1.0})
  add(**{"masking.mask_last_prob": 0.3})
