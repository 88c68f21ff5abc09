"""Command line: python -m bert4rec_jax.main --config=configs/synthetic.py [--mode=all] [--workdir=DIR]

Config fields are overridden with --config.<field>=<value>, e.g. --config.train.num_train_steps=100.
"""
import logging as py_logging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from bert4rec_jax.errors import ConfigError, DataError, Interrupted

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/synthetic.py.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Project folder for data, models and results "
                               "(default: projects/<config.project>).")
_MODE = flags.DEFINE_enum("mode", "all", ["prepare", "train", "evaluate", "predict", "all"], "What to run.")
flags.mark_flags_as_required(["config"])


class _LibraryChatter(py_logging.Filter):
  """Keeps libraries' INFO chatter (Orbax per-save lines, JAX backend probing) out of the log
  unless --verbosity >= 1."""
  NOISY = ("/orbax/", "/jax/_src/xla_bridge.py")

  def filter(self, record):
    if record.levelno >= py_logging.WARNING or logging.get_verbosity() >= 1:
      return True
    return not any(part in record.pathname for part in self.NOISY)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(_LibraryChatter())
  from bert4rec_jax import parallel, pipeline  # imported after flag parsing, so --help stays fast

  config = _CONFIG.value
  workdir = _WORKDIR.value or os.path.join("projects", config.project)
  logging.info("Workdir %s, mode %s", os.path.abspath(workdir), _MODE.value)
  logging.vlog(1, "Config:\n%s", config)
  try:
    parallel.initialize(config.distributed)  # before any other JAX call; nothing with one process
    pipeline.run(config, workdir, _MODE.value)
  except (ConfigError, DataError, FileNotFoundError) as e:  # user errors: a message, not a traceback
    logging.error("%s", e)
    sys.exit(f"error: {e}")
  except Interrupted as e:  # SIGTERM / SIGINT: checkpoint saved, the conventional 128 + signal status
    logging.warning("%s", e)
    print(f"\n{e}", file=sys.stderr, flush=True)
    sys.exit(128 + e.signum)


def run_cli():
  app.run(main)


if __name__ == "__main__":
  run_cli()
