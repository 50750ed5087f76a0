"""PiGDM: pseudoinverse-guided diffusion models (Song et al. 2023)."""
import torch

from restoration.diffusion import ddim_step, noise_like


def pigdm(prior, operator, y, sigma_y, x, grid, generator=None, eta=1.0):
  """Song et al. 2023: p(y | x_t) ~ N(A x0_hat, r_t^2 A A^T + sigma_y^2 I) with
  r_t^2 = sigma_t^2 / (1 + sigma_t^2) (sigma_t = s / m; data of unit variance), whose score is
    g = (y - A x0_hat)^T (r_t^2 A A^T + sigma_y^2 I)^{-1} A d x0_hat / d x_t        (eq. 7),
  a vector-Jacobian product through the score network; (r_t^2 A A^T + sigma_y^2 I)^{-1} is
  U (r_t^2 S^2 + sigma_y^2)^{-1} U^T. The posterior's score, score + g, gives
  x0_y = x0_hat + (s^2 / m) g (Tweedie), the prediction the DDIM step takes (eta). (Their
  Algorithm 1 adds sqrt(alphabar_t) g to x_{t-1} instead, a heuristic weight; this one is
  exact where p(y | x_t) is, e.g. for a standard normal prior.)"""
  s2 = operator.singulars.to(x) ** 2
  y = y.to(x)
  for step, step_next in zip(grid[:-1], grid[1:]):
    t, m, s = step
    r2 = (s / m) ** 2 / (1 + (s / m) ** 2)
    with torch.enable_grad():
      x_in = x.detach().requires_grad_(True)
      x0 = prior.x0(x_in, t)
      with torch.no_grad():
        residual = y - operator.forward(x0)
        inverse = operator.Ut(residual) / (r2 * s2 + sigma_y ** 2).clamp(min=1e-30)
        weighted = operator.adjoint(operator.U(inverse))    # A^T (r^2 A A^T + sigma_y^2)^-1 r
      g, = torch.autograd.grad((weighted * x0).sum(), x_in)
    x0_y = x0.detach() + (s ** 2 / m) * g
    x = ddim_step(x, x0_y, step, step_next, eta, noise_like(x, generator))
  return x
