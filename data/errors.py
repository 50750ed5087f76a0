"""The one error a caller turns into a message and exit code 1."""


class DatasetUnavailable(RuntimeError):
  """The data set's files are not on disk (and may not be downloaded); the message says
  which file to place where."""
