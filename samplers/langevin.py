"""Correctors: Langevin MCMC at a fixed time t (Song et al. 2021, Algorithms 4 and 5)."""
import torch

from sde_lib import batch_broadcast


def _alpha(sde, t, h):
  """alpha_i of Algorithm 5: (m(t)/m(t-h))^2, i.e. 1 - beta_i for the VP chain and 1 for VE."""
  m_t = sde.marginal_coeffs(t)[0]
  m_prev = sde.marginal_coeffs((t - h).clamp(min=0))[0]
  return (m_t / m_prev) ** 2


def _langevin_steps(score_fn, x, t, n_steps, step_size, generator):
  """n_steps of x <- x + e score(x, t) + sqrt(2e) z, e = step_size(score, z) per sample."""
  x_mean = x
  for _ in range(n_steps):
    grad = score_fn(x, t)
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    step = batch_broadcast(step_size(grad, z), x)
    x_mean = x + step * grad
    x = x_mean + (2 * step).sqrt() * z
  return x, x_mean


def langevin(sde, score_fn, x, t, h, snr, n_steps, generator=None):
  """Langevin corrector: e = 2 alpha (r ||z|| / ||score||)^2, r = `snr` (Algorithms 4-5).

  The norms are averaged over the batch (as score_sde does): per sample, a point that sits
  where the score nearly vanishes (a mode's centre, common in low dimension) takes a huge step.
  """
  alpha = _alpha(sde, t, h)

  def step_size(grad, z):
    ratio = z.flatten(1).norm(dim=1).mean() / grad.flatten(1).norm(dim=1).mean()
    return 2 * alpha * (snr * ratio) ** 2

  return _langevin_steps(score_fn, x, t, n_steps, step_size, generator)


def annealed_langevin(sde, score_fn, x, t, h, snr, n_steps, generator=None):
  """Annealed Langevin dynamics (Song & Ermon 2019): e = 2 alpha (r s(t))^2 at noise level s(t)."""
  fixed = 2 * _alpha(sde, t, h) * (snr * sde.marginal_std(t)) ** 2
  return _langevin_steps(score_fn, x, t, n_steps, lambda grad, z: fixed, generator)
