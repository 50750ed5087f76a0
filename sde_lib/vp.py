"""The variance-preserving SDE and its DDPM Markov chain (Ho et al. 2020; Song et al. 2021)."""
import torch

from sde_lib.base import SDE, batch_broadcast
from sde_lib.chain import ChainArrays
from sde_lib.schedules import get_schedule


class VPSDE(SDE):
  """dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw;  x_t = sqrt(alphabar(t)) x_0 + sqrt(1 - alphabar(t)) z.

  The N-step chain (`discrete_betas`, `alphas`, `alphas_cumprod`, posterior coefficients,
  float64) is DDPM's: for the linear schedule beta_i = linspace(beta_min/N, beta_max/N, N),
  i.e. 1e-4..0.02 for N = 1000, with chain step i (0-based) at time t_i = (i+1)/N
  (`chain_time`). Those betas are
  the Euler step beta(t) dt of the SDE and exceed 1 when beta_max >= N; for such few-step
  chains, and for the cosine schedule, beta_i = 1 - alphabar(t_i)/alphabar(t_{i-1}) is
  derived from the continuous schedule (clipped at 0.999 as Nichol & Dhariwal do).
  """

  def __init__(self, beta_min=0.1, beta_max=20.0, N=1000, schedule='linear'):
    super().__init__(N)
    self.beta_min = beta_min    # beta(0)
    self.beta_max = beta_max    # beta(1)
    self.schedule_name = schedule
    self.schedule = get_schedule(schedule, beta_min, beta_max)
    # Chain constants in float64: differences such as 1 - alphabar_1 / alphabar_0 = beta_1 (1e-4)
    # lose three digits in float32. Users cast them to their data's dtype.
    self.chain_arrays = ChainArrays.from_betas(self._chain_betas())

  # The DDPM chain's arrays live in `chain_arrays` (ChainArrays); these name the three the
  # papers (and diffusers) call betas, alphas and alphas_cumprod.
  @property
  def discrete_betas(self):
    return self.chain_arrays.betas

  @property
  def alphas(self):
    return self.chain_arrays.alphas

  @property
  def alphas_cumprod(self):
    return self.chain_arrays.alphas_cumprod

  def _chain_betas(self):
    N = self.N
    if self.schedule_name == 'linear' and self.beta_max < N:
      return torch.linspace(self.beta_min / N, self.beta_max / N, N, dtype=torch.float64)
    t = torch.arange(N + 1, dtype=torch.float64) / N
    log_abar = -self.schedule.integral(t)
    return (1.0 - torch.exp(log_abar[1:] - log_abar[:-1])).clamp(max=0.999)

  def beta(self, t):
    return self.schedule.beta(t)

  def log_alphabar(self, t):
    return -self.schedule.integral(t)

  def sde(self, x, t):
    beta_t = self.beta(t)
    return -0.5 * batch_broadcast(beta_t, x) * x, beta_t.sqrt()

  def marginal_coeffs(self, t):
    log_abar = self.log_alphabar(t)
    return torch.exp(0.5 * log_abar), (-torch.expm1(log_abar)).clamp(min=0).sqrt()

  def chain_coeffs(self, index):
    """sqrt(alphabar_i) and sqrt(1 - alphabar_i) of the DDPM chain (float64)."""
    abar = self.chain_arrays.alphas_cumprod.to(index.device)[index]
    return abar.sqrt(), (1.0 - abar).sqrt()

  def likelihood_weight_integral(self, t):
    """F(t) = log(exp(B(t)) - 1), whose derivative is beta / (1 - alphabar) = g^2 / s^2."""
    return torch.log(torch.expm1(self.schedule.integral(torch.as_tensor(t).double())))

  def inverse_likelihood_weight_integral(self, f):
    """B = log(1 + exp(f)), then t = B^-1."""
    f = torch.as_tensor(f, dtype=torch.float64)
    return self.schedule.inverse_integral(torch.logaddexp(f, torch.zeros_like(f)))

  def prior_std(self):
    return 1.0
