"""Sampling by the probability-flow ODE (Song et al. 2021, eq. 13), solved with torchdiffeq."""
import torch
from torchdiffeq import odeint

from samplers.progress import TimeProgress

FIXED_STEP_METHODS = ('euler', 'midpoint', 'rk4', 'explicit_adams', 'implicit_adams')


def ode_sample(sde, score_fn, shape, method='dopri5', rtol=1e-5, atol=1e-5, eps=1e-3, steps=None,
               noise_removal=True, generator=None, device=None, progress=True):
  """dx/dt = f(x, t) - 1/2 g(t)^2 score(x, t), integrated from x_T ~ prior at T down to eps.

  Adaptive methods use rtol/atol; fixed-step ones take `steps` equal steps. With noise_removal
  the result is Tweedie's E[x_0 | x_eps] (one more score evaluation). Returns (x, nfe).
  """
  device = generator.device if generator is not None else (device or 'cpu')
  x_T = sde.prior_sampling(shape, generator=generator, device=device)
  flow = sde.reverse(score_fn, probability_flow=True)
  nfe = 0
  bar = TimeProgress(sde.T, eps, 'ODE sampling', progress)

  def drift(t, x):
    nonlocal nfe
    nfe += 1
    bar.reached(t)
    return flow.sde(x, t.expand(shape[0]))[0]

  ts = torch.tensor([sde.T, eps], device=device)
  # Adaptive solvers must land on eps rather than step past it and interpolate back: below
  # t = 0 the linear beta(t) turns negative and the drift is undefined.
  options = ({'step_size': (sde.T - eps) / steps} if method in FIXED_STEP_METHODS and steps
             else {'step_t': ts})
  x = odeint(drift, x_T, ts, rtol=rtol, atol=atol, method=method, options=options)[-1]
  bar.close()
  if noise_removal:
    t = torch.full((shape[0],), eps, device=device)
    x = sde.tweedie_x0(x, t, score_fn(x, t))
    nfe += 1
  return x, nfe
