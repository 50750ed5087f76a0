"""Our samplers against k-diffusion's and diffusers' on analytic Gaussian mixtures, with the
exact score.

Two mixtures (sde_lib/gaussian_mixture.py): the 2-D ring of 8 narrow modes and random_mixture(64), three
anisotropic 64-D modes of unequal weight. Every sampler draws n samples (2000; 1000 in 64-D,
where a point's score costs 6 times the 2-D one's) from the same x_T ~ prior and may spend a
budget of score evaluations (nfe; 5 10 20 50 100 200 1000; a sampler whose least cost exceeds
a budget is skipped there):
- ours through `get_sampler` with `config.sampling.steps` chosen so that nfe <= budget: each
  fast sampler at its registry default (samplers/registry.py), and the paper's ancestral,
  Euler-Maruyama and probability-flow Euler; DPM-Solver-v3's EMS from 512 exact samples on the
  default grid of 1200 intervals, computed once and timed apart (999 steps need a finer grid:
  it sits out the budget 1000);
- k-diffusion's Euler, Heun and DPM-Solver++(2M) on Karras sigmas from sigma(T) down to
  sigma(eps = 1e-3) and then 0, as k-diffusion ends, with the most steps whose counted denoiser
  calls fit the budget, and DPM-Solver-adaptive at a few tolerances, each landing in the
  smallest budget that holds its nfe. k-diffusion sees our SDE the way EDM does
  (samplers/predictions.py): x^ = x / m(t), sigma = s(t) / m(t), and the denoiser
  D(x^; sigma) = x0_hat(m x^, t(sigma)), t(sigma) = sde.time_of_log_snr(-log sigma), on the
  same exact score; it starts from x_T / m(T);
- diffusers' DDIMScheduler and DPMSolverMultistepScheduler (DPM-Solver++) on the discrete chain
  of our SDE with the noise prediction eps(x, k) = -s(t_k) score(x, t_k), t_k =
  sde.chain_time(k), at `budget` inference steps (one evaluation each), from x_T itself
  (benchmarks/diffusers_samplers.py; VP-SDE only).
`make bench-deps` installs k-diffusion and matplotlib; diffusers comes with the test
requirements. --sweep runs instead every time_schedule x variant x order of our samplers and
every sampler and schedule of k-diffusion and setting of diffusers' at the budgets the
registry's defaults were chosen over (the first stage of that choice, below).

Metrics against the exact mixture: sliced W2 to a reference exact sample of the same n; the NLL
gap mean(-log p(x)) - H, H = -E_p log p from a large exact sample (over-dispersed samples give
a positive gap, under-dispersed ones a negative one, so 'best' is the smallest |gap|); the
largest error of a mode's weight (points assigned to their most probable component); for the
deterministic samplers the flow error, RMS over points of |x - x_flow|, where x_flow is where
the exact probability-flow ODE carries the same x_T (dopri5 at rtol = atol = 1e-9 in float64
to eps, then Tweedie's x0_hat at eps, the limit all of them converge to): x_flow are exact
samples (up to the ODE's start at the prior and end at eps), so it bounds the W2 distance from
the sampler's distribution to the exact one, with no sampling floor; wall and CPU seconds
(k-diffusion's include finding t(sigma) by bisection for sigmas off its schedule).
The floor of each metric is that of exact samples of the same n (mean and std over a few
draws). All samplers share each x_T, hence its sampling noise (the mode counts above all): every
deterministic sampler converges to the same value for one x_T, which may lie a std or two from
the floor, and a stochastic one draws other noise. So each number is the mean over --seeds
draws of x_T, and a difference below the noise of two such means is a tie.

Writes benchmarks/results/sampler_quality.{json,md} (another --sde: sampler_quality_<sde>;
--quick, a check of the pipeline in about 20 s: under benchmarks/results/quick):
first, per mixture, sliced W2, NLL gap and flow error at 10 and 20 evaluations of ours and of
each public sampler at its best setting there, beside the floor; then the plots
sampler_quality_<dim>d.png (each metric against the evaluations, log-log), per budget our best
against the best public sampler, and every run. --sweep writes
sampler_quality_<sde>_<dim>d.{json,md} instead, then sampler_quality_<sde>_ranking.md, which
ranks each sampler's settings by flow error over all the mixtures (--rank_only: from the sweep
results already written), the first stage of the registry's defaults.

  make bench-deps
  .venv/bin/python benchmarks/sampler_quality.py [--dim 2 64] [--sde vpsde] [--n 2000 / 1000]
      [--seeds 2] [--budgets 5 10 20 50 100 200 1000] [--quick] [--out DIR]
  .venv/bin/python benchmarks/sampler_quality.py --sweep [--dim 2 16] [--budgets 5 10 20 50]
      [--rank_only]
"""
import argparse
import functools
import importlib.metadata
import json
import math
import os
import platform
import sys
import time
import warnings

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import diffusers_samplers  # noqa: E402
from benchmarks.results_io import results_dir, write_results  # noqa: E402
from configs.default import get_default_config  # noqa: E402
from sde_lib.gaussian_mixture import exact_score_fn, random_mixture, ring_mixture
from evaluation.sample_metrics import sliced_wasserstein  # noqa: E402
from samplers import get_sampler  # noqa: E402
from samplers.predictions import Predictions  # noqa: E402
from samplers.probability_flow import flow  # noqa: E402
from samplers.registry import FAST_SAMPLERS  # noqa: E402
from sde_lib import SubVPSDE, VESDE, VPSDE  # noqa: E402
from sde_lib.time_schedules import SCHEDULES  # noqa: E402
from utils.atomic import atomic_write  # noqa: E402
from utils.errors import ConfigError  # noqa: E402

