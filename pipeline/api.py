"""The Python API over trained runs: load a run directory, draw its samples as images, and the
bits/dim of given images, computed as `run.py --mode sample` and `--mode eval` compute them.

  run = load_run('runs/vp_digits')
  images = sample_images(run, 16, method='ode')        # (16, C, H, W) in [0, 1]
  bpd = bits_per_dim(run, images)                       # one number per image

docs/api.md has runnable examples (and the library-level ones: any score in any sampler).
"""
import dataclasses

import numpy as np
import torch
from tqdm.auto import tqdm

from configs.run_config import inference_config
from configs.validate import validate
from pipeline.bpd import BPD, batch_bpd
from evaluation.dequantization import get_dequantizer
from evaluation.shards import from_storage, to_storage
from models import get_score_fn, parameterization_of, restore_for_inference
from pipeline.sampling import data_sampler, draw_samples, score_and_variance_fns
from utils.seeding import batch_generator
from sde_lib import get_sde
from utils.checkpoint import resolve_checkpoint
from utils.device import get_device
from utils.errors import ConfigError


@dataclasses.dataclass
class Run:
  """A trained run, ready to sample: its config (config.json with any overrides), the network
  with its EMA weights in eval mode, the SDE, the checkpoint's path and step, the device."""
  config: object
  workdir: str
  model: torch.nn.Module
  sde: object
  checkpoint: str
  step: int
  device: torch.device


def load_run(workdir, ckpt='', device=None, overrides=None):
  """The run in `workdir` (its config.json) at checkpoint `ckpt` ('' the latest, a step number
  or a path), on `device` (default: the config's). `overrides`: {'eval.batch_size': 100, ...},
  as run.py's --config.a.b=v (fields that define the trained network are refused). Bad input
  raises utils.errors.ConfigError."""
  config, _ = inference_config(workdir, None, overrides or {})
  validate(config)
  device = get_device(config.device) if device is None else torch.device(device)
  checkpoint = resolve_checkpoint(workdir, ckpt or config.eval.ckpt)
  model, step, _ = restore_for_inference(config, workdir, checkpoint, device)
  return Run(config, workdir, model, get_sde(config), checkpoint, step, device)


def sample_images(run, n, seed=None, batch_size=None, progress=False, **sampling):
  """n samples of the run with its sampling settings and `sampling` overrides (any
  config.sampling field: method='ode', steps=20, ...), drawn in batches of `batch_size`
  (default sampling.batch_size) from `seed` (default the config's): images (n, C, H, W) in
  [0, 1] on the 8-bit grid k / 255, the values `run.py --mode sample` stores for the same
  settings (2-D points of a toy run as drawn)."""
  config = run.config.copy_and_resolve_references()
  unknown = sorted(set(sampling) - set(config.sampling))
  if unknown:
    raise ConfigError(f"unknown sampling setting(s) {', '.join(unknown)}")
  config.sampling.update(sampling)
  validate(config)
  draw = data_sampler(config, run.sde, run.model, run.device, checkpoint=run.checkpoint,
                      workdir=run.workdir)
  samples, _ = draw_samples(draw, n, batch_size or config.sampling.batch_size,
                            config.seed if seed is None else seed, run.device, progress)
  return from_storage(to_storage(samples))


def bits_per_dim(run, images, seed=None, progress=False):
  """Per-image bits/dim (a numpy array) of `images` (N, C, H, W) in [0, 1] on the data's grid,
  dequantized and scaled as `--mode eval` does (config.eval: dequantization, its draws,
  hutchinson, n_probes, bpd_* tolerances) in batches of eval.batch_size, batch i with the
  generator eval gives its batch i: the test split's first N images give eval's numbers."""
  config, device = run.config, run.device
  e = config.eval
  images = torch.as_tensor(images, dtype=torch.float32)
  shape = (config.data.num_channels, config.data.image_size, config.data.image_size)
  if images.dim() != 4 or tuple(images.shape[1:]) != shape:
    raise ConfigError(f"images must have shape (N, {', '.join(map(str, shape))}), the run's "
                      f"data; got {tuple(images.shape)}")
  if images.min() < 0 or images.max() > 1:
    raise ConfigError("images must lie in [0, 1]")
  score_fn = get_score_fn(run.sde, run.model, config.training.continuous,
                          parameterization_of(config))
  flow = None
  if e.dequantization == 'variational':
    from pipeline.evaluate import variational_dequantizer   # only this one needs its flow
    flow = variational_dequantizer(config, run.model, run.sde, score_fn, device, run.checkpoint)
  dequantize = get_dequantizer(e.dequantization, e.dequantization_draws, flow)
  seed = config.seed if seed is None else seed
  per_image = []
  starts = range(0, len(images), e.batch_size)
  for index, start in enumerate(tqdm(starts, desc='bits/dim', disable=not progress)):
    x = images[start:start + e.batch_size].to(device)
    generator = batch_generator(seed, index, device, BPD)
    per_image.append(batch_bpd(config, score_fn, run.sde, x, generator, dequantize)[0])
  return np.concatenate(per_image)


def likelihood_report(run):
  """`--mode eval`'s likelihood numbers of `run` on its test split, as config.eval sets them
  (enable_bpd / enable_vlb / enable_score_bound, their image counts, dequantization, divergence
  estimator, tolerances): (numbers, per_image, notes). numbers: {'bpd' | 'vlb' | 'score_bound':
  {'mean', 'stderr', ...}} for those enabled; per_image: each one's numpy array per image; notes:
  why a number was skipped (e.g. no DDPM bound without the VP chain)."""
  from pipeline.evaluate import likelihood_numbers
  score_fn = score_and_variance_fns(run.config, run.sde, run.model)[0]
  notes = []
  numbers, per_image = likelihood_numbers(run.config, run.model, run.sde, score_fn, run.device,
                                          notes, run.checkpoint)
  return numbers, per_image, notes

