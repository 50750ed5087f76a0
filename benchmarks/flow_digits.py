"""Rectified flows on digits beside the demo: `rf_digits` (the demo's U-Net, batch, optimizer and
3,000 steps, with the straight path x_t = (1 - t) x_0 + t z, a velocity network and the
flow-matching loss; Liu et al. 2023, Lipman et al. 2023) against `vp_digits` (the demo,
benchmarks/digits_model.py); reflow from it (Liu et al. 2023, sec. 2.3: `reflow_digits`, the
2-rectified flow, and `distill_rf_digits`, its one-step distillation; pipeline/reflow.py); and
the two peer libraries' objectives on the same network: facebookresearch's flow_matching
(AffineProbPath with CondOTScheduler: the loss target dx_t) and torchcfm (ConditionalFlowMatcher
and ExactOptimalTransportConditionalFlowMatcher: x_t and u_t), each trained by our trainer as
long as rf_digits (3,000 steps of the demo's batch). The peers' time runs from noise (0) to data
(1): their t is our 1 - t and their velocity minus ours (docs/flow_matching.md).

Per model: the digit Frechet distance (benchmarks/digits.py's Judge: samples against the train
split, beside the test split's floor) at 1, 2, 4, 10 and 20 evaluations with the flow's Euler
step (DDIM on the model's path, uniform in t), iPNDM (order 3) and DPM-Solver (multistep, order
3), each on its measured default schedule except Euler, and for the flow_matching model its own
ODESolver (Euler, midpoint); the straightness S of its ODE (Liu et al. eq. 11, 100 Euler steps
from T to 1e-3); the test bits/dim by the probability-flow ODE (uniform dequantization, +- one
standard error); and its training's CPU minutes (reflow's: drawing the pairs and training).

  .venv/bin/python benchmarks/flow_digits.py [--quick] [--out DIR] [--num_samples 300]
      [--num_images 64]

A model's run is trained in runs/bench_<model> unless a run of its n_iters is there (the demo's
is benchmarks/digits_model.py's). --quick: tiny stand-ins (nf 8, 20 steps; reflow on 64 pairs),
16 samples, 4 images: the table's shape only.
"""
import argparse
import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.digits import Judge, run_cell  # noqa: E402
from benchmarks.digits_model import (QUICK_WORKDIR, WORKDIR, digits_config,  # noqa: E402
                                     ode_bits_per_dim, train_once)
from benchmarks.edm_digits import logged_seconds, shrink  # noqa: E402
from benchmarks.results_io import partial_row, results_dir, write_results  # noqa: E402
from configs.distill_rf_digits import get_config as distill_rf_digits_config  # noqa: E402
from configs.reflow_digits import get_config as reflow_digits_config  # noqa: E402
from configs.rf_digits import get_config as rf_digits_config  # noqa: E402
from data import data_shape  # noqa: E402
from data.scaling import get_samples_to_data  # noqa: E402
from models import restore_for_inference  # noqa: E402
from pipeline import train as pipeline_train  # noqa: E402
from pipeline.sampling import checkpoint_sha256, score_and_variance_fns  # noqa: E402
from samplers.registry import resolved_sampling  # noqa: E402
from sde_lib import get_sde  # noqa: E402
from sde_lib.flows import straightness, velocity_fn  # noqa: E402
from training.losses import drawn  # noqa: E402
from utils.checkpoint import resolve_checkpoint  # noqa: E402
from utils.device import get_device  # noqa: E402
from utils.seeding import batch_generator  # noqa: E402

BUDGETS = (1, 2, 4, 10, 20)
SAMPLERS = {   # name -> (column, config.sampling overrides)
    'euler': ("Euler (the flow's step = DDIM)", dict(method='ddim', time_schedule='uniform')),
    'ipndm': ('iPNDM-3', dict(method='ipndm', time_schedule='default')),
    'dpm_solver': ('DPM-Solver-3M', dict(method='dpm_solver', time_schedule='default')),
}
THEIRS = {'euler': 1, 'midpoint': 2}   # flow_matching's ODESolver: evaluations per step
STRAIGHTNESS_STEPS = 100
EPS = 1e-3              # where the straightness's Euler path and flow_matching's solver end


def network_velocity(model, sde):
  """v(x, t) of a velocity network (model.parameterization 'velocity': its output, ours)."""
  return lambda x, t: model(x, sde.network_label(t))


