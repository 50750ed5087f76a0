"""Predictor-corrector sampling (Song et al. 2021, Algorithm 1)."""
import torch
from tqdm.auto import tqdm


def pc_sample(sde, score_fn, shape, predictor, corrector, steps, eps=1e-3, snr=0.16,
              n_steps_each=1, noise_removal=True, generator=None, device=None, progress=True):
  """x_T ~ prior; at each time of `sde.time_grid`: corrector (Langevin) steps, then a
  predictor step to the next time. `sde` may be a DiscreteChain, whose grid is its own steps.

  `predictor(sde, score_fn, x, t, s, z)` and `corrector(sde, score_fn, x, t, h, snr, n, generator)`
  may each be None. Returns (x, nfe); with noise_removal the last predictor step adds no noise.
  """
  device = generator.device if generator is not None else (device or 'cpu')
  x = sde.prior_sampling(shape, generator=generator, device=device)
  ts = sde.time_grid(steps, eps, device)
  x_mean, nfe = x, 0
  for i in tqdm(range(steps), desc='sampling', disable=not progress, leave=False):
    t = ts[i].expand(shape[0])
    s = ts[i + 1].expand(shape[0])
    if corrector is not None:
      x, x_mean = corrector(sde, score_fn, x, t, t - s, snr, n_steps_each, generator)
      nfe += n_steps_each
    if predictor is not None:
      z = torch.randn(shape, generator=generator, device=device)
      x, x_mean = predictor(sde, score_fn, x, t, s, z)
      nfe += 1
  return (x_mean if noise_removal else x), nfe
