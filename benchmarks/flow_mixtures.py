"""Flow matching on exact Gaussian mixtures: ours beside facebookresearch's flow_matching and
torchcfm.

1. Sampling from the exact velocity. On the rectified-flow path x_t = (1 - t) x_0 + t z the
   ring mixture's velocity is closed form (sde_lib/gaussian_mixture.py, through the conversions of
   sde_lib/flows.py). Each sampler decodes the same x_T from T = 1 - 1e-3 to t = 1e-3 with a
   budget of 2..50 velocity evaluations; the error is the RMS distance to the exact ODE's
   endpoint (dopri5 at 1e-8). flow_matching's ODESolver (torchdiffeq's fixed-step methods) runs
   in its own time (noise at t = 0, velocity minus ours); torchcfm has no sampler of its own.
2. Trained on the ring for the same CPU seconds (process time), one small MLP each: our
   flow-matching loss on a velocity network (1-rectified flow), torchcfm's
   ConditionalFlowMatcher (the same independent coupling) and its
   ExactOptimalTransportConditionalFlowMatcher (minibatch OT couplings, Tong et al. 2024); then
   reflow (Liu et al. 2023): pairs drawn by the 1-rectified flow's ODE (dopri5), a 2-rectified
   flow trained on them from the 1-rectified weights, and its one-step distillation on the
   2-rectified flow's own pairs. Each is sampled by the flow's Euler step (DDIM on this path) at
   1, 2, 4 and 10 evaluations: the NLL gap (mean -log p of the samples under the exact mixture,
   minus that of exact samples: 0 for a perfect sampler, > 0 for samples off the modes) and the
   sliced W2 to exact samples; and the straightness S of each flow (Liu et al. eq. 11; 100 Euler
   steps).

  python benchmarks/flow_mixtures.py [--quick] [--out DIR]
"""
import argparse
import copy
import importlib.metadata
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.results_io import results_dir, write_results  # noqa: E402
from configs.default import get_default_config  # noqa: E402
from sde_lib.gaussian_mixture import exact_score_fn, ring_mixture
from evaluation.sample_metrics import sliced_wasserstein  # noqa: E402
from models import get_eps_fn, get_score_fn  # noqa: E402
from models.mlp import MLP  # noqa: E402
from samplers import get_sampler  # noqa: E402
from samplers.probability_flow import flow  # noqa: E402
from sde_lib import RectifiedFlow, batch_broadcast  # noqa: E402
from sde_lib.flows import eps_from_velocity, straightness, velocity_fn  # noqa: E402
from training.flow_matching_loss import (draw_couplings, flow_matching_per_sample,  # noqa: E402
                                         flow_matching_times, one_step_distillation_per_sample)

BUDGETS = (2, 4, 10, 20, 50)
EPS = 1e-3
OURS = {   # our samplers on the flow path (sampling.method and its settings)
    'euler (= ddim)': dict(method='ddim', time_schedule='uniform'),
    'ipndm': dict(method='ipndm', time_schedule='uniform'),
    'dpm_solver (uniform)': dict(method='dpm_solver', time_schedule='uniform'),
    'dpm_solver (logsnr)': dict(method='dpm_solver', time_schedule='logsnr'),
    'unipc (uniform)': dict(method='unipc', time_schedule='uniform'),
    'unipc (logsnr)': dict(method='unipc', time_schedule='logsnr'),
    'heun': dict(method='heun', time_schedule='uniform'),
}
THEIRS = {'euler': 1, 'midpoint': 2, 'rk4': 4}   # flow_matching's ODESolver: evaluations per step
TRAINED_BUDGETS = (1, 2, 4, 10)


def score_of(sde, velocity):
  """The score -eps / s of a velocity v(x, t) (ours: data at t = 0)."""

  def score_fn(x, t):
    m, s = (batch_broadcast(c, x) for c in sde.marginal_coeffs(t))
    dm, ds = (batch_broadcast(c, x) for c in sde.marginal_coeffs_derivative(t))
    return -eps_from_velocity(x, velocity(x, t), m, s, dm, ds) / s

  return score_fn


def ours(sde, score_fn, settings, budget, n, seed, eps=EPS):
  config = get_default_config().sampling
  config.update(settings)
  config.steps, config.eps, config.noise_removal = budget, eps, False
  x, nfe = get_sampler(config, sde, (n, 2))(score_fn, torch.Generator().manual_seed(seed), False)
  return x, nfe


def theirs(sde, velocity, method, budget, x_T):
  """flow_matching's ODESolver on the same x_T, in its time u = 1 - t (velocity -v)."""
  from flow_matching.solver import ODESolver
  steps = budget // THEIRS[method]
  their_velocity = lambda x, t: -velocity(x, (1 - t).expand(len(x)))
  grid = torch.tensor([1 - sde.T, 1 - EPS], dtype=x_T.dtype)
  solver = ODESolver(velocity_model=their_velocity)
  return solver.sample(x_init=x_T, step_size=float(grid[1] - grid[0]) / steps, method=method,
                       time_grid=grid)


