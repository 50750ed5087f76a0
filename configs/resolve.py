"""`--config NAME` -> configs/NAME.py (or a path as given); unknown names list the valid ones,
and an override `--config.a.b=v` of a field no config has, or with a value its type cannot
take, is refused with a suggestion."""
import difflib
import os
import re
import sys

from absl import flags

from configs.default import get_default_config
from configs.run_config import flatten
from utils.errors import ConfigError

CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(CONFIG_DIR, 'default.py')   # what --config is when not given
_NOT_CONFIGS = {'__init__.py', 'default.py', 'resolve.py', 'run_config.py', 'validate.py'}


class UnknownConfig(ConfigError):
  """A --config value that is neither a config name nor an existing file."""


def available_configs():
  """Sorted short names of the named configs in configs/."""
  return sorted(name[:-3] for name in os.listdir(CONFIG_DIR)
                if name.endswith('.py') and name not in _NOT_CONFIGS)


def resolve_config(name_or_path):
  """Path of the config file a short name or a path stands for."""
  if os.path.isfile(name_or_path):
    return name_or_path
  if name_or_path in available_configs():
    return os.path.join(CONFIG_DIR, f'{name_or_path}.py')
  raise UnknownConfig(f"unknown config {name_or_path!r}; available: "
                      f"{', '.join(available_configs())} (or a path to a config file)")


def config_name(path):
  """The short name of a config file: configs/vp_digits.py -> vp_digits."""
  return os.path.splitext(os.path.basename(path))[0]


# The parsers ml_collections' overrides use for the scalar types (absl's); other types pass.
_PARSERS = {bool: flags.BooleanParser(), int: flags.IntegerParser(), float: flags.FloatParser()}


def check_override(arg, fields):
  """A ConfigError for `--config.a.b[=v]` (or `--noconfig.a.b`) naming no field in `fields`
  ({field: default value}), or whose v the field's type cannot take."""
  match = re.match(r'^--?(?:no)?config\.([^=]+)(?:=(.*))?$', arg)
  if not match:
    return
  field, value = match.groups()
  if field not in fields:
    close = difflib.get_close_matches(field, fields, n=1)
    raise ConfigError(f"unknown config field {field!r}" +
                      (f"; did you mean {close[0]}?" if close else ''))
  kind = type(fields[field])
  if value is not None and kind in _PARSERS:
    try:
      _PARSERS[kind].parse(value)
    except ValueError:
      article = "an" if kind is int else "a"
      raise ConfigError(f"config.{field} takes {article} {kind.__name__}, got {value!r}") from None


def resolve_config_argv(argv):
  """argv with the value of --config (as `--config X` or `--config=X`) replaced by its path;
  overrides of unknown fields are refused here, where ml_collections would end in a traceback."""
  fields = flatten(get_default_config())
  for arg in argv:
    check_override(arg, fields)
  out, i = list(argv), 0
  while i < len(out):
    if out[i] == '--config' and i + 1 < len(out):
      out[i + 1] = resolve_config(out[i + 1])
      i += 1
    elif out[i].startswith('--config='):
      out[i] = '--config=' + resolve_config(out[i][len('--config='):])
    i += 1
  return out


def config_argv_or_exit(argv):
  """resolve_config_argv for a program's entry point: a bad --config or override ends the
  program with one line on stderr and exit status 1."""
  try:
    return resolve_config_argv(argv)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