SDES = {'vpsde': VPSDE, 'subvpsde': SubVPSDE, 'vesde': VESDE}
# The paper's samplers: config.sampling overrides, and the evaluations they spend beyond
# `steps` (the ODE's final Tweedie denoising).
PAPER_SAMPLERS = {
    'ancestral': (dict(method='ancestral'), 0),
    'euler_maruyama': (dict(method='pc', predictor='euler_maruyama', corrector='none'), 0),
    'ode_euler': (dict(method='ode', ode_method='euler'), 1),
}
# k-diffusion's fixed-schedule samplers (those of this list its version has), on these
# schedules; by default the three named first, on Karras sigmas.
KD_SAMPLERS = ('euler', 'euler_ancestral', 'heun', 'dpm_2', 'dpm_2_ancestral', 'lms',
               'dpmpp_2s_ancestral', 'dpmpp_sde', 'dpmpp_2m', 'dpmpp_2m_sde', 'dpmpp_3m_sde')
KD_SCHEDULES = ('karras', 'exponential')
KD_DEFAULT = (('euler', 'heun', 'dpmpp_2m'), ('karras',))
# DPM-Solver-adaptive's (rtol, atol), its default (0.05, 0.0078) second; it spends at least 21.
KD_ADAPTIVE_TOLERANCES = ((0.2, 0.03), (0.05, 0.0078), (0.01, 0.0016), (0.001, 0.00016))
# Samplers that draw noise as they go: no single endpoint per x_T, so no flow error.
STOCHASTIC = {'ancestral', 'euler_maruyama', 'euler_ancestral', 'dpm_2_ancestral',
              'dpmpp_2s_ancestral', 'dpmpp_sde', 'dpmpp_2m_sde', 'dpmpp_3m_sde'}
FLOW_TOLERANCE = 1e-9
METRICS = ('sliced_w2', 'nll_gap', 'max_weight_error', 'flow_error')
PUBLIC = ('k-diffusion', 'diffusers')
# The budgets the registry's defaults are chosen over (samplers/registry.py, FastSampler).
DEFAULTS_BUDGETS = (10, 20, 50)
TABLE_BUDGETS = (10, 20)   # the first tables' (the README's) columns
EPS = get_default_config().sampling.eps   # every sampler's last time, and sigma_min's
REFERENCE_SEED = 1_000_000   # + --seed: the exact reference and floor draws


def import_k_diffusion():
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')     # clip's pkg_resources deprecation notice
      from k_diffusion import sampling
  except ImportError as error:
    sys.exit(f"k-diffusion is not installed ({error}): run `make bench-deps`")
  return sampling


def version(package):
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


class Truth:
  """The exact mixture's reference sample, entropy and the exact-vs-exact floor of each metric."""

  def __init__(self, mixture, n, seed, entropy_samples, floor_draws):
    self.mixture, self.n = mixture, n
    g = torch.Generator().manual_seed(seed)
    self.reference = mixture.sample(n, g)
    # H = -E_p log p, by Monte Carlo in chunks; its std is std(log p) / sqrt(samples).
    logp = torch.cat([mixture.log_prob(mixture.sample(min(100_000, entropy_samples), g))
                      for _ in range(math.ceil(entropy_samples / 100_000))])
    self.entropy, self.entropy_std = -logp.mean().item(), (logp.std() / len(logp) ** 0.5).item()
    draws = [self.metrics(mixture.sample(n, g)) for _ in range(floor_draws)]
    self.floor = {k: dict(mean=sum(d[k] for d in draws) / len(draws),
                          std=torch.tensor([d[k] for d in draws]).std().item())
                  for k in ('sliced_w2', 'nll_gap', 'max_weight_error')}
    self.floor['flow_error'] = dict(mean=0.0, std=0.0)
    self.flowed = {}

  def flow_endpoint(self, sde, score_fn, shape, seed):
    """x_flow of the x_T that seed `seed` draws (every sampler's), computed once per seed."""
    if seed not in self.flowed:
      x_T = sde.prior_sampling(shape, generator=torch.Generator().manual_seed(seed)).double()
      x, _ = flow(sde, score_fn, x_T, sde.T, EPS, rtol=FLOW_TOLERANCE, atol=FLOW_TOLERANCE)
      t = torch.full((shape[0],), EPS, dtype=torch.float64)
      self.flowed[seed] = sde.tweedie_x0(x, t, score_fn(x, t))
    return self.flowed[seed]

  def metrics(self, x, x_flow=None):
    """The metrics of samples x; flow_error with x_flow, the exact flow of their x_T."""
    if not torch.isfinite(x).all():
      return dict.fromkeys(METRICS)
    weights = torch.bincount(self.mixture.assign(x), minlength=len(self.mixture.weights)) / len(x)
    flow_error = (None if x_flow is None else
                  (x.double() - x_flow).square().sum(1).mean().sqrt().item())
    return dict(sliced_w2=sliced_wasserstein(x, self.reference),
                nll_gap=-self.mixture.log_prob(x).mean().item() - self.entropy,
                max_weight_error=(weights.double() - self.mixture.weights).abs().max().item(),
                flow_error=flow_error)


class KarrasDenoiser:
  """k-diffusion's model(x^, sigma) on our score_fn: D(x^; sigma) = x0_hat(m x^, t(sigma)),
  t(sigma) = sde.time_of_log_snr(-log sigma) (EDM's variables, samplers/predictions.py)."""

  def __init__(self, sde, score_fn):
    self.sde, self.predictions = sde, Predictions(sde, score_fn)
    self.times = {}

  @property
  def nfe(self):
    return self.predictions.nfe

  def schedule(self, sigmas):
    """t of each sigma of a schedule, in one bisection, as our samplers find their schedules'
    times; other sigmas (midpoints, adaptive steps) are bisected one call at a time."""
    sigmas = sigmas[sigmas > 0]
    times = self.sde.time_of_log_snr(-torch.log(sigmas.double()))
    self.times.update(zip(sigmas.tolist(), times))

  def __call__(self, x_scaled, sigma):
    sigma = float(sigma.reshape(-1)[0])       # k-diffusion passes sigma * ones(batch)
    t = self.times.get(sigma)
    if t is None:
      t = self.sde.time_of_log_snr(torch.tensor(-math.log(sigma), dtype=torch.float64))
    mean_coeff = float(self.predictions.coeffs(t)[0])
    return self.predictions.x0(mean_coeff * x_scaled, t)


