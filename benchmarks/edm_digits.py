"""EDM's training on digits beside the demo's, at the same training compute: `edm_digits` (the
demo's U-Net, batch, optimizer and 3,000 steps, trained with EDM's process, preconditioning and
loss; Karras et al. 2022) against `vp_digits` (the demo, benchmarks/digits_model.py) and two
demo variants that users of diffusers reach for: v-prediction with its v-MSE loss (Salimans &
Ho 2022; model.parameterization 'v', training.loss_weighting 'v') and min-SNR-5 weighting of
the noise loss (Hang et al. 2023; training.loss_weighting 'min_snr'). Every model takes the same
3,000 steps of 64 on the same network, so the same compute (wall time on a shared machine
varies; the table gives the logged one).

Per model: the digit Frechet distance (benchmarks/digits.py's Judge: 300 samples against the
train split, beside the test split's floor) at 10, 20 and 35 score evaluations with EDM's Heun
(Algorithm 2, deterministic) and with iPNDM (order 3; the best fast sampler at 10 evaluations
on the demo, README), each on the model's own schedule: the EDM model on EDM's rho = 7 noise
levels ('karras'), the VP models on each sampler's measured default; and the test bits/dim by
the probability-flow ODE (uniform dequantization, 64 images, +- one standard error).

  .venv/bin/python benchmarks/edm_digits.py [--quick] [--out DIR] [--models edm_digits vp_digits ...]
      [--num_samples 300] [--num_images 64]

A model's run is trained in runs/bench_<model> unless a run of its n_iters is there (the demo's
is benchmarks/digits_model.py's, shared with benchmarks/digits.py). --quick: tiny stand-ins
(nf 8, 20 steps), 16 samples, 4 images, a loose ODE: the table's shape only.
"""
import argparse
import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.digits import Judge, run_cell  # noqa: E402
from benchmarks.digits_model import (QUICK_WORKDIR, WORKDIR, digits_config,  # noqa: E402
                                     ode_bits_per_dim, train_once)
from benchmarks.results_io import partial_row, results_dir, write_results  # noqa: E402
from configs.edm_digits import get_config as edm_digits_config  # noqa: E402
from models import restore_for_inference  # noqa: E402
from pipeline.sampling import checkpoint_sha256  # noqa: E402
from samplers.registry import resolved_sampling  # noqa: E402
from sde_lib import get_sde  # noqa: E402
from utils.checkpoint import resolve_checkpoint  # noqa: E402
from utils.device import get_device  # noqa: E402

BUDGETS = (10, 20, 35)
SAMPLERS = {'heun': 'Heun (EDM, Algorithm 2)', 'ipndm': 'iPNDM (order 3)'}


def shrink(config):
  """--quick's stand-in of a digits config: nf 8, 20 steps of 32, no snapshots."""
  config.model.nf, config.model.num_groups = 8, 4
  config.training.n_iters, config.training.batch_size = 20, 32
  config.training.snapshot_freq, config.training.snapshot_sampling = 20, False
  return config


def v_prediction_config():
  """The demo with v-prediction and the v-MSE loss (Salimans & Ho 2022)."""
  config = digits_config()
  config.model.parameterization = 'v'
  config.training.loss_weighting = 'v'
  return config


def min_snr_config():
  """The demo's eps network with the min-SNR-5 weighting (Hang et al. 2023)."""
  config = digits_config()
  config.training.loss_weighting = 'min_snr'
  config.training.min_snr_gamma = 5.0
  return config


# name -> (table row, config builder)
MODELS = {
    'vp_digits': ('vp_digits (the demo: VP, eps, DSM)', digits_config),
    'edm_digits': ('edm_digits (EDM process, preconditioning, loss)', edm_digits_config),
    'vp_digits_v': ('vp_digits, v-prediction (v-MSE)', v_prediction_config),
    'vp_digits_min_snr': ('vp_digits, min-SNR-5 weighting', min_snr_config),
}


