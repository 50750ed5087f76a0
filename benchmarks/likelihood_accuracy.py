"""Accuracy of the probability-flow ODE log-likelihood (samplers/likelihood.py) against exact
log-densities, beside k-diffusion's `log_likelihood`; and the ODE's bits/dim against the DDPM
bound on the trained digits model.

Mixtures (sde_lib/gaussian_mixture.py) on the VP-SDE with their exact score: the ring of 8 in 2-D and
the anisotropic 3-mode random_mixture(64). Points: exact samples of the mixture (fixed seed),
in float64 so that the errors are the solver's and the estimator's, not float32's. The ODE
starts at t = eps = 1e-5 (likelihood's default), so what it estimates is log p_eps(x), the
density of the diffused marginal x_eps = m x_0 + s z: the mixture with means m(eps) mu_k and
covariances m^2 Sigma_k + s^2 I (GaussianMixture.perturbed). Every error below is
logp - log p_eps(x): against log p_0 the gap log p_eps - log p_0 (printed per mixture: up to
2e-4 nats a point at eps = 1e-5) would hide the exact divergence's error on the ring at
rtol <= 1e-5. What no tolerance removes is the prior: the ODE ends at T, where the exact
marginal p_T is replaced by N(0, I); the printed 'prior floor' is log N(z; 0, I) - log p_T(z)
at the latents z of the tightest exact run (mean and std over points).

Per setting (solver, divergence estimator, probes, rtol = atol): bias = mean over points of
the error (nats; +- its standard error, spread / sqrt(points)), spread = std over points of the
error, evaluations = ODE-function calls of one solve of all the points (each one forward pass
of the score and one backward pass per probe; the exact divergence takes D backward passes),
and wall seconds. Hutchinson probes are drawn once per solve (FFJORD), and the same seed is
used at every tolerance, so logp minus that of the tightest tolerance with the same estimator
and probes is the solver's part of the error, free of the estimator's noise.

k-diffusion's `sampling.log_likelihood(model, x^, sigma_min, sigma_max, atol, rtol)` integrates
the same ODE in EDM's variables x^ = x / m(t), sigma = s(t) / m(t) (see `kd_log_likelihood`)
with one Rademacher probe from torch's global generator (seeded here), on our exact score
wrapped as its denoiser (sampler_quality.KarrasDenoiser, whose wall time includes finding t
of each sigma by bisection). Its tolerances apply to x^, which is up to 1 / m(T) = 152 times
x, and to the sigma axis: they are not ours.

Trained model: vp_digits (benchmarks/digits_model.py; --quick: a tiny stand-in), test split,
bits/dim by the probability-flow ODE (eval defaults: uniform dequantization, one draw, one
Rademacher probe, rtol = atol = 1e-5) and by the DDPM bound (the whole chain, 'beta' variance;
--quick: the chain respaced to 100 steps), both from pipeline/evaluate.likelihood_numbers, on
the same first --images test images (default: all 300), with the paired difference.

  .venv/bin/python benchmarks/likelihood_accuracy.py [--points 500] [--images 300] [--quick]
      [--threads 1] [--out DIR]
"""
import argparse
import math
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.results_io import results_dir, write_results  # noqa: E402
from benchmarks.sampler_quality import KarrasDenoiser, import_k_diffusion  # noqa: E402
from sde_lib.gaussian_mixture import exact_score_fn, random_mixture
from sde_lib.gaussian_mixture import ring_mixture  # noqa: E402
from samplers.likelihood import likelihood  # noqa: E402
from sde_lib import VPSDE  # noqa: E402

MIXTURES = {'ring 2-D': ring_mixture, 'anisotropic 64-D': lambda: random_mixture(64)}
EPS = 1e-5                              # likelihood's default start time
OUR_TOL = 1e-5                          # likelihood's default rtol = atol
KD_TOL = 1e-4                           # k-diffusion log_likelihood's default atol = rtol
TOLERANCES = (1e-2, 1e-3, 1e-5, 1e-7)   # the sweep's rtol = atol (k-diffusion's adds its 1e-4)
PROBES = (1, 4, 16)
HUTCHINSON = ('gaussian', 'rademacher')
# The README table: name -> (solver, estimator, probes, tolerance: 'ours' | 'kd' default).
HEADLINE = {
    'ours, default: Gaussian, 1 probe': ('ours', 'gaussian', 1, 'ours'),
    'ours, Rademacher, 1 probe (eval default)': ('ours', 'rademacher', 1, 'ours'),
    'ours, Gaussian, 16 probes': ('ours', 'gaussian', 16, 'ours'),
    'ours, exact divergence': ('ours', 'exact', 1, 'ours'),
    'k-diffusion log_likelihood, its default (Rademacher, 1 probe)': ('k-diffusion', 'rademacher',
                                                                      1, 'kd'),
}
SEED = 0          # the points
PROBE_SEED = 1    # the probes (ours: a generator; k-diffusion: torch's global one)