def setting_name(settings):
  """'quadratic multistep order 3' of {time_schedule, variant, order}."""
  return ' '.join([settings['time_schedule']] + ([settings['variant']] if settings['variant']
                                                  else [])
                  + ([f"order {settings['order']}"] if settings['order'] else []))


def our_runs(sweep):
  """(sampler, setting, config.sampling overrides, extra evaluations, is default): each fast
  sampler at its registry default (--sweep: at every time_schedule x variant x order its entry
  allows), then the paper's."""
  runs = []
  for method, fast in FAST_SAMPLERS.items():
    config = get_default_config().sampling
    config.method = method
    default = fast.settings(config)
    every = [dict(time_schedule=schedule, variant=variant, order=order)
             for schedule in SCHEDULES for variant in fast.choices['variant'] or (None,)
             for order in fast.choices['order'] or (None,)]
    for settings in every if sweep else [default]:
      overrides = dict(method=method, time_schedule=settings['time_schedule'],
                       variant=settings['variant'] or 'default', order=settings['order'] or 0)
      runs.append((method, setting_name(settings), overrides, 0, settings == default))
  runs += [(name, 'paper', overrides, extra, False)
           for name, (overrides, extra) in PAPER_SAMPLERS.items()]
  return runs


def public_samplers(sweep):
  """(side, sampler) of every public sampler the run measures, in table order."""
  kd = KD_SAMPLERS + ('dpm_fast',) if sweep else KD_DEFAULT[0]
  return ([('k-diffusion', name) for name in kd + ('dpm_adaptive',)]
          + [('diffusers', name) for name in diffusers_samplers.SETTINGS])


def dpm_solver_v3_inputs(score_fn, sde, mixture, args):
  """DPM-Solver-v3's empirical model statistics, as its registry entry says: compute_ems on
  data (here exact samples) at args.ems = (points, grid intervals); once per model, outside the
  budget (Zheng et al. 2023 precompute them once per network too)."""
  from samplers.ems import compute_ems
  samples, grid = args.ems
  g = torch.Generator().manual_seed(REFERENCE_SEED - 1 - args.seed)
  return dict(ems=compute_ems(score_fn, sde, mixture.sample(samples, g), t_end=EPS, grid=grid,
                              generator=g, progress=False))


# Methods whose get_sampler needs more than a config: how to get it (score_fn, sde, mixture, args).
EXTRA_INPUTS = {'dpm_solver_v3': dpm_solver_v3_inputs}


def run_ours(overrides, extra, budget, sde, shape, score_fn, inputs, seed):
  config = get_default_config().sampling
  config.update(overrides)
  config.steps = budget - extra
  sampler = get_sampler(config, sde, shape, **inputs)
  return timed(lambda: sampler(score_fn, generator=torch.Generator().manual_seed(seed),
                               progress=False))


def kd_steps(sample, budget, sigmas_of):
  """The most steps n (positive sigmas) whose denoiser calls fit `budget`, by bisection (calls
  grow with n), counted on a dummy denoiser (Heun-like samplers make 2n - 1 calls: no
  correction on the last step to 0); None if not even one step fits."""

  def calls(n):
    count = 0

    def dummy(x, sigma):
      nonlocal count
      count += 1
      return torch.zeros_like(x)

    sample(dummy, torch.ones(1, 2), sigmas_of(n), disable=True)
    return count

  fits, too_many = 0, budget + 1      # calls(n) >= n
  while too_many - fits > 1:
    middle = (fits + too_many) // 2
    fits, too_many = (middle, too_many) if calls(middle) <= budget else (fits, middle)
  return fits or None


def run_kd(sample, sde, score_fn, shape, seed, **kwargs):
  """k-diffusion's `sample(model, x^_T, ...)` from our x_T (the same draw as ours); k-diffusion's
  own noise comes from torch's global generator, seeded alike. Returns ((x, nfe), wall, cpu)."""
  x_T = sde.prior_sampling(shape, generator=torch.Generator().manual_seed(seed))
  mean_T = sde.marginal_coeffs(torch.tensor([sde.T], dtype=torch.float64))[0].item()
  denoiser = KarrasDenoiser(sde, score_fn)
  torch.manual_seed(seed)

  def sample_it():
    if 'sigmas' in kwargs:
      denoiser.schedule(kwargs['sigmas'])
    return sample(denoiser, x_T / mean_T, disable=True, **kwargs), denoiser.nfe

  return timed(sample_it)


def run_diffusers(name, setting, budget, sde, score_fn, shape, seed):
  """diffusers' scheduler `name` at `setting` with `budget` steps from our x_T."""
  x_T = sde.prior_sampling(shape, generator=torch.Generator().manual_seed(seed))
  return timed(lambda: diffusers_samplers.sample(name, setting, sde, score_fn, x_T, budget))


def timed(fn):
  wall, cpu = time.perf_counter(), time.process_time()
  out = fn()
  return out, time.perf_counter() - wall, time.process_time() - cpu


def mixture_name(dim):
  return 'ring of 8, 2-D' if dim == 2 else f'3-mode anisotropic, {dim}-D'


