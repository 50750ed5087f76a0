"""Which reverse variance of the DDPM chain gives the tightest bound and the best samples on
digits: beta, beta-tilde (Ho et al. 2020), learned (Nichol & Dhariwal 2021) or analytic (Bao
et al. 2022), on the whole chain and respaced to fewer steps.

Trains (or reuses) the digits demo model (configs/vp_digits.py, continuous-time DSM) and its
learned-variance variant with the same budget (configs/vp_digits_learned.py, L_hybrid on the
chain), then for each: the DDPM bound on the test split with every variance the model has, on
the chain of N = 1000 steps and respaced to K = 100, 50, 20 (eval.vlb_steps); the
probability-flow ODE's bits/dim on the same images; and the digit Frechet distance (the
framework's digit classifier's features, evaluation/feature_metrics.py) of ancestral samples with each
variance at K = 50 and 20, beside the train-vs-test floor. Prints the tables and writes
benchmarks/results/reverse_variance.{json,md}.

  .venv/bin/python benchmarks/reverse_variance.py [--steps 3000] [--num_images 0]
      [--num_samples 1000] [--workdir runs/bench_reverse_variance]

A finished run in the workdir is reused (training resumes or is a no-op).
"""
import argparse
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.results_io import partial_row, write_results  # noqa: E402
from configs.vp_digits import get_config as demo_config  # noqa: E402
from configs.vp_digits_learned import get_config as learned_config  # noqa: E402
from pipeline.bpd import split_bpd, split_vlb  # noqa: E402
from evaluation.feature_metrics import fid, get_feature_space  # noqa: E402
from evaluation.shards import to_storage  # noqa: E402
from models import get_score_fn, parameterization_of, restore_for_inference  # noqa: E402
from pipeline.sampling import data_sampler, draw_samples, variance_inputs  # noqa: E402
from sde_lib import get_sde  # noqa: E402
from pipeline.train import train  # noqa: E402
from utils.checkpoint import resolve_checkpoint  # noqa: E402
from utils.device import get_device  # noqa: E402

MODELS = {'demo (continuous DSM)': ('demo', demo_config),
          'learned variance (L_hybrid)': ('learned', learned_config)}
BOUND_STEPS = (1000, 100, 50, 20)
SAMPLE_STEPS = (50, 20)


def variances(config):
  return ('beta', 'beta_tilde', 'analytic') + (('learned',) if config.model.learn_variance else ())


def trained(make_config, steps, run_dir, num_images):
  config = make_config()
  config.training.n_iters = steps
  config.eval.vlb_num_images = config.eval.bpd_num_images = num_images
  train(config, run_dir, progress=False)
  return config


def measure(config, run_dir, device, num_samples):
  """The model's row; each number is kept in <run_dir>/reverse_variance.json as it is
  measured, so a rerun with the same settings continues where a stopped one left off."""
  model, step, _ = restore_for_inference(config, run_dir, '', device)
  checkpoint = resolve_checkpoint(run_dir, '')
  sde = get_sde(config)
  partial = os.path.join(run_dir, 'reverse_variance.json')
  settings = {'step': step, 'images': config.eval.vlb_num_images, 'samples': num_samples}
  row, save = partial_row(partial, settings, {'step': step, 'vlb': {}, 'fd': {}})
  for variance in variances(config):
    if all(f'{variance}/{k}' in row['vlb'] for k in BOUND_STEPS):
      continue
    inputs = variance_inputs(config, sde, model, device, variance, checkpoint)
    for steps in BOUND_STEPS:
      config.eval.vlb_variance, config.eval.vlb_steps = variance, steps
      start = time.time()
      stats, _, _ = split_vlb(config, model, sde, device=device, seed=0, inputs=inputs,
                              progress=False)
      row['vlb'][f'{variance}/{steps}'] = {**stats, 'seconds': time.time() - start}
      save()
      print(f"  VLB {variance} K={steps}: {stats['mean']:.3f}", flush=True)
  if 'ode' not in row:
    score_fn = get_score_fn(sde, model, config.training.continuous, parameterization_of(config))
    row['ode'], _ = split_bpd(config, score_fn, sde, device=device, seed=0, progress=False)
    save()
  space = get_feature_space(config, device)
  for variance in variances(config):
    for steps in SAMPLE_STEPS:
      if f'{variance}/{steps}' in row['fd']:
        continue
      sampling = config.sampling.copy_and_resolve_references()
      sampling.method, sampling.steps, sampling.variance = 'ancestral', steps, variance
      draw = data_sampler(config, sde, model, device, sampling, checkpoint)
      samples, _ = draw_samples(draw, num_samples, config.eval.batch_size, config.seed, device,
                                progress=False)
      result = fid(config, to_storage(samples), device, space)
      row['fd'][f'{variance}/{steps}'] = result
      save()
      print(f"  FD {variance} K={steps}: {result['fid']:.3f}", flush=True)
  return row


def tables(rows):
  cell = lambda r: f"{r['mean']:.3f} +- {r['stderr']:.3f}"
  head = ['| model | variance | ' + ' | '.join(f'K = {k}' for k in BOUND_STEPS) + ' | ODE |',
          '|---|---|' + '---|' * (len(BOUND_STEPS) + 1)]
  bound = list(head)
  for name, row in rows.items():
    for variance in dict.fromkeys(key.split('/')[0] for key in row['vlb']):
      cells = ' | '.join(cell(row['vlb'][f'{variance}/{k}']) for k in BOUND_STEPS)
      bound.append(f"| {name} | {variance} | {cells} | {cell(row['ode'])} |")
  fd = ['| model | variance | ' + ' | '.join(f'K = {k}' for k in SAMPLE_STEPS) + ' | floor |',
        '|---|---|' + '---|' * (len(SAMPLE_STEPS) + 1)]
  for name, row in rows.items():
    for variance in dict.fromkeys(key.split('/')[0] for key in row['fd']):
      results = [row['fd'][f'{variance}/{k}'] for k in SAMPLE_STEPS]
      cells = ' | '.join(f"{r.get('fid_at_floor_size', r['fid']):.2f}" for r in results)
      fd.append(f"| {name} | {variance} | {cells} | {results[0]['train_test_floor']:.2f} |")
  return '\n'.join(bound), '\n'.join(fd)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=3000)
  parser.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'bench_reverse_variance'))
  parser.add_argument('--num_images', type=int, default=0, help='test images (0: all)')
  parser.add_argument('--num_samples', type=int, default=1000)
  args = parser.parse_args()
  device = get_device('auto')
  rows = {}
  for name, (folder, make_config) in MODELS.items():
    print(name, flush=True)
    run_dir = os.path.join(args.workdir, folder)
    config = trained(make_config, args.steps, run_dir, args.num_images)
    rows[name] = measure(config, run_dir, device, args.num_samples)
  bound, fd = tables(rows)
  print(bound + '\n\n' + fd)
  report = {'device': str(device), 'torch': torch.__version__, 'args': vars(args), 'rows': rows}
  md = (f"# Reverse variances on digits\n\n`benchmarks/reverse_variance.py --steps {args.steps} "
        f"--num_images {args.num_images} --num_samples {args.num_samples}` on {device}.\n\n"
        f"Test bits/dim by the DDPM bound on the chain respaced to K steps (K = 1000: the whole "
        f"chain), beside the probability-flow ODE (one uniform dequantization draw):\n\n{bound}\n\n"
        f"Digit Frechet distance of {args.num_samples} ancestral samples at K steps (the first "
        f"test-split-size ones, like the floor: train vs test):\n\n{fd}\n")
  write_results('reverse_variance', report, md)


if __name__ == '__main__':
  main()
