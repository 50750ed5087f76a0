"""Our samplers against k-diffusion's on analytic Gaussian mixtures, with the exact score.

Every sampler draws n samples from the same x_T ~ prior and may spend a budget of score
evaluations (nfe): ours through `get_sampler` with `config.sampling.steps` chosen so that
nfe <= budget (the fast samplers take the budget itself; every time_schedule x variant x order
their registry entry allows, '*' marks the entry's default), the paper's ancestral,
Euler-Maruyama and probability-flow Euler for reference, and k-diffusion's samplers
(`make bench-deps` installs it) on its Karras and exponential sigma schedules from
sigma(T) down to sigma(eps = 1e-3) and then 0, as k-diffusion ends, with the largest number of
steps whose counted denoiser calls fit the budget; DPM-Solver-fast takes the budget and
DPM-Solver-adaptive, at a few tolerances, lands in the smallest budget that holds its nfe.
k-diffusion sees our SDE the way EDM does (samplers/predictions.py): x^ = x / m(t),
sigma = s(t) / m(t), and the denoiser D(x^; sigma) = x0_hat(m x^, t(sigma)) with
t(sigma) = sde.time_of_log_snr(-log sigma), on the same exact score; it starts from x_T / m(T).

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
draws of x_T (3 by default), and a difference below the noise of two such means is a tie. One
table per dimension, printed and written to
benchmarks/results/sampler_quality_<sde>_<dim>d.{json,md}, with per budget our best and
k-diffusion's best sampler by sliced W2, by |NLL gap| and by flow error; then
sampler_quality_<sde>_ranking.md ranks each sampler's settings by flow error over all the
mixtures (--rank_only: from the results already written), the first stage of the registry's
defaults (samplers/registry.py).

  make bench-deps
  .venv/bin/python benchmarks/sampler_quality.py [--dim 2 16] [--sde vpsde] [--n 4000]
      [--budgets 5 10 20 50] [--quick] [--rank_only]
"""
import argparse
import functools
import importlib.metadata
import json
import math
import os
import sys
import time
import warnings

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, 'tests')]

from configs.default import get_default_config  # noqa: E402
from gmm_oracle import exact_score_fn, random_mixture, ring_mixture, sliced_wasserstein  # noqa: E402
from samplers import get_sampler  # noqa: E402
from samplers.predictions import Predictions  # noqa: E402
from samplers.probability_flow import flow  # noqa: E402
from samplers.registry import FAST_SAMPLERS  # noqa: E402
from samplers.time_schedules import SCHEDULES  # noqa: E402
from sde_lib import SubVPSDE, VESDE, VPSDE  # noqa: E402
from utils.errors import ConfigError  # noqa: E402

SDES = {'vpsde': VPSDE, 'subvpsde': SubVPSDE, 'vesde': VESDE}
# The paper's samplers: config.sampling overrides, and the evaluations they spend beyond
# `steps` (the ODE's final Tweedie denoising).
PAPER_SAMPLERS = {
    'ancestral': (dict(method='ancestral'), 0),
    'euler_maruyama': (dict(method='pc', predictor='euler_maruyama', corrector='none'), 0),
    'ode_euler': (dict(method='ode', ode_method='euler'), 1),
}
# k-diffusion's fixed-schedule samplers (those of this list its version has), on these schedules.
KD_SAMPLERS = ('euler', 'euler_ancestral', 'heun', 'dpm_2', 'dpm_2_ancestral', 'lms',
               'dpmpp_2s_ancestral', 'dpmpp_sde', 'dpmpp_2m', 'dpmpp_2m_sde', 'dpmpp_3m_sde')
KD_SCHEDULES = ('karras', 'exponential')
KD_ADAPTIVE_TOLERANCES = ((0.2, 0.03), (0.05, 0.0078), (0.01, 0.0016))   # (rtol, atol); the
                                                                          # middle is its default
# Samplers that draw noise as they go: no single endpoint per x_T, so no flow error.
STOCHASTIC = {'ancestral', 'euler_maruyama', 'euler_ancestral', 'dpm_2_ancestral',
              'dpmpp_2s_ancestral', 'dpmpp_sde', 'dpmpp_2m_sde', 'dpmpp_3m_sde'}
