"""Sampler quality against cost on an analytic Gaussian mixture (exact score, no training).

For each sampler and step count: score evaluations, wall time, the sliced Wasserstein
distance to exact samples (with the mean exact-vs-exact distance of 4 draws as the floor; in
high dimension it is dominated by the multinomial noise of the mode weights), the largest
mixture-weight error and the largest relative covariance error of a component (which shows
the noise-scale errors of coarse discretizations). Prints a table and writes benchmarks/results/samplers_gmm.{json,md}.

  .venv/bin/python benchmarks/samplers_gmm.py [--dim 2] [--n 2000] [--sde vpsde]
"""
import argparse
import json
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
from sde_lib import SubVPSDE, VESDE, VPSDE  # noqa: E402

SDES = {'vpsde': VPSDE, 'subvpsde': SubVPSDE, 'vesde': VESDE}
# name -> config.sampling overrides
SAMPLERS = {
    'ancestral': dict(method='ancestral'),
    'reverse_diffusion': dict(method='pc', predictor='reverse_diffusion', corrector='none'),
    'euler_maruyama': dict(method='pc', predictor='euler_maruyama', corrector='none'),
    'rd+langevin': dict(method='pc', predictor='reverse_diffusion', corrector='langevin'),
    'torchsde-srk': dict(method='sde', sde_solver='srk'),
    'ode-euler': dict(method='ode', ode_method='euler'),
    'ode-rk4': dict(method='ode', ode_method='rk4'),
}
STEPS = (10, 20, 50, 100, 500)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--dim', type=int, default=2, help='2: ring of 8; else a random 3-mode mixture')
  parser.add_argument('--n', type=int, default=2000, help='samples per run')
  parser.add_argument('--sde', default='vpsde', choices=sorted(SDES))
  parser.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'results'))
  args = parser.parse_args()
  warnings.filterwarnings('ignore')   # torchsde's float32 end-time notice

  mixture = ring_mixture() if args.dim == 2 else random_mixture(args.dim)
  sde = SDES[args.sde]()
  score_fn = exact_score_fn(mixture, sde)
  g = torch.Generator().manual_seed(0)
  truth = mixture.sample(args.n, g)
  floor = sum(sliced_wasserstein(mixture.sample(args.n, g), truth, seed=i) for i in range(4)) / 4
  runs = [('ode-dopri5 (rtol 1e-5)', dict(method='ode'), None)]
  runs += [(name, overrides, steps) for name, overrides in SAMPLERS.items() for steps in STEPS]
  rows = []
  print(f"{args.sde}, {args.dim}-D mixture, n = {args.n}; exact-vs-exact sliced W2 = {floor:.4f}")
  print(f"{'sampler':24s} {'steps':>5s} {'nfe':>6s} {'seconds':>8s} {'sliced W2':>9s} {'max |dw|':>8s} "
        f"{'max cov err':>11s}")
  for name, overrides, steps in runs:
    config = get_default_config().sampling
    config.update(overrides)
    config.steps = steps or config.steps
    start = time.time()
    x, nfe = get_sampler(config, sde, (args.n, mixture.dim))(
        score_fn, generator=torch.Generator().manual_seed(1), progress=False)
    seconds = time.time() - start
    k = mixture.assign(x)
    weights = torch.bincount(k, minlength=len(mixture.weights)).double() / args.n
    cov_errors = [((torch.cov(x[k == j].double().T) - cov).norm() / cov.norm()).item()
                  for j, cov in enumerate(mixture.covs)]
    row = dict(sampler=name, steps=steps, nfe=nfe, seconds=round(seconds, 3),
               sliced_w2=round(sliced_wasserstein(x, truth), 4),
               max_weight_error=round((weights - mixture.weights).abs().max().item(), 4),
               max_cov_error=round(max(cov_errors), 4))
    rows.append(row)
    print(f"{name:24s} {str(steps or '-'):>5s} {nfe:6d} {seconds:8.2f} {row['sliced_w2']:9.4f} "
          f"{row['max_weight_error']:8.4f} {row['max_cov_error']:11.4f}", flush=True)

  os.makedirs(args.out, exist_ok=True)
  stem = os.path.join(args.out, f'samplers_gmm_{args.sde}_{args.dim}d')
  with open(stem + '.json', 'w') as f:
    json.dump(dict(sde=args.sde, dim=args.dim, n=args.n, floor=floor, rows=rows), f, indent=2)
  with open(stem + '.md', 'w') as f:
    f.write(f"# Samplers on an exact {args.dim}-D mixture score ({args.sde}, n = {args.n})\n\n"
            f"Exact-vs-exact sliced W2 (mean of 4): {floor:.4f}\n\n"
            "| sampler | steps | nfe | seconds | sliced W2 | max weight error | max cov error |\n"
            "|---|---|---|---|---|---|---|\n")
    for r in rows:
      f.write(f"| {r['sampler']} | {r['steps'] or '-'} | {r['nfe']} | {r['seconds']} | "
              f"{r['sliced_w2']} | {r['max_weight_error']} | {r['max_cov_error']} |\n")
  print(f"wrote {stem}.json and {stem}.md")


if __name__ == '__main__':
  main()
