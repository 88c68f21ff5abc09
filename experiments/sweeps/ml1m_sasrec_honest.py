"""ML-1M, SASRec with cross-entropy over all items (Klenitskiy & Vasilev, RecSys 2023) through
the same pipeline and the same selection as ml1m_honest: task train_val_test, the best
validation NDCG@10 checkpoint (every 500 steps, all validation users), early stopping after 10
validations without improvement, at most 30,000 steps; dropout 0.1 vs 0.2 chosen on validation,
3 seeds each. The row to beat for BERT4Rec in docs/reproduction.md.

  SWEEPS="ml1m_honest ml1m_sasrec_honest" bash experiments/gpu_reproduce.sh 540
"""
CONFIG = "configs/ml1m.py"
SETTINGS = {"task": "train_val_test", "model.kind": "sasrec", "train.loss": "full",
            "train.select_metric": "ndcg@10", "train.patience": 10, "train.eval_every_steps": 500,
            "eval.max_valid_users": 0, "train.checkpoint_every_steps": 2_500}
SEEDS = (0, 1, 2)


def sweep(add):
  add()  # dropout 0.1, as configs/ml1m.py
  add(**{"model.hidden_dropout_prob": 0.2, "model.attention_probs_dropout_prob": 0.2})
