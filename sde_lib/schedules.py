"""Noise schedules beta(t) on t in [0, 1] for the VP and sub-VP SDEs.

Each gives beta(t), its integral B(t) = int_0^t beta(s) ds, so alphabar(t) = exp(-B(t)), and
the inverse of B (for times drawn by the inverse CDF, sde_lib/likelihood_time.py).
"""
import math

import torch

from utils.errors import ConfigError


class LinearSchedule:
  """beta(t) = beta_min + t (beta_max - beta_min) (Song et al. 2021; DDPM's 1e-4..0.02 x N)."""

  def __init__(self, beta_min=0.1, beta_max=20.0):
    self.beta_min = beta_min   # beta(0)
    self.beta_max = beta_max   # beta(1)

  def beta(self, t):
    return self.beta_min + t * (self.beta_max - self.beta_min)

  def integral(self, t):
    return self.beta_min * t + 0.5 * t ** 2 * (self.beta_max - self.beta_min)

  def inverse_integral(self, b):
    """The t with B(t) = b: the positive root 2b / (beta_min + sqrt(beta_min^2 + 2 (beta_max -
    beta_min) b)) of the quadratic, in the form that stays exact as beta_max -> beta_min."""
    return 2 * b / (self.beta_min + (self.beta_min ** 2 + 2 * (self.beta_max - self.beta_min) * b).sqrt())


class CosineSchedule:
  """alphabar(t) = f(t) / f(0), f(t) = cos^2((t + s) / (1 + s) * pi / 2) (Nichol & Dhariwal 2021).

  Its beta(t) = pi / (1 + s) * tan((t + s) / (1 + s) * pi / 2) diverges at t = 1; as Nichol &
  Dhariwal clip their chain's betas at 0.999 for N = 1000, beta(t) is capped at
  beta_cap = -1000 log(1 - 0.999), which keeps B(t) finite and closed-form.
  """

  def __init__(self, s=0.008, beta_cap=-1000 * math.log(1 - 0.999)):
    self.s = s                 # offset that keeps beta(0) from vanishing
    self.beta_cap = beta_cap   # largest beta(t)
    half_pi = math.pi / 2
    # t_cap solves pi / (1 + s) tan(theta(t)) = beta_cap; beyond it beta(t) = beta_cap.
    self.t_cap = (1 + s) * math.atan(beta_cap * (1 + s) / math.pi) / half_pi - s
    self._log_f0 = 2 * math.log(math.cos(s / (1 + s) * half_pi))

  def _theta(self, t):
    return (t + self.s) / (1 + self.s) * math.pi / 2

  # Computed in float64: in float32 the cancellation in log cos(theta(t)) - log f(0)
  # leaves alphabar(0) short of 1 by ~3e-8, i.e. a spurious std of ~2e-4 at t = 0.
  def beta(self, t):
    dtype, t = t.dtype, t.double()
    t_c = torch.clamp(t, max=self.t_cap)
    uncapped = math.pi / (1 + self.s) * torch.tan(self._theta(t_c))
    return torch.where(t > self.t_cap, torch.full_like(t, self.beta_cap), uncapped).to(dtype)

  def integral(self, t):
    dtype, t = t.dtype, t.double()
    t_c = torch.clamp(t, max=self.t_cap)
    # B = 2 log(cos theta_0 / cos theta) = 2 log1p(2 sin((theta + theta_0) / 2) sin((theta -
    # theta_0) / 2) / cos theta): no cancellation at small t, where B ~ 0.04 t.
    theta, theta_0 = self._theta(t_c), self._theta(torch.zeros_like(t_c))
    smooth = 2 * torch.log1p(2 * torch.sin(0.5 * (theta + theta_0)) * torch.sin(0.5 * (theta - theta_0))
                             / torch.cos(theta))
    return (smooth + self.beta_cap * torch.clamp(t - self.t_cap, min=0)).to(dtype)

  def inverse_integral(self, b):
    """The t with B(t) = b: theta = arccos(exp((log f(0) - b) / 2)) up to t_cap, and the linear
    continuation B(t_cap) + beta_cap (t - t_cap) beyond it."""
    dtype, b = b.dtype, b.double()
    b_cap = float(self.integral(torch.tensor(self.t_cap, dtype=torch.float64)))
    theta = torch.arccos(torch.exp(0.5 * (self._log_f0 - b.clamp(max=b_cap))))
    smooth = theta * (1 + self.s) / (math.pi / 2) - self.s
    return torch.where(b > b_cap, self.t_cap + (b - b_cap) / self.beta_cap, smooth).to(dtype)


def get_schedule(name, beta_min=0.1, beta_max=20.0):
  if name == 'linear':
    return LinearSchedule(beta_min, beta_max)
  if name == 'cosine':
    return CosineSchedule()
  raise ConfigError(f"unknown beta schedule {name!r}; choose 'linear' or 'cosine'")