def kd_log_likelihood(sampling, sde, score_fn, x, eps, rtol, atol):
  """log p_eps(x) by k-diffusion's log_likelihood, and its count of denoiser calls.

  In EDM's variables x^ = x / m(t), sigma = s(t) / m(t), x^ = x_0 + sigma z: the VE process,
  whose probability-flow ODE dx^/dsigma = (x^ - D(x^; sigma)) / sigma is ours reparametrised,
  with D(x^; sigma) = x0_hat(m x^, t) (KarrasDenoiser). It integrates from
  sigma_min = sigma(eps) to sigma_max = sigma(T) and returns log p^(x^) of the density of x^ at
  sigma_min, with the prior N(0, sigma_max^2 I) for x^ at sigma_max (ours is N(0, I) for x at
  T, i.e. N(0, (1 + sigma_max^2) I) for x^: both stand in for the true marginal). With
  x = m(eps) x^ in D dimensions, p_x(x) = p^(x / m) / m^D, so
      log p_eps(x) = log p^(x / m(eps)) - D log m(eps).
  """
  m_eps, s_eps = (float(c) for c in sde.marginal_coeffs(torch.tensor([eps], dtype=torch.float64)))
  m_T, s_T = (float(c) for c in sde.marginal_coeffs(torch.tensor([sde.T], dtype=torch.float64)))
  denoiser = KarrasDenoiser(sde, score_fn)
  logp_scaled, info = sampling.log_likelihood(denoiser, x / m_eps, s_eps / m_eps, s_T / m_T,
                                              atol=atol, rtol=rtol)
  return logp_scaled - x[0].numel() * math.log(m_eps), info['fevals']


def error_stats(logp, truth):
  """bias = mean(logp - truth), its standard error and spread = std over points (ddof 1)."""
  error = (logp - truth).double()
  spread = error.std().item()
  return dict(bias=error.mean().item(), stderr=spread / math.sqrt(len(error)), spread=spread)


def solve(setting, score_fn, sde, x, sampling):
  """(log p_eps(x), evaluations, latent z or None) of one setting, all points in one solve."""
  if setting['solver'] == 'k-diffusion':
    with torch.random.fork_rng():
      torch.manual_seed(PROBE_SEED)
      logp, nfe = kd_log_likelihood(sampling, sde, score_fn, x, EPS, setting['tol'],
                                    setting['tol'])
    return logp, nfe, None
  result = likelihood(score_fn, sde, x, eps=EPS, rtol=setting['tol'], atol=setting['tol'],
                      hutchinson=setting['estimator'], n_probes=setting['probes'],
                      generator=torch.Generator().manual_seed(PROBE_SEED))
  return result.logp, result.nfe, result.z


def settings(quick):
  """The sweep: ours with every estimator x probes x tolerance, k-diffusion at every tolerance
  and its default; --quick: only the README table's rows."""
  if quick:
    return [headline_setting(*spec, quick=True) for spec in HEADLINE.values()]
  out = []
  for tol in TOLERANCES:
    out.append(dict(solver='ours', estimator='exact', probes=1, tol=tol))
    out += [dict(solver='ours', estimator=e, probes=k, tol=tol) for e in HUTCHINSON for k in PROBES]
  out += [dict(solver='k-diffusion', estimator='rademacher', probes=1, tol=tol)
          for tol in sorted(set(TOLERANCES + (KD_TOL,)), reverse=True)]
  return out


def headline_setting(solver, estimator, probes, which, quick=False):
  """A README row's setting; --quick loosens every tolerance to 1e-3."""
  tol = 1e-3 if quick else (OUR_TOL if which == 'ours' else KD_TOL)
  return dict(solver=solver, estimator=estimator, probes=probes, tol=tol)


def backward_passes(setting, dim):
  return dim if setting['estimator'] == 'exact' else setting['probes']


