"""Dequantization for the probability-flow bits/dim (evaluation/dequantization.py): the
importance-weighted bound against the exact bin probabilities of a Gaussian-mixture model,
the truncated normal's density against scipy's, the wiring in split_bpd and the report, and
the config checks."""
import math
import sys

import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.data import TensorDataset

from configs.default import get_default_config
from pipeline.bpd import BPD, split_bpd
from evaluation.dequantization import (DEQUANTIZERS, get_dequantizer, importance_weighted_bpd,
                                       truncated_normal)
from sde_lib.gaussian_mixture import GaussianMixture, exact_score_fn
from utils.seeding import batch_generator
from samplers.likelihood import likelihood
from sde_lib import VPSDE
from utils.errors import ConfigError

SCALERS = {'centered': (lambda v: 2 * v - 1, 2.0), 'flipped': (lambda v: 3 - 4 * v, -4.0)}

# Two pixels on 5 levels k / 4, centered to [-1, 1]: bins of half-width h = 0.2 there, centres
# -0.8, -0.4, 0, 0.4, 0.8. The model puts a component of std 0.03 in four of the 25 bins, 0.05
# off their centres: far narrower than a bin, so uniform dequantization is loose at K = 1
# (~1.5 bits/dim above the truth), and off the centre the truncated normal is loose too (~0.5).
NUM_BINS, DIM, EPS = 5, 2, 1e-2
CENTRES = [[-0.4, 0.0], [0.4, 0.4], [0.0, -0.8], [0.8, -0.4]]


def mixture_model():
  centres = torch.tensor(CENTRES, dtype=torch.float64)
  covs = 0.03 ** 2 * torch.eye(DIM, dtype=torch.float64).expand(len(CENTRES), DIM, DIM)
  return GaussianMixture(torch.ones(len(CENTRES)), centres + 0.05, covs)


def exact_bin_bpd(mixture, sde, levels, scale):
  """-log2 P(bin) / D of the model: P = the integral of p_eps over the bin of `levels` in the
  model's space, scaled by `scale` (m(eps) for the truncated normal, 1 for uniform). p_eps is
  the mixture perturbed to eps, diagonal, so per component a product of normal CDF differences."""
  p_eps = mixture.perturbed(sde, EPS)
  std = p_eps.covs.diagonal(dim1=1, dim2=2).sqrt().numpy()
  lo, hi = (scale * (2 * levels.numpy()[:, None, :] + edge) / NUM_BINS - scale for edge in (0, 2))
  mass = stats.norm.cdf(hi, p_eps.means.numpy(), std) - stats.norm.cdf(lo, p_eps.means.numpy(), std)
  prob = (mass.prod(-1) * p_eps.weights.numpy()).sum(1)
  return torch.as_tensor(-np.log2(prob) / DIM)


