"""The reverse SDE solved by torchsde, so any of its solvers (euler, milstein, srk, ...) can sample.

torchsde integrates forward in time only, so the reverse SDE is written in s = T - t:
dx = [g(t)^2 score(x, t) - f(x, t)] ds + g(t) dW_s, for s from 0 to T - eps.
Its noise is additive (g depends on t only), so the Ito and Stratonovich forms coincide and
torchsde's Stratonovich solvers (midpoint, heun, ...) apply as well.
"""
import torch
import torchsde

from samplers.progress import TimeProgress

STRATONOVICH_METHODS = ('midpoint', 'heun', 'euler_heun', 'reversible_heun', 'log_ode')


class ReverseTimeSDE(torch.nn.Module):
  """The reverse SDE in s = T - t on flattened states, in torchsde's f/g interface."""

  noise_type = 'diagonal'

  def __init__(self, sde, score_fn, shape, sde_type='ito', on_time=None):
    super().__init__()
    self.on_time = on_time
    self.sde_type = sde_type
    self.forward_sde, self.shape = sde, shape
    self.reverse_sde = sde.reverse(score_fn)
    self.nfe = 0

  def _unflatten(self, s, y):
    return y.reshape(self.shape), (self.forward_sde.T - s).expand(self.shape[0])

  def f(self, s, y):
    self.nfe += 1
    if self.on_time is not None:
      self.on_time(self.forward_sde.T - s)
    drift, _ = self.reverse_sde.sde(*self._unflatten(s, y))
    return -drift.flatten(1)

  def g(self, s, y):
    x, t = self._unflatten(s, y)
    _, diffusion = self.forward_sde.sde(x, t)
    return diffusion[:, None].expand_as(y)


def reverse_sde_sample(sde, score_fn, shape, method='euler', steps=1000, eps=1e-3,
                       noise_removal=True, generator=None, device=None, progress=True):
  """Solve the reverse SDE from x_T ~ prior to t = eps in `steps` steps with torchsde's `method`.

  With noise_removal the result is Tweedie's E[x_0 | x_eps] (one more score evaluation).
  Returns (x, nfe).
  """
  device = generator.device if generator is not None else (device or 'cpu')
  x_T = sde.prior_sampling(shape, generator=generator, device=device)
  sde_type = 'stratonovich' if method in STRATONOVICH_METHODS else 'ito'
  bar = TimeProgress(sde.T, eps, f'SDE sampling ({method})', progress)
  reverse = ReverseTimeSDE(sde, score_fn, shape, sde_type, on_time=bar.reached)
  y0 = x_T.flatten(1)
  ts = torch.tensor([0.0, sde.T - eps], device=device)
  s_end = float(ts[-1])   # the float32 end time torchsde will ask the Brownian motion for
  entropy = int(torch.randint(2 ** 62, (1,), generator=generator, device=device))
  bm = torchsde.BrownianInterval(0.0, s_end, size=y0.shape, device=device, entropy=entropy,
                                 levy_area_approximation='space-time')
  ys = torchsde.sdeint(reverse, y0, ts, method=method, dt=s_end / steps, bm=bm)
  bar.close()
  x, nfe = ys[-1].reshape(shape), reverse.nfe
  if noise_removal:
    t = torch.full((shape[0],), eps, device=device)
    x = sde.tweedie_x0(x, t, score_fn(x, t))
    nfe += 1
  return x, nfe
