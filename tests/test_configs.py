"""Every named config builds and resolves; the paper configs carry the papers' numbers."""
import importlib
import os

import pytest

from configs.default import get_default_config
from configs.resolve import (UnknownConfig, available_configs, config_name, resolve_config,
                             resolve_config_argv)
from configs.run_config import flatten
from data.datasets import DATASETS, data_shape
from models.registry import MODELS
from samplers.registry import METHODS, get_sampler
from sde_lib import get_sde
from sde_lib.reverse_variance import VarianceInputs
from pipeline.train import training_loss_fn
from utils.errors import ConfigError

EXPECTED = {'vp_toy2d', 'vp_digits', 'vp_cifar10', 'vp_cifar10_deep', 'subvp_cifar10',
            'subvp_cifar10_deep', 've_cifar10', 've_cifar10_deep', 'ddpm_cifar10'}
README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.md')


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
  training_loss_fn(config, sde)             # the loss settings are consistent
  network_given = VarianceInputs(output_fn=lambda x, t: x, gamma=lambda t: t)   # stand-ins
  get_sampler(config.sampling, sde, (1,) + data_shape(config),
              continuous=config.training.continuous,
              variance_inputs=network_given)  # and the sampler's
  assert config.model.name in MODELS
  assert config.data.dataset in DATASETS
  assert config.sampling.method in METHODS


def test_ddpm_cifar10_matches_ho_et_al():
  c = load('ddpm_cifar10')
  assert (c.training.loss, c.training.continuous) == ('ddpm', False)    # L_simple, eq. 14
  assert c.training.reduce_mean                                         # mean over pixels
  assert (c.optim.lr, c.training.batch_size, c.optim.warmup, c.optim.grad_clip) == (
      2e-4, 128, 5000, 1.0)
  assert (c.model.ema_rate, c.training.n_iters, c.model.dropout) == (0.9999, 800_000, 0.1)
  assert c.data.random_flip and c.data.centered and not c.data.uniform_dequantization
  assert c.data.dataset == 'cifar10'
  assert (c.model.name, c.model.nf, tuple(c.model.ch_mult), c.model.num_res_blocks,
          tuple(c.model.attn_resolutions)) == ('ddpm', 128, (1, 2, 2, 2), 2, (16,))
  assert (c.sampling.method, c.sampling.steps, c.sampling.variance) == ('ancestral', 1000, 'beta')
  sde = get_sde(c)  # beta_1 = 1e-4 ... beta_T = 0.02, T = 1000 (Ho et al. sec. 4)
  assert sde.N == 1000
  assert abs(sde.discrete_betas[0].item() - 1e-4) < 1e-9
  assert abs(sde.discrete_betas[-1].item() - 0.02) < 1e-9


