"""DDIM (Song, Meng & Ermon 2021, eq. 12) on any decreasing sequence of times."""
import torch


def ddim(model, x, budget, times, eta=0.0, generator=None):
  """`budget` steps of
    x_s = m_s x0_hat + sqrt(s_s^2 - c^2) eps_hat + c z,  c = eta s_s / s_t sqrt(s_t^2 - a^2 s_s^2),
  a = m_t / m_s: c^2 is eta^2 times the variance of q(x_s | x_t, x_0) (for the DDPM chain,
  (1 - abar_s) / (1 - abar_t) (1 - abar_t / abar_s), the paper's eq. 16). eta = 0 is the
  deterministic DDIM, eta = 1 the ancestral step with beta-tilde.
  """
  ts = times(budget)
  for t, s in zip(ts[:-1], ts[1:]):
    m_t, s_t = model.coeffs(t)
    m_s, s_s = model.coeffs(s)
    x0, eps = model.x0_and_eps(x, t)
    c = eta * s_s / s_t * (s_t ** 2 - (m_t / m_s) ** 2 * s_s ** 2).clamp(min=0).sqrt()
    x = float(m_s) * x0 + float((s_s ** 2 - c ** 2).clamp(min=0).sqrt()) * eps
    if eta > 0:
      x = x + float(c) * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
  return x
