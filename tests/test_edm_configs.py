"""The EDM configs, field by field: edm_cifar10 against NVlabs/edm train.py's CIFAR-10 defaults
(--arch=ddpmpp --precond=edm), edm_digits against the demo it changes."""
import importlib

import pytest
import torch

from configs.run_config import flatten
from configs.validate import validate
from models import get_model
from sde_lib import get_sde
from training.losses import get_loss_fn

# NVlabs/edm train.py: --batch 512, --lr 10e-4, lr_rampup_kimg 10000, --duration 200 (Mimg),
# --ema 0.5 (Mimg half-life), --dropout 0.13, --xflip False; Adam betas (0.9, 0.999), eps 1e-8,
# no gradient clipping; loss.sum() over pixels. networks.py EDMPrecond (sigma_data 0.5),
# loss.py EDMLoss (P_mean -1.2, P_std 1.2); SongUNet for ddpmpp on CIFAR-10: model_channels 128,
# channel_mult [2, 2, 2], num_blocks 4, attn_resolutions [16], positional noise embedding,
# resample_filter [1, 1] (no FIR), standard encoder / decoder (no progressive paths).
# generate.py: 18 steps (35 evaluations), sigma_min 0.002, sigma_max 80, rho 7, S_churn 0.
EDM_CIFAR10 = {
    'sde.name': 'edm', 'sde.sigma_min': 0.002, 'sde.sigma_max': 80.0,
    'training.loss': 'edm', 'training.p_mean': -1.2, 'training.p_std': 1.2,
    'training.reduce_mean': False, 'training.continuous': True, 'training.batch_size': 512,
    'training.n_iters': 390_625, 'training.loss_weighting': 'none',
    'optim.lr': 1e-3, 'optim.beta1': 0.9, 'optim.eps': 1e-8, 'optim.weight_decay': 0.0,
    'optim.warmup': 19_531, 'optim.grad_clip': 0.0,
    'data.dataset': 'cifar10', 'data.image_size': 32, 'data.num_channels': 3,
    'data.centered': True, 'data.random_flip': False, 'data.uniform_dequantization': False,
    'model.name': 'ncsnpp', 'model.parameterization': 'edm', 'model.sigma_data': 0.5,
    'model.nf': 128, 'model.ch_mult': (2, 2, 2), 'model.num_res_blocks': 4,
    'model.attn_resolutions': (16,), 'model.dropout': 0.13, 'model.resblock_type': 'biggan',
    'model.embedding_type': 'positional', 'model.fir': False, 'model.progressive': 'none',
    'model.progressive_input': 'none', 'model.skip_rescale': True,
    'model.resamp_with_conv': True, 'model.scale_by_sigma': False, 'model.conditional': True,
    'model.nonlinearity': 'swish', 'model.learn_variance': False,
    'model.class_conditional': False,
    'sampling.method': 'heun', 'sampling.time_schedule': 'karras', 'sampling.steps': 35,
    'sampling.eps': 0.002, 'sampling.s_churn': 0.0, 'sampling.noise_removal': True,
    'eval.bpd_eps': 0.002,
}
# What edm_digits changes in the demo (vp_digits); everything else is the demo's.
EDM_DIGITS_CHANGES = {
    'sde.name': 'edm', 'sde.sigma_min': 0.002, 'sde.sigma_max': 80.0,
    'model.parameterization': 'edm', 'model.sigma_data': 0.75,
    'training.loss': 'edm', 'training.p_mean': -1.2, 'training.p_std': 1.2,
    'sampling.method': 'heun', 'sampling.time_schedule': 'karras', 'sampling.steps': 35,
    'sampling.eps': 0.002, 'eval.bpd_eps': 0.002,
}


def load(name):
  return importlib.import_module(f'configs.{name}').get_config()


def test_edm_cifar10_matches_edms_train_py():
  flat = flatten(load('edm_cifar10'))
  wrong = {k: (flat[k], want) for k, want in EDM_CIFAR10.items()
           if flat[k] != want or type(flat[k]) is not type(want)}
  assert not wrong, f'field: (ours, reference): {wrong}'


def test_edm_cifar10_ema_has_a_half_life_of_half_a_million_images():
  """decay^(500,000 / 512 steps) = 1/2: EDM's --ema 0.5 Mimg at batch 512, to 1e-12."""
  config = load('edm_cifar10')
  assert abs(config.model.ema_rate ** (500_000 / 512) - 0.5) < 1e-12


def test_edm_cifar10_docstring_quotes_the_reported_number():
  doc = ' '.join(importlib.import_module('configs.edm_cifar10').__doc__.split())
  assert 'FID 1.97' in doc and 'reported by the paper, not measured here' in doc
  assert 'augmentation' in doc


def test_edm_cifar10_builds_edms_55_73m_parameter_network():
  """EDM's Table 7 gives its VP DDPM++ for CIFAR-10 55.73M parameters (beside score_sde's
  original 61.80M, which tests/test_import_score_sde.py pins): ours, built on the meta device,
  the same to the ten thousand."""
  with torch.device('meta'):
    model = get_model(load('edm_cifar10'))
  assert round(sum(p.numel() for p in model.parameters()) / 1e4) == 5573


def test_edm_digits_is_the_demo_with_edms_formulation():
  demo, edm = flatten(load('vp_digits')), flatten(load('edm_digits'))
  assert {k: edm[k] for k in EDM_DIGITS_CHANGES} == EDM_DIGITS_CHANGES
  assert {k for k in edm if edm[k] != demo[k]} == set(EDM_DIGITS_CHANGES) - {
      k for k in EDM_DIGITS_CHANGES if demo[k] == EDM_DIGITS_CHANGES[k]}


@pytest.mark.parametrize('name', ['edm_digits', 'edm_cifar10'])
def test_edm_configs_validate_and_build_their_loss(name):
  config = load(name)
  validate(config)
  assert get_sde(config).T == 80.0
  get_loss_fn(config, get_sde(config))