def flow_matching_loss(config, sde, workdir):
  """flow_matching's objective: ||u_theta(x_u, u) - dx_u||^2 on its AffineProbPath with the
  CondOTScheduler, x_u = u x_1 + (1 - u) x_0 (x_1 data, x_0 noise), u ~ U[0, 1]; u_theta is
  minus our velocity at t = 1 - u."""
  from flow_matching.path import AffineProbPath
  from flow_matching.path.scheduler import CondOTScheduler
  path = AffineProbPath(scheduler=CondOTScheduler())

  def loss_fn(model, x0, generator=None, classes=None, rows=None):
    n = x0.shape[0]
    u = drawn(rows, n, lambda m: torch.rand(m, device=x0.device, generator=generator))
    noise = drawn(rows, n, lambda m: torch.randn((m, *x0.shape[1:]), device=x0.device,
                                                 generator=generator))
    sample = path.sample(x_0=noise, x_1=x0, t=u)
    their_velocity = -network_velocity(model, sde)(sample.x_t, 1 - u)
    return (their_velocity - sample.dx_t).square().flatten(1).mean(1)

  return loss_fn


def torchcfm_loss(matcher):
  """torchcfm's objective for `matcher` (a ConditionalFlowMatcher class, sigma = 0): its (t, x_t,
  u_t) from (x0 noise, x1 data), ||v_theta(x_t, t) - u_t||^2 with v_theta minus our velocity at
  our time 1 - t. It draws t (and the OT plan's pairs) from the global generators, which the
  trainer seeds at every step."""

  def build(config, sde, workdir):
    from torchcfm import conditional_flow_matching as cfm
    flow = getattr(cfm, matcher)(sigma=0.0)

    def loss_fn(model, x0, generator=None, classes=None, rows=None):
      noise = drawn(rows, x0.shape[0], lambda m: torch.randn(
          (m, *x0.shape[1:]), device=x0.device, generator=generator))
      t, x_t, u_t = flow.sample_location_and_conditional_flow(noise, x0)
      their_velocity = -network_velocity(model, sde)(x_t, 1 - t)
      return (their_velocity - u_t).square().flatten(1).mean(1)

    return loss_fn

  return build


PEER_LOSSES = {'flow_matching_condot': flow_matching_loss,
               'torchcfm_cfm': torchcfm_loss('ConditionalFlowMatcher'),
               'torchcfm_otcfm': torchcfm_loss('ExactOptimalTransportConditionalFlowMatcher')}


def workdir_of(name, quick=False):
  if name == 'vp_digits':
    return QUICK_WORKDIR if quick else WORKDIR
  return os.path.join(ROOT, 'runs', f'bench_{name}' + '_quick' * quick)


def peer_config(loss):
  """config(quick): rf_digits (network, batch, optimizer, steps) with a peer's training.loss."""
  def build(quick):
    config = rf_digits_config()
    config.training.loss = loss
    return config
  return build


def reflow_config(build, teacher):
  """A reflow config taught by the benchmark's run of `teacher`."""
  def config_of(quick):
    config = build()
    config.distill.teacher = workdir_of(teacher, quick)
    if quick:
      config.reflow.num_pairs = 64
    return config
  return config_of


# name -> (label, config(quick), the name of its run)
MODELS = {
    'vp_digits': ('vp_digits (the demo: VP, eps, DSM)', lambda quick: digits_config(),
                  'vp_digits'),
    'rf_digits': ('rf_digits (1-rectified flow: velocity, flow matching)',
                  lambda quick: rf_digits_config(), 'rf_digits'),
    'reflow_digits': ('reflow_digits (2-rectified flow: reflow of rf_digits)',
                      reflow_config(reflow_digits_config, 'rf_digits'), 'reflow_digits'),
    'distill_rf_digits': ('distill_rf_digits (2-rectified flow distilled to one step)',
                          reflow_config(distill_rf_digits_config, 'reflow_digits'),
                          'distill_rf_digits'),
    'flow_matching_condot': ('flow_matching: AffineProbPath + CondOTScheduler',
                             peer_config('flow_matching_condot'), 'flow_matching_condot'),
    'torchcfm_cfm': ('torchcfm: ConditionalFlowMatcher', peer_config('torchcfm_cfm'),
                     'torchcfm_cfm'),
    'torchcfm_otcfm': ('torchcfm: ExactOptimalTransportConditionalFlowMatcher',
                       peer_config('torchcfm_otcfm'), 'torchcfm_otcfm'),
}


def cpu_path(workdir):
  return os.path.join(workdir, 'flow_digits_cpu_seconds.json')


