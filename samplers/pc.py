"""Predictor-corrector sampling (Song et al. 2021, Algorithm 1) and RePaint's resampling walk of
the same steps (Lugmayr et al. 2022, Algorithm 1)."""
import torch

from sde_lib import batch_broadcast
from utils.errors import ConfigError


def pc_step(model, x, t, s, predictor, corrector, snr, n_steps_each, generator):
  """Corrector (Langevin) steps at t, then a predictor step to s < t; either may be None.
  `predictor(sde, score_fn, x, t, s, z)` and `corrector(sde, score_fn, x, t, h, snr, n,
  generator)` step on model.sde with `model` as the score. Returns (x_s, its mean)."""
  x_mean = x
  if corrector is not None:
    x, x_mean = corrector(model.sde, model, x, t, t - s, snr, n_steps_each, generator)
  if predictor is not None:
    z = torch.randn(x.shape, generator=generator, device=x.device)
    x, x_mean = predictor(model.sde, model, x, t, s, z)
  return x, x_mean


def predictor_corrector(model, x, grid, predictor, corrector, snr=0.16, n_steps_each=1,
                        noise_removal=True, generator=None):
  """One pc_step from each time of `grid` (T .. eps, then 0) to the next; with noise_removal
  the last step's mean (no noise) is the sample."""
  x_mean, grid = x, grid.to(x.device)
  for t, s in zip(grid[:-1], grid[1:]):
    x, x_mean = pc_step(model, x, t.expand(x.shape[0]), s.expand(x.shape[0]), predictor,
                        corrector, snr, n_steps_each, generator)
  return x_mean if noise_removal else x


def repaint(model, x, grid, predictor, corrector, snr=0.16, n_steps_each=1, noise_removal=True,
            jump_length=1, resample=1, generator=None):
  """The steps of `grid` walked by RePaint's schedule (repaint_schedule):
  each segment of `jump_length` steps `resample` times, going back up it by the process's exact
  forward transition x_s = a x_t + sigma z."""
  path = repaint_schedule(len(grid) - 1, jump_length, resample)
  x_mean, grid = x, grid.to(x.device)
  for i, j in zip(path[:-1], path[1:]):
    t, s = grid[i].expand(x.shape[0]), grid[j].expand(x.shape[0])
    if j < i:
      a, sigma = model.sde.transition(t, s)
      z = torch.randn(x.shape, generator=generator, device=x.device)
      x = batch_broadcast(a, x) * x + batch_broadcast(sigma, x) * z
    else:
      x, x_mean = pc_step(model, x, t, s, predictor, corrector, snr, n_steps_each, generator)
  return x_mean if noise_removal else x


def check_resampling(steps, jump_length, resample):
  """ConfigError unless resample >= 1 and, when resampling (resample > 1),
  1 <= jump_length <= steps."""
  if resample < 1:
    raise ConfigError(f"resample is the number of times RePaint walks each segment, at least 1 "
                      f"(1: no resampling); got {resample}")
  if resample > 1 and not 1 <= jump_length <= steps:
    raise ConfigError(f"jump_length is RePaint's jump of 1 to sampling.steps={steps} steps; "
                      f"got {jump_length}")


def repaint_schedule(steps, jump_length=1, resample=1):
  """The indices of `sde.time_grid(steps)` to visit, from 0 (time T) to `steps` (the end): a
  move from i to i + 1 is a sampler step, from i to i - 1 a forward transition (RePaint,
  Lugmayr et al. 2022, Algorithm 1 and sec. 4.2's jumps).

  Counting levels n = steps - i from the end, the segment of `jump_length` steps down to each
  of the levels 1, 1 + j, 1 + 2j, ... that have j levels above them is walked `resample` times,
  each walk but the last followed by a jump back up to the segment's top. With j = 1 this is
  Algorithm 1 (U = resample); as there (u < U and t > 1) the step onto the data, level 0, is
  never repeated. resample = 1 gives 0, 1, ..., steps.
  """
  check_resampling(steps, jump_length, resample)
  bottoms = range(steps - 1, jump_length - 1, -jump_length)   # level 1, 1 + j, ... as indices
  jumps_left = {i: resample - 1 for i in bottoms}
  path, i = [0], 0
  while i < steps:
    i += 1
    path.append(i)
    if jumps_left.get(i, 0) > 0:
      jumps_left[i] -= 1
      path.extend(range(i - 1, i - jump_length - 1, -1))
      i -= jump_length
  return path