def run_mixture(name, mixture, args, sampling):
  """The rows of every setting on one mixture, printed as they come; and the mixture's notes."""
  sde = VPSDE()
  score_fn = exact_score_fn(mixture, sde)
  x = mixture.sample(args.points, torch.Generator().manual_seed(SEED)).double()
  truth = mixture.perturbed(sde, EPS).log_prob(x)
  gap = truth - mixture.log_prob(x)
  notes = dict(points=args.points, mean_gap_eps_to_0=gap.mean().item(),
               max_gap_eps_to_0=gap.abs().max().item(), prior_floor=None)
  print(f"{name}: {args.points} points; log p_eps - log p_0: mean {gap.mean():+.1e}, max "
        f"|.| {gap.abs().max():.1e} nats", flush=True)
  rows, logps = [], {}
  for setting in settings(args.quick):
    start = time.perf_counter()
    logp, nfe, z = solve(setting, score_fn, sde, x, sampling)
    row = dict(setting, **error_stats(logp, truth), dim=mixture.dim, evaluations=nfe,
               backward_passes=backward_passes(setting, mixture.dim),
               seconds=time.perf_counter() - start)
    if z is not None and setting['estimator'] == 'exact':   # the tightest exact run is last
      floor = sde.prior_logp(z) - mixture.perturbed(sde, sde.T).log_prob(z)
      notes.update(prior_floor=floor.mean().item(), prior_floor_spread=floor.std().item())
    logps.setdefault(curve(setting), {})[setting['tol']] = logp
    rows.append(row)
    print('  ' + sweep_line(row), flush=True)
  for row in rows:
    row.update(solver_error(logps[curve(row)], row['tol']))
  ours, kd = (logps[solver, 'rademacher', 1] for solver in ('ours', 'k-diffusion'))
  paired = (kd[min(kd)] - ours[min(ours)]).double()
  notes.update(kd_minus_ours=paired.mean().item(), kd_minus_ours_spread=paired.std().item(),
               kd_minus_ours_tols=(min(kd), min(ours)))
  print(f"  prior floor {notes['prior_floor']:+.2e} nats; k-diffusion minus ours, Rademacher, "
        f"1 probe: {paired.mean():+.1e} (std {paired.std():.1e})", flush=True)
  return rows, notes


def curve(setting):
  """A setting without its tolerance: runs of one curve share their probes."""
  return setting['solver'], setting['estimator'], setting['probes']


def solver_error(logps, tol):
  """The solver's part of the error at `tol`: logp minus that of the tightest tolerance of the
  same curve, which drew the same probes, so the estimator's noise cancels point by point;
  mean and std over points (None at the tightest tolerance itself)."""
  tightest = min(logps)
  if tol == tightest:
    return dict(solver_bias=None, solver_spread=None)
  difference = (logps[tol] - logps[tightest]).double()
  return dict(solver_bias=difference.mean().item(), solver_spread=difference.std().item())


def find(rows, setting):
  return next(r for r in rows if all(r[k] == v for k, v in setting.items()))


def bias_cell(row):
  return f"{row['bias']:+.2e} +- {row['stderr']:.1e}"


def headline_table(results, quick):
  head = ['setting'] + [f'{name}: {column}' for name in results
                        for column in ('bias (nats)', 'spread', 'evaluations')]
  lines = ['| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|']
  for label, spec in HEADLINE.items():
    setting = headline_setting(*spec, quick=quick)
    cells = [label]
    for rows in results.values():
      row = find(rows, setting)
      cells += [bias_cell(row), f"{row['spread']:.2e}", str(row['evaluations'])]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def sweep_line(row):
  return (f"{row['solver']:<11} {row['estimator']:<10} probes {row['probes']:>2} "
          f"tol {row['tol']:.0e}: bias {bias_cell(row)} spread {row['spread']:.2e} "
          f"evaluations {row['evaluations']:>4} ({row['seconds']:.1f} s)")


def sweep_table(rows):
  lines = ['| solver | estimator | probes | rtol = atol | bias (nats) | bias / dim | spread | '
           'minus the tightest tolerance: mean | std | evaluations | '
           'backward passes per evaluation | seconds |', '|---' * 12 + '|']
  for r in rows:
    probes = '-' if r['estimator'] == 'exact' else r['probes']
    solver = ('- | -' if r['solver_bias'] is None else
              f"{r['solver_bias']:+.1e} | {r['solver_spread']:.1e}")
    lines.append(f"| {r['solver']} | {r['estimator']} | {probes} | {r['tol']:.0e} | "
                 f"{bias_cell(r)} | {r['bias'] / r['dim']:+.1e} | {r['spread']:.2e} | "
                 f"{solver} | {r['evaluations']} | {r['backward_passes']} | "
                 f"{r['seconds']:.1f} |")
  return '\n'.join(lines)


