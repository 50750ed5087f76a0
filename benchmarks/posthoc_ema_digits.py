"""Post-hoc EMA (Karras et al. 2024, EDM2) on the digits model: `vp_digits` as the demo trains it
(3,000 steps of 64) tracking EDM2's two power-function EMAs, sigma_rel 0.05 and 0.10, with a
snapshot every 100 steps (30 of each); after training the average of each sigma_rel of SWEEP is
reconstructed from the snapshots (--mode posthoc_ema, pipeline/posthoc_ema.py) and judged by
the digit Frechet distance of samples drawn with the config's sampler (reverse diffusion, 100
steps), beside the run's classic EMA (decay 0.999 with warm-up) and the floor (the test split's
distance). Every set of samples starts from the same x_T (the config's seed), so the rows differ
only by their weights.

  .venv/bin/python benchmarks/posthoc_ema_digits.py [--quick] [--out DIR] [--num_samples 500]

--quick: the tiny stand-in model (20 steps, a snapshot every 5), 16 samples: the table's shape.
Each row is kept in <workdir>/posthoc_ema_benchmark.json as it is measured, so a stopped run
continues where it left off. Writes posthoc_ema_digits.{json,md,png} (FD against sigma_rel).
"""
import argparse
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.digits import Judge, run_cell  # noqa: E402
from benchmarks.digits_model import digits_config, train_once  # noqa: E402
from benchmarks.results_io import partial_row, results_dir, write_results  # noqa: E402
from models import restore_for_inference  # noqa: E402
from models.posthoc_ema import sigma_rel_to_gamma  # noqa: E402
from pipeline.posthoc_ema import write_posthoc_checkpoint  # noqa: E402
from pipeline.sampling import checkpoint_sha256  # noqa: E402
from sde_lib import get_sde  # noqa: E402
from utils.checkpoint import resolve_checkpoint  # noqa: E402
from utils.device import get_device  # noqa: E402

TRACKED = (0.05, 0.10)      # EDM2's two tracked profiles
SWEEP = (0.02, 0.03, 0.05, 0.07, 0.10, 0.15, 0.20, 0.25)
WORKDIR = os.path.join(ROOT, 'runs', 'bench_posthoc_ema_digits')
QUICK_WORKDIR = os.path.join(ROOT, 'runs', 'bench_posthoc_ema_digits_quick')
CLASSIC, FLOOR = 'classic EMA (decay 0.999, warm-up)', 'train vs test split (floor)'


def posthoc_config(quick=False):
  """vp_digits as the demo trains it, tracking TRACKED with a snapshot every 100 steps (30)."""
  config = digits_config(quick)
  config.model.posthoc_ema_sigma_rels = TRACKED
  config.training.posthoc_snapshot_freq = 5 if quick else 100
  return config


def measure(row, save, config, workdir, device, num_samples):
  """row[name] = the judged samples of each sigma_rel of SWEEP and of the classic EMA."""
  judge, sde = Judge(config, device), get_sde(config)
  checkpoints = {CLASSIC: resolve_checkpoint(workdir, '')}
  for sigma_rel in SWEEP:
    checkpoints[f'{sigma_rel:g}'] = write_posthoc_checkpoint(workdir, sigma_rel)[0]
  for name, checkpoint in checkpoints.items():
    if name not in row:
      model = restore_for_inference(config, workdir, checkpoint, device)[0]
      cell = run_cell(config, model, sde, device, checkpoint, config.sampling, num_samples, judge)
      row[name] = {k: v for k, v in cell.items() if k != 'picture'}
      save()
      print(f"{name}: digit FD {row[name]['fd_all']:.2f} ({row[name]['seconds']:.0f} s)",
            flush=True)
  return row


