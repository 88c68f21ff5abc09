"""Stopping a training run cleanly on SIGTERM / SIGINT: the loop checkpoints, then stops."""
import logging
import os
import signal
import threading
import time


class StopSignals:
  """While active (main thread only), SIGTERM and SIGINT only set `.received`; the training loop
  then checkpoints and stops at the end of the current step instead of dying mid-write. A second
  signal exits at once, unless it comes within REPEAT_SECONDS of the first: one stop request
  often arrives twice (`timeout` and schedulers signal every process of a job, and a parent such
  as the sweep runner forwards it too), and that must not cost the checkpoint."""
  REPEAT_SECONDS = 3.0

  def __init__(self):
    self.received = None
    self._first = 0.0
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    if self.received is not None:
      if time.monotonic() - self._first < self.REPEAT_SECONDS:
        return  # the same request delivered twice
      signal.default_int_handler(signum, frame) if signum == signal.SIGINT else os._exit(128 + signum)
    self._first = time.monotonic()
    self.received = signal.Signals(signum).name
    logging.warning("%s received: saving a checkpoint after this step, then stopping", self.received)

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    return False
