"""Missing data files: a ConfigError, so run.py prints it as one line."""
from utils.errors import ConfigError


class DatasetUnavailable(ConfigError):
  """The data set's files are not on disk (and may not be downloaded); the message says
  which file to place where."""
