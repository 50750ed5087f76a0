"""The U-Net, DiT and U-ViT on the digits at matched parameter counts and the same training time:
the demo `vp_digits` (Ho et al.'s U-Net, 701,345 parameters, 3,000 steps; benchmarks/
digits_model.py trains it once), `dit_digits` (Peebles & Xie's DiT, 722,788) and `uvit_digits`
(Bao et al.'s U-ViT, 705,862), everything else the demo's (data, VP-SDE, continuous DSM, Adam,
EMA, batch 64). The transformers' n_iters give them the U-Net's training CPU time at the CPU
seconds per step measured on one thread; this script measures those seconds again, the same way
for the three: Trainer.update (loss, backward, clipping, Adam, EMA) on one batch of 64, process
CPU time per step as the difference of two timed runs (benchmarks/train_step_time.py), so start-up
cancels.

Per network: the digit Frechet distance of 300 samples against the train split (benchmarks/
digits.py's judge and cells: the same x_T for every network and sampler) at 10 and 20 score
evaluations with iPNDM and DPM-Solver (the registry's defaults; the U-Net's best at 10 and
among the best at 20 in benchmarks/results/digits.md), and with the demo's own sampler (100
reverse-diffusion steps); test bits/dim by the probability-flow ODE on 64 test images.

  .venv/bin/python benchmarks/backbones_digits.py [--quick] [--out DIR]
      [--num_samples 300] [--num_images 64] [--steps 20]

--quick: tiny stand-ins of the three (20 training steps each), 16 samples, 4 images at loose
ODE tolerances: the tables' shape only. Each network's numbers are kept in its workdir
(backbones_benchmark.json, keyed by its checkpoint's hash and the settings), so a stopped run
continues where it left off; the transformers train in runs/bench_{dit,uvit}_digits unless a
finished run is there (OMP_NUM_THREADS=1 python run.py --config dit_digits --workdir
runs/bench_dit_digits --mode train trains the same).
"""
import argparse
import importlib
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.digits import (  # noqa: E402
    SAMPLERS, Judge, logged_train_seconds, run_cell, sampling_config)
from benchmarks.digits_model import (QUICK_WORKDIR, WORKDIR, ode_bits_per_dim,  # noqa: E402
                                     train_once, trained_digits)
from benchmarks.results_io import partial_row, results_dir, write_results  # noqa: E402
from benchmarks.train_step_time import seconds_per_step  # noqa: E402
from models import restore_for_inference  # noqa: E402
from pipeline.sampling import checkpoint_sha256, score_and_variance_fns  # noqa: E402
from samplers.registry import resolved_sampling  # noqa: E402
from sde_lib import get_sde  # noqa: E402
from utils.checkpoint import resolve_checkpoint  # noqa: E402
from utils.device import get_device  # noqa: E402

# row name -> config; the U-Net is the demo's shared run
NETWORKS = {'U-Net (vp_digits, the demo)': 'vp_digits', 'DiT (dit_digits)': 'dit_digits',
            'U-ViT (uvit_digits)': 'uvit_digits'}
FAST = ('ipndm', 'dpm_solver')
BUDGETS = (10, 20)
DEMO = 'demo sampler'          # vp_digits' own: 100 reverse-diffusion steps, no corrector
DEMO_SAMPLING = dict(method='pc', predictor='reverse_diffusion', corrector='none')
# --quick's stand-ins: a few thousand parameters, 20 steps of 32 (vp_digits' as digits_model's).
QUICK_MODELS = {'vp_digits': dict(nf=8, num_groups=4),
                'dit_digits': dict(hidden_size=16, depth=1, num_heads=2),
                'uvit_digits': dict(hidden_size=16, depth=2, num_heads=2)}


def config_of(name, quick):
  config = importlib.import_module(f'configs.{name}').get_config()
  if quick:
    config.model.update(QUICK_MODELS[name])
    config.training.n_iters, config.training.batch_size = 20, 32
    config.training.snapshot_freq, config.training.snapshot_sampling = 20, False
  return config


