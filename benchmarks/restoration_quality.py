"""Restoration with a diffusion prior: how close DPS, PiGDM, DDRM and DDNM(+) (restoration/)
come to the exact posterior, and what they make of blurred and downsampled digits; deepinv's
DPS and DDRM beside ours on the same priors.

1. Exact posteriors. The prior is tests/posterior_oracle.py's checker mixture on 1 x 4 x 4
   images (three modes differing by a checkerboard that pooling removes and a blur nearly
   does), its exact score under the VP-SDE; y = A x + sigma_y n of one prior draw, for a 3-tap
   Gaussian blur, x2 average pooling and a mask of the left half, at sigma_y = 0.05 and 0.2.
   The posterior is a Gaussian mixture in closed form. Per method: the error of the sample
   mean against the posterior mean, the sliced W2 to an exact posterior sample and the largest
   error of the mode weights, beside the floor (an exact sample of the same size).
2. Digits: the shared demo model (benchmarks/digits_model.py) as the prior, the first test
   digits degraded by x2 and x4 pooling and a 5-tap Gaussian blur (std 1) at sigma_y = 0.05
   (images in [0, 1]): PSNR and the digits classifier's agreement with the label, for each
   method, the pseudo-inverse A^+ y and the clean input.

deepinv (benchmark-only) takes a denoiser D(x, sigma) = E[x_0 | x_0 + sigma n]: ours is the same
score through Tweedie at the time t with s(t)/m(t) = sigma (ScoreDenoiser), and its DDRM takes
our operators' SVD as a DecomposablePhysics. Its DPS runs its own VP schedule (beta 0.1 to 20,
as ours) and DDPM solver with its default clip of x0_hat to [-1, 1].

  python benchmarks/restoration_quality.py [--quick] [--out DIR]
"""
import argparse
import math
import os
import platform
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, 'tests')]

from benchmarks.digits_model import (QUICK_WORKDIR, WORKDIR, digits_config,  # noqa: E402
                                     trained_digits)
from models import restore_for_inference  # noqa: E402
from pipeline.sampling import score_and_variance_fns  # noqa: E402
from sde_lib import get_sde  # noqa: E402
from benchmarks.results_io import results_dir, write_results  # noqa: E402
from data import get_data_inverse_scaler, get_data_scaler, get_eval_dataset  # noqa: E402
from evaluation.digits_classifier import load_or_train_digits_classifier  # noqa: E402
from sde_lib.gaussian_mixture import exact_score_fn  # noqa: E402
from posterior_oracle import checker_mixture, compare, dense_matrix, floor, posterior  # noqa: E402
from restoration import METHODS, get_operator, measure, restore  # noqa: E402
from sde_lib.vp import VPSDE  # noqa: E402
from utils.pictures import rows_picture  # noqa: E402

OURS = ('dps', 'pigdm', 'ddrm', 'ddnm')
DEEPINV = ('deepinv_dps', 'deepinv_ddrm')
MIXTURE_CASES = [(name, sigma) for name in ('blur', 'sr2', 'mask') for sigma in (0.05, 0.2)]
DIGIT_OPERATORS = ('sr2', 'sr4', 'blur')
SIGMA_Y = 0.05


class ScoreDenoiser(torch.nn.Module):
  """deepinv's denoiser D(x, sigma) = E[x_0 | x_0 + sigma n] from a score_fn on `sde`:
  x_t = m x at the time with s / m = sigma, then Tweedie."""

  def __init__(self, score_fn, sde):
    super().__init__()
    self.score_fn, self.sde = score_fn, sde

  def forward(self, x, sigma, **kwargs):
    sigma = torch.as_tensor(sigma, dtype=torch.float64).flatten()
    if float(sigma.max()) <= 0:
      return x
    t = self.sde.time_of_log_snr(-sigma.clamp(min=1e-6).log()).clamp(1e-3, self.sde.T)
    t = t.expand(x.shape[0]).to(device=x.device, dtype=x.dtype)
    m, _ = self.sde.marginal_coeffs(t)
    x_t = m.reshape(-1, 1, 1, 1) * x
    return self.sde.tweedie_x0(x_t, t, self.score_fn(x_t, t))


def deepinv_physics(operator, sigma_y):
  """Our operator A = U S V^T as deepinv's DecomposablePhysics, noise sigma_y."""
  import deepinv
  return deepinv.physics.DecomposablePhysics(
      U=operator.U, U_adjoint=operator.Ut, V=operator.V, V_adjoint=operator.Vt,
      mask=operator.singulars[None].float(), noise_model=deepinv.physics.GaussianNoise(sigma_y))


