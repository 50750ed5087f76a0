"""1-rectified flow on digits beside the demo, at the same training compute: `rf_digits` (the
demo's U-Net, batch, optimizer and 3,000 steps, with the straight path x_t = (1 - t) x_0 + t z,
a velocity network and the flow-matching loss; Liu et al. 2023, Lipman et al. 2023) against
`vp_digits` (the demo, benchmarks/digits_model.py).

Per model: the digit Frechet distance (benchmarks/digits.py's Judge: samples against the train
split, beside the test split's floor) at 2, 4, 10 and 20 evaluations with the flow's Euler step
(DDIM on the model's path, uniform in t), iPNDM (order 3) and DPM-Solver (multistep, order 3),
each on its measured default schedule except Euler; and the test bits/dim by the
probability-flow ODE (uniform dequantization, +- one standard error).

  .venv/bin/python benchmarks/flow_digits.py [--quick] [--out DIR] [--num_samples 300]
      [--num_images 64]

A model's run is trained in runs/bench_<model> unless a run of its n_iters is there (the demo's
is benchmarks/digits_model.py's). --quick: tiny stand-ins (nf 8, 20 steps), 16 samples, 4
images: the table's shape only.
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.digits import Judge  # noqa: E402
from benchmarks.digits_model import (QUICK_WORKDIR, WORKDIR, digits_config,  # noqa: E402
                                     ode_bits_per_dim, train_once)
from benchmarks.edm_digits import logged_seconds, shrink  # noqa: E402
from benchmarks.results_io import partial_row, results_dir, write_results  # noqa: E402
from configs.rf_digits import get_config as rf_digits_config  # noqa: E402
from models import restore_for_inference  # noqa: E402
from pipeline.sampling import checkpoint_sha256, data_sampler, draw_samples, score_and_variance_fns  # noqa: E402
from samplers.registry import resolved_sampling  # noqa: E402
from sde_lib import get_sde  # noqa: E402
from utils.checkpoint import resolve_checkpoint  # noqa: E402
from utils.device import get_device  # noqa: E402

BUDGETS = (2, 4, 10, 20)
SAMPLERS = {   # name -> (column, config.sampling overrides)
    'euler': ("Euler (the flow's step = DDIM)", dict(method='ddim', time_schedule='uniform')),
    'ipndm': ('iPNDM-3', dict(method='ipndm', time_schedule='default')),
    'dpm_solver': ('DPM-Solver-3M', dict(method='dpm_solver', time_schedule='default')),
}
MODELS = {
    'vp_digits': ('vp_digits (the demo: VP, eps, DSM)', digits_config),
    'rf_digits': ('rf_digits (rectified flow, velocity, flow matching)', rf_digits_config),
}


def workdir_of(name, quick=False):
  if name == 'vp_digits':
    return QUICK_WORKDIR if quick else WORKDIR
  return os.path.join(ROOT, 'runs', f'bench_{name}' + '_quick' * quick)


def trained(name, quick=False):
  """(config, workdir, training seconds or None if reused)."""
  config, workdir = MODELS[name][1](), workdir_of(name, quick)
  config = shrink(config) if quick else config
  return config, workdir, train_once(config, workdir)


def measure(name, args, device):
  """{'cells': {'<sampler>@<budget>': {...}}, 'bpd': {...}, 'train_seconds': ...} of `name`."""
  config, workdir, seconds = trained(name, args.quick)
  checkpoint = resolve_checkpoint(workdir, str(config.training.n_iters))
  model, step, _ = restore_for_inference(config, workdir, checkpoint, device)
  sde = get_sde(config)
  settings = {'checkpoint': checkpoint_sha256(checkpoint), 'samples': args.num_samples,
              'images': args.num_images, 'seed': config.seed}
  row, save = partial_row(os.path.join(workdir, 'flow_digits_benchmark.json'), settings)
  row['step'], row['train_seconds'] = step, seconds or logged_seconds(workdir, step)
  judge = Judge(config, device)
  cells = row.setdefault('cells', {})
  for method, (_, overrides) in SAMPLERS.items():
    for budget in BUDGETS:
      sampling = config.sampling.copy_and_resolve_references()
      sampling.update(variant='default', order=0, steps=budget, **overrides)
      key = f'{method}@{budget}'
      if key not in cells or cells[key]['sampling'] != resolved_sampling(sampling):
        start = time.perf_counter()
        draw = data_sampler(config, sde, model, device, sampling, checkpoint=checkpoint)
        samples, nfe = draw_samples(draw, args.num_samples, args.num_samples, config.seed, device,
                                    progress=False)
        result = judge(samples)
        cells[key] = {'nfe': nfe, 'fd': result['fd'], 'floor': result['floor'],
                      'sampling': resolved_sampling(sampling),
                      'seconds': time.perf_counter() - start}
        save()
      print(f"{name} {key}: FD {cells[key]['fd']:.2f}, nfe {cells[key]['nfe']:g}", flush=True)
  if 'bpd' not in row:
    score_fn = score_and_variance_fns(config, sde, model)[0]
    row['bpd'] = ode_bits_per_dim(config, model, sde, score_fn, device, checkpoint,
                                  args.num_images, args.quick)[0]
    save()
  return row


def markdown(rows, args):
  floor = next(iter(next(iter(rows.values()))['cells'].values()))['floor']
  lines = ['| model | sampler | ' + ' | '.join(f'FD @ {b}' for b in BUDGETS)
           + ' | test bits/dim (ODE) | training |', '|---' * (len(BUDGETS) + 4) + '|']
  for name, row in rows.items():
    minutes = f"{row['train_seconds'] / 60:.0f} min" if row['train_seconds'] else '-'
    for method, (column, _) in SAMPLERS.items():
      fds = [f"{row['cells'][f'{method}@{b}']['fd']:.2f}" for b in BUDGETS]
      lines.append(f'| {MODELS[name][0]} | {column} | ' + ' | '.join(fds)
                   + f" | {row['bpd']['mean']:.3f} +- {row['bpd']['stderr']:.3f} | "
                   f"{row['step']} steps, {minutes} |")
  command = ('benchmarks/flow_digits.py' + ' --quick' * args.quick
             + f' --num_samples {args.num_samples}')
  return (f"# Rectified flow on digits\n\nRectified flow on digits beside the demo (`{command}`): "
          f"the demo's U-Net, 3,000 steps of 64 each (wall minutes on a shared 2-core machine). "
          f"Digit FD of {args.num_samples} samples to the train split (floor, the test split's: {floor:.2f}) by score "
          f"evaluations, all from the same x_T per model; test bits/dim by the probability-flow "
          f"ODE on {args.num_images} test images:\n\n" + '\n'.join(lines) + '\n')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true', help="tiny stand-ins: the table's shape only")
  parser.add_argument('--out', help='results directory (benchmarks/results; --quick: .../quick)')
  parser.add_argument('--num_samples', type=int, default=None, help='per cell (300; quick 16)')
  parser.add_argument('--num_images', type=int, default=None, help='bits/dim images (64; quick 4)')
  args = parser.parse_args()
  args.out = args.out or results_dir(args.quick)
  args.num_samples = args.num_samples or (16 if args.quick else 300)
  args.num_images = args.num_images or (4 if args.quick else 64)
  device = get_device('auto')
  rows = {name: measure(name, args, device) for name in MODELS}
  md = markdown(rows, args)
  print(md)
  write_results('flow_digits', {'device': str(device), 'args': vars(args), 'rows': rows}, md,
                args.out)


if __name__ == '__main__':
  main()
