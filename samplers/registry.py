"""get_sampler: the sampler `config.sampling` names, on a plain score_fn(x, t)."""
import functools

import torch

from samplers.langevin import annealed_langevin, langevin
from samplers.pc import pc_sample
from samplers.predictors import euler_maruyama, get_ancestral, reverse_diffusion
from samplers.probability_flow import ode_sample
from samplers.reverse_sde import reverse_sde_sample
from sde_lib import DiscreteChain
from utils.errors import ConfigError

CORRECTORS = {'langevin': langevin, 'ald': annealed_langevin, 'none': None}
METHODS = ('pc', 'ancestral', 'ode', 'sde')


def get_predictor(name, variance='beta_tilde'):
  predictors = {'euler_maruyama': euler_maruyama, 'reverse_diffusion': reverse_diffusion,
                'ancestral': get_ancestral(variance), 'none': None}
  if name not in predictors:
    raise ConfigError(f"unknown predictor {name!r}; choose one of {sorted(predictors)}")
  return predictors[name]


def get_corrector(name):
  if name not in CORRECTORS:
    raise ConfigError(f"unknown corrector {name!r}; choose one of {sorted(CORRECTORS)}")
  return CORRECTORS[name]


def get_sampler(config, sde, shape, device=None, continuous=True):
  """sampler(score_fn, generator=None, progress=True) -> (x, nfe) for `config` (= config.sampling).

  method: 'pc' (config.predictor + config.corrector), 'ancestral' (DDPM: ancestral predictor, no
  corrector), 'ode' (probability flow, torchdiffeq), 'sde' (reverse SDE, torchsde).
  A discrete-time model (continuous=False) knows only its chain's steps: 'pc' and 'ancestral'
  then step along the chain itself (DiscreteChain: 'ancestral' is Ho et al.'s Algorithm 2),
  while 'ode' and 'sde' integrate the SDE with the score of the nearest chain step.
  Settings that cannot run raise ConfigError here, before any sampling.
  """
  common = dict(eps=config.eps, noise_removal=config.noise_removal, device=device)
  if config.method in ('pc', 'ancestral'):
    ancestral = config.method == 'ancestral'
    predictor = get_predictor('ancestral' if ancestral else config.predictor, config.variance)
    corrector = None if ancestral else get_corrector(config.corrector)
    if not continuous:
      if predictor is euler_maruyama:
        raise ConfigError("euler_maruyama steps the continuous SDE; a discrete-time model "
                          "(training.continuous=False) is sampled on its chain: use the "
                          "'ancestral' or 'reverse_diffusion' predictor")
      sde = DiscreteChain(sde)
    sde.time_grid(config.steps, config.eps)   # validates the number of steps
    run = functools.partial(pc_sample, sde, shape=shape, predictor=predictor, corrector=corrector,
                            steps=config.steps, snr=config.snr, n_steps_each=config.n_steps_each,
                            **common)
  elif config.method == 'ode':
    run = functools.partial(ode_sample, sde, shape=shape, method=config.ode_method,
                            rtol=config.rtol, atol=config.atol, steps=config.steps, **common)
  elif config.method == 'sde':
    run = functools.partial(reverse_sde_sample, sde, shape=shape, method=config.sde_solver,
                            steps=config.steps, **common)
  else:
    raise ConfigError(f"unknown sampling method {config.method!r}; choose one of {list(METHODS)}")

  def sampler(score_fn, generator=None, progress=True):
    # No sampler needs gradients of the network's weights; a score_fn that differentiates
    # (guidance) turns them on inside itself with torch.enable_grad().
    with torch.no_grad():
      return run(score_fn=score_fn, generator=generator, progress=progress)

  return sampler
