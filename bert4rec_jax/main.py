"""Command line: python -m bert4rec_jax.main --config=configs/synthetic.py [--mode=all] [--workdir=DIR]

Config fields are overridden with --config.<field>=<value>, e.g. --config.train.num_train_steps=100.
Anything the user can fix (a mistyped field, bad input, a full or read-only disk, a model folder
made by another config) ends the run with one line on stderr and status 1; our own bugs keep their
traceback.
"""
import logging as py_logging
import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from bert4rec_jax.errors import Interrupted, UserError, storage_problem

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


def flag_error(argv, error: Exception) -> str:
  """One line for a command line that does not parse: a mistyped config field names the argument
  and the field it probably meant; a missing config file names the file."""
  message = str(error).replace("\\'", "'").replace("\\n", " ")
  config_args = [a for a in argv[1:] if a.startswith("--config.")]
  key = re.search(r"'([A-Za-z0-9_]+)'", message)
  if key:
    field = key.group(1)
    arg = next((a for a in config_args if field in a.split("=", 1)[0].split(".")), None)
    if arg is not None:
      path = arg.split("=", 1)[0]
      meant = re.search(r'Did you mean "([^"]+)"', message)
      hint = f" (did you mean {path.rsplit('.', 1)[0]}.{meant.group(1)}?)" if meant and path.endswith(field) else ""
      return f"{path}: the config has no field {field!r}{hint}; every field is listed in configs/default.py"
  if "Failed loading config file" in message:
    given = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--config=")), "")
    reason = "no such file" if "No such file" in message else " ".join(message.split()[-12:])
    return f"--config={given}: cannot load the config file ({reason})"
  return " ".join(message.split())


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # flag values, config files and field names: all the user's to fix
    sys.exit(f"error: {flag_error(argv, e)}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(_LibraryChatter())
  from bert4rec_jax import parallel, pipeline  # imported after flag parsing, so --help stays fast

  try:
    config = _CONFIG.value  # the config file is loaded (and overridden) on first use
    config.project  # noqa: B018
  except Exception as e:  # a config file that is missing or fails, a mistyped field: the user's to fix
    _fail(flag_error(sys.argv, e))
  workdir = _WORKDIR.value or os.path.join("projects", config.project)
  logging.info("Workdir %s, mode %s", os.path.abspath(workdir), _MODE.value)
  logging.vlog(1, "Config:\n%s", config)
  try:
    parallel.initialize(config.distributed)  # before any other JAX call; nothing with one process
    pipeline.run(config, workdir, _MODE.value)
  except UserError as e:  # a message, not a traceback
    _fail(str(e))
  except Interrupted as e:  # SIGTERM / SIGINT: checkpoint saved, the conventional 128 + signal status
    logging.warning("%s", e)
    print(f"\n{e}", file=sys.stderr, flush=True)
    sys.exit(128 + e.signum)
  except Exception as e:  # a full or read-only disk, wherever the write was: one line too
    problem = storage_problem(e)
    if problem is None:
      raise
    _fail(problem)


def _fail(message: str):
  logging.error("%s", message)
  sys.exit(f"error: {message}")


def run_cli():
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run_cli()
