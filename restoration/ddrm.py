"""DDRM: Denoising Diffusion Restoration Models (Kawar et al. 2022)."""
import torch

from restoration.diffusion import noise_like


def ddrm(prior, operator, y, sigma_y, x, grid, generator=None, eta=0.85, eta_b=1.0):
  """Kawar et al. 2022, eqs. 7-8, in the spectral coordinates of A = U S V^T and the VE variable
  x_t / m = x_0 + sigma_t z: with x_bar = V^T x_t / m, x0_bar = V^T x0_hat,
  y_bar = S^+ U^T y (noise sigma_y / s_i there), each step to sigma' sets, coordinate by
  coordinate,
    s_i = 0:                  x0_bar + sqrt(1 - eta^2) sigma' (x_bar - x0_bar) / sigma
                              + eta sigma' e
    sigma' < sigma_y / s_i:   x0_bar + sqrt(1 - eta^2) sigma' (y_bar - x0_bar) / (sigma_y / s_i)
                              + eta sigma' e
    sigma' >= sigma_y / s_i:  (1 - eta_b) x0_bar + eta_b y_bar
                              + sqrt(sigma'^2 - eta_b^2 sigma_y^2 / s_i^2) e
  (defaults eta = 0.85, eta_b = 1, the paper's). The last step lands on sigma' = 0."""
  s = operator.singulars.to(x)
  observed = s > 0
  s_safe = torch.where(observed, s, 1)
  y_bar = torch.where(observed, operator.Ut(y.to(x)) / s_safe, 0)
  noise_y = torch.where(observed, sigma_y / s_safe, 0)             # sigma_y / s_i
  for step, step_next in zip(grid[:-1], grid[1:]):
    (t, m, s_t), (_, m_next, s_next) = step, step_next
    sigma, sigma_next = s_t / m, s_next / m_next
    x0_bar = operator.Vt(prior.x0(x, t))
    x_bar = operator.Vt(x) / m
    e = noise_like(x, generator)
    unobserved = (x0_bar + (1 - eta ** 2) ** 0.5 * sigma_next * (x_bar - x0_bar) / sigma
                  + eta * sigma_next * e)
    below = (x0_bar + (1 - eta ** 2) ** 0.5 * sigma_next * (y_bar - x0_bar)
             / torch.where(noise_y > 0, noise_y, 1) + eta * sigma_next * e)
    above = ((1 - eta_b) * x0_bar + eta_b * y_bar
             + (sigma_next ** 2 - eta_b ** 2 * noise_y ** 2).clamp(min=0).sqrt() * e)
    x_bar = torch.where(~observed, unobserved, torch.where(sigma_next < noise_y, below, above))
    x = m_next * operator.V(x_bar)
  return x
