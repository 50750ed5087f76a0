"""The sub-VP SDE (Song et al. 2021, eq. 11): its variance is bounded by the VP-SDE's."""
import torch

from sde_lib.base import SDE, batch_broadcast
from sde_lib.schedules import get_schedule


class SubVPSDE(SDE):
  """dx = -1/2 beta(t) x dt + sqrt(beta(t) (1 - exp(-2 int_0^t beta))) dw;

  x_t = sqrt(alphabar(t)) x_0 + (1 - alphabar(t)) z, alphabar(t) = exp(-int_0^t beta).
  """

  def __init__(self, beta_min=0.1, beta_max=20.0, N=1000, schedule='linear'):
    super().__init__(N)
    self.beta_min = beta_min    # beta(0)
    self.beta_max = beta_max    # beta(1)
    self.schedule = get_schedule(schedule, beta_min, beta_max)

  def sde(self, x, t):
    beta_t = self.schedule.beta(t)
    discount = -torch.expm1(-2 * self.schedule.integral(t))
    return -0.5 * batch_broadcast(beta_t, x) * x, (beta_t * discount).sqrt()

  def marginal_coeffs(self, t):
    log_abar = -self.schedule.integral(t)
    return torch.exp(0.5 * log_abar), (-torch.expm1(log_abar)).clamp(min=0)

  def likelihood_weight_integral(self, t):
    """F(t) = 2 log(exp(B) - 1) - B = 2 log(2 sinh(B / 2)), whose derivative is
    beta (1 + alphabar) / (1 - alphabar) = g^2 / s^2."""
    b = self.schedule.integral(torch.as_tensor(t).double())
    return 2 * torch.log(torch.expm1(b)) - b

  def inverse_likelihood_weight_integral(self, f):
    """B = 2 asinh(exp(f / 2) / 2), then t = B^-1."""
    f = torch.as_tensor(f, dtype=torch.float64)
    return self.schedule.inverse_integral(2 * torch.asinh(0.5 * torch.exp(0.5 * f)))

  def prior_std(self):
    return 1.0
