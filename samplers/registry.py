"""get_sampler: the sampler `config.sampling` names, on a plain score_fn(x, t).

Each method is a builder in SAMPLERS that turns the config into a Plan: the process it steps
(the SDE, or a discrete-time model's DiscreteChain), a solver(model, x, generator) from the
method's own module, where it ends and whether the driver (samplers/driver.py) finishes with
Tweedie's denoising there.
"""
import functools
import inspect
from typing import Callable, NamedTuple

import torch

from samplers.adaptive_sde import adaptive_sde
from samplers.consistency import consistency_sigmas, multistep_consistency
from samplers.ddim import ddim
from samplers.dpm_solver import dpm_solver_pp_multistep, dpm_solver_singlestep
from samplers.dpm_solver_v3 import dpm_solver_v3
from samplers.driver import sample
from samplers.ems import checked_ems
from samplers.fast import budgeted, fast_times, tweedie
from samplers.heun import heun
from samplers.ipndm import ipndm
from samplers.langevin import annealed_langevin, langevin
from samplers.pc import check_resampling, predictor_corrector, repaint
from samplers.predictors import euler_maruyama, get_ancestral, reverse_diffusion
from samplers.probability_flow import probability_flow_ode
from samplers.reverse_sde import torchsde_reverse
from samplers.unipc import unipc
from sde_lib import DiscreteChain
from sde_lib.reverse_variance import check_variance
from utils.errors import ConfigError

CORRECTORS = {'langevin': langevin, 'ald': annealed_langevin, 'none': None}
# Budgets below this take a fast sampler's `few_steps` defaults (FastSampler).
FEW_STEPS_BELOW = 10


class FastSampler:
  """A fast sampler: its solver, its measured-best defaults for the 'default' settings
  (time_schedule, variant, order), and which other config.sampling fields it reads.

  The defaults are chosen in two stages: benchmarks/sampler_quality.py --sweep ranks the
  settings by flow error on exact mixture scores (benchmarks/results/
  sampler_quality_vpsde_ranking.md), and of the three best the default is the one of lowest
  digit FD at 10 evaluations on the demo's model (benchmarks/digits.py; docs/results.md).
  `few_steps` replaces some of them below FEW_STEPS_BELOW evaluations (config.steps), where
  digit FD at 2 to 9 evaluations chose it (docs/sampling.md)."""

  def __init__(self, solver, defaults, options=(), orders=(), variants=(), few_steps=None):
    # solver: a function, or {variant: function} where the variant names another algorithm
    self.solver, self.defaults, self.options = solver, defaults, options
    self.few_steps = few_steps or {}
    variants = tuple(solver) if isinstance(solver, dict) else variants
    self.choices = dict(order=orders, variant=variants)   # allowed values of order, variant

  def settings(self, config):
    """time_schedule, variant and order with 'default' / 0 replaced by this method's own for
    config.steps evaluations."""
    defaults = self.defaults
    if config.steps < FEW_STEPS_BELOW:
      defaults = {**defaults, **self.few_steps}
    chosen = dict(time_schedule=config.time_schedule, variant=config.variant, order=config.order)
    return {k: defaults.get(k) if v in ('default', 0) else v for k, v in chosen.items()}

  def resolve(self, config):
    """(solver, time_schedule, its keyword arguments: the chosen settings and those of
    `options` it takes); ConfigError for a choice it lacks."""
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
    solver = self.solver
    if isinstance(solver, dict):
      solver = solver[kwargs.pop('variant')]
    takes = inspect.signature(solver).parameters
    kwargs.update({k: config[k] for k in self.options if k in takes})
    return solver, settings['time_schedule'], kwargs


