"""An SDE's N-step discrete chain as a process in time, so the generic samplers run it exactly.

A discrete-time model is trained on the chain's steps only, x_i = m_i x_0 + s_i z at chain
time t_i (`SDE.chain_time`), so it is sampled there: `DiscreteChain(sde)` has the chain's
coefficients at t_i and the data (m, s) = (1, 0) one step below t_0. Its exact transitions
(`SDE.transition`) are then the chain's own steps; for the VP-SDE, between t_{i-1} and t_i,
a = sqrt(alphabar_i / alphabar_{i-1}) = sqrt(alpha_i) and sigma^2 = 1 - alpha_i = beta_i, so
the generic ancestral step on it is Ho et al.'s Algorithm 2 with the chain's betas, and for
the VE-SDE it is SMLD's ancestral step on its noise levels sigma_i.
"""
import torch

from sde_lib.base import SDE
from utils.errors import ConfigError


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
    """The chain's own times t_{N-1}, ..., t_0, then the data time (`eps` plays no part)."""
    if steps != self.N:
      raise ConfigError(f"a discrete-time model is sampled on its {self.N}-step chain: set "
                        f"sampling.steps={self.N} (got {steps}; respaced chains are not supported yet)")
    steps_down = torch.arange(self.N - 1, -1, -1, dtype=torch.float64)
    times = torch.cat([self.base.chain_time(steps_down), torch.tensor([self.data_time], dtype=torch.float64)])
    return times.to(device=device, dtype=torch.get_default_dtype())
