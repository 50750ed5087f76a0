"""Multistep consistency sampling (Song et al. 2023, Algorithm 1).

x <- f(x_T, T), then for each intermediate noise level tau_1 > tau_2 > ...:
x <- f(x + sqrt(tau^2 - sigma_min^2) z, tau). One evaluation per step; f is the model's x0_hat
(models/consistency.py), read through Predictions like every sampler's, so guidance and class
conditioning come with the score_fn. The levels are EDM's sigma = s / m on any process: the
sample is moved to the time of tau by x_t = m(t) x^.
"""
import math

import torch

from sde_lib.time_schedules import karras_levels
from utils.errors import ConfigError

ICT_TWO_STEP_SIGMA = 0.821   # iCT's intermediate level for two steps (Song & Dhariwal 2023, sec. 5)


def consistency_sigmas(steps, sigmas, sigma_max, sigma_min):
  """The steps - 1 intermediate levels: `sigmas` as given, or by default iCT's (0.821,) for two
  steps and otherwise the interior of the rho = 7 grid of steps + 1 levels from sigma_max to
  sigma_min (EDM eq. 5). ConfigError unless steps - 1 levels decrease inside (sigma_min, sigma_max)."""
  if steps < 1:
    raise ConfigError(f"consistency sampling takes sampling.steps >= 1 evaluations, got {steps}")
  if not sigmas:
    if steps == 2:
      sigmas = (ICT_TWO_STEP_SIGMA,)
    else:
      u = torch.linspace(0, 1, steps + 1, dtype=torch.float64)[1:-1]
      sigmas = tuple(karras_levels(sigma_max, sigma_min, u).tolist())
  sigmas = tuple(float(s) for s in sigmas)
  if (len(sigmas) != steps - 1 or any(not sigma_min < s < sigma_max for s in sigmas)
      or any(a <= b for a, b in zip(sigmas, sigmas[1:]))):
    raise ConfigError(f"sampling.consistency_sigmas must hold steps - 1 = {steps - 1} decreasing "
                      f"noise levels inside ({sigma_min:.4g}, {sigma_max:.4g}), got {list(sigmas)}")
  return sigmas


def multistep_consistency(model, x, sigmas, sigma_min, generator=None):
  """CM Algorithm 1 from the prior draw x at T: f(x_T, T), then a step per level of `sigmas`."""
  sde = model.sde
  x = model.x0(x, sde.T)
  for tau in sigmas:
    t = sde.time_of_log_snr(torch.tensor(-math.log(tau), dtype=torch.float64))
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    x_tau = x + math.sqrt(tau ** 2 - sigma_min ** 2) * z
    x = model.x0(float(model.coeffs(t)[0]) * x_tau, t)
  return x