# DPM-Solver++ and UniPC step uniformly in lambda from 10 evaluations on. With fewer, the second
# step extrapolates from a trained network's x0_hat(x_T, T) (its eps error times s(T) / m(T),
# large at T) with weight 1 / (2 r) = 1/2 into a low-noise state; on sqrt(t)-uniform steps the
# weight is smaller and the state noisier (docs/sampling.md measures both on digits).
FAST_SAMPLERS = {
    'ddim': FastSampler(ddim, dict(time_schedule='quadratic'), options=('eta',)),
    'heun': FastSampler(heun, dict(time_schedule='uniform'),
                        options=('s_churn', 's_tmin', 's_tmax', 's_noise')),
    'ipndm': FastSampler(ipndm, dict(time_schedule='quadratic', order=3), orders=(1, 2, 3, 4)),
    'dpm_solver': FastSampler({'singlestep': dpm_solver_singlestep,
                               'multistep': dpm_solver_pp_multistep},
                              dict(time_schedule='logsnr', variant='multistep', order=3),
                              options=('lower_order_final',), orders=(1, 2, 3),
                              few_steps=dict(time_schedule='quadratic')),
    'unipc': FastSampler(unipc, dict(time_schedule='logsnr', variant='bh2', order=3),
                         options=('lower_order_final',), orders=(1, 2, 3), variants=('bh1', 'bh2'),
                         few_steps=dict(time_schedule='quadratic')),
    'dpm_solver_v3': FastSampler(dpm_solver_v3, dict(time_schedule='quadratic', order=2),
                                 options=('lower_order_final',), orders=(1, 2, 3)),
}


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


class Plan(NamedTuple):
  """What the driver runs: `solver(model, x, generator)` on `process` from T to `t_end`, then
  Tweedie's x0_hat at t_end if `denoise`."""
  process: object
  solver: Callable
  t_end: float
  denoise: bool
  desc: str
  thresholding: bool = False


def _predictor_corrector(config, sde, shape, continuous, variance_inputs, resample, jump_length,
                         **_):
  """'pc' (config.predictor + config.corrector) and 'ancestral' (DDPM: the ancestral predictor,
  no corrector) on `sde.time_grid`, or on a discrete-time model's own (respaced) chain; RePaint's
  walk when resample > 1."""
  ancestral = config.method == 'ancestral'
  process = sde if continuous else DiscreteChain(sde)
  grid = process.time_grid(config.steps, config.eps)   # validates the number of steps
  predictor = get_predictor('ancestral' if ancestral else config.predictor, config.variance,
                            variance_inputs, clip_below=float(grid[-2]))
  corrector = None if ancestral else get_corrector(config.corrector)
  if not continuous and predictor is euler_maruyama:
    raise ConfigError("euler_maruyama steps the continuous SDE; a discrete-time model "
                      "(training.continuous=False) is sampled on its chain: use the "
                      "'ancestral' or 'reverse_diffusion' predictor")
  steps = dict(grid=grid, predictor=predictor, corrector=corrector, snr=config.snr,
               n_steps_each=config.n_steps_each, noise_removal=config.noise_removal)
  solver = (functools.partial(repaint, jump_length=jump_length, resample=resample, **steps)
            if resample > 1 else functools.partial(predictor_corrector, **steps))
  return Plan(process, solver, 0.0, False, 'sampling')


def _ode(config, sde, **_):
  """The probability-flow ODE by torchdiffeq (a discrete-time model: the nearest chain step's
  score on the SDE)."""
  solver = functools.partial(probability_flow_ode, t_end=config.eps, method=config.ode_method,
                             rtol=config.rtol, atol=config.atol, steps=config.steps)
  return Plan(sde, solver, config.eps, config.noise_removal, 'probability flow')


def _sde(config, sde, **_):
  """The reverse SDE: Jolicoeur-Martineau et al.'s adaptive solver (sde_solver='adaptive', to
  sde_atol / sde_rtol, whatever config.steps), or torchsde's `sde_solver` in config.steps steps."""
  if config.sde_solver == 'adaptive':
    solver = functools.partial(adaptive_sde, t_end=config.eps, atol=config.sde_atol,
                               rtol=config.sde_rtol)
  else:
    solver = functools.partial(torchsde_reverse, t_end=config.eps, method=config.sde_solver,
                               steps=config.steps)
  return Plan(sde, solver, config.eps, config.noise_removal, f'SDE sampling ({config.sde_solver})')


def _fast(config, sde, shape, continuous, ems, **_):
  """A fast sampler with config.steps its budget of score evaluations, on the SDE; 'ddim' on a
  discrete-time model steps on a subsequence of its chain, as Song et al. define it."""
  solver, schedule, kwargs = FAST_SAMPLERS[config.method].resolve(config)
  if config.steps == 1 and config.noise_removal:   # no evaluation left for a step: x0_hat at T
    return Plan(sde, tweedie, config.eps, False, 'tweedie', config.thresholding)
  chain = DiscreteChain(sde) if not continuous and config.method == 'ddim' else None
  times = fast_times(sde, schedule, config.eps, config.steps, config.noise_removal, chain)
  if config.method == 'dpm_solver_v3':
    kwargs['ems'] = checked_ems(ems, sde, config.eps, shape[1:])
  budget = config.steps - int(config.noise_removal)
  return Plan(chain or sde, budgeted(solver, budget, times, **kwargs), float(times(1)[-1]),
              config.noise_removal, solver.__name__, config.thresholding)


