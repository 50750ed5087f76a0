"""Sampling by the probability-flow ODE (Song et al. 2021, eq. 13), solved with torchdiffeq."""
import torch
from torchdiffeq import odeint

from samplers.progress import TimeProgress
from sde_lib.time_schedules import fixed_step

FIXED_STEP_METHODS = ('euler', 'midpoint', 'rk4', 'explicit_adams', 'implicit_adams')


def flow(sde, score_fn, x, t_start, t_end, method='dopri5', rtol=1e-5, atol=1e-5, steps=None,
         progress=False):
  """Carry x from t_start to t_end along dx/dt = f(x, t) - 1/2 g(t)^2 score(x, t).

  Forward in time (eps -> T) it encodes data into latents, backward (T -> eps) it decodes.
  Adaptive methods use rtol/atol; fixed-step ones take `steps` equal steps (torchdiffeq lays
  them from t_start by the step size `fixed_step`). Returns (x, nfe).
  """
  reverse = sde.reverse(score_fn, probability_flow=True)
  batch = x.shape[0]
  nfe = 0
  bar = TimeProgress(t_start, t_end, 'probability flow', progress)

  def drift(t, x):
    nonlocal nfe
    nfe += 1
    bar.reached(t)
    return reverse.sde(x, t.expand(batch))[0]

  ts = torch.tensor([t_start, t_end], device=x.device, dtype=x.dtype)
  # Adaptive solvers must land on the end time rather than step past it and interpolate
  # back: below t = 0 the linear beta(t) turns negative and the drift is undefined.
  fixed = method in FIXED_STEP_METHODS and steps
  options = {'step_size': fixed_step(t_start, t_end, steps)} if fixed else {'step_t': ts}
  x = odeint(drift, x, ts, rtol=rtol, atol=atol, method=method, options=options)[-1]
  bar.close()
  return x, nfe


def probability_flow_ode(model, x, t_end, method='dopri5', rtol=1e-5, atol=1e-5, steps=None,
                         generator=None):
  """x_T decoded by the probability-flow ODE from T to t_end with torchdiffeq's `method`
  (adaptive ones to rtol / atol, fixed-step ones in `steps` equal steps); deterministic."""
  return flow(model.sde, model, x, model.sde.T, t_end, method, rtol, atol, steps)[0]