# Song et al. 2021 on CIFAR-10 as score_sde_pytorch trains it (configs/default_cifar10_configs.py,
# run_lib.py, losses.py): what every continuous CIFAR-10 config there shares.
SONG_CIFAR10 = {
    'training.batch_size': 128, 'training.loss': 'dsm', 'training.continuous': True,
    'training.likelihood_weighting': False, 'training.eps': 1e-5,
    'optim.lr': 2e-4, 'optim.beta1': 0.9, 'optim.eps': 1e-8, 'optim.weight_decay': 0.0,
    'optim.warmup': 5000, 'optim.grad_clip': 1.0,
    'data.dataset': 'cifar10', 'data.image_size': 32, 'data.num_channels': 3,
    'data.random_flip': True, 'data.uniform_dequantization': False,
    'sde.schedule': 'linear', 'sde.beta_min': 0.1, 'sde.beta_max': 20.0, 'sde.sigma_min': 0.01,
    'sde.sigma_max': 50.0, 'sde.num_scales': 1000,
    'sampling.method': 'pc', 'sampling.steps': 1000, 'sampling.snr': 0.16,
    'sampling.n_steps_each': 1, 'sampling.noise_removal': True,
    # the released checkpoints' model_config, shared by DDPM++ and NCSN++
    'model.name': 'ncsnpp', 'model.nf': 128, 'model.ch_mult': (1, 2, 2, 2),
    'model.attn_resolutions': (16,), 'model.dropout': 0.1, 'model.resblock_type': 'biggan',
    'model.skip_rescale': True, 'model.fourier_scale': 16.0, 'model.fir_kernel': (1, 3, 3, 1),
    'model.progressive': 'none', 'model.progressive_combine': 'sum',
    'model.resamp_with_conv': True, 'model.init_scale': 0.0, 'model.conditional': True,
    'model.nonlinearity': 'swish', 'model.ema_warmup': True,  # decay min(rate, (1+n)/(10+n))
}
# DDPM++ (configs/{vp,subvp}/cifar10_ddpmpp_continuous.py): eps output, sampled with
# Euler-Maruyama down to run_lib's VP/sub-VP sampling eps 1e-3.
DDPMPP = {
    **SONG_CIFAR10, 'training.reduce_mean': True, 'data.centered': True,
    'sampling.predictor': 'euler_maruyama', 'sampling.corrector': 'none', 'sampling.eps': 1e-3,
    'model.embedding_type': 'positional', 'model.fir': False, 'model.progressive_input': 'none',
    'model.scale_by_sigma': False, 'model.parameterization': 'eps', 'model.ema_rate': 0.9999,
}
# NCSN++ (configs/ve/cifar10_ncsnpp_continuous.py): data in [0, 1], score output, PC sampling
# down to run_lib's VE sampling eps 1e-5.
NCSNPP = {
    **SONG_CIFAR10, 'training.reduce_mean': False, 'data.centered': False,
    'sampling.predictor': 'reverse_diffusion', 'sampling.corrector': 'langevin',
    'sampling.eps': 1e-5, 'model.embedding_type': 'fourier', 'model.fir': True,
    'model.progressive_input': 'residual', 'model.scale_by_sigma': True,
    'model.parameterization': 'score', 'model.ema_rate': 0.999,
}
# Each config against its reference file; the deep ones have twice the blocks and train for
# 950k iterations (the reference's n_iters 1300001 / 950001 count its loop's last index).
SONG_CONFIGS = {
    'vp_cifar10': {**DDPMPP, 'sde.name': 'vpsde', 'model.num_res_blocks': 4,
                   'training.n_iters': 1_300_000},
    'vp_cifar10_deep': {**DDPMPP, 'sde.name': 'vpsde', 'model.num_res_blocks': 8,
                        'training.n_iters': 950_000},
    'subvp_cifar10': {**DDPMPP, 'sde.name': 'subvpsde', 'model.num_res_blocks': 4,
                      'training.n_iters': 1_300_000},
    'subvp_cifar10_deep': {**DDPMPP, 'sde.name': 'subvpsde', 'model.num_res_blocks': 8,
                           'training.n_iters': 950_000},
    've_cifar10': {**NCSNPP, 'sde.name': 'vesde', 'model.num_res_blocks': 4,
                   'training.n_iters': 1_300_000},
    've_cifar10_deep': {**NCSNPP, 'sde.name': 'vesde', 'model.num_res_blocks': 8,
                        'training.n_iters': 950_000},
}


@pytest.mark.parametrize('name', sorted(SONG_CONFIGS))
def test_song_et_al_configs_match_score_sde(name):
  flat = flatten(load(name))
  wrong = {k: (flat[k], want) for k, want in SONG_CONFIGS[name].items()
           if flat[k] != want or type(flat[k]) is not type(want)}
  assert not wrong, f'{name}: field: (ours, reference): {wrong}'


