"""Every named config builds and resolves; the paper configs carry the papers' numbers."""
import importlib

import pytest

from configs.default import get_default_config
from configs.resolve import (UnknownConfig, available_configs, config_name, resolve_config,
                             resolve_config_argv)
from data.datasets import DATASETS
from models.registry import MODELS
from samplers.registry import METHODS
from sde_lib import get_sde
from training.losses import get_loss_fn
from utils.errors import ConfigError

EXPECTED = {'vp_toy2d', 'vp_digits', 'vp_cifar10', 'ddpm_cifar10'}


def load(name):
  return importlib.import_module(f'configs.{name}').get_config()


def test_the_required_configs_exist():
  assert EXPECTED <= set(available_configs())


@pytest.mark.parametrize('name', available_configs())
def test_config_builds_resolves_and_only_overrides_default_fields(name):
  config = load(name)
  assert set(config.keys()) == set(get_default_config().keys())
  for section in config.keys():
    if hasattr(config[section], 'keys'):
      assert set(config[section].keys()) == set(get_default_config()[section].keys()), section
  assert config_name(resolve_config(name)) == name
  assert importlib.import_module(f'configs.{name}').__doc__  # says which paper / row it follows
  sde = get_sde(config)
  get_loss_fn(config, sde)                  # the loss settings are consistent
  assert config.model.name in MODELS
  assert config.data.dataset in DATASETS
  assert config.sampling.method in METHODS


def test_ddpm_cifar10_matches_ho_et_al():
  c = load('ddpm_cifar10')
  assert (c.training.loss, c.training.continuous) == ('ddpm', False)    # L_simple, eq. 14
  assert (c.optim.lr, c.training.batch_size, c.optim.warmup) == (2e-4, 128, 5000)
  assert (c.model.ema_rate, c.training.n_iters, c.model.dropout) == (0.9999, 800_000, 0.1)
  assert c.data.random_flip and c.data.dataset == 'cifar10'
  assert (c.model.name, c.model.nf, tuple(c.model.ch_mult), c.model.num_res_blocks,
          tuple(c.model.attn_resolutions)) == ('ddpm', 128, (1, 2, 2, 2), 2, (16,))
  sde = get_sde(c)  # beta_1 = 1e-4 ... beta_T = 0.02, T = 1000 (Ho et al. sec. 4)
  assert sde.N == 1000
  assert abs(sde.discrete_betas[0].item() - 1e-4) < 1e-9
  assert abs(sde.discrete_betas[-1].item() - 0.02) < 1e-9


def test_vp_cifar10_matches_song_et_al_training():
  c = load('vp_cifar10')
  assert (c.training.loss, c.training.continuous, c.sde.name) == ('dsm', True, 'vpsde')
  assert (c.training.batch_size, c.optim.lr, c.optim.warmup, c.optim.grad_clip) == (128, 2e-4, 5000, 1.0)
  assert (c.model.ema_rate, c.training.n_iters) == (0.9999, 1_300_000)
  assert (c.data.dataset, c.data.random_flip, c.data.centered) == ('cifar10', True, True)
  assert (c.sampling.method, c.sampling.predictor, c.sampling.corrector, c.sampling.snr,
          c.sampling.steps) == ('pc', 'reverse_diffusion', 'langevin', 0.16, 1000)


def test_unknown_name_lists_the_valid_ones():
  with pytest.raises(UnknownConfig) as info:
    resolve_config('vp_nope')
  for name in EXPECTED:
    assert name in str(info.value)


def test_argv_rewriting_handles_both_flag_forms(tmp_path):
  path = tmp_path / 'mine.py'
  path.write_text('')
  argv = resolve_config_argv(['run.py', '--config', 'vp_toy2d', '--config.seed=1'])
  assert argv[2] == resolve_config('vp_toy2d') and argv[3] == '--config.seed=1'
  assert resolve_config_argv(['run.py', f'--config={path}']) == ['run.py', f'--config={path}']


def test_overrides_of_unknown_fields_are_refused_with_a_suggestion():
  assert resolve_config_argv(['run.py', '--config.model.nf=3', '--noconfig.data.centered'])[1:] == [
      '--config.model.nf=3', '--noconfig.data.centered']
  with pytest.raises(ConfigError, match=r"unknown config field 'model.nff'; did you mean model.nf\?"):
    resolve_config_argv(['run.py', '--config', 'vp_toy2d', '--config.model.nff=3'])
  with pytest.raises(ConfigError, match="unknown config field 'nothing.like.it'$"):
    resolve_config_argv(['run.py', '--config.nothing.like.it=1'])
