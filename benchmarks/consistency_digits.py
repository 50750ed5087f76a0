"""Consistency models on digits beside our training-free samplers: `cd_digits` (consistency
distillation, Song et al. 2023, from the trained `edm_digits` run of benchmarks/edm_digits.py),
`ict_digits` (improved consistency training, Song & Dhariwal 2023, no teacher) and `ect_digits`
(easy consistency tuning of the same `edm_digits` run, Geng et al. 2024), each trained with its
config's defaults, sampled in 1 and 2 steps (CM Algorithm 1, iCT's tau = 0.821); beside them the
demo (`vp_digits`, benchmarks/digits_model.py) with our best training-free sampler at 2, 4 and 10
score evaluations and the teacher with EDM's Heun at 35.

Every number is the digit Frechet distance of benchmarks/digits.py's Judge (samples against the
train split, beside the test split's floor), all from the same x_T per model. Training cost is
CPU-minutes: the process time of the training (all threads), kept beside the run
(training_time.json) so that a later invocation reusing the run reports it too; a run this
script did not train gives its logged wall minutes instead, marked so.

  .venv/bin/python benchmarks/consistency_digits.py [--quick] [--out DIR] [--num_samples 300]

Runs are trained in runs/bench_<model> unless a run of their n_iters is there (the teacher's is
benchmarks/edm_digits.py's, the demo's benchmarks/digits_model.py's). --quick: tiny stand-ins
(nf 8, 20 steps), 16 samples: the table's shape only.

Beside them the PyPI package `consistency` (0.3.2), whose diffusers 0.20.2 and Lightning cannot
share .venv: where `make peer-consistency` has built .venv-consistency, its python runs
benchmarks/peers/consistency_package.py on the train split (written to
runs/bench_consistency_package) for iCT's training CPU-seconds, and its samples are judged here
like every row's (not with --quick, which never needs that environment).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import edm_digits  # noqa: E402
from benchmarks.digits import Judge, run_cell  # noqa: E402
from benchmarks.digits_model import train_once  # noqa: E402
from benchmarks.results_io import partial_row, results_dir, write_results  # noqa: E402
from configs.cd_digits import get_config as cd_digits_config  # noqa: E402
from configs.ect_digits import get_config as ect_digits_config  # noqa: E402
from configs.ict_digits import get_config as ict_digits_config  # noqa: E402
from data import get_data_inverse_scaler, get_data_scaler, get_eval_dataset  # noqa: E402
from models import restore_for_inference  # noqa: E402
from pipeline.sampling import checkpoint_sha256  # noqa: E402
from samplers.registry import resolved_sampling  # noqa: E402
from sde_lib import get_sde  # noqa: E402
from utils.atomic import atomic_write  # noqa: E402
from utils.checkpoint import resolve_checkpoint  # noqa: E402
from utils.device import get_device  # noqa: E402

TEACHER = 'edm_digits'   # benchmarks/edm_digits.py's run: CD's teacher and ECT's start
TIME_FILE = 'training_time.json'


def builder(get_config, taught):
  """config(quick) of a consistency config, its distill.teacher (when `taught`) the benchmark's
  edm_digits run; --quick: edm_digits.py's stand-in network and length."""
  def build(quick=False):
    config = get_config()
    if taught:
      config.distill.teacher = edm_digits.workdir_of(TEACHER, quick)
    return edm_digits.shrink(config) if quick else config
  return build


# name -> (table row, config builder(quick))
CONSISTENCY = {
    'cd_digits': ('cd_digits (CD from edm_digits, Heun teacher, N = 18)',
                  builder(cd_digits_config, taught=True)),
    'ict_digits': ('ict_digits (iCT, no teacher)', builder(ict_digits_config, taught=False)),
    'ect_digits': ('ect_digits (ECT of edm_digits)', builder(ect_digits_config, taught=True)),
}


