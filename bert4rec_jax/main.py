"""Command line: `bert4rec-jax` or `python -m bert4rec_jax.main` (USAGE below is its --help).

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

from bert4rec_jax import config_files
from bert4rec_jax.errors import Interrupted, UserError, environment_problem

USAGE = """Prepare data, train, evaluate and predict with BERT4Rec (or SASRec and the baselines).

  bert4rec-jax --config=synthetic                   # the built-in synthetic dataset, all modes
  bert4rec-jax --config=default --config.data.format=text --config.data.path=my_interactions.txt
  bert4rec-jax --config=ml1m --mode=train --workdir=projects/ml1m
  python -m bert4rec_jax.main ...                   # the same command

--config takes the path of a config file, or the name of a shipped one: {names}
(`name:variant`, e.g. synthetic:tiny). Any config field is set with --config.<section>.<field>=<value>,
e.g. --config.train.num_train_steps=100; list every field, its default and its one-line doc with

  bert4rec-jax --fields            (--fields=train: one section)

Outputs go to --workdir (default projects/<config.project>): models/<name>/ (the model, its
checkpoints and training curves), results/<name>/ (metrics JSON, predictions.parquet); the end of
the run prints where.
"""

_CONFIG = config_flags.DEFINE_config_file("config", None, "A shipped config's name (default, ml1m, beauty, "
                                          "synthetic[:tiny]) or a config file's path.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Project folder for data, models and results "
                               "(default: projects/<config.project>).")
_MODE = flags.DEFINE_enum("mode", "all", ["prepare", "train", "evaluate", "predict", "all"], "What to run.")
_ALL_METRICS = flags.DEFINE_bool("all_metrics", False, "Print every metric (HR/NDCG at every cut-off, mean rank, "
                                 "...), not the short table; the metrics JSON always holds them all.")
flags.DEFINE_string("fields", None, "Print every config field (or those of one section: --fields=train) with its "
                    "default and one-line doc, and exit.")
flags.mark_flags_as_required(["config"])


class _LibraryChatter(py_logging.Filter):
  """Keeps libraries' INFO chatter (Orbax per-save lines, JAX backend probing) and Orbax's
  warnings about the read-only opening we ask for out of the log unless --verbosity >= 1."""
  NOISY = ("/orbax/", "/jax/_src/xla_bridge.py")
  # Orbax warns that a checkpoint folder opened read-only is read-only: every evaluation opens it so.
  EXPECTED = ("read_only=True, setting save_interval_steps", "Given directory is read only")

  def filter(self, record):
    if logging.get_verbosity() >= 1:
      return True
    if "/orbax/" in record.pathname and any(text in str(record.msg) for text in self.EXPECTED):
      return False
    if record.levelno >= py_logging.WARNING:
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
      return f"{path}: the config has no field {field!r}{hint}; `bert4rec-jax --fields` lists every field"
  if "--config must have a value" in message:
    return (f"--config is required: a shipped config's name ({', '.join(config_files.names())}) or a config file's "
            "path; bert4rec-jax --help shows the flags")
  if "Failed loading config file" in message:
    given = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--config=")), "")
    reason = (f"no such file, nor a shipped config of that name: {', '.join(config_files.names())}"
              if "No such file" in message else " ".join(message.split()[-12:]))
    return f"--config={given}: cannot load the config file ({reason})"
  if "Error whilst parsing config file" in message and "Traceback" in message:
    # the config file's get_config raised: its own last line says why, the traceback is noise
    given = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--config=")), "")
    last = re.search(r"(\w+(?:Error|Exception)): (.*)$", " ".join(message.split()))
    return f"--config={given}: the config file failed ({last.group(1)}: {last.group(2)})" if last else \
        " ".join(message.split())
  return " ".join(message.split())


def resolve_config_args(argv):
  """argv with `--config=<name>` (or `--config <name>`) of a shipped config as that file's path."""
  out = list(argv)
  for i, arg in enumerate(out):
    if arg.startswith("--config="):
      out[i] = "--config=" + config_files.resolve(arg.split("=", 1)[1])
    elif arg == "--config" and i + 1 < len(out):
      out[i + 1] = config_files.resolve(out[i + 1])
  return out


def usage() -> str:
  module_flags = flags.FLAGS.module_help(sys.modules[__name__])
  return (USAGE.format(names=", ".join(config_files.names())) + "\nFlags:\n" + module_flags
          + "\n\nabsl's own flags (--verbosity, --logtostderr, ...): --helpfull.")


def fields_text(section: str = "") -> str:
  """Every config field of configs/default.py's base(), `section.field = default  # doc`."""
  rows = [r for r in config_files.field_docs() if not section or r[0] == section or r[0].startswith(section + ".")]
  if not rows:
    sections = sorted({r[0].split(".")[0] for r in config_files.field_docs() if "." in r[0]})
    return f"error: --fields={section}: no such section (sections: {', '.join(sections)})"
  width = min(48, max(len(f"{k} = {v!r}") for k, v, _ in rows))
  return "\n".join(f"{f'{k} = {v!r}'.ljust(width)}  # {doc}" if doc else f"{k} = {v!r}" for k, v, doc in rows)