def trained(name, quick=False):
  """(config, workdir, {'cpu': training CPU seconds or None, 'wall': its seconds or None}):
  trains the model's run once (train_once); the CPU seconds of the process that trained it
  (pairs and training, for reflow) are kept beside the run."""
  _, build, run = MODELS[name]
  config, workdir = build(quick), workdir_of(run, quick)
  config = shrink(config) if quick else config
  pipeline_train.LOSSES.update(PEER_LOSSES)   # the peers' objectives under our trainer
  start = time.process_time()
  seconds = train_once(config, workdir)
  if seconds is not None:   # trained, or resumed to more steps: add to what the run took before
    spent = {'cpu_seconds': time.process_time() - start, 'wall_seconds': seconds}
    if os.path.exists(cpu_path(workdir)):
      with open(cpu_path(workdir)) as f:
        spent = {k: v + spent[k] for k, v in json.load(f).items()}
    with open(cpu_path(workdir), 'w') as f:
      json.dump(spent, f)
  spent = {'cpu': None, 'wall': logged_seconds(workdir, config.training.n_iters)}
  if os.path.exists(cpu_path(workdir)):
    with open(cpu_path(workdir)) as f:
      recorded = json.load(f)
    spent = {'cpu': recorded['cpu_seconds'], 'wall': recorded['wall_seconds']}
  return config, workdir, spent


def x_T(config, sde, n, device):
  """The x_T every sampler of a model starts from (draw_samples' first batch)."""
  return sde.prior_sampling((n, *data_shape(config)), batch_generator(config.seed, 0, device),
                            device=device)


def flow_straightness(config, sde, model, n, device):
  """S of the model's probability-flow ODE by STRAIGHTNESS_STEPS Euler steps from T to EPS."""
  velocity = velocity_fn(sde, score_and_variance_fns(config, sde, model)[0])
  times = torch.linspace(sde.T, EPS, STRAIGHTNESS_STEPS + 1, dtype=torch.float64)
  x = x_T(config, sde, n, device)
  trajectory = [x]
  with torch.no_grad():
    for t, u in zip(times[:-1], times[1:]):
      x = x + float(u - t) * velocity(x, torch.full((n,), float(t), device=device))
      trajectory.append(x)
  return straightness(torch.stack(trajectory), times.to(x.dtype))


def their_samples(config, sde, model, method, budget, n, device):
  """flow_matching's ODESolver on the model's velocity, in its time u = 1 - t from 1 - T to 1
  (the data), budget // (evaluations per step) steps; data-space samples."""
  from flow_matching.solver import ODESolver
  velocity = network_velocity(model, sde)
  their_velocity = lambda x, t: -velocity(x, (1 - t).expand(len(x)))   # t: their time
  steps = budget // THEIRS[method]
  grid = torch.tensor([1 - sde.T, 1.0], device=device)
  with torch.no_grad():
    x = ODESolver(velocity_model=their_velocity).sample(
        x_init=x_T(config, sde, n, device), step_size=float(grid[1] - grid[0]) / steps,
        method=method, time_grid=grid)
  return get_samples_to_data(config)(x).cpu(), steps * THEIRS[method]


def measure(name, args, device):
  """{'cells': {'<sampler>@<budget>': {...}}, 'bpd': {...}, 'straightness': S, 'step',
  'cpu_seconds', 'wall_seconds'} of `name`."""
  config, workdir, spent = trained(name, args.quick)
  checkpoint = resolve_checkpoint(workdir, str(config.training.n_iters))
  model, step, _ = restore_for_inference(config, workdir, checkpoint, device)
  sde = get_sde(config)
  settings = {'checkpoint': checkpoint_sha256(checkpoint), 'samples': args.num_samples,
              'images': args.num_images, 'seed': config.seed}
  row, save = partial_row(os.path.join(workdir, 'flow_digits_benchmark.json'), settings)
  row['step'], row['cpu_seconds'], row['wall_seconds'] = step, spent['cpu'], spent['wall']
  judge = Judge(config, device)
  cells = row.setdefault('cells', {})
  for method, (_, overrides) in SAMPLERS.items():
    for budget in BUDGETS:
      sampling = config.sampling.copy_and_resolve_references()
      sampling.update(variant='default', order=0, steps=budget, **overrides)
      key = f'{method}@{budget}'
      if key not in cells or cells[key]['sampling'] != resolved_sampling(sampling):
        cell = run_cell(config, model, sde, device, checkpoint, sampling, args.num_samples, judge)
        cells[key] = {f: v for f, v in cell.items() if f != 'picture'}
        save()
      print(f"{name} {key}: FD {cells[key]['fd']:.2f}, nfe {cells[key]['nfe']:g}", flush=True)
  if name == 'flow_matching_condot':
    for method, per_step in THEIRS.items():
      for budget in BUDGETS:
        key = f'theirs_{method}@{budget}'
        if budget >= per_step and key not in cells:
          samples, nfe = their_samples(config, sde, model, method, budget, args.num_samples,
                                       device)
          cells[key] = {'nfe': nfe, 'fd': judge(samples)['fd']}
          save()
  if 'straightness' not in row:
    row['straightness'] = flow_straightness(config, sde, model, args.num_samples, device)
    save()
  if 'bpd' not in row:
    row['bpd'] = ode_bits_per_dim(config, model, sde, device, checkpoint,
                                  args.num_images, args.quick)[0]
    save()
  return row