# U-ViT-S/2 on CIFAR-10 as baofff/U-ViT trains it (configs/cifar10_uvit.py, train.py, sde.py,
# utils.py), field for field; their t ~ U(0, 1) is U(1e-5, 1) here (training.eps > 0).
UVIT_CIFAR10 = {
    'seed': 1234, 'training.batch_size': 128, 'training.n_iters': 500_000,   # train.n_steps
    'training.loss': 'dsm', 'training.continuous': True, 'training.reduce_mean': True,  # LSimple
    'training.likelihood_weighting': False, 'training.eps': 1e-5,
    'optim.optimizer': 'adamw', 'optim.lr': 2e-4, 'optim.beta1': 0.99,   # betas (0.99, 0.999)
    'optim.weight_decay': 0.03, 'optim.eps': 1e-8, 'optim.warmup': 2500,
    'optim.grad_clip': 0.0,                               # no config.grad_clip: no clipping
    'model.ema_rate': 0.9999, 'model.ema_warmup': False,  # train_state.ema_update(0.9999)
    'data.dataset': 'cifar10', 'data.image_size': 32, 'data.num_channels': 3,
    'data.random_flip': True, 'data.centered': True, 'data.uniform_dequantization': False,
    'sde.name': 'vpsde', 'sde.schedule': 'linear', 'sde.beta_min': 0.1, 'sde.beta_max': 20.0,
    'sde.num_scales': 1000,                               # the network sees t * 999
    'model.name': 'uvit', 'model.parameterization': 'eps',   # pred 'noise_pred'
    'model.class_conditional': False,                     # num_classes -1, mode 'uncond'
    'model.patch_size': 2, 'model.hidden_size': 512, 'model.depth': 12, 'model.num_heads': 8,
    'model.mlp_ratio': 4.0, 'model.qkv_bias': False, 'model.mlp_time_embed': False,
    'model.learn_variance': False,
    'sampling.method': 'pc', 'sampling.predictor': 'euler_maruyama',   # euler_maruyama_sde
    'sampling.corrector': 'none', 'sampling.steps': 1000, 'sampling.eps': 1e-3,
    'sampling.noise_removal': True,                       # the last step returns its mean
    'eval.num_samples': 50_000,
}


def test_uvit_cifar10_matches_bao_et_al():
  flat = flatten(load('uvit_cifar10'))
  wrong = {k: (flat[k], want) for k, want in UVIT_CIFAR10.items()
           if flat[k] != want or type(flat[k]) is not type(want)}
  assert not wrong, f'uvit_cifar10: field: (ours, reference): {wrong}'
  doc = ' '.join(importlib.import_module('configs.uvit_cifar10').__doc__.split())
  assert ('Table 1 row "U-ViT-S/2"' in doc and 'FID 3.11' in doc and '44M' in doc
          and 'reported by the paper, not measured here' in doc)


def test_the_transformer_configs_exist():
  assert {'dit_digits', 'uvit_digits', 'uvit_cifar10'} <= set(available_configs())


# The papers' numbers, not measured here: (table row, FID, probability-flow ODE FID, bits/dim)
# as the config's docstring and README.md's table quote them (Song et al. 2021 Tables 3 and 2;
# Ho et al. 2020 Table 1).
REPORTED = {   # table row, FID, IS, probability-flow ODE FID, bits/dim
    'ddpm_cifar10': ('Table 1 row "Ours (L_simple)"', '3.17', '9.46', None, '3.75'),
    'vp_cifar10': ('Table 3 row "DDPM++ cont. (VP)"', '2.55', '9.58', '3.93', '3.16'),
    'vp_cifar10_deep': ('Table 3 row "DDPM++ cont. (deep, VP)"', '2.41', '9.68', '3.08', '3.13'),
    'subvp_cifar10': ('Table 3 row "DDPM++ cont. (sub-VP)"', '2.61', '9.56', '3.16', '3.02'),
    'subvp_cifar10_deep': ('Table 3 row "DDPM++ cont. (deep, sub-VP)"', '2.41', '9.57', '2.92',
                           '2.99'),
    've_cifar10': ('Table 3 row "NCSN++ cont. (VE)"', '2.38', '9.83', None, None),
    've_cifar10_deep': ('Table 3 row "NCSN++ cont. (deep, VE)"', '2.20', '9.89', None, None),
}


@pytest.mark.parametrize('name', sorted(set(available_configs()) - {'vp_toy2d'}))
def test_adaptive_sde_tolerance_is_one_8_bit_level(name):
  """Jolicoeur-Martineau et al. 2021 set the adaptive solver's eps_abs to one 8-bit level of the
  data: 2/256 (0.0078) for images in [-1, 1], 1/256 (0.0039) for [0, 1] (their VE models).
  vp_toy2d's points are not pixels."""
  config = load(name)
  assert config.sampling.sde_atol == (0.0078 if config.data.centered else 0.0039)