@pytest.mark.parametrize('kind', ['uniform', 'truncated_normal'])
def test_importance_weighted_bound_tightens_to_the_bin_probability(kind, float64_one_thread):
  """256 points, 64 in each bin that holds a component; 16 draws each, one ODE solve with the
  exact score and divergence; the bound with K = 1, 4, 16 takes the first K draws of each
  point. The truth is the model's -log2 P(bin) / D. beta_max = 40 makes the N(0, I) prior p_T
  to ~1e-4 nats, so that the ODE's density is the mixture's p_eps (asserted to 1e-3 bits/dim
  at every draw; measured 2e-4 at rtol = atol = 1e-7). Asserted, with SE the standard error
  over the 256 points (of the paired difference where two K are compared):
  - it decreases with K: mean(b_1 - b_4) and mean(b_4 - b_16) > 3 SE (here 9.4 and 5.5 SE for
    uniform, 6.2 and 4.7 for the truncated normal; over 20 seeds of the closed-form p_eps the
    smallest were 8.6 and 4.6, 4.8 and 3.4);
  - it stays above the truth: mean(b_K - truth) > -(3 SE + 0.001), 0.001 bits/dim for the
    solver (here b_K - truth = 1.48, 0.30, 0.06 for uniform and 0.46, 0.19, 0.05 for the
    truncated normal at K = 1, 4, 16, SE 0.02 to 0.13);
  - it approaches it: mean(b_16 - truth) < 0.5 mean(b_1 - truth) (here 0.04 and 0.11).
  """
  sde, mixture = VPSDE(beta_max=40.0), mixture_model()
  scaler, _ = SCALERS['centered']
  levels = torch.round((torch.tensor(CENTRES, dtype=torch.float64) + 1) / 2 * NUM_BINS - 0.5)
  levels = levels.repeat(64, 1)
  n = len(levels)
  x = (levels / (NUM_BINS - 1)).reshape(n, 1, 1, DIM)
  g = torch.Generator().manual_seed(0)
  y, log_q = DEQUANTIZERS[kind](x.repeat(16, 1, 1, 1), NUM_BINS, scaler, sde, EPS, g)
  result = likelihood(exact_score_fn(mixture, sde), sde, y, eps=EPS, rtol=1e-7, atol=1e-7,
                      hutchinson='exact')
  solver_error = (result.logp - mixture.perturbed(sde, EPS).log_prob(y.flatten(1))).abs().max()
  assert solver_error / (DIM * math.log(2)) < 1e-3
  m = float(sde.marginal_coeffs(torch.tensor([EPS]))[0])
  truth = exact_bin_bpd(mixture, sde, levels, m if kind == 'truncated_normal' else 1.0)
  bound = {k: importance_weighted_bpd(result.logp[:k * n], log_q[:k * n], k, DIM, NUM_BINS, scaler)
           for k in (1, 4, 16)}
  stderr = lambda v: float(v.std() / math.sqrt(n))
  for small, large in ((1, 4), (4, 16)):
    drop = bound[small] - bound[large]
    assert drop.mean() > 3 * stderr(drop), (small, large, drop.mean(), stderr(drop))
  gap = {k: b - truth for k, b in bound.items()}
  for k in (1, 4, 16):
    assert gap[k].mean() > -(3 * stderr(gap[k]) + 1e-3), (k, gap[k].mean(), stderr(gap[k]))
  assert gap[16].mean() < 0.5 * gap[1].mean(), (gap[16].mean(), gap[1].mean())


@pytest.mark.parametrize('num_bins,scaler_name,eps', [(5, 'centered', 0.2), (256, 'centered', 1e-5),
                                                      (17, 'flipped', 1e-3)])
def test_truncated_normal_against_scipy(num_bins, scaler_name, eps, float64):
  """The draw y = m c + s z of each pixel, mapped back to z = (y - m c) / s with the bin centre
  c = scaler((k + 1/2) / num_bins) computed here: z lies in [-tau, tau], tau = m h / s, h =
  |slope| / (2 num_bins) (tau = 0.28 with m = 0.81: heavy truncation; tau = 3.9; tau = 11);
  log q equals sum_d [scipy's truncnorm.logpdf(z_d) - log s + log 2h] (the density of y, per bin
  width) to 1e-10 (float64 rounding), and z passes a Kolmogorov-Smirnov test against scipy's
  truncated normal on [-tau, tau] (p > 1e-3 for 4096 values; in the first case the test tells
  tau from 1.1 tau at p ~ 1e-7, and from h / s at p ~ 1e-30)."""
  sde = VPSDE()
  scaler, slope = SCALERS[scaler_name]
  g = torch.Generator().manual_seed(1)
  levels = torch.randint(0, num_bins, (512, 1, 2, 4), generator=g).double()
  y, log_q = truncated_normal(levels / (num_bins - 1), num_bins, scaler, sde, eps, g)
  m, s = (float(v) for v in sde.marginal_coeffs(torch.tensor([eps])))
  half_width = abs(slope) / (2 * num_bins)
  tau = m * half_width / s
  z = ((y - m * scaler((levels + 0.5) / num_bins)) / s).flatten(1).numpy()
  assert np.abs(z).max() <= tau * (1 + 1e-12)
  want = (stats.truncnorm.logpdf(z, -tau, tau) - math.log(s) + math.log(2 * half_width)).sum(1)
  assert np.abs(log_q.numpy() - want).max() < 1e-10
  assert stats.kstest(z.ravel(), stats.truncnorm(-tau, tau).cdf).pvalue > 1e-3


