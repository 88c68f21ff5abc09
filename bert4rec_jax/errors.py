"""The exceptions users see. A `UserError` is something the user can fix (bad input, bad
configuration, a model folder that belongs to another config, no room on disk): the command line
prints its message as one line, never a traceback. Anything else is a bug of ours and keeps its
traceback."""
import functools
import re
import sys


class UserError(Exception):
  """A problem the user can fix; the message says what is wrong and what to do."""


class DataError(UserError, ValueError):
  """Bad input data: the message names the file and the field or line at fault."""


class ConfigError(UserError, ValueError):
  """An invalid or inconsistent configuration: the message names the config field(s)."""


class MissingError(UserError, FileNotFoundError):
  """Something the run needs is not there (a trained model, a checkpoint); the message says how to
  make it."""


class StorageError(UserError, OSError):
  """The disk refused a write (full, read-only, no permission): the message names the path."""


class DivergedError(UserError, FloatingPointError):
  """Training's loss turned NaN or infinite; the message names the last good checkpoint and what to
  lower."""


class InUseError(UserError):
  """Another run holds the lock of the model (or dataset) this run would write."""


def one_line(main):
  """Wraps a command's main: a UserError, a full, read-only or forbidden disk, or memory run out,
  ends it with one line ("error: ..."), exit status 1, and training stopped by SIGTERM / SIGINT (its checkpoint
  saved) with the line that says so, status 128 + the signal, as `python -m bert4rec_jax.main`
  does; anything else keeps its traceback."""
  @functools.wraps(main)
  def wrapped(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except UserError as e:
      sys.exit(f"error: {e}")
    except Interrupted as e:
      print(e, file=sys.stderr, flush=True)
      sys.exit(128 + e.signum)
    except Exception as e:  # noqa: BLE001 (re-raised unless the disk or memory caused it)
      problem = environment_problem(e)
      if problem is None:
        raise
      sys.exit(f"error: {problem}")
  return wrapped


class Interrupted(Exception):
  """Training was stopped by SIGTERM / SIGINT after saving a checkpoint; rerunning continues."""

  def __init__(self, signame: str, step: int, signum: int):
    super().__init__(f"stopped by {signame} at step {step}; the checkpoint is saved: run the same command "
                     "again to continue")
    self.signum, self.step = signum, step


_DISK_HINTS = {  # errno name -> what to do
    "ENOSPC": "the disk is full: free space there (or choose another --workdir) and run the same command again",
    "EDQUOT": "the disk quota is used up: free space there (or choose another --workdir) and run the same "
              "command again",
    "EROFS": "the file system is read-only: choose a writable --workdir",
    "EACCES": "permission denied: make that path writable (or choose another --workdir)",
    "EPERM": "permission denied: make that path writable (or choose another --workdir)",
    "ENOTDIR": "a file stands where a folder is needed: choose another --workdir (or move that file)",
}
_DISK_TEXTS = {"No space left on device": "ENOSPC", "Disk quota exceeded": "EDQUOT",
               "Read-only file system": "EROFS", "Permission denied": "EACCES"}


def storage_problem(exc: BaseException):
  """One line for an error that a full, read-only or forbidden disk caused, wherever it surfaced
  (an OSError of ours, or a library's wrapper of one, e.g. an asynchronous checkpoint write);
  None for anything else."""
  import errno
  for exc in _causes(exc):
    code = errno.errorcode.get(getattr(exc, "errno", None) or 0, "")
    if isinstance(exc, StorageError):
      return str(exc)
    if isinstance(exc, OSError) and code in ("EMFILE", "ENFILE"):
      return (f"{exc.filename or 'a file'}: cannot open ({exc.strerror or 'too many open files'}): too many files "
              "are open at once; raise the open-file limit (ulimit -n), or lower data.num_buckets when reading in "
              "chunks (a file is open per bucket)")
    if isinstance(exc, OSError) and code in _DISK_HINTS:
      where = exc.filename or "a file under the workdir"
      return f"{where}: cannot write ({exc.strerror or code}); {_DISK_HINTS[code]}"
    text = str(exc)
    for needle, name in _DISK_TEXTS.items():
      if needle in text:
        path = next(iter(re.findall(r"(/[^\s'\":]+)", text)), "a file under the workdir")
        return f"{path}: cannot write ({needle}); {_DISK_HINTS[name]}"
  return None


def _causes(exc: BaseException):
  """exc, then what it was raised from or during, and so on (each once)."""
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    yield exc
    exc = exc.__cause__ or exc.__context__


_MEMORY_TEXTS = ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory")
_MEMORY_HINT = ("lower train.batch_size or model.max_seq_length (training), eval.batch_size or "
                "eval.item_chunk_size (evaluation), predict.batch_size (inference)")


def memory_problem(exc: BaseException):
  """One line for memory run out (the host's, or an accelerator's as XLA reports it), wherever it
  surfaced, naming the settings that size the work; None for anything else."""
  for exc in _causes(exc):
    text = str(exc).strip()
    if isinstance(exc, MemoryError) or any(t in text for t in _MEMORY_TEXTS):
      first = (text.splitlines() or [type(exc).__name__])[0]
      first = re.sub(r"\d{4,}", lambda m: f"{int(m.group()):,}", first[:200])
      return f"out of memory ({first}): {_MEMORY_HINT}"
  return None


def environment_problem(exc: BaseException):
  """One line for an error the machine's limits caused (`storage_problem`, `memory_problem`);
  None for anything else (a bug of ours, which keeps its traceback)."""
  return storage_problem(exc) or memory_problem(exc)