def exact_sampling(n, budgets, seed):
  """Part 1: rows {side, sampler, budget, nfe, error}."""
  sde, mixture = RectifiedFlow(), ring_mixture()
  score_fn = exact_score_fn(mixture, sde)
  velocity = velocity_fn(sde, score_fn)
  x_T = sde.prior_sampling((n, 2), torch.Generator().manual_seed(seed))
  reference, _ = flow(sde, score_fn, x_T, sde.T, EPS, rtol=1e-8, atol=1e-8)
  rows = []
  for budget in budgets:
    for name, settings in OURS.items():
      x, nfe = ours(sde, score_fn, settings, budget, n, seed)
      rows.append(dict(side='ours', sampler=name, budget=budget, nfe=nfe,
                       error=float((x - reference).square().mean().sqrt())))
    for method, per_step in THEIRS.items():
      if budget >= per_step:
        x = theirs(sde, velocity, method, budget, x_T)
        rows.append(dict(side='flow_matching', sampler=method, budget=budget,
                         nfe=budget // per_step * per_step,
                         error=float((x - reference).square().mean().sqrt())))
  return rows


def network():
  return MLP(dim=2, hidden=128, num_layers=3)


def train(loss, model, seconds, lr=1e-3, batch=256, seed=0):
  """Adam on loss(model, generator) for `seconds` of process time; returns the steps taken."""
  torch.manual_seed(seed)
  g = torch.Generator().manual_seed(seed)
  opt = torch.optim.Adam(model.parameters(), lr=lr)
  start, steps = time.process_time(), 0
  while time.process_time() - start < seconds:
    opt.zero_grad()
    loss(model, g, batch).mean().backward()
    opt.step()
    steps += 1
  return steps


def ours_loss(sde, mixture):
  """Our flow-matching loss on fresh (x_0, z) draws."""

  def loss(model, g, batch):
    x0 = mixture.sample(batch, g)
    z = torch.randn(x0.shape, generator=g)
    t = flow_matching_times(sde, batch, 1e-5, 'cpu', g)
    return flow_matching_per_sample(eps_fn(sde, model), sde, x0, z, t)

  return loss


def pairs_loss(sde, z_all, x_all):
  """The flow-matching loss on coupled pairs (reflow)."""

  def loss(model, g, batch):
    i = torch.randint(len(z_all), (batch,), generator=g)
    t = flow_matching_times(sde, batch, 1e-5, 'cpu', g)
    return flow_matching_per_sample(eps_fn(sde, model), sde, x_all[i], z_all[i], t)

  return loss


def distill_loss(sde, z_all, x_all):
  def loss(model, g, batch):
    i = torch.randint(len(z_all), (batch,), generator=g)
    return one_step_distillation_per_sample(eps_fn(sde, model), sde, z_all[i], x_all[i])

  return loss


def torchcfm_loss(matcher, mixture):
  """torchcfm's regression in its own time (noise x0 at t = 0, data x1 at t = 1), the network
  seeing the label 999 t as ours does."""

  def loss(model, g, batch):
    x1 = mixture.sample(batch, g)
    x0 = torch.randn(x1.shape, generator=g)
    t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
    return (model(xt, 999 * t) - ut).square().mean(1)

  return loss


def eps_fn(sde, model):
  fn = get_eps_fn(sde, model, True, 'velocity')
  return lambda x, t: fn(x, t)[0]


def torchcfm_velocity(model):
  """Our velocity v(x, t) = -u(x, 1 - t) of a torchcfm network u."""
  return lambda x, t: -model(x, 999 * (1 - t))


def evaluate(sde, mixture, score_fn, n, seed):
  """NLL gap and sliced W2 at TRAINED_BUDGETS Euler evaluations, and the straightness."""
  exact = mixture.sample(n, torch.Generator().manual_seed(seed + 1))
  floor = -mixture.log_prob(exact).mean()
  row = {}
  with torch.no_grad():
    for budget in TRAINED_BUDGETS:
      x, _ = ours(sde, score_fn, OURS['euler (= ddim)'], budget, n, seed)
      row[f'nll_gap_{budget}'] = float(-mixture.log_prob(x).mean() - floor)
      row[f'sw2_{budget}'] = sliced_wasserstein(x, exact)
    times = torch.linspace(sde.T, EPS, 101)
    x = sde.prior_sampling((n, 2), torch.Generator().manual_seed(seed))
    trajectory = [x]
    velocity = velocity_fn(sde, score_fn)
    for t, u in zip(times[:-1], times[1:]):
      x = x + (u - t) * velocity(x, t.expand(n))
      trajectory.append(x)
    row['straightness'] = straightness(torch.stack(trajectory), times)
  return row