def quantized_config(monkeypatch, images, **eval_fields):
  """A config whose test split is `images` (in [0, 1], on the grid of NUM_BINS levels)."""
  monkeypatch.setattr('pipeline.bpd.get_eval_dataset',
                      lambda config, split: TensorDataset(images, torch.zeros(len(images))))
  config = get_default_config()
  config.data.num_bins = NUM_BINS
  config.eval.bpd_eps, config.eval.bpd_rtol, config.eval.bpd_atol = EPS, 1e-4, 1e-4
  config.eval.update(eval_fields)
  return config


def test_split_bpd_with_one_uniform_draw_is_the_uniform_bound(monkeypatch, float64_one_thread):
  """split_bpd with uniform dequantization, K = 1, is the bound of a uniform draw y in each
  image's bin: bpd = (-log p_eps(y) - D log|slope| + D log num_bins) / (D log 2), slope 2 of
  x -> 2x - 1 (bits_per_dim written out). The model: one wide Gaussian N((0.1, -0.1), 0.3^2 I)
  with its exact score (then the ODE's density is its p_eps; the prior's mismatch at T is
  ~1e-5 nats) and exact divergence, so over a bin (width 0.4 in model space) -log p_eps varies
  by under 1 nat. 128 copies of the image at levels (2, 2), the bin [-0.2, 0.2]^2 that holds
  the mode:
  - each image's value lies between the bound at the bin's most and least likely points
    (their closed form; 1e-3 bits/dim for the ODE at rtol = atol = 1e-4);
  - the mean is E_u[bpd] by a 400 x 400 midpoint rule over the bin (error ~1e-6) within 4
    standard errors (0.013 bits/dim) + 1e-3 (measured: 1.097 against 1.108, 0.9 SE)."""
  images = torch.full((128, 1, 1, DIM), 0.5, dtype=torch.float64)
  config = quantized_config(monkeypatch, images, hutchinson='exact')
  sde = VPSDE()
  mean, std = torch.tensor([0.1, -0.1], dtype=torch.float64), 0.3
  eye = torch.eye(DIM, dtype=torch.float64)
  wide = GaussianMixture(torch.ones(1), mean[None], std ** 2 * eye[None])
  summary, per_image = split_bpd(config, exact_score_fn(wide, sde), sde, seed=3, progress=False)
  assert summary['dequantization'] == 'uniform' and summary['draws'] == 1 and len(per_image) == 128
  m, s = (float(c) for c in sde.marginal_coeffs(torch.tensor([EPS], dtype=torch.float64)))
  var = m ** 2 * std ** 2 + s ** 2                  # p_eps = N(m mu, (m^2 0.3^2 + s^2) I)

  def bpd(y):
    log_p = (-0.5 * ((y - m * mean) ** 2).sum(-1) / var - 0.5 * DIM * math.log(2 * math.pi * var))
    return (-log_p - DIM * math.log(2) + DIM * math.log(NUM_BINS)) / (DIM * math.log(2))

  lo, hi = -0.2 * torch.ones(DIM, dtype=torch.float64), 0.2 * torch.ones(DIM, dtype=torch.float64)
  nearest = (m * mean).clamp(lo, hi)
  farthest = torch.where((m * mean - lo).abs() > (m * mean - hi).abs(), lo, hi)
  assert (per_image >= bpd(nearest).item() - 1e-3).all()
  assert (per_image <= bpd(farthest).item() + 1e-3).all()
  u = (torch.arange(400, dtype=torch.float64) + 0.5) / 400
  grid = torch.stack(torch.meshgrid(lo[0] + 0.4 * u, lo[1] + 0.4 * u, indexing='ij'), -1)
  expected = bpd(grid).mean().item()
  stderr = per_image.std() / math.sqrt(len(per_image))
  assert abs(per_image.mean() - expected) < 4 * stderr + 1e-3, (per_image.mean(), expected, stderr)


