"""Which reverse variance gives the tighter DDPM bound on digits: fixedlarge or fixedsmall.

Trains the digits demo model twice, continuous-time (configs/vp_digits.py as it is) and
discrete-time (the same network on Ho et al.'s L_simple: training.loss='ddpm',
continuous=False), then evaluates on the test split the DDPM variational bound with
sigma_t^2 = beta_t ('beta', Ho et al.'s fixedlarge) and beta-tilde_t ('beta_tilde',
fixedsmall), beside the probability-flow ODE's bits/dim. The default of
config.eval.vlb_variance is the tighter one measured here. Prints a table and writes
benchmarks/results/vlb_variance.{json,md}.

  .venv/bin/python benchmarks/vlb_variance.py [--steps 3000] [--workdir runs/bench_vlb_variance]

A finished run in the workdir is reused (training resumes or is a no-op).
"""
import argparse
import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs.vp_digits import get_config  # noqa: E402
from evaluation.bpd import split_bpd, split_vlb  # noqa: E402
from models import get_score_fn, restore_for_inference  # noqa: E402
from sde_lib import get_sde  # noqa: E402
from training.trainer import train  # noqa: E402
from utils.atomic import atomic_write  # noqa: E402
from utils.device import get_device  # noqa: E402

MODELS = {
    'continuous (DSM)': dict(loss='dsm', continuous=True),
    'discrete (L_simple)': dict(loss='ddpm', continuous=False),
}
VARIANCES = ('beta', 'beta_tilde')


def trained(name, overrides, steps, workdir):
  config = get_config()
  config.training.n_iters = steps
  config.training.snapshot_sampling = False
  config.training.loss = overrides['loss']
  config.training.continuous = overrides['continuous']
  if not config.training.continuous:
    config.sampling.steps = config.sde.num_scales   # a discrete-time model samples its whole chain
  run_dir = os.path.join(workdir, name.split()[0])
  train(config, run_dir, progress=False)
  return config, run_dir


def measure(config, run_dir, device):
  model, step, _ = restore_for_inference(config, run_dir, '', device)
  sde = get_sde(config)
  row = {'step': step}
  for variance in VARIANCES:
    config.eval.vlb_variance = variance
    start = time.time()
    stats, _, _ = split_vlb(config, model, sde, device=device,
                            generator=torch.Generator(device).manual_seed(0), progress=False)
    row[variance] = {**stats, 'seconds': time.time() - start}
  score_fn = get_score_fn(sde, model, config.training.continuous, config.model.parameterization)
  stats, _ = split_bpd(config, score_fn, sde, device=device,
                       generator=torch.Generator(device).manual_seed(0), progress=False)
  row['ode'] = stats
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=3000)
  parser.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'bench_vlb_variance'))
  args = parser.parse_args()
  device = get_device('auto')
  rows = {}
  for name, overrides in MODELS.items():
    config, run_dir = trained(name, overrides, args.steps, args.workdir)
    rows[name] = measure(config, run_dir, device)

  lines = ['| model | steps | VLB fixedlarge (beta) | VLB fixedsmall (beta_tilde) | ODE | images |',
           '|---|---|---|---|---|---|']
  for name, row in rows.items():
    cell = lambda r: f"{r['mean']:.3f} +- {r['stderr']:.3f}"
    lines.append(f"| {name} | {row['step']} | {cell(row['beta'])} | {cell(row['beta_tilde'])} | "
                 f"{cell(row['ode'])} | {row['ode']['num_images']} |")
  table = '\n'.join(lines)
  print(table)
  results = os.path.join(ROOT, 'benchmarks', 'results')
  report = {'device': str(device), 'torch': torch.__version__, 'rows': rows}
  atomic_write(os.path.join(results, 'vlb_variance.json'), lambda f: f.write(json.dumps(report, indent=2).encode()))
  md = (f"# DDPM bound on digits (test split, bits/dim): fixedlarge vs fixedsmall\n\n"
        f"`benchmarks/vlb_variance.py --steps {args.steps}` on {device}.\n\n{table}\n")
  atomic_write(os.path.join(results, 'vlb_variance.md'), lambda f: f.write(md.encode()))


if __name__ == '__main__':
  main()
