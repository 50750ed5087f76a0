"""--mode posthoc_ema: the parameter average of any sigma_rel, reconstructed after training from
a run's snapshots of its tracked power-function EMAs (models/posthoc_ema.py; EDM2 app. C.3), and
written as <workdir>/posthoc_ema/sigma_rel_<s>.pt, a checkpoint --mode sample|eval read with
--config.eval.ckpt=<that path>.

  python run.py --workdir runs/vp_digits --mode posthoc_ema --config.eval.posthoc_sigma_rel=0.08
"""
import os
import re

import torch

from models.posthoc_ema import sigma_rel_to_gamma, solve_posthoc_coefficients
from utils.atomic import atomic_write
from utils.checkpoint import CheckpointError, load_checkpoint, load_newest_readable
from utils.errors import ConfigError
from utils.workdir import posthoc_checkpoint_path, posthoc_ema_dir

_SNAPSHOT_NAME = re.compile(r'^snapshot_(\d+)\.pt$')


def list_snapshots(workdir):
  """[(step, path)] of the run's post-hoc EMA snapshots, oldest first."""
  directory = posthoc_ema_dir(workdir)
  if not os.path.isdir(directory):
    return []
  return sorted((int(m.group(1)), os.path.join(directory, name))
                for name in os.listdir(directory) if (m := _SNAPSHOT_NAME.match(name)))


def reconstruct(paths, sigma_rel):
  """(average, step, t): the average of profile sigma_rel at the last snapshot's time t (its
  training step), sum_i x_i theta_hat_i over every tracked average theta_hat_i of every snapshot
  file in `paths`, x from solve_posthoc_coefficients. Reads the files twice (their times first,
  then the averages one file at a time), so memory holds the float64 sum and one file."""
  gamma_r = sigma_rel_to_gamma(sigma_rel)
  times, gammas = [], []
  for path in paths:
    state = load_checkpoint(path)
    times += [state['t']] * len(state['sigma_rels'])
    gammas += [sigma_rel_to_gamma(s) for s in state['sigma_rels']]
    step, t_r = state['step'], state['t']
  x = iter(solve_posthoc_coefficients(times, gammas, t_r, gamma_r))
  average = None
  for path in paths:
    for snapshot_average in load_checkpoint(path)['averages']:
      x_i = next(x)
      if average is None:
        average = {name: x_i * p.double() for name, p in snapshot_average.items()}
      else:
        for name, p in snapshot_average.items():
          average[name] += x_i * p.double()
  dtypes = {name: p.dtype for name, p in snapshot_average.items()}
  return {name: p.to(dtypes[name]) for name, p in average.items()}, step, t_r


def write_posthoc_checkpoint(workdir, sigma_rel):
  """Reconstruct sigma_rel from all of the run's snapshots and write it as a checkpoint in our
  layout: the averaged parameters as both the weights and the EMA (the buffers and the classic
  EMA's settings from the run's newest checkpoint). Returns (path, step)."""
  if not sigma_rel:
    raise ConfigError("--mode posthoc_ema needs the sigma_rel to reconstruct: "
                      "--config.eval.posthoc_sigma_rel=S (EDM2 finds optima in 0.05-0.2)")
  snapshots = list_snapshots(workdir)
  if not snapshots:
    raise CheckpointError(f"no post-hoc EMA snapshots in {posthoc_ema_dir(workdir)}: train with "
                          f"--config.model.posthoc_ema_sigma_rels=0.05,0.1 (EDM2's pair)")
  average, step, t = reconstruct([path for _, path in snapshots], sigma_rel)
  newest, state, _ = load_newest_readable(workdir)
  if newest is None:
    raise CheckpointError(f"{workdir} has post-hoc EMA snapshots but no checkpoint")
  out = {'model': {**state['model'], **average}, 'ema': {**state['ema'], 'shadow': average},
         'step': step, 'posthoc_ema': {'sigma_rel': float(sigma_rel), 't': t,
                                       'snapshots': [s for s, _ in snapshots]}}
  path = posthoc_checkpoint_path(workdir, sigma_rel)
  atomic_write(path, lambda f: torch.save(out, f))
  return path, step
