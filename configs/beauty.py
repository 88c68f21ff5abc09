"""Amazon Beauty with the BERT4Rec paper's hyperparameters (Sun et al., CIKM 2019, Sec. 4 and
the authors' run script): hidden 64, 2 layers, 2 heads, length 50, mask rate 0.6, at most 30
predictions per sequence, batch 256, learning rate 1e-4, 400k steps.

  python -m bert4rec_jax.main --config=configs/beauty.py

The data file is `beauty.txt` (the paper's exact file) in BERT4REC_DATA_DIR (default:
shared/data beside the checkout). 400k steps is the paper's budget; shorten it with
--config.train.num_train_steps=N.
"""
import os

from configs import default


def get_config():
  c = default.get_config()
  c.project = "beauty"
  c.data.format = "text"
  c.data.path = os.path.join(default.DATA_DIR, "beauty.txt")
  c.model.max_seq_length = 50
  c.model.hidden_size = 64
  c.model.intermediate_size = 256
  c.masking.masked_lm_prob = 0.6
  c.masking.max_predictions_per_seq = 30
  c.masking.mask_prob = 1.0
  c.train.batch_size = 256
  c.train.learning_rate = 1e-4
  c.train.num_train_steps = 400_000
  c.train.num_warmup_steps = 100
  c.train.eval_every_steps = 10_000
  c.train.checkpoint_every_steps = 5_000
  c.train.log_every_steps = 200
  return c
