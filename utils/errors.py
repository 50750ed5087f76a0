"""The one exception type for a config or input a run cannot use.

run.py prints a ConfigError as one line and exits 1; any other exception is a bug and keeps
its traceback. It subclasses ValueError, so callers that catch bad values still catch it.
"""


class ConfigError(ValueError):
  """A bad config field, command-line override, data set, checkpoint or other input; the
  message names what is wrong and what to do."""
