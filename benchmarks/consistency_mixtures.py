"""Consistency distillation from an exact-score teacher, against the exact probability-flow ODE.

On the 2-D ring and the random 16-D mixture (sde_lib/gaussian_mixture.py) the teacher's score
is exact, so what a distilled student gets wrong is its own. A small MLP with the consistency
parameterization (models/consistency.py; sigma_data the data's std) is distilled by CD
(training/consistency_loss.py: Heun teacher steps on the N = 18 Karras grid of [0.002, 80], L2,
target EMA mu = 0, Adam at 3e-3, batch 128, 2 residual blocks of 64: wider networks and lower
rates did worse on the 16-D mixture in 3,000 steps), then from the same x_T = 80 z:

  flow error   RMS ||f(x_T, 80) - ODE(x_T)|| over samples, ODE = the exact score's
               probability-flow ODE from 80 to 0.002 by dopri5 at rtol = atol = 1e-8
  NLL gap      mean -log p(samples) under the exact mixture minus its entropy (estimated on
               200,000 exact samples): 0 for exact samples, > 0 off the modes; "floor" is the
               same for a second exact set of the same size (its Monte-Carlo spread)

for one- and two-step sampling (CM Algorithm 1; two steps through iCT's tau = 0.821) and, for
scale, EDM's Heun at 2 and 4 evaluations of the exact score from the same x_T.

  python benchmarks/consistency_mixtures.py [--quick] [--out DIR]
"""
import argparse
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.results_io import results_dir, write_results  # noqa: E402
from models.consistency import ConsistencyPreconditioning  # noqa: E402
from models.mlp import MLP  # noqa: E402
from samplers.consistency import ICT_TWO_STEP_SIGMA, multistep_consistency  # noqa: E402
from samplers.heun import heun  # noqa: E402
from samplers.predictions import Predictions  # noqa: E402
from samplers.probability_flow import flow  # noqa: E402
from sde_lib.edm import EDMSDE  # noqa: E402
from sde_lib.gaussian_mixture import exact_score_fn, random_mixture, ring_mixture  # noqa: E402
from sde_lib.time_schedules import sampling_times  # noqa: E402
from models import get_score_fn  # noqa: E402
from training import consistency_loss as cm  # noqa: E402

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
# name -> (the mixture, the student's width and residual blocks)
MIXTURES = {'ring': (ring_mixture, 64, 2), 'mixture16': (lambda: random_mixture(16), 64, 2)}


