"""ML-1M, honestly: configs/ml1m.py's choices made again on the validation split. Task
train_val_test (test = last item, validation = the one before, training on the rest); every 500
steps the full-ranking NDCG@10 of all validation users is recorded, the best checkpoint kept, and
training stops after 10 validations without improvement (at most the config's 30,000 steps).
The points are the choices the committed config made on test (dropout 0.1 vs the authors' 0.2;
learning rate 1e-3 vs 2e-3), 3 seeds each; the table ranks them by validation and reports the
chosen point's test numbers once. SASRec with cross-entropy goes through the same selection in
ml1m_sasrec_honest. About 6 minutes a run on one H100, ~10 hours on 2 CPU cores:

  SWEEPS="ml1m_honest ml1m_sasrec_honest" bash experiments/gpu_reproduce.sh 540
  python experiments/sweep.py experiments/sweeps/ml1m_honest.py
"""
CONFIG = "configs/ml1m.py"
SETTINGS = {"task": "train_val_test", "train.select_metric": "ndcg@10", "train.patience": 10,
            "train.eval_every_steps": 500, "eval.max_valid_users": 0, "train.checkpoint_every_steps": 2_500}
SEEDS = (0, 1, 2)


def sweep(add):
  add()  # configs/ml1m.py: dropout 0.1, learning rate 1e-3
  add(**{"model.hidden_dropout_prob": 0.2, "model.attention_probs_dropout_prob": 0.2})
  add(**{"train.learning_rate": 2e-3})
