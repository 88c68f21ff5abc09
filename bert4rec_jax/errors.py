"""The exceptions users see: bad input, bad configuration, and an interrupted run."""


class DataError(ValueError):
  """Bad input data: the message names the file and the field or line at fault."""


class ConfigError(ValueError):
  """An invalid or inconsistent configuration: the message names the config field(s)."""


class Interrupted(Exception):
  """Training was stopped by SIGTERM / SIGINT after saving a checkpoint; rerunning continues."""

  def __init__(self, signame: str, step: int, signum: int):
    super().__init__(f"stopped by {signame} at step {step}; the checkpoint is saved: run the same command "
                     "again to continue")
    self.signum, self.step = signum, step
