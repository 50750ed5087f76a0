"""Seconds (and steps per second) per training step of the paper configs, so a run's length
can be extrapolated, with the GPU training options.

Builds each config's Trainer (network, loss, Adam, EMA) on a folder of random images of the
config's shape (no download) and times Trainer.update, one full step (loss, backward,
gradient clipping, Adam, EMA), at the given batch size after two warm-up steps (torch.compile
compiles in the first). Each variant is a '+'-joined list of training options: fp32 (none),
bf16, fp16, compile, channels_last, tf32. Prints a table and writes
benchmarks/results/train_step_time_<device>.{json,md}.

  .venv/bin/python benchmarks/train_step_time.py [--configs vp_cifar10 ve_cifar10 ddpm_cifar10]
      [--batch 8] [--steps 3] [--device auto] [--variants fp32 bf16 bf16+compile]
"""
import argparse
import importlib
import os
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.results_io import write_results  # noqa: E402
from data import data_shape  # noqa: E402
from pipeline.train import Trainer  # noqa: E402


def random_images(directory, shape, count):
  channels, size = shape[0], shape[1]
  rng = np.random.default_rng(0)
  for i in range(count):
    pixels = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).save(f'{directory}/{i}.png')


def apply_variant(training, variant):
  """training.* set from a variant such as 'bf16+compile' ('fp32': the defaults)."""
  for option in variant.split('+'):
    if option in ('bf16', 'fp16'):
      training.precision = option
    elif option in ('compile', 'channels_last', 'tf32'):
      training[option] = True
    elif option != 'fp32':
      raise SystemExit(f"unknown option {option!r} in variant {variant!r}")


def seconds_per_step(name, batch, steps, device, variant='fp32', model=None):
  """Seconds per training step of config `name` (config.model updated with `model`)."""
  config = importlib.import_module(f'configs.{name}').get_config()
  config.model.update(model or {})
  config.training.batch_size = batch
  config.training.snapshot_sampling = False
  config.training.bound_images = 0
  config.device = device
  apply_variant(config.training, variant)
  with tempfile.TemporaryDirectory() as tmp:
    images = os.path.join(tmp, 'images')
    os.makedirs(images)
    random_images(images, data_shape(config), batch)
    config.data.dataset, config.data.root = 'folder', images
    trainer = Trainer(config, os.path.join(tmp, 'run'), progress=False)
    model = torch.compile(trainer.model) if config.training.compile else trainer.model
    batch_of_step = trainer.batches[0]
    params = sum(p.numel() for p in trainer.model.parameters())
    for _ in range(2):     # warm-up (allocations, kernels, compilation)
      trainer.update(model, batch_of_step)
    times = []
    for _ in range(steps):
      if trainer.ddp.device.type == 'cuda':
        torch.cuda.synchronize()
      start = time.perf_counter()
      trainer.update(model, batch_of_step)
      if trainer.ddp.device.type == 'cuda':
        torch.cuda.synchronize()
      times.append(time.perf_counter() - start)
    trainer.ddp.close()
  return {'config': name, 'variant': variant, 'model': config.model.name, 'parameters': params,
          'batch': batch, 'seconds_per_step': float(np.mean(times)), 'min': float(np.min(times)),
          'steps_per_second': 1 / float(np.mean(times)), 'steps': steps,
          'device': str(trainer.ddp.device), 'threads': torch.get_num_threads()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--configs', nargs='+', default=['vp_cifar10', 've_cifar10', 'ddpm_cifar10'])
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--device', default='auto')
  parser.add_argument('--variants', nargs='+', default=['fp32'])
  args = parser.parse_args()
  rows = []
  for name in args.configs:
    for variant in args.variants:
      rows.append(seconds_per_step(name, args.batch, args.steps, args.device, variant))
      print(f"{name} {variant}: {rows[-1]['seconds_per_step']:.3f} s/step", flush=True)
  lines = ['| config | options | network | parameters | batch | s/step (mean) | s/step (min) | '
           'steps/s | device |', '|---|---|---|---|---|---|---|---|---|']
  lines += [f"| {r['config']} | {r['variant']} | {r['model']} | {r['parameters']:,} | {r['batch']} | "
            f"{r['seconds_per_step']:.3f} | {r['min']:.3f} | {r['steps_per_second']:.2f} | "
            f"{r['device']} ({r['threads']} threads) |" for r in rows]
  table = '\n'.join(lines)
  print(table)
  device = rows[0]['device'].split(':')[0]
  out = write_results(f'train_step_time_{device}', rows, table + '\n')
  print(f"wrote {out}.json and .md")


if __name__ == '__main__':
  main()