FLOW_TOLERANCE = 1e-9
METRICS = ('sliced_w2', 'nll_gap', 'max_weight_error', 'flow_error')
# The budgets the registry's defaults are chosen over (samplers/registry.py, FastSampler).
DEFAULTS_BUDGETS = (10, 20, 50)
EPS = get_default_config().sampling.eps   # every sampler's last time, and sigma_min's
ENTROPY_SAMPLES = 500_000
REFERENCE_SEED = 1_000_000   # + --seed: the exact reference and floor draws


def import_k_diffusion():
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')     # clip's pkg_resources deprecation notice
      from k_diffusion import sampling
  except ImportError as error:
    sys.exit(f"k-diffusion is not installed ({error}): run `make bench-deps`")
  return sampling


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


def our_runs():
  """(sampler, setting, config.sampling overrides, extra evaluations, is default): each fast
  sampler at every time_schedule x variant x order its registry entry allows, then the paper's."""
  runs = []
  for method, fast in FAST_SAMPLERS.items():
    config = get_default_config().sampling
    config.method = method
    default = fast.settings(config)
    for schedule in SCHEDULES:
      for variant in fast.choices['variant'] or (None,):
        for order in fast.choices['order'] or (None,):
          setting = ' '.join([schedule] + ([variant] if variant else [])
                             + ([f'order {order}'] if order else []))
          overrides = dict(method=method, time_schedule=schedule, variant=variant or 'default',
                           order=order or 0)
          is_default = default == dict(time_schedule=schedule, variant=variant, order=order)
          runs.append((method, setting, overrides, 0, is_default))
  runs += [(name, 'paper', overrides, extra, False)
           for name, (overrides, extra) in PAPER_SAMPLERS.items()]
  return runs


def dpm_solver_v3_inputs(score_fn, sde, mixture, args):
  """DPM-Solver-v3's empirical model statistics, as its registry entry says: compute_ems on
  data (here exact samples), config.sampling.ems_samples points and ems_grid intervals; once
  per model, outside the budget (Zheng et al. 2023 precompute them once per network too)."""
  from samplers.ems import compute_ems
  config = get_default_config().sampling
  samples, grid = (512, 50) if args.quick else (config.ems_samples, config.ems_grid)
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
  """The most steps n (positive sigmas) whose denoiser calls fit `budget`, counted on a dummy
  denoiser (Heun-like samplers make 2n - 1 calls: no correction on the last step to 0)."""
  calls = 0

  def dummy(x, sigma):
    nonlocal calls
    calls += 1
    return torch.zeros_like(x)

  for n in range(budget, 0, -1):
    calls = 0
    sample(dummy, torch.ones(1, 2), sigmas_of(n), disable=True)
    if calls <= budget:
      return n
  return None


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


def timed(fn):
  wall, cpu = time.perf_counter(), time.process_time()
  out = fn()
  return out, time.perf_counter() - wall, time.process_time() - cpu


