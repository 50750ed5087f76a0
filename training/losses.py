"""Denoising score matching losses (Song et al. 2021 eq. 7; Ho et al. 2020 eq. 14; SMLD).

Every objective here is one mechanism: draw a time, perturb x_0 to x_t = m x_0 + s z, and
penalize  w * || s * score(x_t, t) + z ||^2,  i.e. lambda(t) ||score - grad log p_{0t}||^2
with lambda = s^2 (w = 1) or, with likelihood weighting, lambda = g(t)^2 (w = g^2 / s^2).
What differs is only where the time comes from:
  - continuous: t ~ U[eps, T], (m, s) = marginal_coeffs(t)           (Song et al. 2021)
  - a chain step i ~ U{0..N-1}, (m, s) = sde.chain_coeffs(i): on the VP-SDE the DDPM chain
    (sqrt(abar_i), sqrt(1 - abar_i)), where for an eps-network s * score = -eps_theta and the
    penalty is ||eps - eps_theta||^2 (L_simple); on the VE-SDE SMLD's (1, sigma_i) (Song & Ermon 2019)
"""
import torch

from models import get_score_fn
from sde_lib import batch_broadcast
from utils.errors import ConfigError


def continuous_times(sde, n, eps, device, generator=None):
  """t ~ U[eps, T] and its marginal coefficients (m(t), s(t))."""
  t = eps + (sde.T - eps) * torch.rand(n, device=device, generator=generator)
  mean_coeff, std = sde.marginal_coeffs(t)
  return t, mean_coeff, std


def chain_times(sde, n, eps, device, generator=None):
  """A uniform chain step i in {0..N-1}, its time t_i = sde.chain_time(i) and the chain's
  (m_i, s_i): DDPM's (sqrt(abar_i), sqrt(1 - abar_i)) on the VP-SDE, SMLD's (1, sigma_i) on the VE."""
  index = torch.randint(sde.N, (n,), device=device, generator=generator)
  dtype = torch.get_default_dtype()
  mean_coeff, std = (c.to(dtype) for c in sde.chain_coeffs(index))
  return sde.chain_time(index).to(dtype), mean_coeff, std


def dsm_per_sample(score_fn, x0, t, mean_coeff, std, z, weight, reduce_mean):
  """weight * ||std * score(x_t, t) + z||^2 per sample, x_t = mean_coeff x0 + std z.

  The sum (or mean, `reduce_mean`) runs over all non-batch dimensions.
  """
  x_t = batch_broadcast(mean_coeff, x0) * x0 + batch_broadcast(std, x0) * z
  residual = batch_broadcast(std, x0) * score_fn(x_t, t) + z
  sq = residual.square().flatten(1)
  per_sample = sq.mean(1) if reduce_mean else sq.sum(1)
  return weight * per_sample


def _time_sampler(config):
  """(times function, continuous flag) for config.training.loss."""
  train = config.training
  if train.loss == 'dsm':
    return (continuous_times, True) if train.continuous else (chain_times, False)
  if train.loss == 'ddpm':
    if config.sde.name != 'vpsde' or train.continuous:
      raise ConfigError("training.loss='ddpm' (L_simple) walks the VP-SDE's DDPM chain: "
                       "set sde.name='vpsde' and training.continuous=False")
    return chain_times, False
  raise ConfigError(f"unknown training.loss {train.loss!r}; choose 'dsm' or 'ddpm'")


def get_loss_fn(config, sde):
  """loss_fn(model, x0, generator=None) -> scalar batch mean of the configured DSM loss.

  x0 is a batch in model space (already scaled).
  """
  times, continuous = _time_sampler(config)
  train = config.training
  if train.likelihood_weighting and not continuous:
    raise ConfigError("likelihood_weighting weights by g(t)^2 and needs training.continuous=True")

  def loss_fn(model, x0, generator=None):
    score_fn = get_score_fn(sde, model, continuous, config.model.parameterization)
    t, mean_coeff, std = times(sde, x0.shape[0], train.eps, x0.device, generator)
    z = torch.randn(x0.shape, device=x0.device, generator=generator)
    weight = torch.ones_like(std)
    if train.likelihood_weighting:
      weight = sde.sde(torch.zeros_like(x0), t)[1] ** 2 / std ** 2
    return dsm_per_sample(score_fn, x0, t, mean_coeff, std, z, weight, train.reduce_mean).mean()

  return loss_fn
