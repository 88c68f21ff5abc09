"""Files written safely: atomically (a reader never sees half a result), with the permissions the
user's umask gives every other file, under temporary names that say which process made them (so a
later run removes what a killed one left, and nothing a live one is still writing), and behind
locks where two runs must not interleave."""
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from typing import Any, Iterator

from bert4rec_jax.errors import InUseError

TMP_PREFIX = ".tmp-"  # every temporary file or folder we make starts so
# Temporaries of earlier versions, exactly as `tempfile` named them (8 random characters): a folder
# `.tmp-<random>` or `.buckets-<random>`, a file `.<file>.<random>.tmp`. Only these, never another
# dot-file of the user's.
_LEGACY_NAMES = re.compile(r"\.(tmp|buckets)-[a-z0-9_]{8}|\..+\.[a-z0-9_]{8}\.tmp")
_LEGACY_AGE_SECONDS = 24 * 3600


def _owner() -> str:
  return f"{socket.gethostname().replace('-', '_')}-{os.getpid()}"


def temp_prefix(what: str = "") -> str:
  """`.tmp-<host>-<pid>-<what>-`: the prefix of a temporary name owned by this process."""
  return f"{TMP_PREFIX}{_owner()}-{what.replace('-', '_')}-" if what else f"{TMP_PREFIX}{_owner()}-"


def _read_umask() -> int:
  umask = os.umask(0)  # the only way to read it: set and restore, once, at import (no writer runs yet)
  os.umask(umask)
  return umask


_UMASK = _read_umask()


def _mode(directory: bool) -> int:
  return (0o777 if directory else 0o666) & ~_UMASK


def make_temp_dir(parent: str, what: str = "") -> str:
  """A temporary folder in `parent` (made if needed), with the permissions of a normal folder."""
  os.makedirs(parent, exist_ok=True)
  path = tempfile.mkdtemp(dir=parent, prefix=temp_prefix(what))
  os.chmod(path, _mode(directory=True))
  return path


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path in the same folder; renames it onto `path` on success, with the
  permissions the umask gives any new file (mkstemp alone would leave it 0600)."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=temp_prefix(os.path.basename(path)), suffix=".tmp")
  os.close(fd)
  try:
    yield tmp
    if os.path.isfile(tmp):
      os.chmod(tmp, _mode(directory=False))
    os.replace(tmp, path)
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
    elif os.path.exists(tmp):
      os.remove(tmp)


def write_json(path: str, obj: Any) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
      f.write("\n")


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def _json_default(x):
  # NumPy scalars/arrays and tuples from ConfigDicts.
  if hasattr(x, "tolist"):
    return x.tolist()
  raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _alive(host: str, pid: int) -> bool:
  if host != socket.gethostname().replace("-", "_"):
    return True  # another machine's: it may be running, leave it
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def remove_tree(path: str) -> None:
  """Removes the folder `path` in one step as any reader sees it: renamed to a temporary of this
  process, then deleted. A run stopped part-way leaves that temporary (which clean_leftovers on the
  parent folder removes), never some of the folder's files under its name."""
  gone = os.path.join(os.path.dirname(os.path.abspath(path)),
                      f"{temp_prefix(os.path.basename(path))}{uuid.uuid4().hex[:8]}-removed")  # never one left before
  os.rename(path, gone)
  shutil.rmtree(gone, ignore_errors=True)


def remove_path(path: str) -> None:
  """Removes `path`, whatever is there: a folder as remove_tree does, a file or link, or nothing."""
  if os.path.isdir(path) and not os.path.islink(path):
    remove_tree(path)
  elif os.path.lexists(path):
    os.remove(path)


def clean_leftovers(folder: str) -> int:
  """Removes the temporaries in `folder` that a killed run left: ours whose process is gone (on
  this host), and unowned ones of earlier versions older than a day. Returns how many."""
  if not os.path.isdir(folder):
    return 0
  removed = 0
  for name in os.listdir(folder):
    path, stale = os.path.join(folder, name), False
    if name.startswith(TMP_PREFIX) and name.count("-") >= 3:
      host, pid = name[len(TMP_PREFIX):].split("-")[:2]
      stale = pid.isdigit() and not _alive(host, int(pid))
    elif _LEGACY_NAMES.fullmatch(name):
      with contextlib.suppress(OSError):
        stale = time.time() - os.path.getmtime(path) > _LEGACY_AGE_SECONDS
    else:
      continue
    if not stale:
      continue
    with contextlib.suppress(FileNotFoundError):
      shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
      removed += 1
      logging.info("Removed %s, left by a run that was stopped", path)
  return removed


def _readers_only(fd: int) -> bool:
  """Whether the lock held on `fd`'s file is shared (readers) rather than a writer's."""
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
  except OSError:
    return False
  fcntl.flock(fd, fcntl.LOCK_UN)
  return True


@contextlib.contextmanager
def lock(path: str, what: str, wait: bool = False, shared: bool = False) -> Iterator[None]:
  """Holds a lock on `path` (an flock: released when the holder exits, however it ends):
  exclusive for a run that writes, or `shared` for runs that only read (any number of them, but
  none while a writer holds it). Busy: waits when `wait`, otherwise raises InUseError naming the
  writer. A shared lock on a folder where no lock file can be made (a read-only share of models)
  is skipped. The lock file stays (removing it would race with the next holder)."""
  try:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, _mode(directory=False))
  except OSError as e:
    if not shared or e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
      raise
    logging.info("No lock for %s (%s): reading without one", what, e.strerror)
    yield
    return
  kind = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
  try:
    try:
      fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EAGAIN, errno.EACCES):
        raise
      holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another run"
      if not shared and _readers_only(fd):
        holder = "a run that reads it (test or inference)"
      if not wait:
        raise InUseError(f"{what} is in use by {holder}: wait for that run to finish (or stop it), or use another "
                         "model name") from None
      logging.info("Waiting for %s to finish with %s", holder, what)
      fcntl.flock(fd, kind)
    if not shared:  # who holds it, for the message another run gets
      os.ftruncate(fd, 0)
      os.pwrite(fd, f"the run of pid {os.getpid()} on {socket.gethostname()} (since {time.ctime()})".encode(), 0)
    yield
  finally:
    os.close(fd)