def benchmark(dim, args, sampling):
  """Every run on one mixture: the report (rows, floors, summary)."""
  sde = SDES[args.sde]()
  mixture = ring_mixture() if dim == 2 else random_mixture(dim)
  score_fn = exact_score_fn(mixture, sde)
  n = args.n or (2000 if dim <= 16 else 1000)
  shape = (n, dim)
  start = time.perf_counter()
  # The reference's seed is none of the samplers': x_T would share its draws.
  truth = Truth(mixture, n, REFERENCE_SEED + args.seed, args.entropy_samples,
                args.floor_draws)
  sigma_max, sigma_min = torch.exp(
      -sde.log_snr(torch.tensor([sde.T, EPS], dtype=torch.float64))).tolist()
  seeds = [args.seed + i for i in range(args.seeds)]
  rows, skipped, inputs, precompute_s = [], {}, {}, {}
  title = (f"{args.sde}, {mixture_name(dim)} mixture, n = {n}, {args.seeds} x_T "
           f"draw{'s' * (args.seeds > 1)}")
  print(f"{title}\nH = {truth.entropy:.4f} +- {truth.entropy_std:.4f} nats; floors (exact vs "
        f"exact, mean +- std of {args.floor_draws}): " + ', '.join(
            f"{k} {v['mean']:.4f} +- {v['std']:.4f}" for k, v in truth.floor.items()))
  print(HEADER)

  def measure(budget, side, sampler, setting, run, default=False):
    """run(seed) -> ((x, nfe), wall, cpu) for each seed; the row holds the means over seeds
    (budget None: the smallest budget that holds the largest nfe)."""
    per_seed = []
    for seed in seeds:
      (x, nfe), wall, cpu = run(seed)
      x_flow = None if sampler in STOCHASTIC else truth.flow_endpoint(sde, score_fn, shape, seed)
      per_seed.append(dict(seed=seed, nfe=nfe, **truth.metrics(x, x_flow), wall_s=wall,
                           cpu_s=cpu))
    nfe = max(r['nfe'] for r in per_seed)
    if budget is None:
      budget = min((b for b in args.budgets if nfe <= b), default=None)
    elif nfe > budget:
      raise RuntimeError(f"{sampler} {setting} spent {nfe} evaluations of a budget of {budget}")
    means = {k: None if any(r[k] is None for r in per_seed) else
             sum(r[k] for r in per_seed) / len(per_seed)
             for k in METRICS + ('wall_s', 'cpu_s')}
    row = dict(budget=budget, side=side, sampler=sampler, setting=setting, default=default,
               nfe=nfe, **means, per_seed=per_seed)
    rows.append(row)
    print(format_row(row), flush=True)

  def attempt(budget, side, sampler, setting, run, default=False):
    """measure, or note why not: a sampler still being written must not stop the others."""
    try:
      measure(budget, side, sampler, setting, run, default)
    except ConfigError as error:
      skip(sampler, setting, budget, str(error))
    except Exception as error:
      skip(sampler, setting, budget, f"failed: {type(error).__name__}: {error}")

  def skip(sampler, setting, budget, reason):
    if (sampler, reason) not in skipped:
      print(f"  skipped {sampler}: {reason}", flush=True)
    skipped.setdefault((sampler, reason), []).append(f'{setting} at {budget}'.strip())

  def inputs_of(method):
    """What `method` needs beyond a config (EXTRA_INPUTS), made once and timed apart."""
    if method in EXTRA_INPUTS and method not in inputs:
      (inputs[method], precompute_s[method], _) = timed(
          lambda: EXTRA_INPUTS[method](score_fn, sde, mixture, args))
      print(f"  {method}: its inputs took {precompute_s[method]:.1f} s", flush=True)
    return inputs.get(method, {})

  def kd(sample, **kwargs):
    return lambda seed: run_kd(sample, sde, score_fn, shape, seed, **kwargs)

  kd_names, kd_schedules = (KD_SAMPLERS, KD_SCHEDULES) if args.sweep else KD_DEFAULT
  diffusers_settings = (diffusers_samplers.SETTINGS if args.sweep else
                        diffusers_samplers.DEFAULT_SETTINGS)
  for budget in args.budgets:
    for sampler, setting, overrides, extra, default in our_runs(args.sweep):
      run = functools.partial(run_ours, overrides, extra, budget, sde, shape, score_fn,
                              inputs_of(overrides['method']))
      attempt(budget, 'ours', sampler, setting, run, default)
    for name in kd_names:
      sample = getattr(sampling, f'sample_{name}', None)
      if sample is None:
        skip(name, '', budget, f"k-diffusion {args.versions['k-diffusion']} has no sample_{name}")
        continue
      for schedule in kd_schedules:
        get_sigmas = getattr(sampling, f'get_sigmas_{schedule}')
        sigmas_of = lambda n: get_sigmas(n, sigma_min, sigma_max)  # noqa: E731
        steps = kd_steps(sample, budget, sigmas_of)
        if steps is None:
          skip(name, schedule, budget, 'no number of steps fits the budget')
          continue
        attempt(budget, 'k-diffusion', name, f'{schedule} {steps} steps',
                kd(sample, sigmas=sigmas_of(steps)))
    if args.sweep:
      attempt(budget, 'k-diffusion', 'dpm_fast', 'log-sigma uniform',
              kd(sampling.sample_dpm_fast, sigma_min=sigma_min, sigma_max=sigma_max, n=budget))
    for name, settings in diffusers_settings.items():
      for setting in settings:
        if not args.versions['diffusers']:
          skip(name, setting, budget, 'diffusers is not installed (requirements-test.txt)')
          continue
        attempt(budget, 'diffusers', name, setting,
                functools.partial(run_diffusers, name, setting, budget, sde, score_fn, shape))
  for rtol, atol in args.adaptive_tolerances:
    attempt(None, 'k-diffusion', 'dpm_adaptive', f'rtol {rtol} atol {atol}',
            kd(sampling.sample_dpm_adaptive, sigma_min=sigma_min, sigma_max=sigma_max,
               rtol=rtol, atol=atol))

  rows.sort(key=lambda r: (r['budget'] is None, r['budget'] or 0))
  report = dict(title=title, sde=args.sde, dim=dim, mixture=mixture_name(dim), n=n,
                seeds=seeds, eps=EPS, sigma_min=sigma_min, sigma_max=sigma_max,
                budgets=args.budgets, versions=args.versions, entropy=truth.entropy,
                entropy_std=truth.entropy_std, entropy_samples=args.entropy_samples,
                floor_draws=args.floor_draws, floor=truth.floor,
                summary=summarize(rows, args.budgets, truth.floor, len(seeds)), rows=rows,
                seconds=time.perf_counter() - start, precompute_s=precompute_s,
                skipped=[dict(sampler=s, reason=r, runs=runs)
                         for (s, r), runs in skipped.items()])
  print_summary(report)
  return report