@pytest.mark.parametrize('name', sorted(REPORTED))
def test_docstring_and_readme_quote_the_reported_numbers(name):
  row, fid, inception_score, ode_fid, bpd = REPORTED[name]
  doc = ' '.join(importlib.import_module(f'configs.{name}').__doc__.split())
  assert row in doc and f'FID {fid}' in doc and 'reported by the paper, not measured here' in doc
  assert f'IS {inception_score}' in doc
  assert ode_fid is None or f'ODE FID {ode_fid}' in doc
  assert bpd is None or f'{bpd} bits/dim' in doc
  with open(README) as f:
    lines = [line for line in f if line.startswith(f'| `{name}` |')]
  assert len(lines) == 1, f'README.md needs one table row for {name}'
  fid_cell, is_cell, ode_cell, bpd_cell = [cell.strip() for cell in lines[0].split('|')[3:-1]]
  assert (fid_cell, is_cell, ode_cell) == (fid, inception_score, ode_fid or '-')
  assert (bpd_cell == '-') if bpd is None else bpd_cell.endswith(bpd)


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


# RectifiedFlow's CIFAR-10 config (gnobitab/RectifiedFlow, configs/rectified_flow/
# cifar10_rf_gaussian_ddpmpp.py over default_cifar10_configs.py), field for field; their
# t ~ U(eps, 1) with the noise at t = 0 is our t in [training.eps, T = 1 - 1e-3], data at t = 0.
RECTIFIED_FLOW_CIFAR10 = {
    'sde.name': 'rectified_flow', 'sde.flow_T': 1 - 1e-3,        # their eps = 1e-3
    'training.loss': 'flow_matching', 'model.parameterization': 'velocity',
    'training.batch_size': 128, 'training.n_iters': 1_300_000, 'training.reduce_mean': True,
    'optim.lr': 2e-4, 'optim.beta1': 0.9, 'optim.eps': 1e-8, 'optim.warmup': 5000,
    'optim.grad_clip': 1.0, 'optim.weight_decay': 0.0,
    'data.dataset': 'cifar10', 'data.centered': True, 'data.random_flip': True,
    'data.uniform_dequantization': False,
    'model.name': 'ncsnpp', 'model.scale_by_sigma': False, 'model.ema_rate': 0.999999,
    'model.dropout': 0.15, 'model.nonlinearity': 'swish', 'model.nf': 128,
    'model.ch_mult': (1, 2, 2, 2), 'model.num_res_blocks': 4, 'model.attn_resolutions': (16,),
    'model.resamp_with_conv': True, 'model.conditional': True, 'model.fir': False,
    'model.skip_rescale': True, 'model.resblock_type': 'biggan', 'model.progressive': 'none',
    'model.progressive_input': 'none', 'model.progressive_combine': 'sum',
    'model.init_scale': 0.0, 'model.embedding_type': 'positional', 'model.fourier_scale': 16.0,
    'sampling.method': 'ode', 'sampling.ode_method': 'dopri5',     # use_ode_sampler 'rk45'
    'sampling.rtol': 1e-5, 'sampling.atol': 1e-5,                  # ode_tol
}


def test_rf_cifar10_matches_rectified_flow():
  flat = flatten(load('rf_cifar10'))
  wrong = {k: (flat[k], want) for k, want in RECTIFIED_FLOW_CIFAR10.items()
           if flat[k] != want or type(flat[k]) is not type(want)}
  assert not wrong, f'rf_cifar10: field: (ours, reference): {wrong}'
  doc = ' '.join(importlib.import_module('configs.rf_cifar10').__doc__.split())
  assert 'FID 2.58' in doc and '127 evaluations' in doc


def test_flow_configs_exist_and_train_a_velocity():
  for name in ('rf_digits', 'rf_cifar10', 'fm_cifar10'):
    c = load(name)
    assert (c.sde.name, c.training.loss, c.model.parameterization) == (
        'rectified_flow', 'flow_matching', 'velocity'), name
  c = load('fm_cifar10')   # Lipman et al. 2023, Table 3 (CIFAR-10)
  assert (c.training.batch_size, c.optim.lr, c.optim.warmup, c.training.n_iters) == (
      256, 5e-4, 45_000, 391_000)
  assert (c.model.nf, c.model.ch_mult, c.model.num_res_blocks, c.model.dropout) == (
      256, (1, 2, 2, 2), 2, 0.0)
