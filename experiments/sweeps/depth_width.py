"""Depth and width: transformer blocks x hidden size (feed-forward 4x hidden). The paper found
2 blocks and hidden 64 enough on its datasets; deeper and wider models need more steps."""
CONFIG = "configs/synthetic.py"
SETTINGS = {"train.num_train_steps": 400, "train.eval_every_steps": 0}
SEEDS = (0, 1)


def sweep(add):
  for layers in (1, 2, 4):
    for hidden in (32, 64, 128):
      add(**{"model.num_hidden_layers": layers, "model.hidden_size": hidden, "model.intermediate_size": 4 * hidden})