def deepinv_restore(name, score_fn, sde, operator, y, sigma_y, shape, steps, seed):
  """deepinv's DPS (its VP schedule, `steps` DDPM steps) or DDRM (on our VE sigmas s/m of the
  same uniform grid) with ScoreDenoiser."""
  import deepinv
  denoiser = ScoreDenoiser(score_fn, sde)
  physics = deepinv_physics(operator, sigma_y)
  y = y.float()
  if name == 'deepinv_dps':
    model = deepinv.sampling.DPS(denoiser, num_steps=steps, minus_one_one=False,
                                 dtype=torch.float32)
    with torch.enable_grad():
      return model(y, physics, x_init=shape, seed=seed).detach()
  times = torch.linspace(sde.T, 1e-3, steps, dtype=torch.float64)
  m, s = sde.marginal_coeffs(times)
  sigmas = torch.cat([s / m, torch.zeros(1, dtype=torch.float64)]).numpy()
  torch.manual_seed(seed)
  return deepinv.sampling.DDRM(denoiser, sigmas=sigmas)(y, physics)


def run_one(name, score_fn, sde, operator, y, sigma_y, shape, steps, seed=2):
  if name in DEEPINV:
    return deepinv_restore(name, score_fn, sde, operator, y, sigma_y, shape, steps, seed)
  return restore(name, score_fn, sde, operator, y, sigma_y, shape, steps=steps,
                 generator=torch.Generator().manual_seed(seed))[0]


def mixtures(n, steps, methods):
  """{case: {method or 'exact': compare(...)}} on the checker mixture."""
  prior, sde = checker_mixture(), VPSDE()
  shape = (1, 4, 4)
  score_fn = exact_score_fn(prior, sde)
  left = torch.zeros(4, 4)
  left[:, :2] = 1
  table = {}
  for name, sigma_y in MIXTURE_CASES:
    op = get_operator(name, shape, mask=left, kernel_size=3, kernel_std=1.0)
    x = prior.sample(1, torch.Generator().manual_seed(4)).double().reshape(1, *shape)
    y = measure(op, x, sigma_y, torch.Generator().manual_seed(1))
    post = posterior(prior, dense_matrix(op, shape), y, sigma_y)
    row = {'exact': floor(prior, post, n)}
    for method in methods:
      start = time.perf_counter()
      with torch.no_grad():
        x_hat = run_one(method, score_fn, sde, op, y.expand(n, *y.shape[1:]).float(), sigma_y,
                        (n,) + shape, steps).double()
      row[method] = compare(prior, post, x_hat.reshape(n, -1))
      row[method]['residual'] = ((op.forward(x_hat) - y).flatten(1).norm(dim=1)
                                 / (sigma_y * y[0].numel() ** 0.5)).mean().item()
      row[method]['seconds'] = time.perf_counter() - start
      print(name, sigma_y, method, {k: round(v, 3) for k, v in row[method].items()}, flush=True)
    table[f'{name} {sigma_y}'] = row
  return table


def psnr(x, truth):
  return (-10 * torch.log10(((x - truth) ** 2).flatten(1).mean(1).clamp(min=1e-10))).mean().item()


def digits_prior(quick, ckpt):
  """(config, sde, score_fn, checkpoint step) of the shared demo model, or with `ckpt` of one
  of its checkpoints (a model still training: benchmarks/digits_model.py WORKDIR)."""
  if not ckpt:
    config, model, sde, score_fn, _ = trained_digits('cpu', quick=quick)
    return config, sde, score_fn, config.training.n_iters
  config = digits_config(quick)
  model, step, _ = restore_for_inference(config, QUICK_WORKDIR if quick else WORKDIR, ckpt, 'cpu')
  sde = get_sde(config)
  return config, sde, score_and_variance_fns(config, sde, model)[0], step


def digits(n, steps, methods, quick, ckpt=None):
  """{operator: {method: {'psnr', 'agreement'}}}, the pictures, the images, the model's step."""
  config, sde, score_fn, step = digits_prior(quick, ckpt)
  test = get_eval_dataset(config, 'test')
  images = torch.stack([test[i][0] for i in range(n)])
  labels = torch.tensor([int(test[i][1]) for i in range(n)])
  classifier, _ = load_or_train_digits_classifier(config.data.root)
  scaler, inverse = get_data_scaler(config), get_data_inverse_scaler(config)
  shape = (n,) + tuple(images.shape[1:])
  agree = lambda x: (classifier(x).argmax(1) == labels).float().mean().item()
  scale = float(scaler(torch.ones(1)) - scaler(torch.zeros(1)))   # model units per data unit
  table, pictures = {}, {}
  for name in DIGIT_OPERATORS:
    op = get_operator(name, shape[1:], kernel_size=5, kernel_std=1.0)
    y = measure(op, images.double(), SIGMA_Y, torch.Generator().manual_seed(0)).float()
    pinv = inverse(op.pinv(scaler(y))).clamp(0, 1)
    with torch.no_grad():
      row = {'input': {'psnr': float('inf'), 'agreement': agree(images)},
             'pseudo_inverse': {'psnr': psnr(pinv, images), 'agreement': agree(pinv)}}
      shown = {'pseudo_inverse': pinv}
      for method in methods:
        start = time.perf_counter()
        x = inverse(run_one(method, score_fn, sde, op, scaler(y), scale * SIGMA_Y, shape, steps))
        x = x.clamp(0, 1).float()
        row[method] = {'psnr': psnr(x, images), 'agreement': agree(x),
                       'seconds': time.perf_counter() - start}
        shown[method] = x
        print(name, method, {k: round(v, 3) for k, v in row[method].items()}, flush=True)
    table[name] = row
    pictures[name] = shown
  return table, pictures, images, step