def trained(seconds, n, pairs, seed):
  """Part 2: rows {model, steps, cpu_seconds, metrics...}."""
  from torchcfm.conditional_flow_matching import (ConditionalFlowMatcher,
                                                  ExactOptimalTransportConditionalFlowMatcher)
  sde, mixture = RectifiedFlow(), ring_mixture()
  rows = []

  def record(name, model, score_fn, steps, budget):
    rows.append(dict(model=name, steps=steps, cpu_seconds=budget,
                     **evaluate(sde, mixture, score_fn, n, seed)))
    print(rows[-1], flush=True)

  score = lambda model: get_score_fn(sde, model, True, 'velocity')
  g = lambda seed: torch.Generator().manual_seed(seed)
  first = network()
  record('ours: 1-rectified flow', first, score(first),
         train(ours_loss(sde, mixture), first, seconds), seconds)
  for name, matcher in (('torchcfm: CFM', ConditionalFlowMatcher(0.0)),
                        ('torchcfm: OT-CFM', ExactOptimalTransportConditionalFlowMatcher(0.0))):
    model = network()
    steps = train(torchcfm_loss(matcher, mixture), model, seconds)
    record(name, model, score_of(sde, torchcfm_velocity(model)), steps, seconds)
  with torch.no_grad():
    z, x = draw_couplings(sde, score(first), torch.randn(pairs, 2, generator=g(seed + 2)))
  second = copy.deepcopy(first)
  record('ours: 2-rectified flow (reflow)', second, score(second),
         train(pairs_loss(sde, z, x), second, seconds), seconds)
  with torch.no_grad():
    z, x = draw_couplings(sde, score(second), torch.randn(pairs, 2, generator=g(seed + 3)))
  distilled = copy.deepcopy(second)
  record('ours: 2-rectified, distilled one step', distilled, score(distilled),
         train(distill_loss(sde, z, x), distilled, seconds), seconds)
  return rows


def markdown(report):
  budgets = report['budgets']
  lines = ['# Flow matching on exact mixtures', '',
           'Flow matching on the 8-mode ring (2-D), rectified-flow path '
           '(benchmarks/flow_mixtures.py). Sampling from the exact velocity: RMS distance to the '
           'exact ODE endpoint of the same x_T, by velocity evaluations:', '',
           '| sampler | ' + ' | '.join(str(b) for b in budgets) + ' |',
           '|---|' + '---|' * len(budgets)]
  keys = [('ours', name) for name in OURS] + [('flow_matching', name) for name in THEIRS]
  for side, sampler in keys:
    cells = {r['budget']: r['error'] for r in report['exact']
             if (r['side'], r['sampler']) == (side, sampler)}
    lines.append(f'| {side}: {sampler} | ' + ' | '.join(
        f'{cells[b]:.4f}' if b in cells else '-' for b in budgets) + ' |')
  lines += ['', f"Trained for {report['seconds']:g} CPU seconds each (MLP 128 x 3; reflow and "
            'distillation each a further such budget): NLL gap (nats) and sliced W2 with the '
            "flow's Euler step at 1 / 2 / 4 / 10 evaluations, and straightness S:", '',
            '| model | steps | NLL gap 1 / 2 / 4 / 10 | SW2 1 / 2 / 4 / 10 | S |',
            '|---|---|---|---|---|']
  for r in report['trained']:
    gap = ' / '.join(f"{r[f'nll_gap_{b}']:.2f}" for b in TRAINED_BUDGETS)
    sw = ' / '.join(f"{r[f'sw2_{b}']:.3f}" for b in TRAINED_BUDGETS)
    lines.append(f"| {r['model']} | {r['steps']} | {gap} | {sw} | {r['straightness']:.2g} |")
  lines += ['', '## Versions', '', ', '.join(f'{k} {v}' for k, v in report['versions'].items())]
  return '\n'.join(lines) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true', help='a pipeline check (seconds)')
  parser.add_argument('--out', default=None)
  args = parser.parse_args()
  torch.set_num_threads(1)
  n, seconds, pairs = (256, 1.0, 1000) if args.quick else (4096, 60.0, 20000)
  report = dict(budgets=list(BUDGETS), seconds=seconds, n=n, pairs=pairs,
                versions={p: importlib.metadata.version(p) for p in ('flow_matching', 'torchcfm')},
                exact=exact_sampling(n, BUDGETS, seed=0),
                trained=trained(seconds, n, pairs, seed=0))
  md = markdown(report)
  print(md)
  out = write_results('flow_mixtures', report, md, args.out or results_dir(args.quick))
  print(f'wrote {out}.json / .md')


if __name__ == '__main__':
  main()
