"""The config a run uses after its first start, and what in it defines the trained model.

A new run takes the --config file with its command-line overrides and writes it, resolved, to
<workdir>/config.json. From then on that file is the run's config: `--mode sample|eval` start
from it and apply only the overrides given on the command line, and resuming training compares
the new config with it. A change to a field that defines the trained model (MODEL_FIELDS) is
refused with one line naming the field, unless the user passes --allow_model_override; every
other field (sampling, eval, training length, logging, snapshots) may change.
"""
import json
import os

from configs.default import get_default_config
from utils.atomic import atomic_write
from utils.errors import ConfigError
from utils.workdir import config_path

# The network and its parameterization (model), the SDE and chain its score belongs to (sde),
# whether it learned continuous times or chain steps, and the data space it maps to: with
# another value the checkpoint is a different model, or no model at all. (A class-conditional
# network's number of classes is the shape of its label embedding: a checkpoint of another
# count is refused when it is loaded, while an unconditional run ignores data.num_classes.)
MODEL_FIELDS = ('model', 'sde', 'training.continuous', 'data.dataset', 'data.image_size',
                'data.num_channels', 'data.centered')
OVERRIDE_FLAG = '--allow_model_override'


def defines_model(field):
  """Whether a dotted field name ('model.nf', 'sde.beta_max', ...) is one of MODEL_FIELDS."""
  return any(field == name or field.startswith(name + '.') for name in MODEL_FIELDS)


def flatten(config):
  """{'section.field': value} of a ConfigDict or plain dict; lists become tuples (as JSON
  gives back the tuples the configs hold)."""
  flat = {}
  for key, value in config.items():
    if hasattr(value, 'items'):
      flat.update({f'{key}.{sub}': v for sub, v in flatten(value).items()})
    else:
      flat[key] = tuple(value) if isinstance(value, list) else value
  return flat


def model_fields(config):
  """{field: value} of the fields of `config` that define the trained model."""
  return {k: v for k, v in flatten(config).items() if defines_model(k)}


def write_run_config(config, workdir):
  """Write the resolved config as the run's config.json (atomically)."""
  atomic_write(config_path(workdir),
               lambda f: f.write(config.to_json(indent=2, sort_keys=True).encode()))


def load_run_config(workdir):
  """(the run's config.json as a ConfigDict with the defaults' fields, notes), or (None, [])
  when there is none. Fields the file lacks (added to the project since) take their defaults;
  fields it has that the project no longer knows are left out; a note names both."""
  path = config_path(workdir)
  if not os.path.exists(path):
    return None, []
  try:
    with open(path) as f:
      saved = flatten(json.load(f))
  except (OSError, ValueError) as e:
    raise ConfigError(f"cannot read {path}: {e}") from None
  config = get_default_config()
  known = flatten(config)
  config.update_from_flattened_dict({k: v for k, v in saved.items() if k in known})
  notes = []
  if known.keys() - saved.keys():
    notes.append(f"{path} predates {', '.join(sorted(known.keys() - saved.keys()))}: defaults used")
  if saved.keys() - known.keys():
    notes.append(f"{path} has fields no longer used: {', '.join(sorted(saved.keys() - known.keys()))}")
  return config, notes


def refuse_model_changes(changes, path, allow):
  """ConfigError naming each changed field that defines the model, unless `allow`.
  changes: {field: (value in path, new value)}."""
  refused = {k: v for k, v in changes.items() if defines_model(k)}
  if refused and not allow:
    listed = ', '.join(f'{k} {old!r} -> {new!r}' for k, (old, new) in refused.items())
    raise ConfigError(f"refusing to change what defines the trained model ({path}): {listed}; "
                      f"pass {OVERRIDE_FLAG} if you mean it")


def inference_config(workdir, file_config, overrides, allow_model_override=False):
  """(config, notes) for --mode sample|eval: the run's config.json with the command line's
  `overrides` ({'section.field': value}) applied on top; without a config.json (a checkpoint
  made elsewhere), `file_config` (the --config file with its overrides) or a ConfigError if
  there is none either."""
  saved, notes = load_run_config(workdir)
  if saved is None:
    if file_config is None:
      raise ConfigError(f"no {config_path(workdir)} to start from; name the run's config with --config")
    return file_config, [f"no {config_path(workdir)}: using the --config file and its overrides"]
  current = flatten(saved)
  changes = {k: (current.get(k), v) for k, v in overrides.items() if current.get(k) != v}
  refuse_model_changes(changes, config_path(workdir), allow_model_override)
  saved.update_from_flattened_dict(overrides)
  return saved, notes


def resume_changes(config, workdir, allow_model_override=False):
  """Compare a training config with the run's config.json before resuming: a ConfigError for
  a changed field that defines the model (unless allowed); otherwise ['field: old -> new']
  for every field that changed (none for a new run)."""
  saved, _ = load_run_config(workdir)
  if saved is None:
    return []
  old, new = flatten(saved), flatten(config)
  changes = {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys())
             if old.get(k) != new.get(k)}
  refuse_model_changes(changes, config_path(workdir), allow_model_override)
  return [f'{k}: {a!r} -> {b!r}' for k, (a, b) in changes.items()]
