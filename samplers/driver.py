"""The one sampling driver every sampler runs under.

A sampler is `solver(model, x, generator) -> x`: `model` is the Predictions of the score_fn on
the process being stepped (it gives the score, eps_hat, x0_hat and the ODE slope, and counts
the evaluations), `x` the prior draw at T. The driver draws x_T, shows progress over [t_end, T],
and with `denoise` ends with Tweedie's x0_hat(x, t_end): the limit of a first-order step to
t = 0 (EDM's last Euler step to sigma = 0, DDIM's step to alphabar = 1), one more evaluation.
Samplers that step to t = 0 themselves (predictor-corrector) return their own last mean.
"""
from samplers.predictions import Predictions
from samplers.progress import TimeProgress


def sample(process, score_fn, shape, solver, t_end, denoise, generator=None, device=None,
           progress=True, thresholding=False, desc='sampling'):
  """x_T ~ the prior of `process`, then `solver`, then (with `denoise`) x0_hat at t_end.
  Returns (x, number of score evaluations)."""
  device = generator.device if generator is not None else (device or 'cpu')
  x = process.prior_sampling(shape, generator=generator, device=device)
  bar = TimeProgress(process.T, t_end, desc, progress)
  model = Predictions(process, score_fn, thresholding, on_time=bar.reached)
  x = solver(model, x, generator=generator)
  if denoise:
    x = model.x0(x, t_end)
  bar.close()
  return x, model.nfe
