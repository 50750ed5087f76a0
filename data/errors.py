"""Missing or unreadable data files: ConfigErrors, so run.py prints them as one line."""
from utils.errors import ConfigError


class DatasetUnavailable(ConfigError):
  """The data set's files are not on disk (and may not be downloaded); the message says
  which file to place where."""


class UnreadableImage(ConfigError):
  """A file of an image folder is not an image PIL can read; the message names it."""
