"""The PyPI package `consistency` (0.3.2) on the digits, run by its own environment's python
(`make peer-consistency` builds .venv-consistency; benchmarks/consistency_digits.py calls this).

Consistency training as the package does it (its `Consistency` LightningModule with its
defaults: MSE loss, RAdam at lr 1e-4, sigma_data 0.5, sigma in [0.002, 80], N(k) from 2 to 150
bins, target EMA from 0.9) on a diffusers UNet2DModel sized like our digits U-Net (channels 32
and 64, one block per level, attention at 4x4, 8 groups), batches of 64 of the train split
(--data: an .npz of images [N, 1, 8, 8] in [-1, 1]). The package's N(k) reads the Lightning
trainer's step over its max_steps, so the run's length is fixed first: a throwaway copy times
its steps after the trainer's setup, and max_steps is what the rest of the CPU-seconds budget
holds at that pace (a callback stops it at the budget should the estimate be short). Then --num_samples samples at
1 and 2 steps with the package's sampler (`Consistency.sample`, its target network as it
samples during training), counted in network evaluations.

  .venv-consistency/bin/python benchmarks/peers/consistency_package.py --data IN.npz
      --cpu_seconds 780 --out OUT.npz [--workdir DIR] [--num_samples 300] [--seed 42]
"""
import argparse
import copy
import os
import time
from importlib.metadata import version

import numpy as np
import torch
from consistency import Consistency
from diffusers import UNet2DModel
from pytorch_lightning import Callback, Trainer, seed_everything
from torch.utils.data import DataLoader

BATCH_SIZE = 64                # our digits configs'
CALIBRATION_STEPS = 40         # timed after the first WARMUP_STEPS (the trainer's setup)
WARMUP_STEPS = 10
STEPS = (1, 2)


def digits_unet():
  """The package's network type at our digits U-Net's size (configs/vp_digits.py: nf 32,
  ch_mult (1, 2), one res block, attention at 4x4, 8 groups)."""
  return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(32, 64),
                     layers_per_block=1, down_block_types=('DownBlock2D', 'AttnDownBlock2D'),
                     up_block_types=('AttnUpBlock2D', 'UpBlock2D'), norm_num_groups=8)


class StepTimes(Callback):
  """The process's CPU time at the end of each training step."""

  def __init__(self):
    self.times = []

  def on_train_batch_end(self, *args, **kwargs):
    self.times.append(time.process_time())


class StopAtCpuSeconds(Callback):
  """Ends training once the process has used `limit` CPU-seconds."""

  def __init__(self, limit):
    self.limit = limit

  def on_train_batch_end(self, trainer, *args, **kwargs):
    if time.process_time() >= self.limit:
      trainer.should_stop = True


def fit(module, loader, max_steps, callbacks=()):
  """Trains `module` with a plain CPU Lightning trainer (no logger, checkpoints or progress
  bar); returns its steps."""
  trainer = Trainer(accelerator='cpu', devices=1, max_steps=max_steps, logger=False,
                    enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, callbacks=list(callbacks))
  trainer.fit(module, loader)
  return trainer.global_step


def counted_sample(module, num_samples, steps, seed):
  """(samples in [-1, 1], network evaluations, wall seconds) of the package's sampler."""
  calls = []
  hook = module.model_ema.register_forward_hook(lambda *_: calls.append(1))
  start = time.perf_counter()
  samples = module.sample(num_samples=num_samples, steps=steps,
                          generator=torch.Generator().manual_seed(seed), use_ema=True)
  seconds = time.perf_counter() - start
  hook.remove()
  return samples.numpy(), len(calls), seconds


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data', required=True, help='.npz: images [N, 1, 8, 8] in [-1, 1]')
  parser.add_argument('--cpu_seconds', type=float, required=True, help='the training budget')
  parser.add_argument('--out', required=True, help='.npz of the samples and the run')
  parser.add_argument('--workdir', default='.', help="the package's sample pictures go here")
  parser.add_argument('--num_samples', type=int, default=300)
  parser.add_argument('--seed', type=int, default=42)
  args = parser.parse_args()
  seed_everything(args.seed)
  images = torch.from_numpy(np.load(args.data)['images'])
  loader = DataLoader(images, batch_size=BATCH_SIZE, shuffle=True)
  module = Consistency(digits_unet(), samples_path=os.path.join(args.workdir, 'samples'))

  start, clock = time.process_time(), StepTimes()
  fit(copy.deepcopy(module), loader, CALIBRATION_STEPS, [clock])
  per_step = (clock.times[-1] - clock.times[WARMUP_STEPS]) / (CALIBRATION_STEPS - 1 - WARMUP_STEPS)
  max_steps = int((start + args.cpu_seconds - time.process_time()) / per_step)
  steps = fit(module, loader, max_steps, [StopAtCpuSeconds(start + args.cpu_seconds)])
  cpu_seconds = time.process_time() - start

  module.eval()
  drawn = {n: counted_sample(module, args.num_samples, n, args.seed) for n in STEPS}
  np.savez(args.out, **{f'samples_{n}': drawn[n][0] for n in STEPS},
           **{f'nfe_{n}': drawn[n][1] for n in STEPS},
           **{f'seconds_{n}': drawn[n][2] for n in STEPS},
           cpu_seconds=cpu_seconds, steps=steps, max_steps=max_steps,
           version=version('consistency'))
  print(f'consistency {version("consistency")}: {steps} of {max_steps} steps, '
        f'{cpu_seconds / 60:.1f} CPU-min', flush=True)


if __name__ == '__main__':
  main()
