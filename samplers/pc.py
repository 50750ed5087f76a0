"""Predictor-corrector sampling (Song et al. 2021, Algorithm 1), with RePaint's resampling."""
import torch
from tqdm.auto import tqdm

from samplers.imputation import repaint_schedule
from sde_lib import batch_broadcast


def pc_sample(sde, score_fn, shape, predictor, corrector, steps, eps=1e-3, snr=0.16,
              n_steps_each=1, noise_removal=True, resample=1, jump_length=1, generator=None,
              device=None, progress=True):
  """x_T ~ prior; at each time of `sde.time_grid`: corrector (Langevin) steps, then a
  predictor step to the next time. `sde` may be a DiscreteChain, whose grid is its own steps.

  `predictor(sde, score_fn, x, t, s, z)` and `corrector(sde, score_fn, x, t, h, snr, n, generator)`
  may each be None. Returns (x, nfe); with noise_removal the last predictor step adds no noise.
  With resample > 1 the grid is walked as RePaint's schedule (samplers/imputation.py,
  repaint_schedule): each segment of `jump_length` steps `resample` times, going back up it by
  the SDE's exact forward transition (Lugmayr et al. 2022, Algorithm 1).
  """
  device = generator.device if generator is not None else (device or 'cpu')
  x = sde.prior_sampling(shape, generator=generator, device=device)
  ts = sde.time_grid(steps, eps, device)
  path = repaint_schedule(steps, jump_length, resample)
  x_mean, nfe = x, 0
  for i, j in tqdm(zip(path[:-1], path[1:]), total=len(path) - 1, desc='sampling',
                   disable=not progress, leave=False):
    t = ts[i].expand(shape[0])
    s = ts[j].expand(shape[0])
    if j < i:
      # Forward jump from t up to the earlier grid time s: x_s = a x_t + sigma z.
      a, sigma = sde.transition(t, s)
      z = torch.randn(shape, generator=generator, device=device)
      x = batch_broadcast(a, x) * x + batch_broadcast(sigma, x) * z
      continue
    if corrector is not None:
      x, x_mean = corrector(sde, score_fn, x, t, t - s, snr, n_steps_each, generator)
      nfe += n_steps_each
    if predictor is not None:
      z = torch.randn(shape, generator=generator, device=device)
      x, x_mean = predictor(sde, score_fn, x, t, s, z)
      nfe += 1
  return (x_mean if noise_removal else x), nfe