def test_split_bpd_pairs_each_image_with_its_own_draws(monkeypatch, float64_one_thread):
  """K = 3 truncated-normal draws of 6 images in batches of 4 (then 2) images, 4 rows per ODE
  solve, so that the second batch's draws share solves: split_bpd equals the bound assembled
  here from the same draws, with the log-mean-exp over each image's own 3 draws (rows i,
  b + i, 2b + i of a batch of b), to 1e-12; the report's keys name the dequantization and K."""
  images = torch.randint(0, NUM_BINS, (6, 1, 1, DIM), generator=torch.Generator().manual_seed(4))
  images = images.double() / (NUM_BINS - 1)
  config = quantized_config(monkeypatch, images, dequantization='truncated_normal',
                            dequantization_draws=3, batch_size=4, hutchinson='exact')
  sde, mixture = VPSDE(), mixture_model()
  score_fn = exact_score_fn(mixture, sde)
  summary, per_image = split_bpd(config, score_fn, sde, seed=5, progress=False)
  assert summary['dequantization'] == 'truncated_normal' and summary['draws'] == 3
  want = []
  for index, batch in enumerate(images.split(4)):
    g = batch_generator(5, index, 'cpu', BPD)   # each batch's own
    y, log_q = truncated_normal(batch.repeat(3, 1, 1, 1), NUM_BINS, SCALERS['centered'][0], sde,
                                EPS, g)
    logp = torch.cat([likelihood(score_fn, sde, rows, eps=EPS, rtol=1e-4, atol=1e-4,
                                 hutchinson='exact').logp for rows in y.split(4)])
    for i in range(len(batch)):
      weights = logp[i::len(batch)] - log_q[i::len(batch)]
      bound = torch.logsumexp(weights, 0) - math.log(3) + DIM * math.log(0.4)   # nats of P(bin)
      want.append(-float(bound) / (DIM * math.log(2)))
  assert np.abs(per_image - np.array(want)).max() < 1e-12


def test_toy_points_are_not_dequantized(monkeypatch, float64_one_thread):
  """Continuous 2-D points keep -log2 p(x) / D of the density itself, one solve, whatever the
  dequantization settings; the report says so."""
  points = torch.tensor([[0.3, -0.4], [0.5, 0.1]], dtype=torch.float64)
  config = quantized_config(monkeypatch, points, dequantization='truncated_normal',
                            dequantization_draws=4, hutchinson='exact')
  config.data.centered = False
  sde, mixture = VPSDE(), mixture_model()
  summary, per_point = split_bpd(config, exact_score_fn(mixture, sde), sde, progress=False)
  want = likelihood(exact_score_fn(mixture, sde), sde, points, eps=EPS, rtol=1e-4, atol=1e-4,
                    hutchinson='exact').logp / (-DIM * math.log(2))
  assert np.abs(per_point - want.numpy()).max() < 1e-12
  assert summary['dequantization'] == 'none' and summary['draws'] == 1


def test_report_names_the_bound(monkeypatch):
  evaluate = sys.modules['pipeline.evaluate']
  monkeypatch.setattr(evaluate, 'split_bpd', lambda config, *args, **kwargs: (
      {'mean': 1.0, 'dequantization': config.eval.dequantization,
       'draws': config.eval.dequantization_draws}, None))
  config = get_default_config()
  config.eval.enable_vlb = config.eval.enable_score_bound = False
  config.eval.dequantization, config.eval.dequantization_draws = 'truncated_normal', 4
  numbers, _ = evaluate.likelihood_numbers(config, None, VPSDE(), None, 'cpu', [])
  assert numbers['bpd']['method'].endswith(
      'truncated_normal dequantization, importance-weighted over 4 draws')
  assert numbers['bpd']['dequantization'] == 'truncated_normal' and numbers['bpd']['draws'] == 4


@pytest.mark.parametrize('name,draws', [('gaussian', 1), ('uniform', 0), ('truncated_normal', -2)])
def test_bad_dequantization_settings_are_config_errors(name, draws, monkeypatch):
  for bad_draws in (draws, 2.5) if name == 'uniform' else (draws,):
    with pytest.raises(ConfigError, match='dequantization'):
      get_dequantizer(name, bad_draws)
  # split_bpd checks before it reads any data or solves anything
  config = quantized_config(monkeypatch, None, dequantization=name, dequantization_draws=draws)
  monkeypatch.setattr('pipeline.bpd.get_eval_dataset', lambda *a: pytest.fail('data read'))
  with pytest.raises(ConfigError, match='dequantization'):
    split_bpd(config, None, VPSDE(), progress=False)
