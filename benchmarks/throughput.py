"""Throughput on the current device: training steps and samples per second of the networks, and
each sampler's overhead, the time a sampler spends besides the network evaluations it makes.

overhead = (seconds per evaluation of a sampling run whose score costs nothing) / (seconds of
one score evaluation of the network), at the same batch; 0 is the limit. The free score is
N(0, I)'s, -x (one negation): the sampler does all its own work on it, so this is its time
per step minus the network's, measured directly; subtracting the network's time from a real
run's instead leaves the noise of two large numbers (+-15% here on the CPU). Times are medians
of torch.utils.benchmark's blocked_autorange. A score evaluation is the network call with the
conversion of its output to a score (models.score_fn). Sizes: the digits demo's U-Net
(vp_digits, 8x8), Ho et al.'s CIFAR-10 U-Net (ddpm_cifar10, 32x32) and Song et al.'s DDPM++
(vp_cifar10, 32x32).
Training steps per second come from benchmarks/train_step_time.py's timing of Trainer.update;
samples per second are those of a DPM-Solver run with the network at the set number of
evaluations. Prints the tables and writes benchmarks/results/throughput_<device>.{json,md}
(--quick, networks of nf 8, batch 2 and 5 evaluations in about 20 s: benchmarks/results/quick/).

  .venv/bin/python benchmarks/throughput.py [--quick] [--device auto] [--steps 20] [--out DIR]
"""
import argparse
import importlib
import os
import sys

import torch
from torch.utils import benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.results_io import results_dir, write_results  # noqa: E402
from benchmarks.train_step_time import seconds_per_step  # noqa: E402
from data import data_shape  # noqa: E402
from models import get_model, get_score_fn, parameterization_of  # noqa: E402
from samplers.ems import compute_ems  # noqa: E402
from samplers.registry import METHODS, get_sampler  # noqa: E402
from sde_lib import get_sde  # noqa: E402
from utils.device import get_device  # noqa: E402

# The samplers compared: each training-free method as configured ('pc' with and without a
# corrector); 'consistency' samples a consistency model, which these networks are not.
SAMPLERS = ([('pc', {'corrector': 'langevin'}), ('pc', {'corrector': 'none'})]
            + [(m, {}) for m in METHODS if m not in ('pc', 'consistency')])
# size name -> (config, sampling batch, training batch on CUDA, on the CPU)
SIZES = {'digits': ('vp_digits', 64, 128, 128), 'cifar10 ddpm': ('ddpm_cifar10', 8, 128, 4),
         'cifar10 ddpm++': ('vp_cifar10', 8, 128, 4)}


def load_config(name, device):
  config = importlib.import_module(f'configs.{name}').get_config()
  config.device = str(device)
  return config


def median_seconds(fn, min_run_time):
  return benchmark.Timer(stmt='fn()', globals={'fn': fn}).blocked_autorange(
      min_run_time=min_run_time).median


def free_score(x, t):
  """The score of N(0, I): a sampler's own work costs the same on it, the network's nothing."""
  return -x


def sampler_overheads(config, batch, steps, device, min_run_time, ems_points=64):
  """(seconds of one score evaluation, one row per sampler: evaluations and seconds of a run
  with the free score, its overhead per evaluation)."""
  sde, model = get_sde(config), get_model(config).to(device).eval()
  score_fn = get_score_fn(sde, model, config.training.continuous, parameterization_of(config))
  shape = (batch,) + data_shape(config)
  x, t = torch.randn(shape, device=device), torch.full((batch,), 0.5, device=device)
  rows = []
  with torch.no_grad():
    per_call = median_seconds(lambda: score_fn(x, t), min_run_time)
    for method, overrides in SAMPLERS:
      sampling = config.sampling.copy_and_resolve_references()
      sampling.update(method=method, steps=steps, **overrides)
      ems = None
      if method == 'dpm_solver_v3':   # statistics of the free score: their values cost nothing
        ems = compute_ems(free_score, sde, torch.randn((ems_points,) + shape[1:], device=device),
                          sampling.eps, sampling.ems_grid, progress=False)
      sampler = get_sampler(sampling, sde, shape, device=device,
                            continuous=config.training.continuous, ems=ems)
      run = lambda: sampler(free_score, generator=torch.Generator(device).manual_seed(0),
                            progress=False)
      nfe = run()[1]
      seconds = median_seconds(run, min_run_time)
      name = method + ''.join(f', {k}={v}' for k, v in overrides.items())
      rows.append({'sampler': name, 'nfe_free_score': nfe, 'seconds_free_score': seconds,
                   'overhead': seconds / nfe / per_call})
      print(f"  {name}: {seconds / nfe * 1e3:.3g} ms per evaluation besides the network's "
            f"{per_call * 1e3:.3g} ms: overhead {rows[-1]['overhead']:.4f}", flush=True)
    samples = dpm_solver_seconds(config, sde, score_fn, shape, steps, device, min_run_time)
  return per_call, rows, samples


