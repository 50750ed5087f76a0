"""An SDE's N-step discrete chain as a process in time, so the generic samplers run it exactly.

A discrete-time model is trained on the chain's steps only, x_i = m_i x_0 + s_i z at chain
time t_i (`SDE.chain_time`), so it is sampled there: `DiscreteChain(sde)` has the chain's
coefficients at t_i and the data (m, s) = (1, 0) one step below t_0. Its exact transitions
(`SDE.transition`) are then the chain's own steps; for the VP-SDE, between t_{i-1} and t_i,
a = sqrt(alphabar_i / alphabar_{i-1}) = sqrt(alpha_i) and sigma^2 = 1 - alpha_i = beta_i, so
the generic ancestral step on it is Ho et al.'s Algorithm 2 with the chain's betas, and for
the VE-SDE it is SMLD's ancestral step on its noise levels sigma_i.

A respaced chain (Nichol & Dhariwal 2021, sec. 4) keeps K < N of the steps, S_1 < ... < S_K,
and is the same process on fewer times: between kept steps the transitions are
a^2 = alphabar_{S_k} / alphabar_{S_{k-1}}, i.e. the respaced betas
1 - alphabar_{S_k} / alphabar_{S_{k-1}} of their eq. 19, and the network still sees S_k.
"""
import dataclasses

import torch

from sde_lib.base import SDE
from sde_lib.time_schedules import respaced_grid, respaced_steps
from utils.errors import ConfigError


@dataclasses.dataclass
class ChainArrays:
  """A VP chain's arrays (float64) from its betas: alphas = 1 - betas, alphabar = their
  cumulative product (alphabar_prev shifted, 1 first), and the posterior
  q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, beta-tilde_t) (Ho et al. 2020, eqs. 6-7)."""
  betas: torch.Tensor
  alphas: torch.Tensor
  alphas_cumprod: torch.Tensor
  alphas_cumprod_prev: torch.Tensor
  posterior_mean_coef1: torch.Tensor
  posterior_mean_coef2: torch.Tensor
  posterior_variance: torch.Tensor

  @classmethod
  def from_betas(cls, betas):
    alphas = 1.0 - betas
    abar = torch.cumprod(alphas, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
    return cls(betas, alphas, abar, abar_prev,
               posterior_mean_coef1=betas * abar_prev.sqrt() / (1.0 - abar),
               posterior_mean_coef2=(1.0 - abar_prev) * alphas.sqrt() / (1.0 - abar),
               posterior_variance=betas * (1.0 - abar_prev) / (1.0 - abar))


def respaced_chain(sde, steps):
  """(kept steps, ChainArrays) of the chain of `sde` (a VPSDE) respaced to `steps` steps
  (sde_lib/time_schedules.py `respaced_steps`): betas 1 - alphabar_{S_k} / alphabar_{S_{k-1}}
  (Nichol & Dhariwal 2021, eq. 19); all N steps give the chain's own arrays."""
  kept = respaced_steps(sde.N, steps)
  if steps == sde.N:
    return kept, sde.chain_arrays
  abar = sde.alphas_cumprod[kept]
  return kept, ChainArrays.from_betas(1.0 - abar / torch.cat([torch.ones(1, dtype=abar.dtype),
                                                            abar[:-1]]))


class DiscreteChain(SDE):
  """The chain of `sde` on its times t_{N-1} > ... > t_0 and the data below them."""

  def __init__(self, sde):
    super().__init__(sde.N)
    self.base = sde
    self.T = sde.T
    t_0, t_1 = (float(sde.chain_time(torch.tensor(i, dtype=torch.float64))) for i in (0, 1))
    self.data_time = t_0 - (t_1 - t_0)   # one chain step below t_0: 0 for the VP-SDE
    self._below_chain = (self.data_time + t_0) / 2   # times under this are the data

  def marginal_coeffs(self, t):
    """(m_i, s_i) of the chain step at time t; (1, 0) at the data time."""
    mean_coeff, std = self.base.chain_coeffs(self.base.chain_index(t))
    data = t < self._below_chain
    return torch.where(data, 1.0, mean_coeff), torch.where(data, 0.0, std)

  def sde(self, x, t):
    raise ConfigError("a discrete-time model has only its chain, no drift: sample it with the "
                      "'ancestral' or 'reverse_diffusion' predictor")

  def prior_std(self):
    return self.base.prior_std()

  def time_grid(self, steps, eps=None, device=None):
    """The times of the chain's steps from the highest down, all N of them or the `steps` of
    the respaced chain, then the data time (sde_lib/time_schedules.py `respaced_grid`; `eps`
    plays no part)."""
    return respaced_grid(self, steps, device)
