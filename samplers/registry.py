"""get_sampler: the sampler `config.sampling` names, on a plain score_fn(x, t)."""
import functools

import torch

from samplers.adaptive_sde import adaptive_sde_sample
from samplers.ddim import ddim
from samplers.dpm_solver import dpm_solver
from samplers.dpm_solver_v3 import dpm_solver_v3
from samplers.ems import checked_ems
from samplers.fast import fast_sample, fast_times
from samplers.heun import heun
from samplers.imputation import check_resampling
from samplers.ipndm import ipndm
from samplers.langevin import annealed_langevin, langevin
from samplers.pc import pc_sample
from samplers.predictors import euler_maruyama, get_ancestral, reverse_diffusion
from sde_lib.reverse_variance import check_variance
from samplers.probability_flow import ode_sample
from samplers.reverse_sde import reverse_sde_sample
from samplers.unipc import unipc
from sde_lib import DiscreteChain
from utils.errors import ConfigError

CORRECTORS = {'langevin': langevin, 'ald': annealed_langevin, 'none': None}


class FastSampler:
  """A fast sampler: its solver, its measured-best defaults for the 'default' settings
  (time_schedule, variant, order), and which other config.sampling fields it reads.

  The defaults are chosen in two stages. benchmarks/sampler_quality.py ranks the settings by
  flow error (the RMS distance of the samples to the exact probability-flow ODE's endpoints of
  the same x_T), as the geometric mean over the budgets 10, 20 and 50 and the ring and 16-D
  mixtures (benchmarks/results/sampler_quality_vpsde_ranking.md); of the three best, the
  default is the one of lowest FID at 10 evaluations on the digits model of `make demo`
  (README). Exact
  mixture scores favour the quadratic schedule more than a trained network does: on digits at
  10, Heun on it diverges (FID 1331) and iPNDM-4 on it gives 7.95 (iPNDM-3: 2.98)."""

  def __init__(self, solver, defaults, options=(), orders=(), variants=()):
    self.solver, self.defaults, self.options = solver, defaults, options
    self.choices = dict(order=orders, variant=variants)   # allowed values of order, variant

  def settings(self, config):
    """time_schedule, variant and order with 'default' / 0 replaced by this method's own."""
    chosen = dict(time_schedule=config.time_schedule, variant=config.variant, order=config.order)
    return {k: self.defaults.get(k) if v in ('default', 0) else v for k, v in chosen.items()}

  def kwargs(self, config):
    """(time_schedule, the solver's keyword arguments); ConfigError for a choice it lacks."""
    settings = self.settings(config)
    kwargs = {}
    for name, allowed in self.choices.items():
      if allowed:
        if settings[name] not in allowed:
          raise ConfigError(f"{config.method} takes sampling.{name} in {list(allowed)}, "
                            f"got {settings[name]!r}")
        kwargs[name] = settings[name]
      elif settings[name] is not None:
        raise ConfigError(f"{config.method} has no sampling.{name} (got {settings[name]!r})")
    kwargs.update({k: config[k] for k in self.options})
    return settings['time_schedule'], kwargs


FAST_SAMPLERS = {
    'ddim': FastSampler(ddim, dict(time_schedule='quadratic'), options=('eta',)),
    'heun': FastSampler(heun, dict(time_schedule='uniform'),
                        options=('s_churn', 's_tmin', 's_tmax', 's_noise')),
    'ipndm': FastSampler(ipndm, dict(time_schedule='quadratic', order=3), orders=(1, 2, 3, 4)),
    'dpm_solver': FastSampler(dpm_solver,
                              dict(time_schedule='logsnr', variant='multistep', order=3),
                              options=('lower_order_final',), orders=(1, 2, 3),
                              variants=('singlestep', 'multistep')),
    'unipc': FastSampler(unipc, dict(time_schedule='logsnr', variant='bh2', order=3),
                         options=('lower_order_final',), orders=(1, 2, 3), variants=('bh1', 'bh2')),
    'dpm_solver_v3': FastSampler(dpm_solver_v3, dict(time_schedule='quadratic', order=2),
                                 options=('lower_order_final',), orders=(1, 2, 3)),
}
METHODS = ('pc', 'ancestral', 'ode', 'sde') + tuple(FAST_SAMPLERS)


def resolved_sampling(config):
  """`config` (= config.sampling) as a dict, with a fast sampler's 'default' time_schedule,
  variant and order replaced by what they resolve to (None where the method has none): what a
  set of samples is keyed and reported by, so that samples drawn before a change of a
  method's defaults are never taken for its new ones."""
  settings = config.to_dict()
  if config.method in FAST_SAMPLERS:
    settings.update(FAST_SAMPLERS[config.method].settings(config))
  return settings


def get_predictor(name, variance='beta_tilde', inputs=None, clip_below=None):
  """The named predictor; 'ancestral' with the reverse variance `variance` (see get_ancestral)."""
  check_variance(variance)
  if name == 'ancestral':
    return get_ancestral(variance, inputs, clip_below)
  predictors = {'euler_maruyama': euler_maruyama, 'reverse_diffusion': reverse_diffusion,
                'none': None}
  if name not in predictors:
    raise ConfigError(f"unknown predictor {name!r}; choose one of {sorted(predictors)}")
  return predictors[name]


def get_corrector(name):
  if name not in CORRECTORS:
    raise ConfigError(f"unknown corrector {name!r}; choose one of {sorted(CORRECTORS)}")
  return CORRECTORS[name]


