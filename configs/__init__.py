"""The shipped configs, installed as `bert4rec_jax.configs`: `--config=<name>` (default, ml1m,
beauty, synthetic) or `--config=configs/<name>.py` in a checkout."""
