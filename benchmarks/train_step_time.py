"""Seconds per training step of the paper configs, so a run's length can be extrapolated.

Builds each config's Trainer (network, loss, Adam, EMA) on a folder of random images of the
config's shape (no download) and times Trainer.update, one full step (loss, backward,
gradient clipping, Adam, EMA), at the given batch size after one warm-up step. Prints a table
and writes benchmarks/results/train_step_time_<device>.{json,md}.

  .venv/bin/python benchmarks/train_step_time.py [--configs vp_cifar10 ve_cifar10 ddpm_cifar10]
      [--batch 8] [--steps 3] [--device auto]
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
from training.trainer import Trainer  # noqa: E402


def random_images(directory, shape, count):
  channels, size = shape[0], shape[1]
  rng = np.random.default_rng(0)
  for i in range(count):
    pixels = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).save(f'{directory}/{i}.png')


def seconds_per_step(name, batch, steps, device):
  config = importlib.import_module(f'configs.{name}').get_config()
  config.training.batch_size = batch
  config.training.snapshot_sampling = False
  config.device = device
  with tempfile.TemporaryDirectory() as tmp:
    images = os.path.join(tmp, 'images')
    os.makedirs(images)
    random_images(images, data_shape(config), batch)
    config.data.dataset, config.data.root = 'folder', images
    trainer = Trainer(config, os.path.join(tmp, 'run'), progress=False)
    x = trainer.scaler(next(trainer.batches.from_step(0))[0].to(trainer.ddp.device))
    params = sum(p.numel() for p in trainer.model.parameters())
    trainer.update(trainer.model, x)     # warm-up (allocations, kernels)
    times = []
    for _ in range(steps):
      if trainer.ddp.device.type == 'cuda':
        torch.cuda.synchronize()
      start = time.perf_counter()
      trainer.update(trainer.model, x)
      if trainer.ddp.device.type == 'cuda':
        torch.cuda.synchronize()
      times.append(time.perf_counter() - start)
    trainer.ddp.close()
  return {'config': name, 'model': config.model.name, 'parameters': params, 'batch': batch,
          'seconds_per_step': float(np.mean(times)), 'min': float(np.min(times)), 'steps': steps,
          'device': str(trainer.ddp.device), 'threads': torch.get_num_threads()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--configs', nargs='+', default=['vp_cifar10', 've_cifar10', 'ddpm_cifar10'])
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--device', default='auto')
  args = parser.parse_args()
  rows = [seconds_per_step(name, args.batch, args.steps, args.device) for name in args.configs]
  lines = ['| config | network | parameters | batch | s/step (mean) | s/step (min) | device |',
           '|---|---|---|---|---|---|---|']
  lines += [f"| {r['config']} | {r['model']} | {r['parameters']:,} | {r['batch']} | "
            f"{r['seconds_per_step']:.2f} | {r['min']:.2f} | {r['device']} ({r['threads']} threads) |"
            for r in rows]
  table = '\n'.join(lines)
  print(table)
  device = rows[0]['device'].split(':')[0]
  out = write_results(f'train_step_time_{device}', rows, table + '\n')
  print(f"wrote {out}.json and .md")


if __name__ == '__main__':
  main()