def distill(mixture, steps, batch=128, hidden=64, num_layers=2, N=18, mu=0.0, lr=3e-3, seed=0):
  """(student network, its ConsistencyPreconditioning): CD from the exact score from a random
  start, `steps` Adam steps of `batch` fresh samples, the learning rate decaying linearly to 0;
  mu = 0 as CM's CIFAR-10 CD (Table 3)."""
  torch.manual_seed(seed)
  g = torch.Generator().manual_seed(seed)
  sde = EDMSDE(SIGMA_MIN, SIGMA_MAX)
  precond = ConsistencyPreconditioning(float(mixture.sample(10_000, g).std()), SIGMA_MIN)
  net = MLP(dim=mixture.dim, hidden=hidden, num_layers=num_layers)
  target = MLP(dim=mixture.dim, hidden=hidden, num_layers=num_layers)
  target.load_state_dict(net.state_dict())
  target.requires_grad_(False)
  exact = exact_score_fn(mixture, sde)
  step = cm.heun_ode_step(sde, lambda x, t, classes=None: exact(x, t), 2)
  sigmas = cm.karras_sigmas(N, SIGMA_MIN, SIGMA_MAX)
  f, f_target = cm.consistency_fn(sde, net, precond), cm.consistency_fn(sde, target, precond)
  optimizer = torch.optim.Adam(net.parameters(), lr=lr)
  for k in range(steps):
    x0 = mixture.sample(batch, g)
    index = torch.randint(N - 1, (batch,), generator=g)
    z = torch.randn(x0.shape, generator=g)
    loss = cm.cd_loss(f, f_target, step, x0, index, z, sigmas, cm.l2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    optimizer.param_groups[0]['lr'] = lr * (1 - (k + 1) / steps)
    cm.update_target(target, net, mu)
  return net.eval(), precond


def consistency_samples(net, precond, x_T, steps, seed=1):
  """CM Algorithm 1 from x_T in `steps` evaluations (the sampler of `sampling.method='consistency'`)."""
  sde = EDMSDE(SIGMA_MIN, SIGMA_MAX)
  model = Predictions(sde, get_score_fn(sde, net, True, precond))
  sigmas = {1: (), 2: (ICT_TWO_STEP_SIGMA,)}[steps]
  with torch.no_grad():
    return multistep_consistency(model, x_T, sigmas, SIGMA_MIN, torch.Generator().manual_seed(seed))


def exact_flow(mixture, x_T):
  """The exact probability-flow ODE from sigma 80 to 0.002 (dopri5, 1e-8)."""
  sde = EDMSDE(SIGMA_MIN, SIGMA_MAX)
  x, _ = flow(sde, exact_score_fn(mixture, sde), x_T.double(), SIGMA_MAX, SIGMA_MIN, 'dopri5',
              1e-8, 1e-8)
  return x


def heun_samples(mixture, x_T, budget):
  """EDM's Heun on the exact score (Karras grid), `budget` evaluations, ending at sigma_min."""
  sde = EDMSDE(SIGMA_MIN, SIGMA_MAX)
  model = Predictions(sde, exact_score_fn(mixture, sde))
  times = lambda n: sampling_times(sde, 'karras', n, SIGMA_MIN)
  return heun(model, x_T.double(), budget, times)


def nll_gap(mixture, x, entropy):
  """mean -log p(x) under the exact mixture minus its entropy."""
  return float(-mixture.log_prob(x.double()).mean()) - entropy


def rms(a, b):
  return float((a.double() - b.double()).square().sum(1).mean().sqrt())


def evaluate(mixture, net, precond, n=4000, seed=7):
  """flow error and NLL gaps of the student at 1 and 2 steps, Heun at 2 and 4, exact floor."""
  g = torch.Generator().manual_seed(seed)
  x_T = SIGMA_MAX * torch.randn(n, mixture.dim, generator=g)
  entropy = float(-mixture.log_prob(mixture.sample(200_000, g).double()).mean())
  ode = exact_flow(mixture, x_T)
  one, two = consistency_samples(net, precond, x_T, 1), consistency_samples(net, precond, x_T, 2)
  row = {'flow_error_1': rms(one, ode), 'nll_gap_1': nll_gap(mixture, one, entropy),
         'nll_gap_2': nll_gap(mixture, two, entropy),
         'nll_gap_floor': nll_gap(mixture, mixture.sample(n, g), entropy),
         'ode_nll_gap': nll_gap(mixture, ode, entropy), 'data_std': precond.sigma_data}
  for budget in (2, 4):
    heun_x = heun_samples(mixture, x_T, budget)
    row[f'heun_{budget}_flow_error'] = rms(heun_x, ode)
    row[f'heun_{budget}_nll_gap'] = nll_gap(mixture, heun_x, entropy)
  return row


def table(rows):
  """The results page: a title, one sentence, the table."""
  lines = ['# Consistency distillation on exact mixtures', '',
           'CD from the exact score (benchmarks/consistency_mixtures.py): the one-step map\'s RMS '
           'distance to the exact ODE endpoint of the same x_T (flow error), and the NLL gap of '
           'the samples (mean -log p minus the entropy; 0 for exact samples), beside EDM\'s Heun '
           'on the exact score at 2 and 4 evaluations:', '',
           '| mixture | CD steps (CPU s) | flow error 1 step | Heun 2 / 4 evals flow error | '
           'NLL gap 1 step | 2 steps | Heun 2 / 4 | exact ODE | exact floor |',
           '|---|---|---|---|---|---|---|---|---|']
  for name, r in rows.items():
    lines.append(f"| {name} | {r['steps']} ({r['train_cpu_s']:.0f}) | {r['flow_error_1']:.3f} | "
                 f"{r['heun_2_flow_error']:.3f} / {r['heun_4_flow_error']:.3f} | "
                 f"{r['nll_gap_1']:.3f} | {r['nll_gap_2']:.3f} | {r['heun_2_nll_gap']:.1f} / "
                 f"{r['heun_4_nll_gap']:.1f} | {r['ode_nll_gap']:.3f} | {r['nll_gap_floor']:.3f} |")
  return '\n'.join(lines) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true', help='a few steps: checks the pipeline')
  parser.add_argument('--out', default=None)
  args = parser.parse_args()
  steps = 50 if args.quick else 3000
  rows = {}
  for name, (build, hidden, num_layers) in MIXTURES.items():
    mixture = build()
    start = time.process_time()
    net, precond = distill(mixture, steps, hidden=hidden, num_layers=num_layers)
    rows[name] = dict(train_cpu_s=time.process_time() - start, steps=steps,
                      **evaluate(mixture, net, precond, n=500 if args.quick else 4000))
    print(name, rows[name], flush=True)
  markdown = table(rows)
  print(markdown)
  write_results('consistency_mixtures', rows, markdown, args.out or results_dir(args.quick))


if __name__ == '__main__':
  main()