def markdown(report):
  mix, dig = report['mixtures'], report['digits']
  methods = [m for m in OURS + DEEPINV if m in next(iter(mix.values()))]
  settings = report['settings']
  flags = (' --quick' if settings['quick'] else '') + (f" --ckpt {settings['ckpt']}"
                                                       if settings.get('ckpt') else '')
  lines = [f"`.venv/bin/python benchmarks/restoration_quality.py{flags}` on {settings['machine']}.",
           '',
           f"Digits at sigma_y = {SIGMA_Y} ({report['settings']['digits_images']} test digits, "
           f"{report['settings']['steps']} score evaluations, the demo model at step "
           f"{report['settings']['digits_model_step']}): PSNR (dB) and the digits "
           f"classifier's agreement with the label.", '',
           '| method | ' + ' | '.join(f'{name} PSNR | {name} agreement' for name in DIGIT_OPERATORS)
           + ' |', '|---' * (2 * len(DIGIT_OPERATORS) + 1) + '|']
  for method in ['input', 'pseudo_inverse'] + methods:
    cells = []
    for name in DIGIT_OPERATORS:
      r = dig[name][method]
      psnr_cell = f"{r['psnr']:.2f}" if math.isfinite(r['psnr']) else 'diverged'
      cells += ['-' if method == 'input' else psnr_cell, f"{r['agreement']:.2f}"]
    lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
  lines += ['', f"Exact posteriors (checker mixture, 1x4x4, {report['settings']['mixture_samples']}"
            f" samples, {report['settings']['steps']} steps): error of the posterior mean / "
            f"sliced W2 / largest mode-weight error; 'exact' is an exact sample's (the floor).", '',
            '| case | exact | ' + ' | '.join(methods) + ' |', '|---' * (len(methods) + 2) + '|']
  for case, row in mix.items():
    cells = [f"{row[m]['mean_error']:.3f} / {row[m]['sliced_w2']:.3f} / "
             f"{row[m]['weight_error']:.2f}" for m in ['exact'] + methods]
    lines.append(f'| {case} | ' + ' | '.join(cells) + ' |')
  lines += ['', '## Residuals', '',
            '||A x_hat - y|| / (sigma_y sqrt(m)) on the mixtures (about 1 honours the noise; '
            'exact posterior samples give 0.66 to 0.96):', '',
            '| case | ' + ' | '.join(methods) + ' |', '|---' * (len(methods) + 1) + '|']
  for case, row in mix.items():
    lines.append(f'| {case} | ' + ' | '.join(f"{row[m]['residual']:.2f}" for m in methods) + ' |')
  return '\n'.join(lines) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true', help='a pipeline check under a minute')
  parser.add_argument('--out', default=None, help='results folder')
  parser.add_argument('--ckpt', default=None,
                      help="a checkpoint of the shared digits run to use (default: the finished run)")
  args = parser.parse_args()
  torch.set_num_threads(1)
  n_mix, n_digits, steps = (64, 4, 6) if args.quick else (1000, 100, 100)
  try:
    import deepinv  # noqa: F401
    methods = OURS + DEEPINV
  except ImportError:
    print('deepinv is not installed (requirements-bench.txt): ours only')
    methods = OURS
  assert set(OURS) == set(METHODS)
  report = {'settings': {'mixture_samples': n_mix, 'digits_images': n_digits, 'steps': steps,
                         'sigma_y_digits': SIGMA_Y, 'quick': args.quick,
                         'machine': f'{platform.machine()} CPU, {os.cpu_count()} cores, '
                                    f'torch {torch.__version__}, one thread'}}
  report['mixtures'] = mixtures(n_mix, steps, methods)
  report['digits'], pictures, images, step = digits(n_digits, steps, methods, args.quick,
                                                   args.ckpt)
  report['settings'].update(digits_model_step=step, ckpt=args.ckpt)
  out = args.out or results_dir(args.quick)
  base = write_results('restoration', report, markdown(report), out)
  from torchvision.utils import save_image
  k = min(8, n_digits)
  rows = []
  for name in ('sr4', 'blur'):
    shown = pictures[name]
    rows += [list(shown[m][:k]) for m in ['pseudo_inverse'] + list(methods)]
  rows.append(list(images[:k]))
  save_image(rows_picture(rows), base + '.png')
  print(markdown(report))
  print(f'{base}.md, .json, .png')


if __name__ == '__main__':
  main()