def benchmark(dim, args, sampling):
  sde = SDES[args.sde]()
  mixture = ring_mixture() if dim == 2 else random_mixture(dim)
  score_fn = exact_score_fn(mixture, sde)
  shape = (args.n, dim)
  start = time.perf_counter()
  # The reference's seed is none of the samplers': x_T would share its draws.
  truth = Truth(mixture, args.n, REFERENCE_SEED + args.seed, args.entropy_samples,
                args.floor_draws)
  sigma_max, sigma_min = torch.exp(
      -sde.log_snr(torch.tensor([sde.T, EPS], dtype=torch.float64))).tolist()
  seeds = [args.seed + i for i in range(args.seeds)]
  rows, skipped, inputs, precompute_s = [], {}, {}, {}
  title = (f"{args.sde}, {'ring of 8' if dim == 2 else '3-mode random'} {dim}-D mixture, "
           f"n = {args.n}, {args.seeds} x_T draw{'s' * (args.seeds > 1)}")
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

  for budget in args.budgets:
    for sampler, setting, overrides, extra, default in our_runs():
      try:
        run = functools.partial(run_ours, overrides, extra, budget, sde, shape, score_fn,
                                inputs_of(overrides['method']))
        measure(budget, 'ours', sampler, setting, run, default)
      except ConfigError as error:
        skip(sampler, setting, budget, str(error))
      except Exception as error:   # a sampler still being written must not stop the others
        skip(sampler, setting, budget, f"failed: {type(error).__name__}: {error}")
    for name in KD_SAMPLERS:
      sample = getattr(sampling, f'sample_{name}', None)
      if sample is None:
        skip(name, '', budget, f"k-diffusion {args.kd_version} has no sample_{name}")
        continue
      for schedule in KD_SCHEDULES:
        get_sigmas = getattr(sampling, f'get_sigmas_{schedule}')
        sigmas_of = lambda n: get_sigmas(n, sigma_min, sigma_max)  # noqa: E731
        steps = kd_steps(sample, budget, sigmas_of)
        if steps is None:
          skip(name, schedule, budget, 'no number of steps fits the budget')
          continue
        measure(budget, 'k-diffusion', name, f'{schedule} {steps} steps',
                kd(sample, sigmas=sigmas_of(steps)))
    measure(budget, 'k-diffusion', 'dpm_fast', 'log-sigma uniform',
            kd(sampling.sample_dpm_fast, sigma_min=sigma_min, sigma_max=sigma_max, n=budget))
  for rtol, atol in args.adaptive_tolerances:
    measure(None, 'k-diffusion', 'dpm_adaptive', f'rtol {rtol} atol {atol}',
            kd(sampling.sample_dpm_adaptive, sigma_min=sigma_min, sigma_max=sigma_max,
               rtol=rtol, atol=atol))

  rows.sort(key=lambda r: (r['budget'] is None, r['budget'] or 0))
  report = dict(title=title, sde=args.sde, dim=dim, n=args.n, seeds=seeds, eps=EPS,
                sigma_min=sigma_min, sigma_max=sigma_max, budgets=args.budgets,
                k_diffusion=args.kd_version, entropy=truth.entropy, entropy_std=truth.entropy_std,
                entropy_samples=args.entropy_samples, floor_draws=args.floor_draws,
                floor=truth.floor, summary=summarize(rows, args.budgets, truth.floor, len(seeds)),
                rows=rows,
                seconds=time.perf_counter() - start, precompute_s=precompute_s,
                skipped=[dict(sampler=s, reason=r, runs=runs)
                         for (s, r), runs in skipped.items()])
  print_summary(report)
  write(report, args.out)


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


def best(rows, side, metric):
  rows = [r for r in rows if r['side'] == side and r[metric] is not None]
  return min(rows, key=lambda r: abs(r[metric]), default=None)


def summarize(rows, budgets, floor, seeds):
  """Per budget and metric (sliced W2, |NLL gap|, flow error): our best and k-diffusion's
  best, and which wins. A mean over `seeds` draws of x_T has the noise std / sqrt(seeds) of the
  exact-vs-exact spread: two bests closer than that noise of a difference are a tie, and two
  bests that both lie within twice it of the floor are 'at floor' (the best of many stochastic
  runs is a minimum over independent noise, so below the floor does not mean better). The flow
  error has no floor and no sampling noise given x_T: the side whose best is smaller on every
  draw of x_T wins, else it is a tie."""
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
      ours, kd = best(at_budget, 'ours', metric), best(at_budget, 'k-diffusion', metric)
      if ours is None or kd is None:
        winner = 'ours' if kd is None else 'k-diffusion'
      elif metric == 'flow_error':
        winner = ('ours' if smaller_on_every_draw(ours, kd) else
                  'k-diffusion' if smaller_on_every_draw(kd, ours) else 'tie')
      else:
        gap = abs(ours[metric]) - abs(kd[metric])
        winner = ('at floor' if at_floor(ours, metric) and at_floor(kd, metric) else
                  'tie' if abs(gap) < noise[metric] * 2 ** 0.5 else
                  'ours' if gap < 0 else 'k-diffusion')
      summary.append(dict(budget=budget, metric=metric, ours=ours, k_diffusion=kd, winner=winner))
  return summary


HEADER = (f"{'budget':>6s} {'side':11s} {'sampler':18s} {'setting':30s} {'nfe':>4s} "
          f"{'sliced W2':>9s} {'NLL gap':>8s} {'max |dw|':>8s} {'flow err':>8s} {'wall s':>7s} "
          f"{'CPU s':>7s}")


