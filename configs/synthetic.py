"""Built-in default: deterministic synthetic sequences with planted sequential structure.

Runs in a few minutes on a 2-core CPU and needs no downloads:

  python -m bert4rec_jax.main --config=configs/synthetic.py

`configs/synthetic.py:tiny` shrinks everything further (used by the tests).
"""
from bert4rec_jax.configs import default


def get_config(variant: str = ""):
  c = default.base()
  c.project = "synthetic"
  c.data.format = "synthetic"
  c.model.max_seq_length = 30
  c.masking.max_predictions_per_seq = 8
  c.masking.masked_lm_prob = 0.3
  c.train.num_train_steps = 1500
  c.train.eval_every_steps = 500
  c.train.checkpoint_every_steps = 500
  if variant == "tiny":
    c.data.synthetic.num_users = 600
    c.data.synthetic.num_items = 40
    c.data.synthetic.num_strides = 2
    c.data.synthetic.max_length = 20
    c.model.hidden_size = 32
    c.model.intermediate_size = 64
    c.model.num_hidden_layers = 1  # the suite runs about a sixth faster; the model tests build 2-layer models
    c.model.max_seq_length = 16
    c.masking.max_predictions_per_seq = 4
    c.train.batch_size = 32
    c.train.learning_rate = 1e-2
    c.train.num_train_steps = 300
    c.train.num_warmup_steps = 20
    c.train.log_every_steps = 50
    c.train.eval_every_steps = 100
    c.train.checkpoint_every_steps = 100
    c.eval.batch_size = 64
    c.eval.num_negatives = 20
    c.predict.batch_size = 64
    c.wandb.mode = "disabled"
  elif variant:
    raise ValueError(f"configs/synthetic.py: unknown variant {variant!r} (expected '' or 'tiny')")
  return c
