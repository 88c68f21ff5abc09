"""Amazon Beauty, honestly: configs/beauty.py's choices made again on the validation split. Task
train_val_test; every 500 steps the full-ranking NDCG@10 of 5,000 validation users is recorded,
the best checkpoint kept, and training stops after 6 validations without improvement (at most
12,000 steps). The points are the choices the committed config made on test: the next-item
loss weight (10 vs 3 vs 0, the paper's objective read with [MASK] last) and the weight decay (0.3
vs the authors' 0.01), 3 seeds each; the table ranks them by validation and reports the chosen
point's test numbers once. SASRec with cross-entropy goes through the same selection in
beauty_sasrec_honest. About 2-3 minutes a run on one H100, 1-2 hours on 2 CPU cores:

  SWEEPS="beauty_honest beauty_sasrec_honest" bash experiments/gpu_reproduce.sh 540
  python experiments/sweep.py experiments/sweeps/beauty_honest.py
"""
CONFIG = "configs/beauty.py"
SETTINGS = {"task": "train_val_test", "train.select_metric": "ndcg@10", "train.patience": 6,
            "train.num_train_steps": 12_000, "train.eval_every_steps": 500, "eval.max_valid_users": 5_000,
            "train.checkpoint_every_steps": 2_000}
SEEDS = (0, 1, 2)


def sweep(add):
  add()  # configs/beauty.py: next-item weight 10, read causally, weight decay 0.3
  add(**{"train.next_item_loss_weight": 3.0})
  add(**{"train.weight_decay": 0.01})
  add(**{"train.next_item_loss_weight": 0.0, "model.read_last": "mask"})