def _consistency(config, sde, **_):
  """A consistency model's multistep sampling (samplers/consistency.py): config.steps
  evaluations, the intermediate levels config.consistency_sigmas, down to sigma(config.eps)."""
  sigma_of = lambda t: float(torch.exp(-sde.log_snr(torch.tensor([t], dtype=torch.float64)))[0])
  sigma_min = sigma_of(config.eps)
  sigmas = consistency_sigmas(config.steps, tuple(config.consistency_sigmas), sigma_of(sde.T),
                              sigma_min)
  solver = functools.partial(multistep_consistency, sigmas=sigmas, sigma_min=sigma_min)
  return Plan(sde, solver, config.eps, False, 'consistency')


SAMPLERS = {'pc': _predictor_corrector, 'ancestral': _predictor_corrector, 'ode': _ode,
            'sde': _sde, **{name: _fast for name in FAST_SAMPLERS}, 'consistency': _consistency}
METHODS = tuple(SAMPLERS)


def get_sampler(config, sde, shape, device=None, continuous=None, ems=None, variance_inputs=None,
                resample=1, jump_length=1):
  """sampler(score_fn, generator=None, progress=True) -> (x, nfe) for `config` (= config.sampling);
  sampler.sde is the process it runs (the DiscreteChain when it steps on a chain).

  method: 'pc', 'ancestral', 'ode', 'sde' or a fast sampler (SAMPLERS' builders say what each
  reads). A discrete-time model knows only its chain's steps: 'pc' and 'ancestral' then step
  along the chain itself (DiscreteChain: 'ancestral' is Ho et al.'s Algorithm 2, and
  config.steps < N samples the respaced chain, Nichol & Dhariwal 2021 sec. 4), 'ddim' on a
  subsequence of it, the others integrate the SDE with the score of the nearest chain step.
  Whether the model is discrete-time is what its score_fn says (`score_fn.continuous`, set by
  models.get_score_fn) unless `continuous` is given; a score_fn that says otherwise than a given
  `continuous` is refused. 'dpm_solver_v3' needs `ems` (samplers/ems.py: an EMS); the ancestral step with config.variance 'learned' or
  'analytic' its `variance_inputs` (sde_lib.reverse_variance.VarianceInputs). resample > 1
  walks 'pc' and 'ancestral' by RePaint's schedule (samplers/pc.py `repaint`). Settings that
  cannot run raise ConfigError here, before any sampling.
  """
  check_resampling(config.steps, jump_length, resample)
  if resample > 1 and config.method not in ('pc', 'ancestral'):
    raise ConfigError(f"RePaint's resampling (resample={resample}) steps back up the time grid of "
                      f"the 'pc' and 'ancestral' samplers only, not {config.method!r}")
  if config.method not in SAMPLERS:
    raise ConfigError(f"unknown sampling method {config.method!r}; choose one of {list(METHODS)}")
  build = functools.partial(SAMPLERS[config.method], config, sde, shape=shape, ems=ems,
                            variance_inputs=variance_inputs, resample=resample,
                            jump_length=jump_length)
  plans = {}

  def plan(is_continuous):
    if is_continuous not in plans:
      plans[is_continuous] = build(continuous=is_continuous)
    return plans[is_continuous]

  declared = True if continuous is None else continuous

  def sampler(score_fn, generator=None, progress=True):
    said = getattr(score_fn, 'continuous', None)
    if continuous is not None and said is not None and said != continuous:
      raise ConfigError(f"get_sampler(continuous={continuous}) was given a "
                        f"{'continuous' if said else 'discrete'}-time model's score_fn")
    run = plan(declared if said is None else said)
    # No sampler needs gradients of the network's weights; a score_fn that differentiates
    # (guidance) turns them on inside itself with torch.enable_grad().
    with torch.no_grad():
      return sample(run.process, score_fn, shape, run.solver, run.t_end, run.denoise, generator,
                    device, progress, run.thresholding, run.desc)

  # The process it runs (a DiscreteChain on a chain's own steps), whose m(t) and s(t) the
  # score it is given is evaluated under: what imputation diffuses the observation with.
  sampler.sde = plan(declared).process
  return sampler
