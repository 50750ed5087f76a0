"""EDM's process (Karras et al. 2022, sec. 2, Table 1 "Ours"): x = y + sigma n, sigma(t) = t."""
import torch

from sde_lib.base import SDE
from sde_lib.time_schedules import KARRAS_RHO, karras_grid, karras_levels


class EDMSDE(SDE):
  """dx = sqrt(2 t) dw: m(t) = 1 and s(t) = sigma(t) = t, so x_t = x_0 + t z; t is the noise level.

  Time runs on [0, T] with T = sigma_max (80 in EDM); samplers stop at sampling.eps = sigma_min
  (0.002). The probability-flow ODE is EDM's eq. 4 with sigma(t) = t: dx/dt = -t score. The
  N-step chain sits at EDM's noise levels sigma_i (eq. 5, rho = 7), sigma_min at step 0 and
  sigma_max at step N - 1.
  """

  def __init__(self, sigma_min=0.002, sigma_max=80.0, N=1000):
    super().__init__(N)
    self.sigma_min = sigma_min   # sigma_min: the chain's lowest noise level
    self.sigma_max = sigma_max   # sigma_max = sigma(T)
    self.T = sigma_max

  def sigma(self, t):
    return t

  def sde(self, x, t):
    """f = 0, g = sqrt(d sigma^2 / dt) = sqrt(2 t)."""
    return torch.zeros_like(x), (2 * t).sqrt()

  def marginal_coeffs(self, t):
    return torch.ones_like(t), t

  def network_label(self, t):
    """sigma = t: a preconditioned network is told c_noise(sigma) (models/parameterizations.py)."""
    return t

  def time_of_log_snr(self, lam):
    """lambda = -log t, so t = exp(-lambda), clamped to [0, T]."""
    return torch.exp(-torch.as_tensor(lam, dtype=torch.float64)).clamp(max=self.T)

  def likelihood_weight_integral(self, t):
    """g^2 / s^2 = 2 / t, so F(t) = 2 log t."""
    return 2 * torch.as_tensor(t, dtype=torch.float64).log()

  def inverse_likelihood_weight_integral(self, f):
    return torch.exp(torch.as_tensor(f, dtype=torch.float64) / 2)

  def chain_time(self, index):
    """sigma_i = (sigma_min^(1/rho) + i / (N - 1) (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho:
    EDM's eq. 5 read from sigma_min (i = 0) up."""
    return karras_levels(self.sigma_min, self.sigma_max, index / (self.N - 1))

  def chain_index(self, t):
    low, high = self.sigma_min ** (1 / KARRAS_RHO), self.sigma_max ** (1 / KARRAS_RHO)
    position = (t.clamp(min=0) ** (1 / KARRAS_RHO) - low) / (high - low) * (self.N - 1)
    return torch.round(position).long().clamp(0, self.N - 1)

  def time_grid(self, steps, eps, device=None):
    """The PC samplers' times: EDM's eq. 5 from T = sigma_max down to eps (rho = 7), then 0
    (sde_lib/time_schedules.py `karras_grid`). Steps uniform in t = sigma would spend nearly
    all of them above sigma = 1."""
    return karras_grid(self, steps, eps, device)

  def prior_std(self):
    return self.sigma_max

