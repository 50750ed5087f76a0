"""The trained digits model the digits benchmarks share: `vp_digits` (the demo) trained for its
fixed budget in one workdir, reused when that run is finished, so benchmarks/digits.py and
benchmarks/likelihood_accuracy.py measure the same network and train it once between them.

--quick benchmarks use a tiny stand-in (nf 8, 20 steps) in their own workdir: its numbers say
nothing of quality, only that the pipeline and the tables' structure hold.
"""
import fcntl
import os
import time

from configs.vp_digits import get_config
from models import restore_for_inference
from pipeline.api import Run, likelihood_report
from pipeline.sampling import score_and_variance_fns
from sde_lib import get_sde
from pipeline.train import train
from utils.checkpoint import list_checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKDIR = os.path.join(ROOT, 'runs', 'bench_digits')
QUICK_WORKDIR = os.path.join(ROOT, 'runs', 'bench_digits_quick')
QUICK_ODE = dict(bpd_rtol=1e-3, bpd_atol=1e-3)   # --quick: looser ODE tolerances


def digits_config(quick=False):
  """vp_digits as the demo trains it (3,000 steps of 64); --quick: a tiny network, 20 steps."""
  config = get_config()
  if quick:
    config.model.nf, config.model.num_groups = 8, 4
    config.training.n_iters, config.training.batch_size = 20, 32
    config.training.snapshot_freq, config.training.snapshot_sampling = 20, False
  return config


def train_once(config, workdir):
  """Trains `config` in `workdir` unless a run of its n_iters is there; the training seconds, or
  None if the run was reused. Benchmarks run side by side (tests/test_benchmarks.py) and share
  runs: a file lock beside the workdir makes a second caller wait for the first and reuse its run
  (the run directory's own lock would refuse it instead)."""
  workdir = os.path.abspath(workdir)
  os.makedirs(os.path.dirname(workdir), exist_ok=True)
  with open(workdir + '.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if max((step for step, _ in list_checkpoints(workdir)), default=0) >= config.training.n_iters:
      return None
    start = time.perf_counter()
    train(config, workdir, progress=False)
    return time.perf_counter() - start


def trained_digits(device, workdir=None, quick=False):
  """(config, model with EMA weights, sde, score_fn, training seconds or None if reused):
  trains `digits_config(quick)` in `workdir` unless a run of its n_iters is there."""
  config = digits_config(quick)
  workdir = workdir or (QUICK_WORKDIR if quick else WORKDIR)
  seconds = train_once(config, workdir)
  model, step, _ = restore_for_inference(config, workdir, '', device)
  sde = get_sde(config)
  score_fn = score_and_variance_fns(config, sde, model)[0]
  return config, model, sde, score_fn, seconds


def ode_bits_per_dim(config, model, sde, device, checkpoint, num_images, quick=False):
  """(eval's summary of the test split's bits/dim by the probability-flow ODE with uniform
  dequantization, over its first num_images images, and the seconds it took): eval's own
  likelihood path with the DDPM and score-matching bounds off."""
  config = config.copy_and_resolve_references()
  e = config.eval
  e.bpd_num_images, e.enable_bpd, e.dequantization = num_images, True, 'uniform'
  e.enable_vlb = e.enable_score_bound = False
  if quick:
    e.update(QUICK_ODE)
  start = time.perf_counter()
  workdir = os.path.dirname(os.path.dirname(checkpoint))   # <workdir>/checkpoints/ckpt_<step>.pt
  run = Run(config, workdir, model, sde, checkpoint, None, device)
  numbers = likelihood_report(run)[0]
  return dict(numbers['bpd']), time.perf_counter() - start