def fmt(value):
  """4 decimals, or 3 significant digits below 0.01 (flow errors of converged solvers)."""
  if value is None:
    return '-'
  return f'{value:.4f}' if value == 0 or abs(value) >= 0.01 else f'{value:.2e}'


def format_row(r):
  setting = r['setting'] + (' *' if r['default'] else '')
  return (f"{str(r['budget'] or '>'):>6s} {r['side']:11s} {r['sampler']:18s} {setting:30s} "
          f"{r['nfe']:4d} {fmt(r['sliced_w2']):>9s} {fmt(r['nll_gap']):>8s} "
          f"{fmt(r['max_weight_error']):>8s} {fmt(r['flow_error']):>8s} {r['wall_s']:7.3f} "
          f"{r['cpu_s']:7.3f}")


def describe(row, metric):
  if row is None:
    return '-'
  return (f"{row['sampler']} {row['setting']}{' *' if row['default'] else ''} (nfe {row['nfe']}): "
          f"{fmt(row[metric])}")


def print_summary(report):
  print(f"\nbest per budget ({report['title']}):")
  for s in report['summary']:
    print(f"  {s['budget']:4d} {s['metric']:10s} ours {describe(s['ours'], s['metric'])} | "
          f"k-diffusion {describe(s['k_diffusion'], s['metric'])} -> {s['winner']}")
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