def markdown_table(row):
  """Per average: FD of all samples, FD of as many as the floor's test images, confidence."""
  lines = ['| average | sigma_rel | gamma | digit FD | digit FD at the floor\'s size | '
           'classifier confidence |', '|---|---|---|---|---|---|',
           f"| {FLOOR} | - | - | - | {row[CLASSIC]['floor']:.2f} | - |"]
  cells = [(CLASSIC, '-', '-', row[CLASSIC])] + [
      (f"power EMA, {'tracked' if s in TRACKED else 'reconstructed'}", f'{s:g}',
       f'{sigma_rel_to_gamma(s):.2f}', row[f'{s:g}']) for s in SWEEP]
  for name, sigma_rel, gamma, cell in cells:
    lines.append(f"| {name} | {sigma_rel} | {gamma} | {cell['fd_all']:.2f} | {cell['fd']:.2f} | "
                 f"{cell['confidence']:.3f} |")
  return '\n'.join(lines)


def plot(row, path):
  """Digit FD (all samples) against sigma_rel, the classic EMA's as a horizontal line."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot(SWEEP, [row[f'{s:g}']['fd_all'] for s in SWEEP], 'o-', label='power EMA, post hoc')
  ax.plot(TRACKED, [row[f'{s:g}']['fd_all'] for s in TRACKED], 's', mfc='none', ms=11,
          color='C0', label='tracked during training')
  ax.axhline(row[CLASSIC]['fd_all'], color='C1', ls='--', label=CLASSIC)
  ax.set_xlabel('sigma_rel')
  ax.set_ylabel('digit Frechet distance')
  ax.set_title('Post-hoc EMA on vp_digits (EDM2)')
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true',
                      help="the tiny stand-in model, 16 samples: the table's shape only")
  parser.add_argument('--out', help='results directory (benchmarks/results; --quick: .../quick)')
  parser.add_argument('--num_samples', type=int, default=None, help='per row (500; quick 16)')
  args = parser.parse_args()
  args.out = args.out or results_dir(args.quick)
  args.num_samples = args.num_samples or (16 if args.quick else 500)
  device = get_device('auto')
  config = posthoc_config(args.quick)
  workdir = QUICK_WORKDIR if args.quick else WORKDIR
  start = time.perf_counter()
  train_seconds = train_once(config, workdir)
  settings = {'checkpoint': checkpoint_sha256(resolve_checkpoint(workdir, '')),
              'samples': args.num_samples, 'seed': config.seed, 'sweep': list(SWEEP)}
  row, save = partial_row(os.path.join(workdir, 'posthoc_ema_benchmark.json'), settings)
  measure(row, save, config, workdir, device, args.num_samples)
  seconds = time.perf_counter() - start - (train_seconds or 0)
  os.makedirs(args.out, exist_ok=True)
  plot(row, os.path.join(args.out, 'posthoc_ema_digits.png'))
  command = ('benchmarks/posthoc_ema_digits.py' + ' --quick' * args.quick
             + f' --num_samples {args.num_samples}')
  threads = torch.get_num_threads()
  fd_size = row[CLASSIC]['fd_size']
  md = (f"# Post-hoc EMA on the digits model\n\n"
        f"`{command}` on {device} ({threads} thread{'s' * (threads != 1)}): "
        f"{'the tiny stand-in model' if args.quick else 'vp_digits'}, "
        f"{config.training.n_iters} steps tracking sigma_rel {TRACKED[0]:g} and {TRACKED[1]:g} "
        f"(a snapshot every {config.training.posthoc_snapshot_freq} steps). Digit Frechet "
        f"distance of {args.num_samples} samples (the config's sampler, the same x_T in every "
        f"row) to the train split, and of the first {fd_size} (as many as the floor's: the "
        f"test split's own distance; the distance is biased up by ~1/N). The rows at the "
        f"tracked sigma_rel are reconstructions too, equal to the tracked averages.\n\n"
        f"{markdown_table(row)}\n\n"
        f"## Notes\n\nFD against sigma_rel: posthoc_ema_digits.png. The measurements took "
        f"{seconds / 60:.1f} min" + (f", training {train_seconds / 60:.1f} min" if train_seconds
                                     else '') + ".\n")
  print(md)
  report = {'device': str(device), 'threads': threads, 'torch': torch.__version__,
            'args': vars(args), 'settings': settings, 'train_seconds': train_seconds,
            'seconds': seconds, 'rows': row}
  write_results('posthoc_ema_digits', report, md, args.out)


if __name__ == '__main__':
  main()
