"""The variational dequantizer (models/dequantizer.py, pipeline/dequantizer.py).

- log q(u | x) is the change of variables of its own map: checked against log|det| of the
  Jacobian that autograd computes for one image (an independent computation of the same number).
- It starts as uniform dequantization (log q = 0).
- Fitted to the exact score of quantized Gaussian data, its bound is below the uniform one and
  both stay above the data's exact discrete NLL, -log prod_d (Phi(b_hi) - Phi(b_lo)).
"""
import math

import torch

from evaluation.score_bound import score_matching_bound
from gaussian_flow import gaussian_score_fn
from sde_lib.gaussian_mixture import GaussianMixture
from models.dequantizer import DequantizationFlow
from samplers.likelihood import bits_per_dim
from sde_lib import VPSDE
from evaluation.dequantization import dequantized
from pipeline.dequantizer import fit_flow


def randomized_flow(channels=1, seed=0):
  torch.manual_seed(seed)
  flow = DequantizationFlow(channels, hidden=8, num_layers=3)
  with torch.no_grad():   # away from the identity start
    for p in flow.parameters():
      p.add_(0.3 * torch.randn_like(p))
  return flow


def test_log_q_is_the_change_of_variables_of_the_map(float64):
  # One 1x3x3 image through flow(x): u and log q(u | x) as the dequantizer uses them. The
  # logistic noise e it started from is logit of its uniform draw (the same generator seed), and
  # e -> u = sigmoid(h(e; x)) is invertible, so log q(u) = log p(e) - log|det du/de| with the
  # standard logistic density log p(e) = -e - 2 log(1 + e^{-e}) written out, and the
  # determinant from autograd's 9x9 Jacobian of the map: none of the flow's bookkeeping of
  # log-scales and sigmoid' terms is reused. Float64: 1e-10 (round-off of a 9x9 determinant).
  flow = randomized_flow()
  x = torch.rand(1, 1, 3, 3)
  u, log_q = flow(x, torch.Generator().manual_seed(7))
  e = torch.logit(torch.rand(1, 1, 3, 3, generator=torch.Generator().manual_seed(7)), eps=1e-6)
  to_u = lambda e: torch.sigmoid(flow.transform(e.reshape(1, 1, 3, 3), x)[0]).flatten()
  torch.testing.assert_close(u.flatten(), to_u(e.flatten()), rtol=0, atol=0)
  jacobian = torch.autograd.functional.jacobian(to_u, e.flatten())
  log_p = (-e - 2 * torch.nn.functional.softplus(-e)).sum()
  expected = log_p - torch.linalg.slogdet(jacobian)[1]
  torch.testing.assert_close(log_q, expected.reshape(1), rtol=1e-10, atol=1e-10)


def test_the_flow_starts_as_uniform_dequantization():
  flow = DequantizationFlow(1, hidden=8, num_layers=2)
  u, log_q = flow(torch.rand(100, 1, 4, 4), torch.Generator().manual_seed(0))
  assert log_q.abs().max() < 1e-4          # float32 rounding of sigmoid'(e) / sigmoid'(e)
  assert 0.45 < u.mean() < 0.55 and u.min() >= 0 and u.max() <= 1


def test_fitted_bound_is_tighter_than_uniform_and_above_the_exact_nll():
  # Data: 2x2 images whose pixels are independent N(0.45, 0.12^2) in [0, 1], quantized to 5
  # levels, so the density is far from flat inside a bin and q has room to improve on the
  # uniform. Model: the exact score of the continuous Gaussian on [-1, 1] (x -> 2x - 1), where
  # the score-matching bound is exact up to the prior and eps terms (tests/test_score_bound.py).
  # Measured over 4,000 images, 64 (t, z) draws each: exact 1.461, fitted 1.482, uniform 1.674
  # bits/dim; 5 standard errors of the per-image differences separate uniform from fitted, and
  # the fitted bound may not undercut the exact NLL by more than 5 of them.
  torch.manual_seed(0)
  sde, num_bins, scaler = VPSDE(), 5, lambda x: 2 * x - 1
  mean, std = 0.45, 0.12
  gaussian = GaussianMixture(torch.ones(1), torch.full((1, 4), 2 * mean - 1),
                             (2 * std) ** 2 * torch.eye(4)[None])
  score = gaussian_score_fn(gaussian, sde)
  model_score = lambda y, t: score(y.reshape(len(y), 4), t).reshape(y.shape).float()
  g = torch.Generator().manual_seed(1)
  pixels = (mean + std * torch.randn(4000, 1, 2, 2, generator=g)).clamp(0, 1 - 1e-6)
  images = torch.floor(pixels * num_bins) / (num_bins - 1)    # the bin of each pixel, stored
  level = torch.round(images * (num_bins - 1))
  normal = torch.distributions.Normal(mean, std)
  mass = normal.cdf((level + 1) / num_bins) - normal.cdf(level / num_bins)
  exact = (-mass.log().flatten(1).sum(1) / (4 * math.log(2)))

  flow = DequantizationFlow(1, hidden=16, num_layers=2)
  settings = {'steps': 300, 'batch_size': 256, 'lr': 3e-3, 'eps': 1e-3}
  fit_flow(flow, images[:2000], model_score, sde, num_bins, scaler, settings, g, progress=False)

  def bound(kind):
    with torch.no_grad():
      if kind == 'uniform':
        y, log_q = dequantized(DequantizationFlow(1, 8, 1), images, num_bins, scaler, g)
      else:
        y, log_q = dequantized(flow, images, num_bins, scaler, g)
      total = sum(score_matching_bound(model_score, sde, y, 1e-3, generator=g).total
                  for _ in range(64)) / 64
      return bits_per_dim(-(total + log_q), 4, num_bins, scaler)

  uniform, fitted = bound('uniform'), bound('variational')
  se = lambda d: d.std().item() / math.sqrt(len(d))
  assert (uniform - fitted).mean() > 5 * se(uniform - fitted), (uniform.mean(), fitted.mean())
  assert (fitted - exact).mean() > -5 * se(fitted - exact), (fitted.mean(), exact.mean())
