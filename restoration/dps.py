"""DPS: Diffusion Posterior Sampling (Chung et al. 2023)."""
import torch

from restoration.diffusion import ddim_step, noise_like


def dps(prior, operator, y, sigma_y, x, grid, generator=None, zeta=1.0):
  """Chung et al. 2023, Algorithm 1: a DDPM ancestral step from x_i, then a step down the
  gradient of the measurement error of Tweedie's x0_hat(x_i),
    x_{i-1} = x'_{i-1} - zeta_i grad_{x_i} ||y - A x0_hat(x_i)||^2,
    zeta_i = zeta / (2 ||y - A x0_hat(x_i)||)         (their code: zeta grad ||y - A x0_hat||),
  per sample, the gradient taken through the score network. A may be any differentiable
  operator; sigma_y enters only through the residual it leaves (the step is normalised)."""
  del sigma_y
  y = y.to(x)
  for step, step_next in zip(grid[:-1], grid[1:]):
    with torch.enable_grad():
      x_in = x.detach().requires_grad_(True)
      x0 = prior.x0(x_in, step[0])
      residual = (y - operator.forward(x0)).flatten(1).norm(dim=1)
      grad, = torch.autograd.grad(residual.sum(), x_in)
    x = ddim_step(x, x0.detach(), step, step_next, 1.0, noise_like(x, generator))
    x = x - zeta * grad
  return x
