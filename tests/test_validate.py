"""configs/validate.py: every named config passes; each value out of range is refused with the
field named, and run.py says so in one line before writing anything."""
import importlib

import pytest

from configs.resolve import available_configs
from configs.vp_digits import get_config as digits_config
from configs.validate import validate
from utils.errors import ConfigError

@pytest.mark.parametrize('name', available_configs())
def test_named_configs_are_valid(name):
  validate(importlib.import_module(f'configs.{name}').get_config())


@pytest.mark.parametrize('field, value', [
    ('training.n_iters', 0), ('training.batch_size', 0), ('training.batch_size', -4),
    ('training.eps', 0.0), ('training.eps', 1.5), ('sampling.steps', 0), ('sampling.eps', 0.0),
    ('sampling.eps', 1.0), ('sampling.snr', -0.1), ('sampling.guidance_scale', -1.0),
    ('sampling.guidance_scale', float('inf')), ('sampling.classifier_scale', float('nan')),
    ('optim.lr', 0.0), ('model.label_dropout', 1.5), ('sde.sigma_min', 0.0),
    ('eval.batch_size', 0), ('sampling.num_samples', 0), ('sde.beta_min', -0.1)])
def test_a_value_out_of_range_names_its_field(field, value):
  config = digits_config()
  section, name = field.split('.')
  config[section][name] = value
  with pytest.raises(ConfigError, match=f'config.{field} must be'):
    validate(config)


@pytest.mark.parametrize('smaller, larger, values', [
    ('sde.beta_min', 'sde.beta_max', (20.0, 20.0)), ('sde.beta_min', 'sde.beta_max', (30.0, 20.0)),
    ('sde.sigma_min', 'sde.sigma_max', (50.0, 0.01))])
def test_ordered_pairs(smaller, larger, values):
  config = digits_config()
  for field, value in zip((smaller, larger), values):
    section, name = field.split('.')
    config[section][name] = value
  with pytest.raises(ConfigError, match=f'config.{smaller} .* must be below config.{larger}'):
    validate(config)