def write(report, out):
  os.makedirs(out, exist_ok=True)
  stem = os.path.join(out, f"sampler_quality_{report['sde']}_{report['dim']}d")
  # One row a line; the summary names its rows without their per-seed values.
  summary = [{**s, 'ours': brief(s['ours']), 'k_diffusion': brief(s['k_diffusion'])}
             for s in report['summary']]
  head = rounded({**report, 'summary': summary})
  del head['rows']
  with open(stem + '.json', 'w') as f:
    f.write(json.dumps(head, indent=1)[:-2] + ',\n "rows": [\n  '
            + ',\n  '.join(json.dumps(rounded(r)) for r in report['rows']) + '\n ]\n}\n')
  floor = report['floor']
  lines = [
      f"# Our samplers vs k-diffusion's on an exact mixture score ({report['title']})", '',
      f"`benchmarks/sampler_quality.py`, k-diffusion {report['k_diffusion']}; every sampler "
      f"starts from the same x_T (each number: the mean over {len(report['seeds'])} draws of "
      f"x_T, seeds {report['seeds']}); sigma from {report['sigma_max']:.4g} (t = T) to "
      f"{report['sigma_min']:.4g} (t = {report['eps']}); {report['seconds']:.0f} s in all"
      + ''.join(f", of which {v:.0f} s computing {k}'s inputs (outside its budget)"
                for k, v in report['precompute_s'].items()) + '.', '',
      f"Entropy H = {report['entropy']:.4f} +- {report['entropy_std']:.4f} nats "
      f"({report['entropy_samples']} exact samples). Floors, exact samples of the same n "
      f"(mean +- std of {report['floor_draws']} draws): sliced W2 "
      f"{floor['sliced_w2']['mean']:.4f} +- {floor['sliced_w2']['std']:.4f}, NLL gap "
      f"{floor['nll_gap']['mean']:.4f} +- {floor['nll_gap']['std']:.4f}, max weight error "
      f"{floor['max_weight_error']['mean']:.4f} +- {floor['max_weight_error']['std']:.4f}.", '',
      "## Best per budget", '',
      "By sliced W2 (lower is better), by |NLL gap| (closer to 0 is better) and by flow error "
      "(the RMS distance to the exact probability-flow endpoint of the same x_T, deterministic "
      "samplers only; lower is better). With the noise of a mean over the seeds, std / "
      "sqrt(seeds) of the floor's spread: a difference below sqrt(2) noises is a tie, and two "
      "values within 2 noises of the floor's mean (or below it) are both 'at floor', exact "
      "samples' quality. The flow error has no floor: a side wins when its best is smaller "
      "on every draw of x_T. `*` marks a sampler's registry default.", '',
      "| budget | metric | ours best | k-diffusion best | winner |", "|---|---|---|---|---|"]
  for s in report['summary']:
    name = SUMMARY_METRICS[s['metric']]
    winner = f"**{s['winner']}**" if s['winner'] in ('ours', 'k-diffusion') else s['winner']
    lines.append(f"| {s['budget']} | {name} | {describe(s['ours'], s['metric'])} | "
                 f"{describe(s['k_diffusion'], s['metric'])} | {winner} |")
  lines += ['', "## All runs", '',
            "Budget '>' : an adaptive run that spent more than the largest budget.", '',
            "| budget | side | sampler | setting | nfe | sliced W2 | NLL gap | max weight error | "
            "flow error | wall s | CPU s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in report['rows']:
    lines.append(f"| {r['budget'] or '>'} | {r['side']} | {r['sampler']} | "
                 f"{r['setting']}{' *' if r['default'] else ''} | {r['nfe']} | "
                 f"{fmt(r['sliced_w2'])} | {fmt(r['nll_gap'])} | {fmt(r['max_weight_error'])} | "
                 f"{fmt(r['flow_error'])} | {r['wall_s']:.3f} | {r['cpu_s']:.3f} |")
  lines += ['', "## Each sampler's best settings", ''] + ranking_lines([report])
  if report['skipped']:
    lines += ['', "## Skipped", '']
    lines += [f"- {s['sampler']} ({len(s['runs'])} runs: {', '.join(s['runs'])}): {s['reason']}"
              for s in report['skipped']]
  with open(stem + '.md', 'w') as f:
    f.write('\n'.join(lines) + '\n')
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
  """benchmarks/results/sampler_quality_<sde>_ranking.md: the settings ranked over every
  mixture's results (the JSON files of `dims`), the first stage of the registry's defaults."""
  reports = []
  for dim in dims:
    with open(os.path.join(out, f'sampler_quality_{sde}_{dim}d.json')) as f:
      reports.append(json.load(f))
  path = os.path.join(out, f'sampler_quality_{sde}_ranking.md')
  lines = [f"# Each sampler's settings ranked by flow error ({sde}, all mixtures)", '',
           "From the results of `benchmarks/sampler_quality.py` "
           f"({', '.join(f'sampler_quality_{sde}_{d}d.json' for d in dims)}); of each "
           "sampler's three best, the registry's default is the one of lowest FID on the "
           "digits model at 10 evaluations (samplers/registry.py, README).", '']
  with open(path, 'w') as f:
    f.write('\n'.join(lines + ranking_lines(reports)) + '\n')
  print(f"wrote {path}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--dim', type=int, nargs='+', default=[2, 16],
                      help='2: the ring of 8; otherwise random_mixture(dim); one table each')
  parser.add_argument('--sde', default='vpsde', choices=sorted(SDES))
  parser.add_argument('--n', type=int, help='samples per run (4000; --quick 500)')
  parser.add_argument('--budgets', type=int, nargs='+',
                      help='budgets of score evaluations (5 10 20 50; --quick 5 10)')
  parser.add_argument('--seed', type=int, default=0, help='the first x_T seed')
  parser.add_argument('--seeds', type=int, help='x_T draws each number averages (3; --quick 1)')
  parser.add_argument('--threads', type=int, default=1,
                      help='torch threads (1: timings comparable on a shared machine)')
  parser.add_argument('--quick', action='store_true',
                      help='fewer samples, budgets and x_T draws, smaller entropy estimate and '
                           'EMS (under a minute)')
  parser.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'results'))
  parser.add_argument('--rank_only', action='store_true',
                      help="only rank the settings from the results already in --out")
  args = parser.parse_args()
  quick = args.quick
  args.n = args.n or (500 if quick else 4000)
  args.budgets = sorted(args.budgets or ([5, 10] if quick else [5, 10, 20, 50]))
  args.seeds = args.seeds or (1 if quick else 3)
  args.entropy_samples, args.floor_draws = (50_000, 4) if quick else (ENTROPY_SAMPLES, 8)
  args.adaptive_tolerances = KD_ADAPTIVE_TOLERANCES[1:2] if quick else KD_ADAPTIVE_TOLERANCES
  if not args.rank_only:
    torch.set_num_threads(args.threads)
    sampling = import_k_diffusion()
    args.kd_version = importlib.metadata.version('k-diffusion')
    for dim in args.dim:
      benchmark(dim, args, sampling)
  write_ranking(args.sde, args.dim, args.out)


if __name__ == '__main__':
  main()
