"""configs/run_config.py: sample and eval start from the run's config.json; what defines the
trained model cannot change silently."""
import json
import os

import pytest

from configs.run_config import MODEL_FIELDS, defines_model, inference_config, load_run_config
from configs.vp_toy2d import get_config as toy2d_config
from utils.errors import ConfigError


def write_run(workdir, config):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json(indent=2))


def trained_config():
  config = toy2d_config()
  config.model.hidden, config.model.ch_mult = 48, (1, 3)
  config.sampling.steps = 7
  return config


def test_config_json_round_trips_with_its_types(tmp_path):
  # JSON turns tuples into lists; the loaded config holds the tuples the configs hold, so it
  # equals the config that was written.
  write_run(str(tmp_path), trained_config())
  loaded, notes = load_run_config(str(tmp_path))
  assert loaded == trained_config() and notes == []
  assert load_run_config(str(tmp_path / 'none')) == (None, [])


def test_overrides_apply_on_top_of_config_json(tmp_path):
  workdir = str(tmp_path)
  write_run(workdir, trained_config())
  # The --config file (here the plain toy config, hidden 128) does not count: only overrides.
  config, notes = inference_config(workdir, toy2d_config(), {'sampling.method': 'ode'})
  assert (config.model.hidden, config.sampling.steps, config.sampling.method) == (48, 7, 'ode')
  assert notes == []
  # Repeating a model field's trained value is no change.
  config, _ = inference_config(workdir, None, {'model.hidden': 48, 'model.ch_mult': (1, 3)})
  assert config == trained_config()


@pytest.mark.parametrize('field, value', [('model.hidden', 32), ('model.ch_mult', (1, 2)),
                                          ('sde.name', 'vesde'), ('sde.beta_max', 10.0),
                                          ('training.continuous', False), ('data.centered', True),
                                          ('data.dataset', 'digits'), ('model.parameterization', 'score')])
def test_model_overrides_are_refused_unless_allowed(tmp_path, field, value):
  workdir = str(tmp_path)
  write_run(workdir, trained_config())
  with pytest.raises(ConfigError) as info:
    inference_config(workdir, None, {field: value})
  message = str(info.value)
  assert f'{field} ' in message and '--allow_model_override' in message and '\n' not in message
  config, _ = inference_config(workdir, None, {field: value}, allow_model_override=True)
  section, name = field.split('.')
  assert config[section][name] == value


def test_model_fields():
  assert {'model', 'sde', 'training.continuous', 'data.centered'} <= set(MODEL_FIELDS)
  assert defines_model('model.nf') and defines_model('sde.beta_min')
  for field in ('sampling.steps', 'training.n_iters', 'eval.num_samples', 'data.root', 'seed',
                'models.x', 'data.centered_extra'):
    assert not defines_model(field), field


def test_without_config_json(tmp_path):
  # A checkpoint made elsewhere: the --config file with its overrides, and a note saying so;
  # neither is an error naming what to pass.
  file_config = toy2d_config()
  config, notes = inference_config(str(tmp_path), file_config, {})
  assert config is file_config and len(notes) == 1 and 'config.json' in notes[0]
  with pytest.raises(ConfigError, match='--config'):
    inference_config(str(tmp_path), None, {})


def test_an_older_config_json(tmp_path):
  # Fields added since take their defaults; fields since removed are left out; a note each.
  saved = json.loads(trained_config().to_json())
  del saved['eval']['fid_mode']
  saved['eval']['retired'] = 1
  with open(tmp_path / 'config.json', 'w') as f:
    json.dump(saved, f)
  config, notes = load_run_config(str(tmp_path))
  assert config.eval.fid_mode == 'clean' and 'retired' not in config.eval
  assert len(notes) == 2 and 'eval.fid_mode' in notes[0] and 'eval.retired' in notes[1]
