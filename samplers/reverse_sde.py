"""The reverse SDE solved by torchsde, so any of its solvers (euler, milstein, srk, ...) can sample.

torchsde integrates forward in time only, so the reverse SDE is written in s = T - t:
dx = [g(t)^2 score(x, t) - f(x, t)] ds + g(t) dW_s, for s from 0 to T - eps.
Its noise is additive (g depends on t only), so the Ito and Stratonovich forms coincide and
torchsde's Stratonovich solvers (midpoint, heun, ...) apply as well.
"""
import torch
import torchsde

from sde_lib.time_schedules import fixed_step

STRATONOVICH_METHODS = ('midpoint', 'heun', 'euler_heun', 'reversible_heun', 'log_ode')


class TorchsdeReverse(torch.nn.Module):
  """The reverse SDE in s = T - t on flattened states, in torchsde's f/g interface."""

  noise_type = 'diagonal'

  def __init__(self, sde, score_fn, shape, sde_type='ito'):
    super().__init__()
    self.sde_type = sde_type
    self.forward_sde, self.shape = sde, shape
    self.reverse_sde = sde.reverse(score_fn)

  def _unflatten(self, s, y):
    return y.reshape(self.shape), (self.forward_sde.T - s).expand(self.shape[0])

  def f(self, s, y):
    drift, _ = self.reverse_sde.sde(*self._unflatten(s, y))
    return -drift.flatten(1)

  def g(self, s, y):
    x, t = self._unflatten(s, y)
    _, diffusion = self.forward_sde.sde(x, t)
    return diffusion[:, None].expand_as(y)


def torchsde_reverse(model, x, t_end, method='euler', steps=1000, generator=None):
  """Solve the reverse SDE from x_T to t_end in `steps` equal steps with torchsde's `method`
  (torchsde lays them from s = 0 by the step size dt)."""
  sde, shape = model.sde, x.shape
  sde_type = 'stratonovich' if method in STRATONOVICH_METHODS else 'ito'
  reverse = TorchsdeReverse(sde, model, shape, sde_type)
  y0 = x.flatten(1)
  ts = torch.tensor([0.0, sde.T - t_end], device=x.device)
  s_end = float(ts[-1])   # the float32 end time torchsde will ask the Brownian motion for
  entropy = int(torch.randint(2 ** 62, (1,), generator=generator, device=x.device))
  bm = torchsde.BrownianInterval(0.0, s_end, size=y0.shape, device=x.device, entropy=entropy,
                                 levy_area_approximation='space-time')
  ys = torchsde.sdeint(reverse, y0, ts, method=method, dt=fixed_step(0.0, s_end, steps), bm=bm)
  return ys[-1].reshape(shape)