def spent_text(row):
  if row['cpu_seconds']:
    return f"{row['step']} steps, {row['cpu_seconds'] / 60:.1f} CPU-min"
  if row['wall_seconds']:
    return f"{row['step']} steps, {row['wall_seconds'] / 60:.0f} wall-min"
  return f"{row['step']} steps"


def markdown(rows, args):
  floor = next(iter(next(iter(rows.values()))['cells'].values()))['floor']
  columns = [(name, column) for name, (column, _) in SAMPLERS.items()]
  columns += [(f'theirs_{m}', f"flow_matching's ODESolver ({m})") for m in THEIRS]
  lines = ['| model | sampler | ' + ' | '.join(f'FD @ {b}' for b in BUDGETS)
           + ' | straightness S | test bits/dim (ODE) | training |',
           '|---' * (len(BUDGETS) + 5) + '|']
  for name, row in rows.items():
    for method, column in columns:
      if f'{method}@{BUDGETS[-1]}' not in row['cells']:
        continue
      fds = [f"{row['cells'][f'{method}@{b}']['fd']:.2f}" if f'{method}@{b}' in row['cells']
             else '-' for b in BUDGETS]
      lines.append(f'| {MODELS[name][0]} | {column} | ' + ' | '.join(fds)
                   + f" | {row['straightness']:.3g} | {row['bpd']['mean']:.3f} +- "
                   f"{row['bpd']['stderr']:.3f} | {spent_text(row)} |")
  command = ('benchmarks/flow_digits.py' + ' --quick' * args.quick
             + f' --num_samples {args.num_samples}')
  return (f"# Rectified flow on digits\n\nRectified flows on digits beside the demo (`{command}`): "
          f"the demo's U-Net and batch of 64 for every model. rf_digits and the demo train 3,000 "
          f"steps; reflow_digits 500 more from rf_digits' weights on 4,096 pairs its ODE drew "
          f"(iPNDM, 20 evaluations), distill_rf_digits 500 from reflow_digits' on 4,096 pairs "
          f"of its own ODE; their minutes are their own (pairs and training), on top of their "
          f"teachers'. "
          f"The peer libraries' objectives train the same network as long as rf_digits "
          f"(3,000 steps; only the loss's path and target are theirs). CPU minutes of the training process where it was measured, else the wall "
          f"minutes its metrics logged (a shared 2-core machine). Our samplers spend their "
          f"last evaluation on x0_hat at t = 1e-3, so their 2 evaluations are one Euler step; "
          f"flow_matching's ODESolver takes two. "
          f"Digit FD of {args.num_samples} samples to the train split (floor, the test split's: "
          f"{floor:.2f}) by velocity (score) evaluations, all from the same x_T per model; the "
          f"straightness S of the ODE (Liu et al. eq. 11, {STRAIGHTNESS_STEPS} Euler steps; 0 for "
          f"straight paths); test bits/dim by the probability-flow ODE on {args.num_images} test "
          f"images:\n\n" + '\n'.join(lines) + '\n')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true', help="tiny stand-ins: the table's shape only")
  parser.add_argument('--out', help='results directory (benchmarks/results; --quick: .../quick)')
  parser.add_argument('--num_samples', type=int, default=None, help='per cell (300; quick 16)')
  parser.add_argument('--num_images', type=int, default=None, help='bits/dim images (64; quick 4)')
  parser.add_argument('--models', default=','.join(MODELS),
                      help='comma-separated subset of ' + ', '.join(MODELS))
  args = parser.parse_args()
  args.out = args.out or results_dir(args.quick)
  args.num_samples = args.num_samples or (16 if args.quick else 300)
  args.num_images = args.num_images or (4 if args.quick else 64)
  device = get_device('auto')
  rows = {name: measure(name, args, device) for name in args.models.split(',')}
  md = markdown(rows, args)
  print(md)
  write_results('flow_digits', {'device': str(device), 'args': vars(args), 'rows': rows}, md,
                args.out)


if __name__ == '__main__':
  main()