def get_sampler(config, sde, shape, device=None, continuous=True, ems=None, variance_inputs=None,
                resample=1, jump_length=1):
  """sampler(score_fn, generator=None, progress=True) -> (x, nfe) for `config` (= config.sampling);
  sampler.sde is the process it runs (the DiscreteChain when it steps on a chain).

  method: 'pc' (config.predictor + config.corrector), 'ancestral' (DDPM: ancestral predictor, no
  corrector), 'ode' (probability flow, torchdiffeq), 'sde' (reverse SDE, torchsde; with
  sde_solver='adaptive' Jolicoeur-Martineau et al.'s adaptive solver, samplers/adaptive_sde.py,
  to the tolerances sde_atol and sde_rtol, taking the steps they need whatever config.steps).
  A discrete-time model (continuous=False) knows only its chain's steps: 'pc' and 'ancestral'
  then step along the chain itself (DiscreteChain: 'ancestral' is Ho et al.'s Algorithm 2),
  while 'ode' and 'sde' integrate the SDE with the score of the nearest chain step. The fast
  samplers (FAST_SAMPLERS; config.steps is their budget of score evaluations) run on the SDE
  too, except 'ddim', which steps on a subsequence of the chain as Song et al. define it.
  'dpm_solver_v3' needs `ems`, the network's empirical model statistics on [config.eps, T]
  (samplers/ems.py: an EMS, or a function returning one when sampling starts); the ancestral
  step with config.variance 'learned' or 'analytic' its `variance_inputs`
  (sde_lib.reverse_variance.VarianceInputs). On a discrete-time model's chain, config.steps < N
  samples the respaced chain (Nichol & Dhariwal 2021, sec. 4).
  resample > 1 walks 'pc' and 'ancestral' by RePaint's schedule, each segment of `jump_length`
  steps `resample` times (samplers/imputation.py; for imputation, Lugmayr et al. 2022).
  Settings that cannot run raise ConfigError here, before any sampling.
  """
  check_resampling(config.steps, jump_length, resample)
  if resample > 1 and config.method not in ('pc', 'ancestral'):
    raise ConfigError(f"RePaint's resampling (resample={resample}) steps back up the time grid of "
                      f"the 'pc' and 'ancestral' samplers only, not {config.method!r}")
  common = dict(eps=config.eps, noise_removal=config.noise_removal, device=device)
  if config.method in ('pc', 'ancestral'):
    ancestral = config.method == 'ancestral'
    if not continuous:
      sde = DiscreteChain(sde)
    grid = sde.time_grid(config.steps, config.eps)   # validates the number of steps
    predictor = get_predictor('ancestral' if ancestral else config.predictor, config.variance,
                              variance_inputs, clip_below=float(grid[-2]))
    corrector = None if ancestral else get_corrector(config.corrector)
    if not continuous:
      if predictor is euler_maruyama:
        raise ConfigError("euler_maruyama steps the continuous SDE; a discrete-time model "
                          "(training.continuous=False) is sampled on its chain: use the "
                          "'ancestral' or 'reverse_diffusion' predictor")
    run = functools.partial(pc_sample, sde, shape=shape, predictor=predictor, corrector=corrector,
                            steps=config.steps, snr=config.snr, n_steps_each=config.n_steps_each,
                            resample=resample, jump_length=jump_length, **common)
  elif config.method == 'ode':
    run = functools.partial(ode_sample, sde, shape=shape, method=config.ode_method,
                            rtol=config.rtol, atol=config.atol, steps=config.steps, **common)
  elif config.method == 'sde' and config.sde_solver == 'adaptive':
    run = functools.partial(adaptive_sde_sample, sde, shape=shape, atol=config.sde_atol,
                            rtol=config.sde_rtol, **common)
  elif config.method == 'sde':
    run = functools.partial(reverse_sde_sample, sde, shape=shape, method=config.sde_solver,
                            steps=config.steps, **common)
  elif config.method in FAST_SAMPLERS:
    fast = FAST_SAMPLERS[config.method]
    schedule, kwargs = fast.kwargs(config)
    chain = DiscreteChain(sde) if not continuous and config.method == 'ddim' else None
    times = fast_times(sde, schedule, config.eps, config.steps, config.noise_removal, chain)
    if config.method == 'dpm_solver_v3':
      kwargs['ems'] = checked_ems(ems, sde, config.eps, shape[1:])
    sde = chain or sde
    run = functools.partial(fast_sample, sde, shape=shape, solver=fast.solver,
                            steps=config.steps, times=times, thresholding=config.thresholding,
                            **common, **kwargs)
  else:
    raise ConfigError(f"unknown sampling method {config.method!r}; choose one of {list(METHODS)}")

  def sampler(score_fn, generator=None, progress=True):
    # No sampler needs gradients of the network's weights; a score_fn that differentiates
    # (guidance) turns them on inside itself with torch.enable_grad().
    with torch.no_grad():
      return run(score_fn=score_fn, generator=generator, progress=progress)

  sampler.sde = run.args[0]   # the process it steps (a discrete-time model's DiscreteChain or the
                              # SDE): imputation diffuses its observation by this one's m and s
  # The process it runs (a DiscreteChain on a chain's own steps), whose m(t) and s(t) the
  # score it is given is evaluated under: what imputation diffuses the observation with.
  sampler.sde = sde
  return sampler