def digits_numbers(args, device):
  """ODE and VLB bits/dim of the trained digits model on the first args.images test images."""
  from benchmarks.digits_model import QUICK_WORKDIR, WORKDIR, trained_digits
  from pipeline.api import Run, likelihood_report
  from utils.checkpoint import resolve_checkpoint
  config, model, sde, _, train_seconds = trained_digits(device, quick=args.quick)
  workdir = QUICK_WORKDIR if args.quick else WORKDIR
  e = config.eval
  e.enable_bpd, e.enable_vlb, e.enable_score_bound = True, True, False
  e.dequantization, e.dequantization_draws = 'uniform', 1
  e.bpd_num_images = e.vlb_num_images = args.images
  e.vlb_steps = 100 if args.quick else 0
  start = time.perf_counter()
  run = Run(config, workdir, model, sde, resolve_checkpoint(workdir), None, device)
  numbers, arrays, _ = likelihood_report(run)
  difference = arrays['vlb'] - arrays['bpd']
  paired = dict(mean=float(difference.mean()),
                stderr=float(difference.std(ddof=1) / math.sqrt(len(difference))),
                num_images=len(difference))
  return dict(ode=numbers['bpd'], vlb=numbers['vlb'], vlb_minus_ode=paired,
              seconds=time.perf_counter() - start, train_seconds=train_seconds,
              steps=config.training.n_iters)


def digits_table(d):
  lines = ['| bound | bits/dim | s.e. | images | evaluations |', '|---|---|---|---|---|']
  rows = (('probability-flow ODE', d['ode'], f"{d['ode']['nfe']:.0f} per solve"),
          ('DDPM bound (VLB)', d['vlb'], f"{d['vlb']['steps']} chain steps"),
          ('VLB - ODE, paired', d['vlb_minus_ode'], ''))
  for name, n, evaluations in rows:
    lines.append(f"| {name} | {n['mean']:.3f} | {n['stderr']:.3f} | {n['num_images']} | "
                 f"{evaluations} |")
  return '\n'.join(lines)


# The plot's line per (solver, estimator); its colour gives the probes (exact: its own).
LINESTYLES = {('ours', 'gaussian'): '--', ('ours', 'rademacher'): ':', ('ours', 'exact'): '-',
              ('k-diffusion', 'rademacher'): '-.'}