def _print_and_exit(text: str, status: int):
  try:
    print(text, file=sys.stderr if status else sys.stdout, flush=True)
  except BrokenPipeError:  # `... --fields | head`: the reader has what it wanted
    sys.stdout = open(os.devnull, "w")
  sys.exit(status)


def _parse_flags(argv):
  args = argv[1:]
  if any(a in ("-h", "-help", "--help", "--helpshort", "-?") for a in args):
    _print_and_exit(usage(), 0)
  asked = [a for a in args if a == "--fields" or a.startswith("--fields=")]
  if asked:
    text = fields_text(asked[-1].partition("=")[2])
    _print_and_exit(text, 1 if text.startswith("error:") else 0)
  argv = resolve_config_args(argv)
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # flag values, config files and field names: all the user's to fix
    sys.exit(f"error: {flag_error(argv, e)}")


class _Console(py_logging.Handler):
  """Log lines on stderr as `HH:MM:SS message` (warnings and errors named), written through tqdm
  so that a line never lands inside a progress bar: the bar is cleared, the line written, the bar
  drawn again below it."""

  def __init__(self):
    super().__init__()
    self.setFormatter(py_logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))

  def format(self, record):
    text = super().format(record)
    if record.levelno >= py_logging.WARNING:
      stamp, _, rest = text.partition(" ")
      text = f"{stamp} {record.levelname}: {rest}"
    return text

  def emit(self, record):
    try:
      from tqdm import tqdm
      tqdm.write(self.format(record), file=sys.stderr)
    except Exception:  # noqa: BLE001 (logging must never end a run)
      self.handleError(record)


def _console_logging() -> None:
  """absl's handler (prefixes made for log files) replaced on the console by `_Console`, unless
  absl is asked to log to files (--log_dir without --logtostderr)."""
  if flags.FLAGS["log_dir"].present and not flags.FLAGS["logtostderr"].value:
    return
  root = py_logging.getLogger()
  absl_handler = logging.get_absl_handler()
  if absl_handler in root.handlers:
    root.removeHandler(absl_handler)
  console = _Console()
  console.addFilter(_LibraryChatter())
  root.addHandler(console)


def _announce(result: dict) -> None:
  """Where the run's outputs are: the model folder, the results folder and the W&B run."""
  lines = []
  if result.get("model_dir") and os.path.isfile(os.path.join(result["model_dir"], "config.json")):
    lines.append(f"model:   {os.path.abspath(result['model_dir'])}")
  if result.get("results_dir") and os.path.isdir(result["results_dir"]):
    lines.append(f"results: {os.path.abspath(result['results_dir'])}")
  if not lines and result.get("data_dir"):
    lines.append(f"data:    {os.path.abspath(result['data_dir'])}")
  if result.get("wandb_run_dir"):
    run = result["wandb_run_dir"]
    lines.append(f"W&B run ({result.get('wandb_mode')}): {run}")
    if result.get("wandb_mode") == "offline":
      lines.append(f"  upload it with: wandb sync {run}")
  if lines:
    print("\n" + "\n".join(lines), flush=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(_LibraryChatter())
  _console_logging()
  from bert4rec_jax import parallel, pipeline  # imported after flag parsing, so --help stays fast

  try:
    config = _CONFIG.value  # the config file is loaded (and overridden) on first use
    config.project  # noqa: B018
    if _ALL_METRICS.value:
      with config.unlocked():  # a config file of one's own may not have the field
        config.eval.print_metrics = "all"
  except Exception as e:  # a config file that is missing or fails, a mistyped field: the user's to fix
    _fail(flag_error(sys.argv, e))
  workdir = _WORKDIR.value or os.path.join("projects", config.project)
  logging.info("Workdir %s, mode %s", os.path.abspath(workdir), _MODE.value)
  logging.vlog(1, "Config:\n%s", config)
  try:
    parallel.initialize(config.distributed)  # before any other JAX call; nothing with one process
    result = pipeline.run(config, workdir, _MODE.value)
  except UserError as e:  # a message, not a traceback
    _fail(str(e))
  except Interrupted as e:  # SIGTERM / SIGINT: checkpoint saved, the conventional 128 + signal status
    logging.warning("%s", e)
    print(f"\n{e}", file=sys.stderr, flush=True)
    sys.exit(128 + e.signum)
  except Exception as e:  # a full or read-only disk, wherever the write was, or memory run out: one line too
    problem = environment_problem(e)
    if problem is None:
      raise
    _fail(problem)
  if parallel.is_primary():
    _announce(result)


def _fail(message: str):
  if not _console_active():  # logging to files: the message goes there too; on the console, once
    logging.error("%s", message)
  sys.exit(f"error: {message}")


def _console_active() -> bool:
  return any(isinstance(h, _Console) for h in py_logging.getLogger().handlers)


def run_cli():
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run_cli()
