"""The variance-exploding SDE (Song et al. 2021 eq. 9; SMLD/NCSN as its discretization)."""
import math

import torch

from sde_lib.base import SDE


class VESDE(SDE):
  """dx = sqrt(d sigma^2(t)/dt) dw, sigma(t) = sigma_min (sigma_max/sigma_min)^t; x_t = x_0 + sigma(t) z.

  Its chain is SMLD's N geometric noise levels sigma_i from sigma_min to sigma_max, so chain
  step i sits at t_i = i T / (N - 1), where sigma(t_i) = sigma_i.
  """

  def __init__(self, sigma_min=0.01, sigma_max=50.0, N=1000):
    super().__init__(N)
    self.sigma_min = sigma_min   # sigma(0)
    self.sigma_max = sigma_max   # sigma(1)

  def chain_time(self, index):
    return index * (self.T / (self.N - 1))

  def chain_index(self, t):
    return torch.round(t * ((self.N - 1) / self.T)).long().clamp(0, self.N - 1)

  def network_label(self, t):
    """sigma(t): score_sde's continuous VE networks are told the noise level (NCSN++ embeds
    log sigma and, with scale_by_sigma, divides its output by it)."""
    return self.sigma(t)

  def sigma(self, t):
    return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

  def sde(self, x, t):
    g = self.sigma(t) * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min))
    return torch.zeros_like(x), g

  def marginal_coeffs(self, t):
    return torch.ones_like(t), self.sigma(t)

  def likelihood_weight_integral(self, t):
    """g^2 / s^2 = 2 log(sigma_max / sigma_min) is constant, so F is linear and t uniform."""
    return 2 * math.log(self.sigma_max / self.sigma_min) * torch.as_tensor(t).double()

  def inverse_likelihood_weight_integral(self, f):
    return torch.as_tensor(f, dtype=torch.float64) / (2 * math.log(self.sigma_max / self.sigma_min))

  def prior_std(self):
    return self.sigma_max