def plot(results, path):
  """Against the tolerance, one column per mixture: |bias|, the spread over points, and the
  solver's part |mean(logp - logp at the tightest tolerance, same probes)|."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  panels = (('|bias| (nats)', lambda r: abs(r['bias'])),
            ('spread over points (nats)', lambda r: r['spread']),
            ('|solver part of the bias| (nats)',
             lambda r: None if r['solver_bias'] is None else abs(r['solver_bias'])))
  fig, axes = plt.subplots(len(panels), len(results), figsize=(5 * len(results), 10),
                           squeeze=False)
  for col, (name, rows) in enumerate(results.items()):
    for solver, estimator, probes in sorted({curve(r) for r in rows}):
      line = sorted((r for r in rows if curve(r) == (solver, estimator, probes)),
                    key=lambda r: r['tol'])
      label = f"{solver}, {estimator}" + ('' if estimator == 'exact' else f", {probes} probe(s)")
      style = dict(marker='o', label=label, linestyle=LINESTYLES[solver, estimator],
                   color=f'C{PROBES.index(probes) if estimator != "exact" else 3}')
      for ax, (_, value) in zip(axes[:, col], panels):
        points = [(r['tol'], value(r)) for r in line if value(r)]
        if points:
          ax.loglog(*zip(*points), **style)
    for ax, (title, _) in zip(axes[:, col], panels):
      ax.set_title(f'{name}: {title}')
      ax.set_xlabel('rtol = atol')
      ax.invert_xaxis()
  axes[0, -1].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def markdown(results, notes, digits, args, device, command, seconds):
  threads = torch.get_num_threads()
  tolerance = ('every tolerance 1e-3 (--quick)' if args.quick else
               f"ours at rtol = atol = {OUR_TOL:g} (likelihood's default), k-diffusion at its "
               f"default {KD_TOL:g}")
  parts = [
      '# Probability-flow ODE likelihood: accuracy against exact densities',
      '',
      f"`{command}` on {device} ({threads} thread{'s' * (threads > 1)}). Error = estimate - "
      f"exact log p_eps(x) at {args.points} exact samples of each mixture (VP-SDE, exact score, "
      f"eps = {EPS:g}, float64), {tolerance}: bias = mean +- standard error, spread = std over "
      f"points (nats), evaluations = score-function calls of one solve of all points.",
      '',
      headline_table(results, args.quick),
      '',
      f"Trained digits model ({'tiny --quick stand-in' if args.quick else 'vp_digits'}, "
      f"{digits['steps']} steps), test bits/dim (mean and standard error over images; ODE: "
      f"uniform dequantization, one Rademacher probe, rtol = atol = 1e-5; VLB: "
      f"{digits['vlb']['variance_description']}):",
      '',
      digits_table(digits),
      '',
      '## Sweep',
      '',
      'Every setting. Probes are drawn once per solve with the same seed at every tolerance, '
      "so 'minus the tightest tolerance' (logp minus that of the same estimator and probes at "
      "the smallest tolerance run, per point) is the solver's part of the error, free of the "
      "estimator's noise. k-diffusion's one Rademacher probe is the same draw as ours (seed "
      f"{PROBE_SEED}; torch's randint_like on the global generator gives the same signs as "
      "randint on a seeded one), so the two compare point by point. The exact divergence costs D backward passes "
      'per evaluation.',
  ]
  for name, rows in results.items():
    n = notes[name]
    parts += ['', f"### {name}", '',
              f"log p_eps - log p_0 at the points: mean {n['mean_gap_eps_to_0']:+.1e}, largest "
              f"|.| {n['max_gap_eps_to_0']:.1e} nats. Prior floor, log N(z; 0, I) - log p_T(z) "
              f"at the latents z of the tightest exact run: mean {n['prior_floor']:+.2e}, "
              f"std {n['prior_floor_spread']:.2e} nats. k-diffusion minus ours per point, "
              f"Rademacher, 1 probe, at {n['kd_minus_ours_tols'][0]:.0e} and "
              f"{n['kd_minus_ours_tols'][1]:.0e}: mean {n['kd_minus_ours']:+.1e}, std "
              f"{n['kd_minus_ours_spread']:.1e} nats (the same probe: the solvers' difference alone).",
              '', sweep_table(rows)]
  trained = ('reused' if digits['train_seconds'] is None else
             f"trained here in {digits['train_seconds']:.0f} s")
  parts += ['', '## Timings', '',
            f"Digits model {trained}; its ODE and VLB took {digits['seconds']:.0f} s; the whole "
            f"run {seconds:.0f} s (wall, {torch.get_num_threads()} thread(s), shared machine)."]
  return '\n'.join(parts) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--points', type=int, help='exact samples per mixture (500; --quick 32)')
  parser.add_argument('--images', type=int, help='digits test images (300, the split; --quick 8)')
  parser.add_argument('--threads', type=int, default=1,
                      help='torch threads (1: timings comparable on a shared machine)')
  parser.add_argument('--quick', action='store_true',
                      help="the README table's rows only, at tolerance 1e-3, few points, the "
                           "tiny digits model on few images")
  parser.add_argument('--out', help='results directory (benchmarks/results; --quick: .../quick)')
  args = parser.parse_args()
  args.out = args.out or results_dir(args.quick)
  args.points = args.points or (32 if args.quick else 500)
  args.images = args.images or (8 if args.quick else 300)
  torch.set_num_threads(args.threads)
  sampling = import_k_diffusion()
  device = 'cpu'   # the mixtures are tiny, and timings compare on one device
  start = time.perf_counter()
  results, notes = {}, {}
  for name, make in MIXTURES.items():
    results[name], notes[name] = run_mixture(name, make(), args, sampling)
  print(headline_table(results, args.quick), flush=True)
  print(f"digits: {args.images} test images", flush=True)
  digits = digits_numbers(args, device)
  print(digits_table(digits), flush=True)
  command = 'benchmarks/likelihood_accuracy.py' + (' --quick' if args.quick else '') + (
      f' --points {args.points} --images {args.images}')
  seconds = time.perf_counter() - start
  report = dict(device=device, threads=torch.get_num_threads(), torch=torch.__version__,
                args=vars(args), eps=EPS, mixtures=results, notes=notes, digits=digits,
                seconds=seconds)
  out = write_results('likelihood_accuracy', report,
                      markdown(results, notes, digits, args, device, command, seconds), args.out)
  if not args.quick:
    plot(results, out + '.png')
  print(f"wrote {out}.json, .md in {report['seconds']:.0f} s")


if __name__ == '__main__':
  main()
