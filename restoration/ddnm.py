"""DDNM: zero-shot restoration by range-null space decomposition (Wang et al. 2023)."""
import torch

from restoration.diffusion import noise_like


def ddnm(prior, operator, y, sigma_y, x, grid, generator=None):
  """Wang et al. 2023: at each DDPM step the prediction x0_hat is made consistent with y,
    x0_y = x0_hat - Sigma_t A^+ (A x0_hat - y)                              (eq. 17, DDNM+)
  and x_{t-1} drawn from p(x_{t-1} | x_t, x0_y) with the covariance Phi_t (eq. 18); in the
  SVD's coordinates, with a_t, c_t the coefficient of x_0 and the std of DDPM's posterior
  q(x_{t-1} | x_t, x_0), per singular value s_i > 0
    lambda_i = 1, gamma_i = c_t^2 - (a_t sigma_y / s_i)^2   if c_t >= a_t sigma_y / s_i
    lambda_i = c_t s_i / (a_t sigma_y), gamma_i = 0         otherwise,
  and gamma_i = c_t^2 on the null space. At sigma_y = 0 this is DDNM (eq. 13):
  x0_y = A^+ y + (I - A^+ A) x0_hat, the range from y, the null space from the prior.
  Written in the VE variable x_t / m, where a_t = 1 - sigma'^2 / sigma^2 and
  c_t = sigma' sqrt(1 - sigma'^2 / sigma^2); DDNM+'s time-travel is not part of it."""
  s = operator.singulars.to(x)
  observed = s > 0
  s_safe = torch.where(observed, s, 1)
  y_bar = torch.where(observed, operator.Ut(y.to(x)) / s_safe, 0)   # S^+ U^T y
  for step, step_next in zip(grid[:-1], grid[1:]):
    (t, m, s_t), (_, m_next, s_next) = step, step_next
    sigma, sigma_next = s_t / m, s_next / m_next
    a = 1 - sigma_next ** 2 / sigma ** 2
    c = sigma_next * (1 - sigma_next ** 2 / sigma ** 2) ** 0.5
    x0_bar = operator.Vt(prior.x0(x, t))
    x_bar = operator.Vt(x) / m
    noise_y = a * sigma_y / s_safe
    full = c >= noise_y
    lam = torch.where(observed, torch.where(full, 1.0, c / torch.where(noise_y > 0, noise_y, 1)), 0)
    gamma = torch.where(observed, torch.where(full, c ** 2 - noise_y ** 2, 0.0), c ** 2)
    x0_y = x0_bar + lam * (y_bar - x0_bar)
    x_bar = a * x0_y + (1 - a) * x_bar + gamma.clamp(min=0).sqrt() * noise_like(x, generator)
    x = m_next * operator.V(x_bar)
  return x