def model_config(name, quick=False):
  config = MODELS[name][1]()
  return shrink(config) if quick else config


def workdir_of(name, quick=False):
  """The demo's run is digits_model's; the others runs/bench_<name>[_quick]."""
  if name == 'vp_digits':
    return QUICK_WORKDIR if quick else WORKDIR
  return os.path.join(ROOT, 'runs', f'bench_{name}' + '_quick' * quick)


def trained(name, quick=False):
  """(config, workdir, training seconds or None if reused): trains `name` in its workdir unless a
  run of its n_iters is there (a lock makes a second caller wait and reuse it)."""
  config, workdir = model_config(name, quick), workdir_of(name, quick)
  return config, workdir, train_once(config, workdir)


def logged_seconds(workdir, step):
  """The training seconds metrics.jsonl logged at `step` (None if it did not)."""
  try:
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      records = [json.loads(line) for line in f]
  except (OSError, ValueError):
    return None
  return next((r['seconds'] for r in records if r.get('step') == step), None)


def sampling_of(config, method, budget):
  """config.sampling for `method` at `budget` evaluations: the EDM model on EDM's rho = 7
  levels, the VP models on the sampler's measured default schedule."""
  sampling = config.sampling.copy_and_resolve_references()
  schedule = 'karras' if config.sde.name == 'edm' else 'default'
  sampling.update(method=method, steps=budget, time_schedule=schedule, variant='default',
                  order=0, s_churn=0.0)
  return sampling


def measure(name, args, device, judge):
  """{'cells': {'<sampler>@<budget>': {...}}, 'bpd': {...}, 'train_seconds': ...} of model
  `name` at args.step, kept in its workdir as it is measured (a stopped run continues)."""
  if args.step:   # a checkpoint on the way: measured while the run may still train
    config, workdir, seconds = model_config(name, args.quick), workdir_of(name, args.quick), None
  else:
    config, workdir, seconds = trained(name, args.quick)
  torch.set_num_threads(args.threads or torch.get_num_threads())
  checkpoint = resolve_checkpoint(workdir, str(args.step or config.training.n_iters))
  model, step, _ = restore_for_inference(config, workdir, checkpoint, device)
  sde = get_sde(config)
  settings = {'checkpoint': checkpoint_sha256(checkpoint), 'samples': args.num_samples,
              'images': args.num_images, 'seed': config.seed}
  row, save = partial_row(os.path.join(workdir, 'edm_digits_benchmark.json'), settings)
  row['step'], row['batch'] = step, config.training.batch_size
  row['train_seconds'] = seconds or logged_seconds(workdir, step)
  cells = row.setdefault('cells', {})
  for method in SAMPLERS:
    for budget in BUDGETS:
      key, sampling = f'{method}@{budget}', sampling_of(config, method, budget)
      if key not in cells or cells[key]['sampling'] != resolved_sampling(sampling):
        cell = run_cell(config, model, sde, device, checkpoint, sampling, args.num_samples, judge)
        cells[key] = {f: v for f, v in cell.items() if f != 'picture'}
        save()
      print(f"{name} {key}: FD {cells[key]['fd']:.2f} (floor {cells[key]['floor']:.2f}), nfe "
            f"{cells[key]['nfe']:g}", flush=True)
  if 'bpd' not in row:
    bpd, seconds = ode_bits_per_dim(config, model, sde, device, checkpoint,
                                    args.num_images, args.quick)
    row['bpd'] = dict(bpd, seconds=seconds)
    save()
  print(f"{name}: test bits/dim {row['bpd']['mean']:.3f} +- {row['bpd']['stderr']:.3f}", flush=True)
  return row


