"""PiGDM: pseudoinverse-guided diffusion models (Song, Vahdat, Mardani & Kautz 2023)."""
import torch

from restoration.diffusion import ddim_step, noise_like


def pigdm(prior, operator, y, sigma_y, x, grid, generator=None, eta=1.0):
  """Song et al. 2023, Algorithm 1, in our m(t), s(t) (VP: m = sqrt(alphabar_t), s^2 = 1 - m^2).
  p(x_0 | x_t) ~ N(x0_hat, r_t^2 I) with r_t^2 = sigma_t^2 / (1 + sigma_t^2), sigma_t = s / m
  (data of unit variance; VP: r_t^2 = 1 - alphabar_t), so p(y | x_t) ~ N(A x0_hat,
  r_t^2 A A^T + sigma_y^2 I) and the guidance, r_t^2 times its score (eq. 7),
    g = r_t^2 ((y - A x0_hat)^T (r_t^2 A A^T + sigma_y^2 I)^{-1} A d x0_hat / d x_t)^T,
  is the vector-Jacobian product of the pseudoinverse residual A^+ (y - A x0_hat) when
  sigma_y = 0 (eq. 8; (r_t^2 A A^T + sigma_y^2 I)^{-1} = U (r_t^2 S^2 + sigma_y^2)^{-1} U^T).
  The step is DDIM's with eps_hat from x_t and x0_hat, plus the guidance:
    x_{t-1} = DDIM(x0_hat, eps_hat) + m(t-1) m(t) g
  (VP: sqrt(alphabar_{t-1} alphabar_t) g). That moves x0_hat by m r_t^2 grad_x log p(y | x_t),
  1 / (1 + sigma_t^2) = m^2 / (m^2 + s^2) times Tweedie's (s^2 / m) grad_x log p(y | x_t): the
  same as t -> 0, but it vanishes as t -> T, where Tweedie's 1 / m would blow up the error of
  a learned x0_hat's Jacobian."""
  s2 = operator.singulars.to(x) ** 2
  y = y.to(x)
  for step, step_next in zip(grid[:-1], grid[1:]):
    t, m, s = step
    r2 = (s / m) ** 2 / (1 + (s / m) ** 2)
    with torch.enable_grad():
      x_in = x.detach().requires_grad_(True)
      x0 = prior.x0(x_in, t)
      with torch.no_grad():
        residual = operator.Ut(y - operator.forward(x0))
        inverse = r2 * residual / (r2 * s2 + sigma_y ** 2).clamp(min=1e-30)
        weighted = operator.adjoint(operator.U(inverse))  # r^2 A^T (r^2 A A^T + sigma_y^2)^-1 r
      g, = torch.autograd.grad((weighted * x0).sum(), x_in)
    m_next = step_next[1]
    x = ddim_step(x, x0.detach(), step, step_next, eta, noise_like(x, generator)) + m_next * m * g
  return x
