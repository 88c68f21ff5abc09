"""Amazon Beauty, SASRec with cross-entropy over all 54,542 items (Klenitskiy & Vasilev, RecSys
2023) through the same pipeline and the same selection as beauty_honest: task train_val_test,
the best validation NDCG@10 checkpoint (every 500 steps, 5,000 validation users), early stopping
after 6 validations without improvement, at most 12,000 steps; hidden dropout 0.5 (the BERT4Rec
config's) vs 0.2 and weight decay 0.3 vs 0.01 chosen on validation, 3 seeds each. The row to beat
for BERT4Rec in docs/reproduction.md.

  SWEEPS="beauty_honest beauty_sasrec_honest" bash experiments/gpu_reproduce.sh 540
"""
CONFIG = "configs/beauty.py"
SETTINGS = {"task": "train_val_test", "model.kind": "sasrec", "train.loss": "full",
            "train.next_item_loss_weight": 0.0, "model.read_last": "mask",
            "train.select_metric": "ndcg@10", "train.patience": 6, "train.num_train_steps": 12_000,
            "train.eval_every_steps": 500, "eval.max_valid_users": 5_000, "train.checkpoint_every_steps": 2_000}
SEEDS = (0, 1, 2)


def sweep(add):
  add()  # dropout 0.5 / 0.2, weight decay 0.3 (configs/beauty.py's)
  add(**{"model.hidden_dropout_prob": 0.2})
  add(**{"train.weight_decay": 0.01})