SUMMARY_METRICS = {'sliced_w2': 'sliced W2', 'nll_gap': 'NLL gap', 'flow_error': 'flow error'}


def best_settings(reports, budgets):
  """Per sampler of ours, its settings ranked by the geometric mean of the flow error over
  `budgets` and the mixtures of `reports` (how the registry's defaults are chosen):
  [(sampler, [(gmean, setting, default)])]; settings that failed or diverged anywhere are
  left out."""
  cells = {(report['dim'], budget) for report in reports for budget in budgets}
  by_setting = {}
  for report in reports:
    for r in report['rows']:
      if r['side'] == 'ours' and r['budget'] in budgets and r['sampler'] not in STOCHASTIC:
        by_setting.setdefault((r['sampler'], r['setting'], r['default']), {})[
            (report['dim'], r['budget'])] = r['flow_error']
  ranked = {}
  for (sampler, setting, default), errors in by_setting.items():
    if set(errors) == cells and all(e is not None and e > 0 for e in errors.values()):
      gmean = math.exp(sum(math.log(e) for e in errors.values()) / len(errors))
      ranked.setdefault(sampler, []).append((gmean, setting, default))
  return [(sampler, sorted(settings)) for sampler, settings in ranked.items()]


def best(rows, sides, metric, sampler=None):
  """The row of `sides` (and `sampler`, if given) with the smallest |metric|."""
  rows = [r for r in rows if r['side'] in sides and r[metric] is not None
          and sampler in (None, r['sampler'])]
  return min(rows, key=lambda r: abs(r[metric]), default=None)


def summarize(rows, budgets, floor, seeds):
  """Per budget and metric (sliced W2, |NLL gap|, flow error): our best and the best public
  sampler's (k-diffusion's or diffusers'), and which wins. A mean over `seeds` draws of x_T has
  the noise std / sqrt(seeds) of the exact-vs-exact spread: two bests closer than that noise of
  a difference are a tie, and two bests that both lie within twice it of the floor are 'at
  floor' (the best of many stochastic runs is a minimum over independent noise, so below the
  floor does not mean better). The flow error has no floor and no sampling noise given x_T: the
  side whose best is smaller on every draw of x_T wins, else it is a tie."""
  noise = {k: v['std'] / seeds ** 0.5 for k, v in floor.items()}

  def at_floor(row, metric):
    return abs(row[metric] - floor[metric]['mean']) <= 2 * noise[metric] or (
        metric == 'sliced_w2' and row[metric] <= floor[metric]['mean'])

  def smaller_on_every_draw(a, b):
    return all(x['flow_error'] < y['flow_error'] for x, y in zip(a['per_seed'], b['per_seed']))

  summary = []
  for budget in budgets:
    at_budget = [r for r in rows if r['budget'] == budget]
    for metric in SUMMARY_METRICS:
      ours, public = best(at_budget, ('ours',), metric), best(at_budget, PUBLIC, metric)
      if ours is None or public is None:
        winner = 'ours' if public is None else 'public'
      elif metric == 'flow_error':
        winner = ('ours' if smaller_on_every_draw(ours, public) else
                  'public' if smaller_on_every_draw(public, ours) else 'tie')
      else:
        gap = abs(ours[metric]) - abs(public[metric])
        winner = ('at floor' if at_floor(ours, metric) and at_floor(public, metric) else
                  'tie' if abs(gap) < noise[metric] * 2 ** 0.5 else
                  'ours' if gap < 0 else 'public')
      summary.append(dict(budget=budget, metric=metric, ours=ours, public=public, winner=winner))
  return summary


HEADER = (f"{'budget':>6s} {'side':11s} {'sampler':20s} {'setting':30s} {'nfe':>4s} "
          f"{'sliced W2':>9s} {'NLL gap':>8s} {'max |dw|':>8s} {'flow err':>8s} {'wall s':>7s} "
          f"{'CPU s':>7s}")


def fmt(value):
  """4 decimals, or 3 significant digits below 0.01 (flow errors of converged solvers)."""
  if value is None:
    return '-'
  return f'{value:.4f}' if value == 0 or abs(value) >= 0.01 else f'{value:.2e}'


def format_row(r):
  setting = r['setting'] + (' *' if r['default'] else '')
  return (f"{str(r['budget'] or '>'):>6s} {r['side']:11s} {r['sampler']:20s} {setting:30s} "
          f"{r['nfe']:4d} {fmt(r['sliced_w2']):>9s} {fmt(r['nll_gap']):>8s} "
          f"{fmt(r['max_weight_error']):>8s} {fmt(r['flow_error']):>8s} {r['wall_s']:7.3f} "
          f"{r['cpu_s']:7.3f}")


def describe(row, metric, side=False):
  if row is None:
    return '-'
  return (f"{row['side'] + ' ' if side else ''}{row['sampler']} {row['setting']}"
          f"{' *' if row['default'] else ''} (nfe {row['nfe']}): {fmt(row[metric])}")


def print_summary(report):
  print(f"\nbest per budget ({report['title']}):")
  for s in report['summary']:
    print(f"  {s['budget']:4d} {s['metric']:10s} ours {describe(s['ours'], s['metric'])} | "
          f"public {describe(s['public'], s['metric'], side=True)} -> {s['winner']}")
  print(f"{report['seconds']:.0f} s" + ''.join(f" ({k}'s inputs: {v:.0f} s)"
                                              for k, v in report['precompute_s'].items()))


