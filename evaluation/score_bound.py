"""The score-matching bound on the negative log-likelihood (Song, Durkan, Murray & Ermon 2021,
"Maximum Likelihood Training of Score-Based Diffusion Models", Thm. 3 with the t = eps offset
of their code), per data point x, in nats:

  -log p(x) <= E[-log pi(x_T)]                                                      (prior)
      + 1/2 int_eps^T E[ g^2 (||s_theta(x_t, t) + z / s||^2 - D / s^2) - 2 div f ] dt    (diffusion)
      + E[-log N(x; (x_eps + s_eps^2 s_theta(x_eps, eps)) / m_eps, (s_eps / m_eps)^2 I)]
      - H(N(m_eps x, s_eps^2 I))                                                    (offset)

with x_t = m(t) x + s(t) z, z ~ N(0, I): -z / s is grad log p_0t(x_t | x), whose squared norm
has the mean D / s^2 used here (ScoreFlow's code uses the draw). The model it bounds
runs the reverse SDE from pi to eps and decodes x_eps by a Gaussian at Tweedie's mean. The
integral is estimated from `num_times` times per point, importance-sampled from
p(t) ~ g^2 / s^2 (sde_lib/likelihood_time.py: each term is divided by p(t)) or uniform on
[eps, T]; div f = D a(t) for the linear drift f = a(t) x of every SDE here. With the exact score
its mean over the data is H(p_eps) + KL(p_T || pi) plus the offset's mean: the data's entropy
up to the eps and prior terms. Everything is differentiable in x (variational dequantization
trains through it).
"""
import collections
import math

import torch

from data import uniform_dequantize
from samplers.likelihood import bits_per_dim
from sde_lib import batch_broadcast
from sde_lib.likelihood_time import LikelihoodTime

Bound = collections.namedtuple('Bound', ['total', 'prior', 'diffusion', 'offset'])


def _squared_norm(v):
  return v.flatten(1).square().sum(1)


def diffusion_term(score_fn, sde, x, eps, num_times, importance, generator=None):
  """1/2 int_eps^T ... dt of each point of x, estimated from `num_times` draws of (t, z)."""
  n, dim = x.shape[0], x[0].numel()
  rows = x.repeat(num_times, *([1] * (x.dim() - 1)))
  if importance:
    sampler = LikelihoodTime(sde, eps)
    t = sampler.sample(len(rows), x.device, generator, dtype=x.dtype)
    inverse_density = 1 / sampler.density(t).to(device=x.device, dtype=x.dtype)
  else:
    t = eps + (sde.T - eps) * torch.rand(len(rows), device=x.device, dtype=x.dtype,
                                         generator=generator)
    inverse_density = torch.full_like(t, sde.T - eps)
  z = torch.randn(rows.shape, device=x.device, dtype=x.dtype, generator=generator)
  mean_coeff, std = sde.marginal_coeffs(t)
  x_t = batch_broadcast(mean_coeff, rows) * rows + batch_broadcast(std, rows) * z
  # f(1, t) = a(t) for the linear drift f = a(t) x, so one call gives a(t) and g(t).
  drift, g = sde.sde(torch.ones(1, dtype=x.dtype, device=x.device), t)
  residual = _squared_norm(score_fn(x_t, t) + z / batch_broadcast(std, z))
  # E||z / s||^2 = D / s^2 exactly: the expectation in place of the draw keeps the bound unbiased
  # and removes the 2D variance of ||z||^2, which dominates where s * s_theta ~ -z.
  integrand = g ** 2 * (residual - dim / std ** 2) - 2 * dim * drift
  return 0.5 * (integrand * inverse_density).reshape(num_times, n).mean(0)


def prior_term(sde, x, generator=None):
  """-log pi(x_T), x_T = m(T) x + s(T) z."""
  t = torch.full((x.shape[0],), sde.T, device=x.device, dtype=x.dtype)
  mean, std = sde.marginal_prob(x, t)
  z = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
  return -sde.prior_logp(mean + batch_broadcast(std, x) * z)


def offset_term(score_fn, sde, x, eps, generator=None):
  """-log q(x | x_eps) - H(p_0eps(. | x)): a Gaussian decoder at Tweedie's mean
  (SDE.tweedie_x0) with std s_eps / m_eps, against the entropy D/2 (log 2 pi s_eps^2 + 1) of the
  encoder."""
  dim = x[0].numel()
  t = torch.full((x.shape[0],), eps, device=x.device, dtype=x.dtype)
  t_64 = torch.full((x.shape[0],), eps, dtype=torch.float64)   # the coefficients in float64
  mean_coeff, std = (float(c) for c in sde.marginal_coeffs(t_64[:1]))
  x_eps = mean_coeff * x + std * torch.randn(x.shape, device=x.device, dtype=x.dtype,
                                             generator=generator)
  decoded = sde.tweedie_x0(x_eps, t_64, score_fn(x_eps, t))
  decoder_var = (std / mean_coeff) ** 2
  neg_log_q = 0.5 * dim * math.log(2 * math.pi * decoder_var) + _squared_norm(x - decoded) / (
      2 * decoder_var)
  return neg_log_q - 0.5 * dim * (math.log(2 * math.pi * std ** 2) + 1)


def score_matching_bound(score_fn, sde, x, eps=1e-5, num_times=1, importance=True,
                         generator=None):
  """Bound(total, prior, diffusion, offset) of each point of x (model space), in nats."""
  prior = prior_term(sde, x, generator)
  diffusion = diffusion_term(score_fn, sde, x, eps, num_times, importance, generator)
  offset = offset_term(score_fn, sde, x, eps, generator)
  return Bound(prior + diffusion + offset, prior, diffusion, offset)


def bound_bpd(score_fn, sde, x, num_bins, scaler, eps=1e-5, num_times=100, generator=None):
  """Bits/dim of the bound for images x on the grid k / (num_bins - 1) in [0, 1], uniformly
  dequantized (one draw), or for continuous points x ([batch, D]: -log2 p / D of the density
  itself), each averaged over `num_times` independent draws; the batch is evaluated num_times
  times rather than repeated, so memory stays that of one batch."""
  images = x.dim() == 4
  y = scaler(uniform_dequantize(x, num_bins, generator) if images else x)
  total = sum(score_matching_bound(score_fn, sde, y, eps, generator=generator).total
              for _ in range(num_times)) / num_times
  if images:
    return bits_per_dim(-total, x[0].numel(), num_bins, scaler)
  return total / (x[0].numel() * math.log(2))
