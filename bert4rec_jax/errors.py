"""The one exception type users see for bad input or bad configuration."""


class DataError(ValueError):
  """Bad input data: the message names the file and the field or line at fault."""


class ConfigError(ValueError):
  """An invalid or inconsistent configuration: the message names the config field(s)."""