def rounded(value):
  """`value` with every float to 6 significant digits (the metrics' noise is far larger)."""
  if isinstance(value, float):
    return float(f'{value:.6g}')
  if isinstance(value, dict):
    return {k: rounded(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [rounded(v) for v in value]
  return value


def brief(row):
  return None if row is None else {k: v for k, v in row.items() if k != 'per_seed'}


def brief_report(report):
  """The report with its summary's rows named without their per-seed values, rounded."""
  summary = [{**s, 'ours': brief(s['ours']), 'public': brief(s['public'])}
             for s in report['summary']]
  return rounded({**report, 'summary': summary})


def versions_line(report):
  return ', '.join(f'{k} {v}' for k, v in report['versions'].items() if v)


def floors_line(report):
  floor = report['floor']
  return (f"Entropy H = {report['entropy']:.4f} +- {report['entropy_std']:.4f} nats "
          f"({report['entropy_samples']} exact samples). Floors, exact samples of the same n "
          f"(mean +- std of {report['floor_draws']} draws): sliced W2 "
          f"{floor['sliced_w2']['mean']:.4f} +- {floor['sliced_w2']['std']:.4f}, NLL gap "
          f"{floor['nll_gap']['mean']:.4f} +- {floor['nll_gap']['std']:.4f}, max weight error "
          f"{floor['max_weight_error']['mean']:.4f} +- {floor['max_weight_error']['std']:.4f}.")


SUMMARY_NOTE = (
    "By sliced W2 (lower is better), by |NLL gap| (closer to 0 is better) and by flow error "
    "(the RMS distance to the exact probability-flow endpoint of the same x_T, deterministic "
    "samplers only; lower is better); public: the best of k-diffusion's and diffusers'. With "
    "the noise of a mean over the seeds, std / sqrt(seeds) of the floor's spread: a difference "
    "below sqrt(2) noises is a tie, and two values within 2 noises of the floor's mean (or "
    "below it) are both 'at floor', exact samples' quality. The flow error has no floor: a "
    "side wins when its best is smaller on every draw of x_T. `*` marks a sampler's registry "
    "default.")


def summary_lines(report):
  lines = ["| budget | metric | ours best | public best | winner |", "|---|---|---|---|---|"]
  for s in report['summary']:
    winner = f"**{s['winner']}**" if s['winner'] in ('ours', 'public') else s['winner']
    lines.append(f"| {s['budget']} | {SUMMARY_METRICS[s['metric']]} | "
                 f"{describe(s['ours'], s['metric'])} | "
                 f"{describe(s['public'], s['metric'], side=True)} | {winner} |")
  return lines


def runs_lines(report):
  lines = ["Budget '>' : an adaptive run that spent more than the largest budget.", '',
           "| budget | side | sampler | setting | nfe | sliced W2 | NLL gap | max weight error | "
           "flow error | wall s | CPU s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in report['rows']:
    lines.append(f"| {r['budget'] or '>'} | {r['side']} | {r['sampler']} | "
                 f"{r['setting']}{' *' if r['default'] else ''} | {r['nfe']} | "
                 f"{fmt(r['sliced_w2'])} | {fmt(r['nll_gap'])} | {fmt(r['max_weight_error'])} | "
                 f"{fmt(r['flow_error'])} | {r['wall_s']:.3f} | {r['cpu_s']:.3f} |")
  return lines


def skipped_lines(report):
  return [f"- {s['sampler']} ({len(s['runs'])} runs: {', '.join(s['runs'])}): {s['reason']}"
          for s in report['skipped']]


def write_sweep(report, out):
  """sampler_quality_<sde>_<dim>d.{json,md}: one sweep's mixture, every setting."""
  os.makedirs(out, exist_ok=True)
  stem = os.path.join(out, f"sampler_quality_{report['sde']}_{report['dim']}d")
  head = brief_report(report)
  del head['rows']
  # One row a line.
  text = (json.dumps(head, indent=1)[:-2] + ',\n "rows": [\n  '
          + ',\n  '.join(json.dumps(rounded(r)) for r in report['rows']) + '\n ]\n}\n')
  atomic_write(stem + '.json', lambda f: f.write(text.encode()))
  lines = [
      f"# Our samplers vs public ones on an exact mixture score ({report['title']})", '',
      f"`benchmarks/sampler_quality.py --sweep`, {versions_line(report)}; every sampler "
      f"starts from the same x_T (each number: the mean over {len(report['seeds'])} draws of "
      f"x_T, seeds {report['seeds']}); sigma from {report['sigma_max']:.4g} (t = T) to "
      f"{report['sigma_min']:.4g} (t = {report['eps']}); {report['seconds']:.0f} s in all"
      + ''.join(f", of which {v:.0f} s computing {k}'s inputs (outside its budget)"
                for k, v in report['precompute_s'].items()) + '.', '',
      floors_line(report), '', "## Best per budget", '', SUMMARY_NOTE, ''] + summary_lines(report)
  lines += ['', "## All runs", ''] + runs_lines(report)
  lines += ['', "## Each sampler's best settings", ''] + ranking_lines([report])
  if report['skipped']:
    lines += ['', "## Skipped", ''] + skipped_lines(report)
  atomic_write(stem + '.md', lambda f: f.write(('\n'.join(lines) + '\n').encode()))
  print(f"wrote {stem}.json and {stem}.md")


def ranking_lines(reports):
  """The Markdown table of best_settings over DEFAULTS_BUDGETS and the reports' mixtures."""
  budgets = [b for b in DEFAULTS_BUDGETS if all(b in r['budgets'] for r in reports)]
  budgets = budgets or reports[0]['budgets']
  lines = [f"Geometric mean of the flow error over the budgets {budgets} and the "
           f"{' and '.join(str(r['dim']) + '-D' for r in reports)} mixture (the three best "
           "settings, and the rank of the registry's default, `*`).", '',
           "| sampler | best | 2nd | 3rd | default |", "|---|---|---|---|---|"]
  for sampler, settings in best_settings(reports, budgets):
    cells = [f"{setting}{' *' if default else ''}: {fmt(g)}"
             for g, setting, default in settings[:3]]
    cells += [''] * (3 - len(cells))
    default = next((f"{setting} (rank {i + 1}): {fmt(g)}"
                    for i, (g, setting, is_default) in enumerate(settings) if is_default), '-')
    lines.append(f"| {sampler} | " + ' | '.join(cells) + f" | {default} |")
  return lines


def write_ranking(sde, dims, out):
  """sampler_quality_<sde>_ranking.md: the settings ranked over every mixture's sweep results
  (the JSON files of `dims`), the first stage of the registry's defaults."""
  reports = []
  for dim in dims:
    with open(os.path.join(out, f'sampler_quality_{sde}_{dim}d.json')) as f:
      reports.append(json.load(f))
  path = os.path.join(out, f'sampler_quality_{sde}_ranking.md')
  lines = [f"# Each sampler's settings ranked by flow error ({sde}, all mixtures)", '',
           "From the results of `benchmarks/sampler_quality.py --sweep` "
           f"({', '.join(f'sampler_quality_{sde}_{d}d.json' for d in dims)}); of each "
           "sampler's three best, the registry's default is the one of lowest FID on the "
           "digits model at 10 evaluations (samplers/registry.py, README).", '']
  text = '\n'.join(lines + ranking_lines(reports)) + '\n'
  atomic_write(path, lambda f: f.write(text.encode()))
  print(f"wrote {path}")


def table_rows(sweep):
  """The first tables' rows, (label, side, sampler): ours at their registry defaults, then each
  public sampler (its cells: its best setting there)."""
  ours = [(f"{sampler} ({setting})", 'ours', sampler)
          for sampler, setting, *_ in our_runs(False)]
  return ours + [(f"{side} {sampler}", side, sampler) for side, sampler in public_samplers(sweep)]


def first_table(report):
  """Per sampler (table_rows) sliced W2, NLL gap and flow error at TABLE_BUDGETS, each cell the
  best of that sampler's runs at that budget by |metric|, then the exact-sample floor; and
  {(label, budget): {metric: the setting}} of the public samplers' cells."""
  columns = [(metric, budget) for metric in SUMMARY_METRICS for budget in TABLE_BUDGETS]
  lines = ['| sampler | ' + ' | '.join(f'{SUMMARY_METRICS[m]}, {b}' for m, b in columns) + ' |',
           '|---|' + '---|' * len(columns)]
  chosen = {}
  for label, side, sampler in table_rows(report['sweep']):
    cells = []
    for metric, budget in columns:
      rows = [r for r in report['rows'] if r['budget'] == budget]
      row = best(rows, (side,), metric, sampler)
      cells.append(fmt(None if row is None else row[metric]))
      if row is not None and side != 'ours':
        chosen.setdefault((label, budget), {})[metric] = f"{row['setting']} (nfe {row['nfe']})"
    lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
  floor = report['floor']
  lines.append('| exact samples (floor) | ' + ' | '.join(
      '0' if metric == 'flow_error' else
      f"{fmt(floor[metric]['mean'])} +- {fmt(floor[metric]['std'])}" for metric, _ in columns)
      + ' |')
  for label, side, sampler in table_rows(report['sweep']):
    spent = [r['nfe'] for r in report['rows'] if (r['side'], r['sampler']) == (side, sampler)]
    if spent and min(spent) > max(TABLE_BUDGETS):
      lines += ['', f"{label}: {min(spent)} evaluations at the fewest."]
  return lines, chosen


def plot(report, path):
  """Each summary metric (|NLL gap|) against the evaluations, log-log: one line per sampler
  (ours solid, public dashed; public ones at their best setting per budget, as in the table),
  the exact-sample floor shaded (sliced W2: mean +- std; |NLL gap|: below |mean| + 2 std)."""
  import matplotlib
  import matplotlib.ticker
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 3, figsize=(16, 5))
  rows = table_rows(report['sweep'])
  ours = sum(side == 'ours' for _, side, _ in rows)
  colors = plt.get_cmap('tab10').colors[:ours] + plt.get_cmap('Dark2').colors
  for i, (label, side, sampler) in enumerate(rows):
    for ax, metric in zip(axes, SUMMARY_METRICS):
      points = []
      for budget in report['budgets']:
        row = best([r for r in report['rows'] if r['budget'] == budget], (side,), metric, sampler)
        if row is not None and row[metric] != 0:
          points.append((row['nfe'], abs(row[metric])))
      if points:
        ax.plot(*zip(*points), marker='o', markersize=3, color=colors[i % len(colors)],
                linestyle='-' if side == 'ours' else '--', label=label)
  floor = report['floor']
  w2, gap = floor['sliced_w2'], floor['nll_gap']
  axes[0].axhspan(w2['mean'] - w2['std'], w2['mean'] + w2['std'], color='0.85', label='floor')
  axes[1].axhspan(1e-6, abs(gap['mean']) + 2 * gap['std'], color='0.85', label='floor')
  for ax, name in zip(axes, ('sliced W2', '|NLL gap| (nats)', 'flow error (RMS)')):
    ax.set(xscale='log', yscale='log', xlabel='score evaluations', ylabel=name)
    ax.set_xticks(report['budgets'], [str(b) for b in report['budgets']])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.grid(True, which='both', alpha=0.3)
  axes[1].set_ylim(bottom=max(1e-4, axes[1].get_ylim()[0]))
  axes[2].set_title('deterministic samplers')
  handles, labels = axes[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc='center right', fontsize=8)
  fig.suptitle(report['title'])
  fig.subplots_adjust(right=0.8, wspace=0.3)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def markdown(reports, run):
  """The first section (per mixture: the README's table), then plots, settings, summaries and
  every run."""
  lines = ["# Samplers on exact Gaussian-mixture scores: ours, k-diffusion's and diffusers'", '',
           f"`{run['command']}` on {run['machine']}, {run['threads']} torch thread(s), "
           f"{versions_line(reports[0])}; {run['seconds']:.0f} s in all. Sliced W2, NLL gap "
           "(mean -log p - H) and flow error (RMS distance to the exact probability-flow "
           "endpoint of the same x_T) at 10 and 20 score evaluations, each the mean over the "
           "x_T draws; ours at the registry defaults, each public sampler at its best setting "
           "for that cell (named below); `-`: no run fits, or stochastic (no flow error).", '']
  chosen = {}
  for report in reports:
    table, chosen[report['dim']] = first_table(report)
    lines += [f"**{report['title']}**", ''] + table + ['']
  for report in reports:
    dim = report['dim']
    lines += [f"## {report['mixture']}: plot", '', f"![{report['title']}]({run['png'][dim]})",
              '', floors_line(report), '',
              f"## {report['mixture']}: the public samplers' settings in the table", '',
              '| sampler | budget | ' + ' | '.join(SUMMARY_METRICS.values()) + ' |',
              '|---|---|' + '---|' * len(SUMMARY_METRICS)]
    lines += [f'| {label} | {budget} | ' + ' | '.join(settings.get(m, '-') for m in SUMMARY_METRICS)
              + ' |' for (label, budget), settings in chosen[dim].items()]
    lines += ['', f"## {report['mixture']}: best per budget", '', SUMMARY_NOTE, '']
    lines += summary_lines(report)
    lines += ['', f"## {report['mixture']}: all runs", ''] + runs_lines(report)
    if report['skipped']:
      lines += ['', f"## {report['mixture']}: skipped", ''] + skipped_lines(report)
    lines.append('')
  return '\n'.join(lines).rstrip('\n') + '\n'


def write_default(reports, run, out):
  """sampler_quality[_<sde>].{json,md} and a PNG per mixture."""
  stem = 'sampler_quality' + ('' if reports[0]['sde'] == 'vpsde' else f"_{reports[0]['sde']}")
  os.makedirs(out, exist_ok=True)
  run['png'] = {}
  for report in reports:
    run['png'][report['dim']] = f"{stem}_{report['dim']}d.png"
    plot(report, os.path.join(out, run['png'][report['dim']]))
  text = markdown(reports, run)
  print('\n' + text.split('\n## ')[0])
  path = write_results(stem, dict(run=run, mixtures=[brief_report(r) for r in reports]), text,
                       out)
  print(f"wrote {path}.json, {path}.md and " + ', '.join(run['png'].values()))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--dim', type=int, nargs='+',
                      help='2: the ring of 8; otherwise random_mixture(dim); one table each '
                           '(2 64; --sweep 2 16)')
  parser.add_argument('--sde', default='vpsde', choices=sorted(SDES))
  parser.add_argument('--n', type=int,
                      help='samples per run (2000, above 16-D 1000; --sweep 4000; --quick 200)')
  parser.add_argument('--budgets', type=int, nargs='+',
                      help='budgets of score evaluations (5 10 20 50 100 200 1000; --sweep 5 10 '
                           '20 50; --quick 5 10 20)')
  parser.add_argument('--seed', type=int, default=0, help='the first x_T seed')
  parser.add_argument('--seeds', type=int, help='x_T draws each number averages (2; --sweep 3; '
                                                '--quick 1)')
  parser.add_argument('--threads', type=int, default=1,
                      help='torch threads (1: timings comparable on a shared machine)')
  parser.add_argument('--sweep', action='store_true',
                      help="every setting of ours and every public sampler, at the registry "
                           "defaults' budgets: sampler_quality_<sde>_<dim>d.* and the ranking")
  parser.add_argument('--quick', action='store_true',
                      help='fewer samples, budgets and x_T draws, smaller entropy estimate, '
                           'EMS and flow tolerance (about 20 s)')
  parser.add_argument('--out', help='results directory (benchmarks/results; --quick: '
                                    'benchmarks/results/quick)')
  parser.add_argument('--rank_only', action='store_true',
                      help="only rank the settings from the sweep results already in --out")
  args = parser.parse_args()
  quick, sweep = args.quick, args.sweep or args.rank_only
  out = args.out or results_dir(quick)
  args.dim = args.dim or ([2, 16] if sweep else [2, 64])
  if args.rank_only:
    write_ranking(args.sde, args.dim, out)
    return
  args.n = args.n or (200 if quick else 4000 if sweep else None)   # None: benchmark's own
  args.budgets = sorted(args.budgets or ([5, 10, 20] if quick else [5, 10, 20, 50] if sweep
                                         else [5, 10, 20, 50, 100, 200, 1000]))
  args.seeds = args.seeds or (1 if quick else 3 if sweep else 2)
  args.entropy_samples, args.floor_draws = (20_000, 4) if quick else (500_000, 8)
  config = get_default_config().sampling
  args.ems = (128, 50) if quick else (config.ems_samples, config.ems_grid) if sweep else (512, 1200)
  args.adaptive_tolerances = KD_ADAPTIVE_TOLERANCES[1:2] if quick else KD_ADAPTIVE_TOLERANCES
  torch.set_num_threads(args.threads)
  start = time.perf_counter()
  sampling = import_k_diffusion()
  args.versions = {'torch': torch.__version__, 'k-diffusion': version('k-diffusion'),
                   'diffusers': version('diffusers')}
  if args.versions['diffusers']:
    diffusers_samplers.scheduler_classes()    # imported before any run is timed
  reports = []
  for dim in args.dim:
    reports.append(benchmark(dim, args, sampling))
    reports[-1]['sweep'] = sweep
    if sweep:
      write_sweep(reports[-1], out)
  if sweep:
    write_ranking(args.sde, args.dim, out)
    return
  argv = sys.argv[1:]
  if '--out' in argv:    # where it was written is not what made it
    del argv[argv.index('--out'):argv.index('--out') + 2]
  run = dict(command=' '.join(['.venv/bin/python benchmarks/sampler_quality.py'] + argv),
             machine=f'cpu ({platform.machine()}, {os.cpu_count()} cores)',
             threads=args.threads, seconds=time.perf_counter() - start)
  write_default(reports, run, out)


if __name__ == '__main__':
  main()
