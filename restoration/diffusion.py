"""What every restoration method shares: the prior's x0 prediction along the SDE's m(t), s(t),
the time grid, and the DDIM step the papers build on.

Every SDE here is linear, x_t = m(t) x_0 + s(t) z; the papers' DDPM/DDIM variables are those
of the VP-SDE, sqrt(alphabar_t) = m(t), sqrt(1 - alphabar_t) = s(t), and the VE variables of
DDRM are x_t / m = x_0 + sigma_t z with sigma_t = s / m. Written on m and s, each method runs
on every SDE.
"""
import torch

from sde_lib import batch_broadcast
from sde_lib.time_schedules import sampling_times


class Prior:
  """x0_hat(x_t) = E[x_0 | x_t] = (x_t + s^2 score) / m (Tweedie), counting score evaluations."""

  def __init__(self, score_fn, sde):
    self.score_fn, self.sde, self.nfe = score_fn, sde, 0

  def x0(self, x, t):
    t = torch.full((x.shape[0],), float(t), device=x.device, dtype=x.dtype)
    self.nfe += 1
    return self.sde.tweedie_x0(x, t, self.score_fn(x, t))


def time_grid(sde, steps, schedule='uniform', eps=1e-3):
  """[(t_i, m_i, s_i)]: `steps` times from T to eps on `schedule` (sde_lib/time_schedules.py),
  where the score is evaluated, then t = 0 with m = 1, s = 0, where the last step lands."""
  times = sampling_times(sde, schedule, steps - 1, eps)
  m, s = sde.marginal_coeffs(times)
  return [(float(t), float(a), float(b)) for t, a, b in zip(times, m, s)] + [(0.0, 1.0, 0.0)]


def ddim_step(x, x0, step, step_next, eta, z):
  """DDIM (Song et al. 2021a, eq. 12) from (m, s) to (m', s'):
  x' = m' x0 + sqrt(s'^2 - c^2) eps_hat + c z, eps_hat = (x - m x0) / s,
  c = eta s' sqrt(1 - sigma'^2 / sigma^2) (sigma = s / m); eta = 1 is DDPM's ancestral step."""
  (_, m, s), (_, m_next, s_next) = step, step_next
  c = eta * s_next * max(0.0, 1 - (s_next / m_next) ** 2 / (s / m) ** 2) ** 0.5
  eps = (x - m * x0) / s
  return m_next * x0 + max(0.0, s_next ** 2 - c ** 2) ** 0.5 * eps + c * z


def noise_like(x, generator):
  return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def per_sample(v, x):
  """A [batch] vector shaped to broadcast against x."""
  return batch_broadcast(v, x)