def trained(name, device, quick):
  """(config, model with EMA weights, sde, score_fn, workdir): the U-Net from digits_model, a
  transformer trained in runs/bench_<name> (once, under a lock) unless its run is finished."""
  if name == 'vp_digits':
    config, model, sde, score_fn, _ = trained_digits(device, quick=quick)
    return config, model, sde, score_fn, QUICK_WORKDIR if quick else WORKDIR
  config = config_of(name, quick)
  workdir = os.path.join(ROOT, 'runs', f"bench_{name}{'_quick' * quick}")
  train_once(config, workdir)
  model, _, _ = restore_for_inference(config, workdir, '', device)
  sde = get_sde(config)
  return config, model, sde, score_and_variance_fns(config, sde, model)[0], workdir


def cpu_seconds_per_step(name, steps, quick):
  """Process CPU seconds per training step on this thread count: the difference of timed runs
  of `steps` and 2 `steps` steps (construction and warm-up cancel), and their wall s/step."""
  cpu = []
  for n in (steps, 2 * steps):
    start = time.process_time()
    wall = seconds_per_step(name, 64, n, 'cpu', model=QUICK_MODELS.get(name) if quick else None)
    cpu.append(time.process_time() - start)
  return {'cpu': (cpu[1] - cpu[0]) / steps, 'wall': wall['seconds_per_step'],
          'parameters': wall['parameters']}


def measure(row, save, config, model, sde, score_fn, device, checkpoint, args):
  """Fills `row` (kept by `save`) with the cells and the ODE bits/dim of one network."""
  judge = None
  cells = row.setdefault('cells', {})
  runs = [(f'{key}@{b}', sampling_config(config, SAMPLERS[key][1], SAMPLERS[key][2](b), args.quick))
          for key in FAST for b in BUDGETS]
  runs.append((DEMO, sampling_config(config, DEMO_SAMPLING, 100, args.quick)))
  for name, sampling in runs:
    if name not in cells or cells[name]['sampling'] != resolved_sampling(sampling):
      judge = judge or Judge(config, device)
      cells[name] = run_cell(config, model, sde, device, checkpoint, sampling, args.num_samples,
                             judge)
      save()
    print(f"  {name}: FD {cells[name]['fd']:.2f} (nfe {cells[name]['nfe']:g}, "
          f"{cells[name]['seconds']:.0f} s)", flush=True)
  if 'bpd' not in row:
    row['bpd'], row['bpd_seconds'] = ode_bits_per_dim(config, model, sde, device,
                                                      checkpoint, args.num_images, args.quick)
    save()
  print(f"  ODE bits/dim {row['bpd']['mean']:.3f} +- {row['bpd']['stderr']:.3f}", flush=True)


