"""Predictor-corrector sampling (Song et al. 2021, Algorithm 1)."""
import torch
from tqdm.auto import tqdm


def time_grid(sde, steps, eps, device):
  """t_0 = T > ... > t_{K-1} = eps (K = steps, score evaluated there), then t_K = 0.

  For the VP-SDE with K = N and eps = 1/N these are DDPM's times i/N, i = N..1, and the
  last step goes to x_0.
  """
  if steps < 1:
    raise ValueError(f"sampling.steps must be >= 1, got {steps}")
  ts = torch.linspace(sde.T, eps, steps, device=device) if steps > 1 else torch.full((1,), sde.T, device=device)
  return torch.cat([ts, torch.zeros(1, device=device)])


def pc_sample(sde, score_fn, shape, predictor, corrector, steps, eps=1e-3, snr=0.16,
              n_steps_each=1, noise_removal=True, generator=None, device=None, progress=True):
  """x_T ~ prior; at each grid time: corrector (Langevin) steps, then a predictor step.

  `predictor(sde, score_fn, x, t, s, z)` and `corrector(sde, score_fn, x, t, h, snr, n, generator)`
  may each be None. Returns (x, nfe); with noise_removal the last predictor step adds no noise.
  """
  device = generator.device if generator is not None else (device or 'cpu')
  x = sde.prior_sampling(shape, generator=generator, device=device)
  ts = time_grid(sde, steps, eps, device)
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
