"""Dequantization for the probability-flow bits/dim of quantized images, and the
importance-weighted bound over K draws (Burda et al. 2016, IWAE):

    log P(x) >= E[ log (1/K) sum_k p_eps(y_k) / q(y_k | x) ],   y_1..y_K ~ q(. | x),

which tightens as K grows (K = 1 is the usual variational bound, Theis et al. 2016).

A pixel stored as k / (num_bins - 1) in [0, 1] has the bin [k, k + 1) / num_bins, of centre
(k + 1/2) / num_bins; the data scaler (affine, slope a) maps it to the model's space, where
its centre is c and its half-width h = |a| / (2 num_bins) (1/256 for 256 levels in [-1, 1]).
- 'uniform' (Ho et al. 2020; Song et al. 2021): y = scaler((k + u) / num_bins), u ~ U[0, 1)^D.
  P(x) is the integral of p_eps over the bin.
- 'truncated_normal' (Zheng et al. 2023, i-DODE): y = m c + s z at time eps, where
  (m, s) = sde.marginal_coeffs(eps) and z ~ N(0, I) truncated to [-tau, tau]^D, tau = m h / s,
  so y stays in the bin scaled by m; q(y | x) = prod_d phi(z_d) / (Z s), Z = erf(tau / sqrt 2).
  P(x) is the integral of p_eps over the scaled bin (the scaled bins are disjoint, so this is a
  (sub-)probability of the data's levels).
- 'variational' (Ho et al. 2019, Flow++; Song et al. 2021b): y = scaler((k + u) / num_bins), u
  drawn from a conditional flow q(u | x) fitted to the model (models/dequantizer.py,
  pipeline/dequantizer.py); log q is that of u, already in bin widths.

Units: each dequantizer returns log q of y measured in bin widths, i.e. the log density of
y / (2h): log q_model(y) + D log 2h, which is 0 for uniform dequantization. The shared
conversion `samplers.likelihood.bits_per_dim` adds D log 2h = D log(|a| / num_bins) to a
log density to make it the log-probability of a bin, so for both kinds
    bits_per_dim(log p(y) - log q) = -(log p(y) - log q_model(y)) / (D log 2).
"""
import functools
import math

import torch

from data import uniform_dequantize
from data.transforms import bin_point
from samplers.likelihood import bits_per_dim
from utils.errors import ConfigError


def dequantized(flow, x, num_bins, scaler, generator=None):
  """(y = scaler((k + u) / num_bins) in the model's space, log q(u | x)) for images x on the
  grid k / (num_bins - 1) in [0, 1]."""
  u, log_q = flow(scaler(x), generator)
  return scaler(bin_point(x, u, num_bins)), log_q


def bin_centre_and_half_width(x, num_bins, scaler):
  """Centre c (model space, like x) of the bin of each pixel of x (stored on the grid
  k / (num_bins - 1)) and the bins' half-width h in the model's space (a float)."""
  slope = float(scaler(torch.ones(())) - scaler(torch.zeros(())))
  return scaler(bin_point(x, 0.5, num_bins)), abs(slope) / (2 * num_bins)


def uniform(x, num_bins, scaler, sde, eps, generator=None):
  """y = scaler((k + u) / num_bins), u ~ U[0, 1)^D: uniform on the bin, so log q = 0."""
  y = scaler(uniform_dequantize(x, num_bins, generator))
  return y, torch.zeros(x.shape[0], dtype=y.dtype, device=y.device)


def truncated_normal(x, num_bins, scaler, sde, eps, generator=None):
  """y = m c + s z, z ~ N(0, I) truncated to [-tau, tau]^D, tau = m h / s (i-DODE), drawn by
  inverting the normal CDF; log q = sum_d log(phi(z_d) 2h / (Z s)), Z = erf(tau / sqrt 2)."""
  centre, half_width = bin_centre_and_half_width(x, num_bins, scaler)
  m, s = (float(v) for v in sde.marginal_coeffs(torch.tensor([eps], dtype=torch.float64)))
  if not s > 0:
    raise ConfigError(f"truncated-normal dequantization needs s(eps) > 0; eval.bpd_eps={eps} "
                      f"gives s = {s}")
  tau = m * half_width / s
  w = tau / math.sqrt(2)
  log_z = math.log(math.erf(w)) if w < 1 else math.log1p(-math.erfc(w))   # Z near 1: by erfc
  u = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=x.device)
  z = torch.special.ndtri(0.5 * math.erfc(w) + u * math.exp(log_z))    # Phi(-tau) + u Z
  z = z.clamp(-tau, tau).to(x.dtype)
  log_q = -0.5 * z ** 2 - 0.5 * math.log(2 * math.pi) - log_z + math.log(2 * half_width / s)
  return m * centre + s * z, log_q.flatten(1).sum(1)


def variational(x, num_bins, scaler, sde, eps, generator=None, flow=None):
  """y = scaler((k + u) / num_bins), u ~ q(u | x) of the fitted flow; log q of u."""
  with torch.no_grad():
    return dequantized(flow, x, num_bins, scaler, generator)


# name -> dequantizer(x in [0, 1] on the grid, num_bins, scaler, sde, eps, generator)
#         -> (y in the model's space, log q of y in bin widths: [batch])
DEQUANTIZERS = {'uniform': uniform, 'truncated_normal': truncated_normal,
                'variational': variational}


def get_dequantizer(name, draws, flow=None):
  """The dequantizer called `name`, checked together with the number of draws K per image;
  'variational' draws from `flow` (a models.dequantizer.DequantizationFlow)."""
  if name not in DEQUANTIZERS:
    raise ConfigError(f"unknown dequantization {name!r} (eval.dequantization); choose one of "
                      f"{sorted(DEQUANTIZERS)}")
  if not isinstance(draws, int) or draws < 1:
    raise ConfigError(f"eval.dequantization_draws must be an integer >= 1, got {draws!r}")
  if name == 'variational':
    if flow is None:
      raise ConfigError("eval.dequantization='variational' needs a fitted dequantizer flow")
    return functools.partial(variational, flow=flow)
  return DEQUANTIZERS[name]


def importance_weighted_bpd(logp, log_q, draws, dim, num_bins, scaler):
  """Bits/dim of the bound log (1/K) sum_k p(y_k) / q(y_k | x) of each image, from logp (log
  density of y in the model's space, nats) and log_q (in bin widths) of K = `draws` draws per
  image, both [K * batch] with draw k of image i in row k * batch + i."""
  log_weights = (logp - log_q).reshape(draws, -1)
  bound = torch.logsumexp(log_weights, 0) - math.log(draws)
  return bits_per_dim(bound, dim, num_bins, scaler)