def markdown(rows, args, device):
  """The results page's table (FD per sampler and budget, bits/dim) and the details."""
  step, batch = (next(iter(rows.values()))[k] for k in ('step', 'batch'))
  floor = next(iter(next(iter(rows.values()))['cells'].values()))['floor']
  columns = [f'{SAMPLERS[m]} @ {b}' for m in SAMPLERS for b in BUDGETS]
  lines = ['| model | ' + ' | '.join(columns) + ' | test bits/dim (ODE) | training |',
           '|---' * (len(columns) + 3) + '|']
  for name, row in rows.items():
    fds = [f"{row['cells'][f'{m}@{b}']['fd']:.2f}" for m in SAMPLERS for b in BUDGETS]
    minutes = f"{row['train_seconds'] / 60:.0f} min" if row['train_seconds'] else '-'
    lines.append(f"| {MODELS[name][0]} | " + ' | '.join(fds) + f" | {row['bpd']['mean']:.3f} +- "
                 f"{row['bpd']['stderr']:.3f} | {row['step']} steps, {minutes} |")
  command = ('benchmarks/edm_digits.py' + ' --quick' * args.quick
             + (f' --step {args.step}' if args.step else '')
             + f" --models {' '.join(rows)} --num_samples {args.num_samples}"
             + f' --num_images {args.num_images}')
  head = (f"# EDM's training on digits beside the demo's\n\n`{command}` on {device}. Every model "
          f"is the demo's U-Net trained {step} steps of {batch} (the same compute; the minutes are "
          f"wall time on a shared 2-core machine, one thread each). Digit Frechet distance of "
          f"{args.num_samples} samples to the train split (floor, the test split's: "
          f"{floor:.2f}) at 10, 20 and 35 score evaluations, all from the same x_T per model; "
          f"the EDM model on EDM's rho = 7 noise levels, the VP models on each sampler's default "
          f"schedule; test bits/dim by the probability-flow ODE on {args.num_images} test images "
          f"(uniform dequantization, +- one standard error; the EDM model from sigma_min = "
          f"0.002, the VP models from t = 1e-5):\n\n" + '\n'.join(lines) + '\n')
  details = ['| model | cell | nfe | digit FD | confidence | seconds |', '|---|---|---|---|---|---|']
  for name, row in rows.items():
    details += [f"| {name} | {key} | {c['nfe']:g} | {c['fd']:.2f} | {c['confidence']:.3f} | "
                f"{c['seconds']:.0f} |" for key, c in row['cells'].items()]
  return head + '\n## Cells\n\n' + '\n'.join(details) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true', help="tiny stand-ins: the table's shape only")
  parser.add_argument('--out', help='results directory (benchmarks/results; --quick: .../quick)')
  parser.add_argument('--models', nargs='+', default=list(MODELS), choices=sorted(MODELS),
                      help='the rows (default: all four)')
  parser.add_argument('--step', type=int, default=0,
                      help="the checkpoint step measured for every model (0: their n_iters)")
  parser.add_argument('--num_samples', type=int, default=None, help='per cell (300; quick 16)')
  parser.add_argument('--num_images', type=int, default=None,
                      help='test images for bits/dim (64; quick 4)')
  parser.add_argument('--threads', type=int, default=0,
                      help="torch's CPU threads for measuring (0: torch's own)")
  args = parser.parse_args()
  args.out = args.out or results_dir(args.quick)
  args.num_samples = args.num_samples or (16 if args.quick else 300)
  args.num_images = args.num_images or (4 if args.quick else 64)
  device = get_device('auto')
  start = time.perf_counter()
  judge = Judge(model_config('vp_digits', args.quick), device)   # the digits' judge, shared
  rows = {name: measure(name, args, device, judge) for name in args.models}
  md = markdown(rows, args, device)
  print(md)
  report = {'device': str(device), 'threads': torch.get_num_threads(), 'torch': torch.__version__,
            'args': vars(args), 'seconds': time.perf_counter() - start, 'rows': rows}
  write_results('edm_digits', report, md, args.out)


if __name__ == '__main__':
  main()
