"""EDM's Heun sampler (Karras et al. 2022, Algorithm 2), deterministic or stochastic."""
import math

import torch


def heun(model, x, budget, times, s_churn=0.0, s_tmin=0.0, s_tmax=math.inf, s_noise=1.0,
         generator=None):
  """Algorithm 2 in x^ = x / m(t), sigma = s(t) / m(t), on ceil(budget / 2) steps: each an Euler
  step and a 2nd-order correction, except the last when the budget is odd (as EDM's step to
  sigma = 0). S_churn > 0 adds noise first, raising sigma_i to sigma_hat = (1 + gamma) sigma_i,
  gamma = min(S_churn / N, sqrt(2) - 1) for sigma_i in [S_tmin, S_tmax]; sigma_hat is kept at
  or below sigma(T), where the SDE ends.
  """
  steps = math.ceil(budget / 2)
  ts = times(steps)
  sigma_max = model.sigma(ts[0])
  x = x / float(model.coeffs(ts[0])[0])
  for i, (t, t_next) in enumerate(zip(ts[:-1], ts[1:])):
    sigma, sigma_next = model.sigma(t), model.sigma(t_next)
    # Increase noise temporarily.
    gamma = min(s_churn / steps, math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0.0
    sigma_hat = min(sigma * (1 + gamma), sigma_max)
    if sigma_hat > sigma:
      t = model.sde.time_of_log_snr(torch.tensor(-math.log(sigma_hat), dtype=torch.float64))
      z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
      x = x + math.sqrt(sigma_hat ** 2 - sigma ** 2) * s_noise * z
    # Euler step.
    d = model.ode_slope(x, t)
    x_next = x + (sigma_next - sigma_hat) * d
    # Apply 2nd order correction.
    if 2 * (i + 1) <= budget:
      d_next = model.ode_slope(x_next, t_next)
      x_next = x + (sigma_next - sigma_hat) * (d + d_next) / 2
    x = x_next
  return x * float(model.coeffs(ts[-1])[0])
