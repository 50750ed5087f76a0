"""Maximum-likelihood training on digits (Song et al. 2021b, ScoreFlow): `vp_digits` (the demo,
DSM with the s^2 weighting), the demo on uniformly dequantized images, and
`vp_digits_likelihood` (g^2 weighting, importance-sampled t, dequantized images), each trained
here, with its training time.

For each, on the test split: bits/dim by the probability-flow ODE with uniform and with
variational dequantization (a flow q(u | x) fitted to the model, evaluation/dequantization.py;
also -log p(y) of its points alone), the score-matching bound (evaluation/score_bound.py), the
DDPM bound (VLB, 'beta' variance, whole chain), and the digit Frechet distance of the config's
own sampler (mean and standard error over FD_SETS sets of 1000 samples; and of each set's
first test-split-size samples, against the train-vs-test floor). Prints the table and writes
benchmarks/results/likelihood_training.{json,md}.

  .venv/bin/python benchmarks/likelihood_training.py [--num_images 0] [--num_samples 1000]
      [--workdir runs/bench_likelihood_training]

A finished run in the workdir is reused; each number is kept in
<run>/likelihood_training.json as it is measured, so a stopped run continues where it left off.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.results_io import partial_row, write_results  # noqa: E402
from configs.vp_digits import get_config as demo_config  # noqa: E402
from configs.vp_digits_likelihood import get_config as likelihood_config  # noqa: E402
from pipeline.api import Run, likelihood_report  # noqa: E402
from evaluation.feature_metrics import fid, get_feature_space  # noqa: E402
from evaluation.shards import to_storage  # noqa: E402
from models import restore_for_inference  # noqa: E402
from pipeline.sampling import data_sampler, draw_samples  # noqa: E402
from sde_lib import get_sde  # noqa: E402
from pipeline.train import train  # noqa: E402
from utils.checkpoint import resolve_checkpoint  # noqa: E402
from utils.device import get_device  # noqa: E402



def dequantized_demo_config():
  """The demo on uniformly dequantized images, to separate the data's effect from the
  weighting's."""
  config = demo_config()
  config.data.uniform_dequantization = True
  return config


MODELS = {'vp_digits': demo_config, 'vp_digits, dequantized data': dequantized_demo_config,
          'vp_digits_likelihood': likelihood_config}
NUMBERS = ('bpd_uniform', 'bpd', 'score_bound', 'vlb')
FD_SETS = 10  # independent sets of samples (seeds seed, seed + 1, ...): one set's digit FD
              # varies by +-1 between seeds (measured 1.4 to 4.6 for the demo), so compare means


def measure(name, make_config, run_dir, device, num_images, num_samples):
  """The config's row: trains (timed) unless the run is finished, then each number."""
  config = make_config()
  config.eval.bpd_num_images = config.eval.vlb_num_images = num_images
  config.eval.dequantization = 'variational'
  partial = os.path.join(run_dir, 'likelihood_training.json')
  settings = {'images': num_images, 'samples': num_samples, 'steps': config.training.n_iters}
  row, save = partial_row(partial, settings)
  if 'train_seconds' not in row:
    start = time.time()
    train(config, run_dir, progress=False)
    row['train_seconds'], row['steps'] = time.time() - start, config.training.n_iters
    save()
  print(f"{name}: trained {row['steps']} steps in {row['train_seconds']:.0f} s", flush=True)
  model, _, _ = restore_for_inference(config, run_dir, '', device)
  checkpoint, sde = resolve_checkpoint(run_dir, ''), get_sde(config)
  if not all(key in row for key in NUMBERS):
    numbers = likelihood_report(Run(config, run_dir, model, sde, checkpoint, None, device))[0]
    row.update(numbers)
    save()
  row.setdefault('fd_sets', [row.pop('fd')] if 'fd' in row else [])
  draw = data_sampler(config, sde, model, device, checkpoint=checkpoint)
  while len(row['fd_sets']) < FD_SETS:
    seed = config.seed + len(row['fd_sets'])
    samples, _ = draw_samples(draw, num_samples, config.sampling.batch_size, seed, device,
                              progress=False)
    row['fd_sets'].append(fid(config, to_storage(samples), device,
                              get_feature_space(config, device)))
    save()
  return row


def mean_and_error(values):
  """(mean, standard error of the mean) of a list of numbers."""
  values = np.asarray(values, dtype=float)
  return values.mean(), values.std(ddof=1) / np.sqrt(len(values))


def table(rows):
  cell = lambda r: f"{r['mean']:.3f} +- {r['stderr']:.3f}"
  lines = ['| config | training | ODE, uniform | ODE, variational | -log p(y), variational | '
           'score-matching bound | VLB | digit FD | FD minus the demo\'s, paired | '
           'FD of 300 (floor) |', '|---|---|---|---|---|---|---|---|---|---|']
  demo = [f['fid'] for f in next(iter(rows.values()))['fd_sets']]
  for name, r in rows.items():
    fds = [f['fid'] for f in r['fd_sets']]
    fd, paired = mean_and_error(fds), mean_and_error(np.subtract(fds, demo))
    at_floor = mean_and_error([f['fid_at_floor_size'] for f in r['fd_sets']])
    lines.append(
        f"| {name} | {r['steps']} steps, {r['train_seconds'] / 60:.1f} min | "
        f"{cell(r['bpd_uniform'])} | {cell(r['bpd'])} | {cell(r['bpd']['density'])} | "
        f"{cell(r['score_bound'])} | {cell(r['vlb'])} | {fd[0]:.2f} +- {fd[1]:.2f} | "
        f"{paired[0]:+.2f} +- {paired[1]:.2f} | "
        f"{at_floor[0]:.2f} +- {at_floor[1]:.2f} ({r['fd_sets'][0]['train_test_floor']:.2f}) |")
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'bench_likelihood_training'))
  parser.add_argument('--num_images', type=int, default=0, help='test images (0: all)')
  parser.add_argument('--num_samples', type=int, default=1000)
  args = parser.parse_args()
  device = get_device('auto')
  rows = {name: measure(name, make_config, os.path.join(args.workdir, name.replace(', ', '_')
                                                       .replace(' ', '_')), device,
                        args.num_images, args.num_samples)
          for name, make_config in MODELS.items()}
  text = table(rows)
  print(text)
  report = {'device': str(device), 'threads': torch.get_num_threads(), 'torch': torch.__version__,
            'args': vars(args), 'rows': rows}
  md = (f"# Maximum-likelihood training on digits\n\n`benchmarks/likelihood_training.py "
        f"--num_images {args.num_images} --num_samples {args.num_samples}` on {device} "
        f"({torch.get_num_threads()} threads). Test bits/dim (+- one standard error), ODE at "
        f"eps = 1e-5 with one dequantization draw and a Rademacher probe; digit Frechet distance "
        f"of {args.num_samples} samples of each config's sampler, mean +- standard error over "
        f"{FD_SETS} sets of samples (seeds), and the mean difference to the demo's set of the "
        f"same seed (the same x_T: paired, which removes the noise the two share):\n\n"
        f"{text}\n")
  write_results('likelihood_training', report, md)


if __name__ == '__main__':
  main()