def training_time(workdir):
  """{'cpu_seconds', 'wall_seconds'} this script kept beside the run, or None."""
  try:
    with open(os.path.join(workdir, TIME_FILE)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def trained(name, quick=False):
  """(config, workdir, {'cpu_seconds', 'wall_seconds'} or None): trains consistency model `name`
  (after its teacher) unless a run of its n_iters is there."""
  config = CONSISTENCY[name][1](quick)
  if config.distill.teacher:
    edm_digits.trained(TEACHER, quick)
  workdir = os.path.join(ROOT, 'runs', f'bench_{name}' + '_quick' * quick)
  cpu = time.process_time()
  wall = train_once(config, workdir)
  if wall is not None:
    times = {'cpu_seconds': time.process_time() - cpu, 'wall_seconds': wall}
    atomic_write(os.path.join(workdir, TIME_FILE), lambda f: f.write(json.dumps(times).encode()))
  return config, workdir, training_time(workdir)


FREE_SAMPLERS = ('ipndm', 'dpm_solver', 'unipc', 'heun', 'ddim')   # the demo's best per budget
FREE_BUDGETS = (2, 4, 10)
TEACHER_BUDGET = 35              # EDM's Heun, 18 steps (edm_digits' default)
CONSISTENCY_STEPS = (1, 2)
COLUMNS = (1, 2, 4, 10, 35)      # evaluations
PACKAGE = 'consistency'        # the PyPI package, in its own environment
PACKAGE_VERSION = '0.3.2'      # requirements-peer-consistency.txt's
PACKAGE_ENV = os.path.join(ROOT, '.venv-consistency')   # `make peer-consistency`
PACKAGE_PYTHON = os.path.join(PACKAGE_ENV, 'bin', 'python')
PACKAGE_SCRIPT = os.path.join(ROOT, 'benchmarks', 'peers', 'consistency_package.py')
PACKAGE_NOTE = ("in its own .venv-consistency, which `make peer-consistency` builds (its "
                "imports of diffusers.models.unet_2d and diffusers.utils.randn_tensor need "
                "diffusers <= 0.20.2, not .venv's 0.42.1; without it, and with --quick, this "
                "row is '-'): its LightningModule with its defaults (MSE loss, as its LPIPS loss "
                "downloads weights; RAdam lr 1e-4, sigma_data 0.5, N(k) from 2 to 150 bins, "
                "target EMA from 0.9) on a diffusers UNet2DModel sized like our U-Net, batches "
                "of 64 of the train split, for iCT's training CPU-seconds (its N(k) needs "
                "max_steps: set from a timed trial, the budget's end may come first); sampled "
                "from its target network as it does; its sample(steps=2) first re-noises to "
                "sigma 80 (bin 149 of 150), so its 2 steps cost 3 evaluations")


def measured(name, config, workdir, checkpoint, cells, args, device, judge):
  """The row of model `name` ({'cells': {key: cell}, 'step', 'n_iters'}) at `checkpoint`, each
  cell of `cells` ({key: config.sampling}) kept in the run's workdir as it is measured."""
  model, step, _ = restore_for_inference(config, workdir, checkpoint, device)
  sde = get_sde(config)
  settings = {'checkpoint': checkpoint_sha256(checkpoint), 'samples': args.num_samples,
              'seed': config.seed}
  row, save = partial_row(os.path.join(workdir, 'consistency_digits_benchmark.json'), settings)
  row.update(step=step, n_iters=config.training.n_iters)
  done = row.setdefault('cells', {})
  for key, sampling in cells.items():
    if key not in done or done[key]['sampling'] != resolved_sampling(sampling):
      cell = run_cell(config, model, sde, device, checkpoint, sampling, args.num_samples, judge)
      done[key] = {f: v for f, v in cell.items() if f != 'picture'}
      save()
    print(f"{name} {key}: FD {done[key]['fd']:.2f}, nfe {done[key]['nfe']:g}", flush=True)
  return row


def reference_rows(args, device, judge):
  """The demo with every training-free sampler of FREE_SAMPLERS at FREE_BUDGETS, and the teacher
  with EDM's Heun at TEACHER_BUDGET; each with its logged training wall seconds."""
  rows = {}
  free = {f'{m}@{b}': (m, b) for m in FREE_SAMPLERS for b in FREE_BUDGETS}
  for name, cells in [('vp_digits', free),
                      (TEACHER, {f'heun@{TEACHER_BUDGET}': ('heun', TEACHER_BUDGET)})]:
    config, workdir, _ = edm_digits.trained(name, args.quick)
    checkpoint = resolve_checkpoint(workdir, str(config.training.n_iters))
    cells = {key: edm_digits.sampling_of(config, m, b) for key, (m, b) in cells.items()}
    row = measured(name, config, workdir, checkpoint, cells, args, device, judge)
    row['wall_seconds'] = edm_digits.logged_seconds(workdir, row['step'])
    rows[name] = row
  return rows


def consistency_row(name, args, device, judge):
  """Consistency model `name` in 1 and 2 steps (CM Algorithm 1, the config's levels), trained to
  its n_iters first unless args.latest (then its latest checkpoint, the run may go on)."""
  if args.latest:
    config = CONSISTENCY[name][1](args.quick)
    workdir = os.path.join(ROOT, 'runs', f'bench_{name}' + '_quick' * args.quick)
    checkpoint = resolve_checkpoint(workdir, '')
  else:
    config, workdir, _ = trained(name, args.quick)
    checkpoint = resolve_checkpoint(workdir, str(config.training.n_iters))
  cells = {}
  for steps in CONSISTENCY_STEPS:
    sampling = config.sampling.copy_and_resolve_references()
    sampling.update(method='consistency', steps=steps)
    cells[f'consistency@{steps}'] = sampling
  row = measured(name, config, workdir, checkpoint, cells, args, device, judge)
  times = training_time(workdir) if row['step'] == row['n_iters'] else None
  row['cpu_seconds'] = times and times['cpu_seconds']
  row['wall_seconds'] = edm_digits.logged_seconds(workdir, row['step'])
  return row


def package_row(cpu_seconds, args, judge):
  """The `consistency` package trained by benchmarks/peers/consistency_package.py in its own
  environment for `cpu_seconds` on the train split, its samples at 1 and 2 of its steps judged
  here; kept in its workdir, so a later invocation of the same settings reuses it."""
  config = edm_digits.model_config('vp_digits')
  workdir = os.path.join(ROOT, 'runs', f'bench_{PACKAGE}_package')
  os.makedirs(workdir, exist_ok=True)
  settings = {'cpu_seconds': cpu_seconds, 'samples': args.num_samples, 'seed': config.seed}
  row, save = partial_row(os.path.join(workdir, 'consistency_digits_benchmark.json'), settings)
  if 'cells' not in row:
    data, out = os.path.join(workdir, 'train.npz'), os.path.join(workdir, 'samples.npz')
    scale = get_data_scaler(config)   # the package's range, [-1, 1]
    np.savez(data, images=scale(torch.stack([x for x, _ in get_eval_dataset(config, 'train')]))
             .numpy())
    subprocess.run([PACKAGE_PYTHON, PACKAGE_SCRIPT, '--data', data, '--out', out,
                    '--cpu_seconds', str(cpu_seconds), '--workdir', workdir,
                    '--num_samples', str(args.num_samples), '--seed', str(config.seed)],
                   env={**os.environ, 'OMP_NUM_THREADS': '1'}, check=True)
    run = np.load(out)
    to_data = get_data_inverse_scaler(config)
    row.update(version=str(run['version']), cpu_seconds=float(run['cpu_seconds']),
               step=int(run['steps']), n_iters=int(run['max_steps']), cells={})
    for steps in CONSISTENCY_STEPS:
      start = time.perf_counter()
      result = judge(to_data(torch.from_numpy(run[f'samples_{steps}'])))
      row['cells'][f'package@{steps}'] = {
          'nfe': int(run[f'nfe_{steps}']), 'fd': result['fd'], 'floor': result['floor'],
          'seconds': float(run[f'seconds_{steps}']) + time.perf_counter() - start}
    save()
  return row


def training_cell(row):
  """'<steps> steps, <CPU-minutes>' (or the logged wall minutes, marked, where the CPU time of
  the training is not known: a run this script did not train, or one still training)."""
  steps = f"{row['step']} steps" if row['step'] == row['n_iters'] else \
      f"{row['step']} of {row['n_iters']} steps"
  if row.get('cpu_seconds'):
    return f"{steps}, {row['cpu_seconds'] / 60:.1f} CPU-min"
  if row.get('wall_seconds'):
    return f"{steps}, {row['wall_seconds'] / 60:.0f} wall-min (logged)"
  return steps


def markdown(rows, args, device):
  """The results page's table (digit FD by evaluations, training cost) and every cell."""
  floor = next(iter(rows['vp_digits']['cells'].values()))['floor']
  lines = ['| model | sampler | ' + ' | '.join(f'FD @ {n}' for n in COLUMNS)
           + ' | training | note |', '|---' * (len(COLUMNS) + 4) + '|']
  best = {}
  for key, c in rows['vp_digits']['cells'].items():
    method, budget = key.split('@')
    if int(budget) not in best or c['fd'] < best[int(budget)][1]:
      best[int(budget)] = (method, c['fd'])
  free = [f'{best[n][1]:.2f} ({best[n][0]})' if n in best else '-' for n in COLUMNS]
  lines.append(f"| vp_digits (the demo) | best of {', '.join(FREE_SAMPLERS)} | " + ' | '.join(free)
               + f" | {training_cell(rows['vp_digits'])} | - |")
  teacher = rows[TEACHER]['cells'][f'heun@{TEACHER_BUDGET}']['fd']
  lines.append(f"| {TEACHER} (the teacher) | Heun (EDM) | " + ' | '.join(
      f'{teacher:.2f}' if n == TEACHER_BUDGET else '-' for n in COLUMNS)
      + f" | {training_cell(rows[TEACHER])} | - |")
  for name, (label, _) in CONSISTENCY.items():
    row = rows[name]
    fds = [f"{row['cells'][f'consistency@{n}']['fd']:.2f}" if n in CONSISTENCY_STEPS else '-'
           for n in COLUMNS]
    lines.append(f'| {label} | consistency (CM Algorithm 1) | ' + ' | '.join(fds)
                 + f' | {training_cell(row)} | - |')
  package = rows.get(PACKAGE)   # None: not run (no .venv-consistency, or --quick)
  fds = []
  for n in COLUMNS:
    c = package and package['cells'].get(f'package@{n}')
    fds.append(f"{c['fd']:.2f}" + (f" ({c['nfe']} evaluations)" if c['nfe'] != n else '')
               if c else '-')
  lines.append(f"| {PACKAGE} {PACKAGE_VERSION} (PyPI) | "
               f"{'its Consistency.sample' if package else '-'} | " + ' | '.join(fds)
               + f" | {training_cell(package) if package else '-'} | {PACKAGE_NOTE} |")
  command = ('benchmarks/consistency_digits.py' + ' --quick' * args.quick
             + ' --latest' * args.latest + f' --num_samples {args.num_samples}')
  head = (f"# Consistency models on digits\n\n`{command}` on {device}. Digit Frechet distance of "
          f"{args.num_samples} samples to the train split (floor, the test split's: {floor:.2f}) "
          f"by score evaluations (a consistency model's steps), all from the same x_T per model: "
          f"the demo with the best of our training-free samplers at each budget (on each "
          f"sampler's default schedule), the `edm_digits` run (the demo's U-Net, 3,000 steps; CD's "
          f"teacher and ECT's start) with EDM's Heun, and the consistency models trained with "
          f"their configs' defaults (CD and ECT: their CPU-minutes on top of the teacher's), "
          f"sampled in two steps through iCT's tau = 0.821. Training cost: CPU-minutes (the "
          f"training process's CPU time) where this script trained the run, else the wall "
          f"minutes its log gives (on a shared 2-core machine):\n\n" + '\n'.join(lines) + '\n')
  details = ['| model | cell | nfe | digit FD | seconds |', '|---|---|---|---|---|']
  for name, row in rows.items():
    details += [f"| {name} | {key} | {c['nfe']:g} | {c['fd']:.2f} | {c['seconds']:.0f} |"
                for key, c in row['cells'].items()]
  return head + '\n## Cells\n\n' + '\n'.join(details) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true', help="tiny stand-ins: the table's shape only")
  parser.add_argument('--out', help='results directory (benchmarks/results; --quick: .../quick)')
  parser.add_argument('--num_samples', type=int, default=None, help='per cell (300; quick 16)')
  parser.add_argument('--latest', action='store_true',
                      help="measure each consistency run's latest checkpoint (it may still train)")
  args = parser.parse_args()
  args.out = args.out or results_dir(args.quick)
  args.num_samples = args.num_samples or (16 if args.quick else 300)
  device = get_device('auto')
  start = time.perf_counter()
  judge = Judge(edm_digits.model_config('vp_digits', args.quick), device)
  rows = reference_rows(args, device, judge)
  rows.update({name: consistency_row(name, args, device, judge) for name in CONSISTENCY})
  budget = rows['ict_digits']['cpu_seconds']   # None: --latest caught iCT still training
  if not args.quick and budget and os.path.exists(os.path.join(PACKAGE_ENV, '.installed')):
    rows[PACKAGE] = package_row(budget, args, judge)
  md = markdown(rows, args, device)
  print(md)
  report = {'device': str(device), 'threads': torch.get_num_threads(), 'torch': torch.__version__,
            'args': vars(args), 'seconds': time.perf_counter() - start, 'rows': rows}
  write_results('consistency_digits', report, md, args.out)


if __name__ == '__main__':
  main()
