"""EDM's training loss (Karras et al. 2022, eq. 8 and Table 1 "Ours"; NVlabs/edm training/loss.py).

  ln sigma ~ N(P_mean, P_std^2),  n ~ N(0, sigma^2 I),
  loss = lambda(sigma) ||D(y + n; sigma) - y||^2,
  lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2.

With EDM's preconditioning lambda c_out^2 = 1, so the loss is ||F - (y - c_skip (y + n)) /
c_out||^2, a unit-variance target for data of std sigma_data. The denoiser D is the model's x0_hat at the time
whose noise level s / m is sigma (on EDM's process t = sigma), so any parameterization and SDE
here can be trained this way.
"""
import torch

from models import get_eps_fn
from sde_lib import batch_broadcast


class EDMLoss:
  """lambda(sigma) ||D(x; sigma) - y||^2 per sample, with EDM's noise distribution."""

  def __init__(self,
               sde,                     # the process the model's score belongs to
               parameterization,        # what the network's output means (a Parameterization)
               P_mean=-1.2,             # P_mean: mean of ln sigma
               P_std=1.2,               # P_std: std of ln sigma
               sigma_data=0.5,          # sigma_data: std of the data
               reduce_mean=False):      # mean (True) or sum (False, EDM's) over dimensions
    self.sde, self.parameterization = sde, parameterization
    self.P_mean, self.P_std, self.sigma_data = P_mean, P_std, sigma_data
    self.reduce_mean = reduce_mean

  def sample_sigma(self, n, device='cpu', generator=None):
    """sigma = exp(P_mean + P_std N(0, 1)), [n]."""
    rnd_normal = torch.randn(n, device=device, generator=generator)
    return (rnd_normal * self.P_std + self.P_mean).exp()

  def weight(self, sigma):
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2."""
    return (sigma ** 2 + self.sigma_data ** 2) / (sigma * self.sigma_data) ** 2

  def __call__(self, model, y, sigma, z, classes=None):
    """lambda(sigma) ||D(y + sigma z; sigma) - y||^2 for y, sigma ([batch]) and z ~ N(0, I):
    the model is asked at the time t of noise level sigma, where x_t = m y + s z (s / m = sigma)."""
    t = self.sde.time_of_log_snr(-sigma.double().log()).to(y.dtype)
    mean_coeff, std = self.sde.marginal_coeffs(t)
    m, s = batch_broadcast(mean_coeff, y), batch_broadcast(std, y)
    x = m * y + s * z
    eps, _, _ = get_eps_fn(self.sde, model, True, self.parameterization)(x, t, classes)
    denoised = (x - s * eps) / m
    sq = (denoised - y).square().flatten(1)
    return self.weight(std / mean_coeff) * (sq.mean(1) if self.reduce_mean else sq.sum(1))