def tables(rows):
  """The results page's table (one row per network) and the cells' details."""
  floor = next(iter(rows.values()))['cells'][DEMO]['floor']
  fast = [f'{k}@{b}' for k in FAST for b in BUDGETS]
  names = {'ipndm': 'iPNDM', 'dpm_solver': 'DPM-Solver'}
  head = (['network', 'parameters', 'training steps', 'training steps/s (1 thread, CPU time)',
           'training CPU-min']
          + [f"FD {names[c.split('@')[0]]}, {c.split('@')[1]}" for c in fast]
          + ['FD demo sampler, 100', 'ODE bits/dim'])
  lines = ['| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|']
  for network, r in rows.items():
    s = r['step']
    lines.append(
        f"| {network} | {s['parameters']:,} | {r['n_iters']} | {1 / s['cpu']:.2f} | "
        f"{r['n_iters'] * s['cpu'] / 60:.1f} | "
        + ' | '.join(f"{r['cells'][c]['fd']:.2f}" for c in fast + [DEMO])
        + f" | {r['bpd']['mean']:.3f} +- {r['bpd']['stderr']:.3f} |")
  details = ['| network | sampler | nfe | digit FD | digit FD, all | confidence | seconds |',
             '|---|---|---|---|---|---|---|']
  for network, r in rows.items():
    details += [f"| {network} | {name} | {c['nfe']:g} | {c['fd']:.2f} | {c['fd_all']:.2f} | "
                f"{c['confidence']:.3f} | {c['seconds']:.1f} |" for name, c in r['cells'].items()]
  return '\n'.join(lines), f'{floor:.2f}', '\n'.join(details)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true',
                      help="tiny stand-ins, few samples: the tables' shape only")
  parser.add_argument('--out', help='results directory (benchmarks/results; --quick: .../quick)')
  parser.add_argument('--num_samples', type=int, default=None, help='per cell (300; quick 16)')
  parser.add_argument('--num_images', type=int, default=None,
                      help='test images for bits/dim (64; quick 4)')
  parser.add_argument('--steps', type=int, default=None,
                      help='timed training steps (the difference of runs of steps and 2 steps; '
                           '20, quick 2)')
  args = parser.parse_args()
  args.out = args.out or results_dir(args.quick)
  args.num_samples = args.num_samples or (16 if args.quick else 300)
  args.num_images = args.num_images or (4 if args.quick else 64)
  args.steps = args.steps or (2 if args.quick else 20)
  torch.set_num_threads(1)     # the per-step times are one thread's
  device = get_device('cpu')
  rows = {}
  # The shared U-Net last: its run may still be training elsewhere (digits_model's lock).
  for network, name in sorted(NETWORKS.items(), key=lambda item: item[1] == 'vp_digits'):
    config, model, sde, score_fn, workdir = trained(name, device, args.quick)
    checkpoint = resolve_checkpoint(workdir, '')
    settings = {'checkpoint': checkpoint_sha256(checkpoint), 'samples': args.num_samples,
                'images': args.num_images, 'seed': config.seed, 'steps': args.steps}
    row, save = partial_row(os.path.join(workdir, 'backbones_benchmark.json'), settings)
    print(f"{network}: {workdir}", flush=True)
    if 'step' not in row:
      row['step'] = cpu_seconds_per_step(name, args.steps, args.quick)
      save()
    row['n_iters'] = config.training.n_iters
    row['train_wall_seconds'] = logged_train_seconds(workdir)
    measure(row, save, config, model, sde, score_fn, device, checkpoint, args)
    rows[network] = row
  table, floor, details = tables({network: rows[network] for network in NETWORKS})
  command = ('benchmarks/backbones_digits.py' + ' --quick' * args.quick
             + f' --num_samples {args.num_samples} --num_images {args.num_images}'
             + f' --steps {args.steps}')
  md = (f"# U-Net, DiT and U-ViT on the digits\n\n"
        f"`{command}` on {device} (1 thread): "
        f"{'tiny stand-ins of the three' if args.quick else 'vp_digits, dit_digits, uvit_digits'}"
        f", each trained for its config's n_iters, set to match the U-Net's 3,000 steps in "
        f"training CPU time by an earlier timing (training CPU-min: steps / steps per CPU "
        f"second of this run's timing). Digit Frechet distance of {args.num_samples} samples to the train split (the floor, the test split's distance: "
        f"{floor}; the same x_T for every cell) at 10 and 20 score evaluations and with the "
        f"demo's sampler (100 reverse-diffusion steps); test bits/dim by the probability-flow "
        f"ODE (uniform dequantization) on {args.num_images} test images, +- one standard error."
        f"\n\n{table}\n\n"
        f"## Cells\n\nEvery set of samples: nfe per sample, the digit FD of the first test-split-"
        f"size samples and of all, the digit classifier's confidence, seconds to draw and judge. "
        f"How much one cell's FD varies between seeds: benchmarks/results/likelihood_training.md."
        f"\n\n{details}\n\nTraining wall-clock seconds as logged (on a shared machine, not the "
        f"comparison): " + ', '.join(f"{n} {r['train_wall_seconds'] or 0:.0f}"
                                     for n, r in rows.items()) + ".\n")
  print(md)
  write_results('backbones_digits', {'device': str(device), 'torch': torch.__version__,
                                     'args': vars(args), 'rows': rows}, md, args.out)


if __name__ == '__main__':
  main()
