"""The adaptive reverse-SDE solver of Jolicoeur-Martineau et al. 2021, "Gotta Go Fast When
Generating Data with Score-Based Models", Algorithm 1.

Each step proposes x' by Euler-Maruyama and x'' by improved Euler with the same noise z; their
difference, in a mixed absolute/relative tolerance and the scaled l2 norm, is the local error
E_2. The step is accepted (x <- x'', "extrapolation") when E_2 <= 1, and the next step size is
theta h E_2^{-r} either way. Every sample of the batch has its own t and h (as in the authors'
code); one score call covers all samples still running.

The algorithm is made for high-dimensional samples. A rejected proposal's noise is thrown away
and drawn again, so acceptance selects the noise; with thousands of coordinates E_2 hardly
depends on z and rejections are rare, but for a 2-D sample a large share of the proposals is
rejected and the selection biases the result whatever the tolerance; packing many independent
2-D points into one sample brings it back within Monte-Carlo error (tests/test_adaptive_sde.py
measures both).
"""
import torch

from sde_lib.base import batch_broadcast


def adaptive_sde(model, x, t_end, atol=0.0078, rtol=0.01, h_init=0.01, safety=0.9, exponent=0.9,
                 generator=None):
  """Solve the reverse SDE from x_T down to t_end with adaptive steps.

  atol: eps_abs, the precision of the data: its range / 256, 0.0078 for data in [-1, 1] (the
  paper's VP / sub-VP value), 0.0039 in [0, 1] (its VE value). rtol: eps_rel (the paper's
  experiments use 0.01 to 0.1; smaller is slower and more accurate). h_init, safety (theta)
  and exponent (r) are the paper's 0.01, 0.9 and 0.9. Two score calls per attempted step.
  """
  eps, shape, device = t_end, x.shape, x.device
  reverse = model.sde.reverse(model)
  x_prev = x.clone()                                   # x'_prev: the last accepted x'
  t = torch.full((shape[0],), model.sde.T, device=device)
  h = torch.full_like(t, h_init)
  while (live := t > eps).any():
    x_t, t_now, step = x[live], t[live], h[live]
    t_next = (t_now - step).clamp(min=eps)
    z = torch.randn(x_t.shape, generator=generator, device=device)

    def move(x_at, time):
      """x + h [g^2 score - f](x_at, time) + sqrt(h) g(time) z: a reverse step from x_t."""
      drift, diffusion = reverse.sde(x_at, time)
      noise = batch_broadcast(step.sqrt() * diffusion, x_t) * z
      return x_t - batch_broadcast(step, x_t) * drift + noise

    x1 = move(x_t, t_now)                                  # x' (Euler-Maruyama)
    x_tilde = move(x1, t_next)                             # the same step, taken at (x', t - h)
    x2 = (x1 + x_tilde) / 2                                # x'' (improved Euler)
    delta = torch.clamp(rtol * torch.maximum(x1.abs(), x_prev[live].abs()), min=atol)
    error = ((x1 - x2) / delta).flatten(1).pow(2).mean(1).sqrt()   # E_2 = |.|_2 / sqrt(n)
    if not torch.isfinite(error).all():
      raise FloatingPointError(f"adaptive SDE solver: non-finite error at t={t_now.max():.4g}")
    accept = error <= 1
    keep = accept.view(-1, *([1] * (x_t.dim() - 1)))
    x[live] = torch.where(keep, x2, x_t)
    x_prev[live] = torch.where(keep, x1, x_prev[live])
    t_now = torch.where(accept, t_next, t_now)
    t[live] = t_now
    h[live] = torch.minimum(t_now - eps, safety * step * error.pow(-exponent))
  return x
