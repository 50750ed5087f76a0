"""Every sampler on the trained digits model: `vp_digits` trained once for its fixed budget
(benchmarks/digits_model.py), then each sampler at 10, 20, 50, 100 and 1000 score
evaluations, judged by the digit Frechet distance against the train-vs-test floor and by the
digit classifier's confidence, beside the model's test bits/dim (probability-flow ODE, DDPM
bound).

Samplers: the fast ones (samplers/registry.py FAST_SAMPLERS, each at its registry defaults,
`sampling.steps` = the budget) and the paper's: ancestral (Ho et al. 2020), Euler-Maruyama
without a corrector and with a Langevin corrector (Song et al. 2021, PC, snr 0.16; a
corrector step costs an evaluation too, so steps = budget / 2), the probability-flow ODE by
Euler steps (steps = budget - 1: the last evaluation is Tweedie's denoising) and by adaptive
dopri5 at rtol = atol = 1e-3, whose nfe is whatever that needs (its cell: the smallest budget
that holds it, the nfe in brackets). Every set of samples is drawn with the config's seed, so
every sampler starts from the same x_T, and the deterministic ones converge to one set of
images.

Which cells run: a score evaluation of the digits U-Net on 300 images takes ~0.2 s on one CPU
thread (~0.12 s on two when nothing else runs), so ancestral sampling at 1000 evaluations
alone takes 4 minutes. To fit 15 minutes with training (~5), 1000 evaluations run for
ancestral sampling only (Ho et al.'s 1000 steps), 100 for it and Euler-Maruyama (still
improving there), 50 for the other stochastic one and the ODE by Euler steps, and the fast
samplers run at 10 and 20 (at 50 every one of them sat at the ODE's limit, which the dopri5
row gives, within 0.1); other cells are '-' (--every_budget runs them all, far beyond 15
minutes). DPM-Solver-v3's statistics (EMS) come from 32 training points on 50 lambda
intervals, which hold 20 of its steps (the registry's defaults take hours).

Metrics per cell: the digit Frechet distance (evaluation/feature_metrics.py, the digits classifier's
feature space) of the first test-split-size samples (300) against the train split, beside the
floor, the test split's distance at that size; the digit classifier's mean max-softmax
probability (its confidence) on the samples, and on the test images as the reference. Per
model: test bits/dim by the probability-flow ODE (uniform dequantization) and by the DDPM
bound ('beta' variance, the whole chain) on --num_images test images, +- one standard error.
A PNG per sampler: one row per budget, the same first samples (the same x_T) in each.

  .venv/bin/python benchmarks/digits.py [--quick] [--out DIR]
      [--num_samples 300] [--num_images 64] [--every_budget] [--threads 0]

--quick: the tiny stand-in model, 16 samples, 4 images (a respaced VLB, a loose ODE), a small
EMS: the tables' shape only.
Each number is kept in <workdir>/digits_benchmark.json as it is measured (keyed by the
checkpoint's hash and the settings), so a stopped run continues where it left off.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from torchvision.utils import save_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.digits_model import QUICK_WORKDIR, WORKDIR, trained_digits  # noqa: E402
from benchmarks.results_io import partial_row, results_dir, write_results  # noqa: E402
from data import get_eval_dataset  # noqa: E402
from evaluation.digits_classifier import load_or_train_digits_classifier  # noqa: E402
from pipeline.api import Run, likelihood_report  # noqa: E402
from evaluation.feature_metrics import fid, get_feature_space  # noqa: E402
from evaluation.shards import from_storage, to_storage  # noqa: E402
from pipeline.sampling import checkpoint_sha256, data_sampler, draw_samples  # noqa: E402
from samplers.registry import FAST_SAMPLERS, resolved_sampling  # noqa: E402
from utils.atomic import atomic_write  # noqa: E402
from utils.checkpoint import resolve_checkpoint  # noqa: E402
from utils.device import get_device  # noqa: E402
from utils.errors import ConfigError  # noqa: E402
from utils.pictures import rows_picture  # noqa: E402

BUDGETS = (10, 20, 50, 100, 1000)    # the table's columns; which run: the docstring
# DPM-Solver-v3's statistics, cached beside the checkpoint (the defaults take hours): a grid
# of 50 lambda intervals holds 20 quadratic steps on distinct points (50 steps need 94).
EMS = dict(ems_samples=32, ems_grid=50)
QUICK_EMS = dict(ems_samples=4, ems_grid=50)
# --quick's bits/dim: the DDPM bound on the chain respaced to 100 steps, the ODE at loose
# tolerances (the stand-in's numbers mean nothing; the run should take seconds).
QUICK_LIKELIHOOD = dict(vlb_steps=100, bpd_rtol=1e-3, bpd_atol=1e-3)
PICTURE_COLUMNS = 12


def fast_label(name):
  """'ddim (quadratic)': the method and the registry defaults it runs at."""
  defaults = FAST_SAMPLERS[name].defaults
  parts = [defaults.get('variant'), defaults.get('order') and f"order {defaults['order']}",
           defaults.get('time_schedule')]
  return f"{name} ({', '.join(p for p in parts if p)})"


# key: (row name, config.sampling overrides, sampling.steps that spend `budget` evaluations,
#       the budgets it runs at: see "Which cells run" above)
SAMPLERS = {
    'ancestral': ('ancestral (Ho et al. 2020)', dict(method='ancestral'), lambda b: b, BUDGETS),
    'euler_maruyama': ('Euler-Maruyama, no corrector',
                       dict(method='pc', predictor='euler_maruyama', corrector='none'),
                       lambda b: b, BUDGETS[:4]),
    'langevin': ('Euler-Maruyama + Langevin corrector',
                 dict(method='pc', predictor='euler_maruyama', corrector='langevin'),
                 lambda b: b // 2, BUDGETS[:3]),
    'ode_euler': ('probability-flow ODE, Euler', dict(method='ode', ode_method='euler'),
                  lambda b: b - 1, BUDGETS[:3]),
    **{name: (fast_label(name), dict(method=name), lambda b: b, BUDGETS[:2])
       for name in FAST_SAMPLERS},
}
# The adaptive ODE: its tolerances, not a budget, set its nfe; it runs once.
ADAPTIVE = ('ode_dopri5', 'probability-flow ODE, dopri5 (rtol = atol = 1e-3; nfe)',
            dict(method='ode', ode_method='dopri5', rtol=1e-3, atol=1e-3))
FLOOR_ROW, REAL_ROW = 'train vs test split (floor)', 'test split images'


def sampling_config(config, overrides, steps, quick):
  """config.sampling with `overrides` and `steps` (None: the config's)."""
  sampling = config.sampling.copy_and_resolve_references()
  sampling.update(overrides)
  if sampling.method == 'dpm_solver_v3':
    sampling.update(QUICK_EMS if quick else EMS)
  if steps is not None:
    sampling.steps = steps
  return sampling


class Judge:
  """evaluation.feature_metrics.fid's digit Frechet distance of samples' first test-split-size features to
  the train split (all of them when fewer), beside its floor, the test split's distance (without
  fid's KID, precision / recall and IS, which cost seconds a call); and the digit classifier's
  mean max-softmax probability on the samples."""

  def __init__(self, config, device):
    self.config, self.device = config, device
    self.space = get_feature_space(config, device)
    self.classifier = load_or_train_digits_classifier(config.data.root, device)[0]

  def confidence(self, stored):
    with torch.no_grad():
      probs = self.classifier(from_storage(stored).to(self.device)).softmax(1)
    return probs.max(1).values.mean().item()

  def __call__(self, samples):
    """Data-space samples -> their numbers, judged in stored form (as FID sees them)."""
    stored = to_storage(samples)
    result = fid(self.config, stored, self.device, self.space, sample_metrics=False)
    return {'fd': result.get('fid_at_floor_size', result['fid']),
            'fd_size': result.get('floor_size', len(stored)), 'floor': result['train_test_floor'],
            'fd_all': result['fid'], 'confidence': self.confidence(stored),
            'picture': stored[:PICTURE_COLUMNS].tolist()}


def run_cell(config, model, sde, device, checkpoint, sampling, num_samples, judge):
  """Draws num_samples with `sampling` (one batch: the config's seed fixes x_T) and judges them."""
  start = time.perf_counter()
  draw = data_sampler(config, sde, model, device, sampling, checkpoint=checkpoint)
  samples, nfe = draw_samples(draw, num_samples, max(num_samples, 1), config.seed, device,
                              progress=False)
  sampled = time.perf_counter() - start
  return {'nfe': nfe, 'sample_seconds': sampled, 'sampling': resolved_sampling(sampling),
          **judge(samples),
          'seconds': time.perf_counter() - start}


def cells_to_run(every_budget):
  """[(key, budget or None for the adaptive ODE)] in table order."""
  cells = [(key, b) for key, (_, _, _, budgets) in SAMPLERS.items()
           for b in (BUDGETS if every_budget else budgets)]
  return cells + [(ADAPTIVE[0], None)]


def measure_cells(row, save, config, model, sde, device, checkpoint, args):
  """Measures (or keeps from a stopped run) each cell to run; returns {name: cell} of them."""
  judge = Judge(config, device)
  cells, measured = row.setdefault('cells', {}), {}
  for key, budget in cells_to_run(args.every_budget):
    if budget is None:
      sampling = sampling_config(config, ADAPTIVE[2], None, args.quick)
    else:
      sampling = sampling_config(config, SAMPLERS[key][1], SAMPLERS[key][2](budget), args.quick)
    name = f'{key}@{budget or "adaptive"}'
    if name not in cells or cells[name]['sampling'] != resolved_sampling(sampling):
      try:
        cells[name] = run_cell(config, model, sde, device, checkpoint, sampling,
                               args.num_samples, judge)
      except ConfigError as error:   # --every_budget: DPM-Solver-v3 beyond its EMS grid
        if not args.every_budget:
          raise
        print(f"{name}: skipped, {error}", flush=True)
        continue
      if budget is not None and cells[name]['nfe'] > budget:
        raise RuntimeError(f"{name} spent {cells[name]['nfe']} evaluations")
      save()
    c = measured[name] = cells[name]
    print(f"{name}: FD {c['fd']:.2f} (floor {c['floor']:.2f}), confidence "
          f"{c['confidence']:.3f}, nfe {c['nfe']:g}, {c['seconds']:.0f} s", flush=True)
  if 'real_confidence' not in row:
    test = torch.stack([x for x, _ in get_eval_dataset(config, 'test')])
    row['real_confidence'] = judge.confidence(to_storage(test))
    save()
  return measured


def measure_likelihood(row, save, config, model, sde, score_fn, device, checkpoint, args):
  """Test bits/dim by the probability-flow ODE and the DDPM bound on args.num_images images."""
  if 'likelihood' in row:
    return
  config = config.copy_and_resolve_references()
  e = config.eval
  e.bpd_num_images = e.vlb_num_images = args.num_images
  e.enable_bpd = e.enable_vlb = True
  e.enable_score_bound, e.dequantization = False, 'uniform'
  if args.quick:
    e.update(QUICK_LIKELIHOOD)
  start = time.perf_counter()
  workdir = os.path.dirname(os.path.dirname(checkpoint))   # <workdir>/checkpoints/ckpt_<step>.pt
  numbers, _, notes = likelihood_report(Run(config, workdir, model, sde, checkpoint, None, device))
  row['likelihood'] = {'bpd': numbers['bpd'], 'vlb': numbers['vlb'], 'notes': notes,
                       'seconds': time.perf_counter() - start}
  save()


def logged_train_seconds(workdir):
  """The training time of a reused run, from its last metrics.jsonl line (None if absent)."""
  try:
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      return json.loads(f.readlines()[-1]).get('seconds')
  except (OSError, IndexError, ValueError):
    return None


def adaptive_budget(nfe):
  """The column of the adaptive ODE: the smallest budget that holds its nfe (else the last)."""
  return next((b for b in BUDGETS if nfe <= b), BUDGETS[-1])


def grid(cells, value, fmt):
  """{row name: {budget: text}} of `value(cell)` for every sampler, '-' where none ran."""
  table = {}
  for key, (name, *_) in SAMPLERS.items():
    table[name] = {b: (fmt(value(cells[f'{key}@{b}'])) if f'{key}@{b}' in cells else '-')
                   for b in BUDGETS}
  adaptive = cells[f'{ADAPTIVE[0]}@adaptive']
  table[ADAPTIVE[1]] = {b: '-' for b in BUDGETS}
  table[ADAPTIVE[1]][adaptive_budget(adaptive['nfe'])] = (f"{fmt(value(adaptive))} "
                                                          f"({adaptive['nfe']:.0f})")
  return table


def markdown_table(first, table):
  lines = [f"| {first} | " + ' | '.join(f'{b} evaluations' for b in BUDGETS) + ' |',
           '|---' * (len(BUDGETS) + 1) + '|']
  lines += [f"| {name} | " + ' | '.join(cells[b] for b in BUDGETS) + ' |'
            for name, cells in table.items()]
  return '\n'.join(lines)


def tables(row, cells):
  """The first section's three tables: FD, classifier confidence, bits/dim."""
  floor = next(iter(cells.values()))['floor']
  fd = {FLOOR_ROW: {b: f'{floor:.2f}' for b in BUDGETS},
        **grid(cells, lambda c: c['fd'], lambda v: f'{v:.2f}')}
  real = row['real_confidence']
  confidence = {REAL_ROW: {b: f'{real:.3f}' for b in BUDGETS},
                **grid(cells, lambda c: c['confidence'], lambda v: f'{v:.3f}')}
  lik = row['likelihood']
  cell = lambda r: f"{r['mean']:.3f} +- {r['stderr']:.3f}"
  bpd = ['| estimator | test bits/dim | images | score evaluations per image |',
         '|---|---|---|---|',
         f"| probability-flow ODE, uniform dequantization | {cell(lik['bpd'])} | "
         f"{lik['bpd']['num_images']} | {lik['bpd']['nfe']:.0f}, each with a vector-Jacobian "
         f"product |",
         f"| DDPM bound (VLB), 'beta' variance | {cell(lik['vlb'])} | {lik['vlb']['num_images']} "
         f"| {lik['vlb']['steps']} |"]
  return (markdown_table('sampler', fd), markdown_table('sampler', confidence), '\n'.join(bpd))


def details(cells):
  """Per cell: nfe, FD of all the samples, wall seconds."""
  size = next(iter(cells.values()))['fd_size']
  lines = [f'| sampler | budget | nfe | digit FD, first {size} | digit FD, all | confidence | '
           'seconds |', '|---|---|---|---|---|---|---|']
  for name, c in cells.items():
    key, budget = name.split('@')
    lines.append(f"| {key} | {budget} | {c['nfe']:g} | {c['fd']:.2f} | {c['fd_all']:.2f} | "
                 f"{c['confidence']:.3f} | {c['seconds']:.1f} |")
  return '\n'.join(lines)


def save_pictures(cells, out_dir):
  """digits_<sampler>.png: one row per budget it ran at, its first PICTURE_COLUMNS samples."""
  paths = []
  for key in list(SAMPLERS) + [ADAPTIVE[0]]:
    runs = [c for name, c in cells.items() if name.split('@')[0] == key]
    images = [from_storage(np.asarray(c['picture'], dtype=np.uint8)) for c in runs]
    picture = rows_picture([list(x) for x in images])
    path = os.path.join(out_dir, f'digits_{key}.png')
    atomic_write(path, lambda f: save_image(picture, f, format='png'))
    paths.append(path)
  return paths


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true',
                      help='the tiny stand-in model, few samples: the tables\' shape only')
  parser.add_argument('--out', help='results directory (benchmarks/results; --quick: .../quick)')
  parser.add_argument('--workdir', default=None, help='the trained model\'s run '
                      f'(default {WORKDIR}; --quick: {QUICK_WORKDIR})')
  parser.add_argument('--num_samples', type=int, default=None, help='per cell (300; quick 16)')
  parser.add_argument('--num_images', type=int, default=None,
                      help='test images for bits/dim (64; quick 4)')
  parser.add_argument('--every_budget', action='store_true',
                      help='every sampler at every budget (far beyond 15 minutes)')
  parser.add_argument('--threads', type=int, default=0,
                      help="torch's CPU threads after training (which digits_model runs with "
                           "torch's own); 0: torch's own choice (the 15 minutes assume it); 1 "
                           "on a machine others share, where oversubscribed threads run many "
                           "times slower")
  args = parser.parse_args()
  args.out = args.out or results_dir(args.quick)
  args.num_samples = args.num_samples or (16 if args.quick else 300)
  args.num_images = args.num_images or (4 if args.quick else 64)
  device = get_device('auto')
  start = time.perf_counter()
  config, model, sde, score_fn, train_seconds = trained_digits(device, args.workdir, args.quick)
  if args.threads:
    torch.set_num_threads(args.threads)
  workdir = args.workdir or (QUICK_WORKDIR if args.quick else WORKDIR)
  checkpoint = resolve_checkpoint(workdir, '')
  settings = {'checkpoint': checkpoint_sha256(checkpoint), 'samples': args.num_samples,
              'images': args.num_images, 'seed': config.seed}
  row, save = partial_row(os.path.join(workdir, 'digits_benchmark.json'), settings)
  if train_seconds is not None or 'train_seconds' not in row:
    row['train_seconds'] = train_seconds or logged_train_seconds(workdir)
    save()
  print(f"model: {workdir}, step {config.training.n_iters}"
        + (f", trained now in {train_seconds:.0f} s" if train_seconds else ', reused'), flush=True)
  measure_likelihood(row, save, config, model, sde, score_fn, device, checkpoint, args)
  lik = row['likelihood']
  print(f"bits/dim: ODE {lik['bpd']['mean']:.3f} +- {lik['bpd']['stderr']:.3f}, VLB "
        f"{lik['vlb']['mean']:.3f} +- {lik['vlb']['stderr']:.3f} ({lik['seconds']:.0f} s)",
        flush=True)
  cells = measure_cells(row, save, config, model, sde, device, checkpoint, args)
  pictures = save_pictures(cells, args.out)
  seconds = time.perf_counter() - start - (train_seconds or 0)
  measured = row['likelihood']['seconds'] + sum(c['seconds'] for c in cells.values())
  fd, confidence, bpd = tables(row, cells)
  command = ('benchmarks/digits.py' + ' --quick' * args.quick + f' --num_samples '
             f'{args.num_samples} --num_images {args.num_images}'
             + ' --every_budget' * args.every_budget)
  logged = row['train_seconds']
  trained = (f"trained here in {train_seconds / 60:.1f} min" if train_seconds else
             f"reused; its training took {logged / 60:.1f} min" if logged else 'reused')
  size = next(iter(cells.values()))['fd_size']
  threads = torch.get_num_threads()
  md = (f"# Every sampler on the digits model\n\n"
        f"`{command}` on {device} ({threads} thread{'s' * (threads != 1)}): "
        f"{'the tiny stand-in model' if args.quick else 'vp_digits'}, "
        f"{config.training.n_iters} steps ({trained}); the measurements took "
        f"{measured / 60:.1f} min. "
        f"{args.num_samples} samples per cell, all from the same x_T.\n\n"
        f"Digit Frechet distance of {size} samples to the train split (the first, up to the "
        f"test split's size; the floor: the test split's distance; '-': not run; the adaptive "
        f"ODE in the column of the smallest budget that holds its nfe, given in brackets):"
        f"\n\n{fd}\n\n"
        f"The digit classifier's mean max-softmax probability (confidence) on the samples:\n\n"
        f"{confidence}\n\nTest bits/dim, +- one standard error:\n\n{bpd}\n\n"
        f"## Cells\n\nnfe: score evaluations made per sample; seconds: drawing and judging "
        f"(DPM-Solver-v3's first cell includes its EMS). Each cell is one set of samples: how "
        f"much its digit FD varies between seeds, benchmarks/results/likelihood_training.md "
        f"measures (the demo's sampler, 10 seeds).\n\n"
        f"{details(cells)}\n\nPictures: " + ', '.join(os.path.basename(p) for p in pictures)
        + ".\n")
  print(md)
  report = {'device': str(device), 'threads': torch.get_num_threads(), 'torch': torch.__version__,
            'args': vars(args), 'settings': settings, 'train_seconds': train_seconds,
            'seconds': seconds, 'measured_seconds': measured,
            'row': {k: v for k, v in row.items() if k != 'cells'},
            'cells': {k: {f: v for f, v in c.items() if f != 'picture'}
                      for k, c in cells.items()}}
  write_results('digits', report, md, args.out)


if __name__ == '__main__':
  main()