def dpm_solver_seconds(config, sde, score_fn, shape, steps, device, min_run_time):
  """Seconds of a DPM-Solver run of `steps` evaluations with the network."""
  sampling = config.sampling.copy_and_resolve_references()
  sampling.update(method='dpm_solver', steps=steps)
  sampler = get_sampler(sampling, sde, shape, device=device, continuous=config.training.continuous)
  return median_seconds(lambda: sampler(score_fn, generator=torch.Generator(device).manual_seed(0),
                                        progress=False), min_run_time)


def size_row(size, device, steps, quick, min_run_time):
  """One network's numbers: training steps/s, samples/s, one score evaluation, the overheads."""
  name, sample_batch, cuda_batch, cpu_batch = SIZES[size]
  config = load_config(name, device)
  # --quick: the pipeline and the table's shape in seconds, with batch 2, a network of nf 8
  # and a small EMS (numbers that mean little)
  model = dict(nf=8) if quick else {}
  config.model.update(model)
  if quick:
    sample_batch = cuda_batch = cpu_batch = 2
    config.sampling.ems_grid = 50
  train_batch = cuda_batch if device.type == 'cuda' else cpu_batch
  training = seconds_per_step(name, train_batch, 1 if quick else 3, str(device), model=model)
  per_call, rows, sampling_seconds = sampler_overheads(config, sample_batch, steps, device,
                                                       min_run_time, 4 if quick else 64)
  return {'config': name, 'network': config.model.name, 'parameters': training['parameters'],
          'training_batch': train_batch, 'training_steps_per_second': training['steps_per_second'],
          'sampling_batch': sample_batch, 'network_seconds': per_call,
          'samples_per_second': sample_batch / sampling_seconds, 'samplers': rows}


def markdown(report, command):
  """The results page's two tables (networks; overhead per sampler and network), then each
  network's per-sampler details."""
  sizes = report['sizes']
  lines = [f"# Throughput and sampler overhead ({report['device']})", '',
           f"`{command}` on {report['device']} ({report['threads']} "
           f"thread{'s' * (report['threads'] != 1)}), torch "
           f"{report['torch']}, {report['steps']} evaluations per sampler.", '',
           '| network | parameters | training steps/s (batch) | samples/s, DPM-Solver (batch) | '
           'ms per score evaluation |', '|---|---|---|---|---|']
  lines += [f"| {size} ({r['config']}, {r['network']}) | {r['parameters'] / 1e6:.2f}M | "
            f"{r['training_steps_per_second']:.3g} ({r['training_batch']}) | "
            f"{r['samples_per_second']:.3g} ({r['sampling_batch']}) | "
            f"{1e3 * r['network_seconds']:.3g} |" for size, r in sizes.items()]
  lines += ['', '| sampler | ' + ' | '.join(f'overhead, {size}' for size in sizes) + ' |',
            '|---|' + '---|' * len(sizes)]
  names = [r['sampler'] for r in next(iter(sizes.values()))['samplers']]
  for i, name in enumerate(names):
    lines.append(f'| {name} | ' + ' | '.join(f"{r['samplers'][i]['overhead']:.4f}"
                                               for r in sizes.values()) + ' |')
  for size, r in sizes.items():
    lines += ['', f"## {size}: {r['config']} ({r['network']}, {r['parameters']:,} parameters)", '',
              '| sampler | evaluations (free score) | ms per evaluation besides the network | '
              'overhead (fraction of network time) |', '|---|---|---|---|']
    lines += [f"| {s['sampler']} | {s['nfe_free_score']:g} | "
              f"{1e3 * s['seconds_free_score'] / s['nfe_free_score']:.3g} | {s['overhead']:.4f} |"
              for s in r['samplers']]
  return '\n'.join(lines) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true',
                      help='networks of nf 8, batch 2, 5 evaluations, short timings (about '
                           '20 s; numbers that mean little)')
  parser.add_argument('--device', default='auto')
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--out', help='results directory (benchmarks/results; --quick: .../quick)')
  args = parser.parse_args()
  device = get_device(args.device)
  steps = 5 if args.quick else args.steps
  min_run_time = 0.01 if args.quick else 1.0
  report = {'device': str(device), 'torch': torch.__version__, 'threads': torch.get_num_threads(),
            'steps': steps, 'sizes': {}}
  for size in SIZES:
    print(f"{size}:", flush=True)
    report['sizes'][size] = size_row(size, device, steps, args.quick, min_run_time)
  command = ('.venv/bin/python benchmarks/throughput.py' + ' --quick' * args.quick
             + f' --device {args.device}' * (args.device != 'auto'))
  text = markdown(report, command)
  print(text)
  out = write_results(f'throughput_{device.type}', report, text,
                      args.out or results_dir(args.quick))
  print(f"wrote {out}.json and .md")


if __name__ == '__main__':
  main()
