"""Samples on disk: one stored form for every set, and eval's sets drawn in resumable shards.

Samples are stored as a viewer would see them: images as uint8 [B, H, W, C] (round(255 x), as
a PNG holds them), 2-D points as float32 [B, 2]; `samples.npz` (eval) and
`samples/<key>.npz` (--mode sample) hold them under `samples`.

Eval draws in shards, so a crash loses at most one and a rerun resumes: shard i is batch i of
pipeline.sampling's seeded batches, `<dir>/shard_<i>.npz` with the samples, the score evaluations
per sample (`nfe`), the wall time of its batch and its batch size, written atomically. The
directory is named by pipeline.sampling.samples_key, so whatever is stored there was drawn with the
same settings; only a last, partial shard of another length (num_samples changed) is drawn again.
Under torchrun each process draws the shards i = rank, rank + W, ... and the main process reads
them all: shard i is a function of (seed, i) and the batch size, so 1, 2 or 8 processes, and
any number of interruptions, give the same set.
"""
import math
import os
import time

import numpy as np
import torch
from torchvision.utils import save_image
from tqdm.auto import tqdm

from utils.seeding import batch_generator
from utils.atomic import atomic_write, save_npz_atomic
from utils.distributed import shares
from utils.pictures import class_picture, sample_picture

GRID_IMAGES = 64   # images in a sample picture


def to_storage(x):
  """Data-space samples -> stored form: images [B, C, H, W] in [0, 1] -> uint8 [B, H, W, C]."""
  x = x.detach().cpu()
  if x.dim() == 4:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
  return x.float().numpy()


def from_storage(samples):
  """Stored samples -> float tensor in data space ([B, C, H, W] in [0, 1] for images)."""
  if samples.dtype == np.uint8:
    return torch.from_numpy(samples).permute(0, 3, 1, 2).float() / 255
  return torch.from_numpy(samples)


def save_samples(npz_path, png_path, samples, labels=None, **arrays):
  """Stored samples (and any other arrays; their class `labels` if any) as an .npz, and their
  picture as a .png, both atomically: a grid of the first GRID_IMAGES images (with labels, one
  row per class: class_picture), or a scatter plot of the points."""
  if labels is not None:
    arrays['labels'] = np.asarray(labels)
  save_npz_atomic(npz_path, samples=samples, **arrays)
  x = from_storage(samples)
  if x.dim() == 4 and labels is not None:
    picture = class_picture(x, labels)
  elif x.dim() == 4:
    picture = sample_picture(x[:GRID_IMAGES])
  else:
    picture = sample_picture(x, bound=1.2 * float(np.quantile(np.abs(samples), 0.999)))
  atomic_write(png_path, lambda f: save_image(picture, f, format='png'))


def generate_shards(shard_dir, num_samples, batch_size, draw, seed=0, device='cpu', progress=True,
                    ddp=None):
  """Draw `num_samples` with draw(n, generator, progress, start) -> (x in data space, nfe)
  (pipeline.sampling.data_sampler), reusing the shards already in `shard_dir`; with `ddp`
  (utils.distributed.Distributed) this process draws its share. Returns (stored samples, score
  evaluations per sample, seconds per sample), the last two averaged over all shards,
  including earlier runs'; under torchrun None on all but the main process."""
  num_shards = math.ceil(num_samples / batch_size)
  count = lambda i: min(batch_size, num_samples - i * batch_size)
  path = lambda i: os.path.join(shard_dir, f'shard_{i}.npz')
  for i in tqdm(shares(num_shards, ddp), desc='sample shards', disable=not progress):
    if _stored_shard(path(i), count(i), batch_size) is None:
      start = time.perf_counter()
      x, shard_nfe = draw(count(i), batch_generator(seed, i, device), False, i * batch_size)
      save_npz_atomic(path(i), samples=to_storage(x), nfe=np.asarray(shard_nfe),
                      seconds=np.asarray(time.perf_counter() - start),
                      batch_size=np.asarray(batch_size))
  if ddp is not None:
    ddp.barrier()
    if not ddp.is_main:
      return None
  shards = [_stored_shard(path(i), count(i), batch_size) for i in range(num_shards)]
  nfe = sum(float(shard['nfe']) * count(i) for i, shard in enumerate(shards))
  seconds = sum(float(shard['seconds']) for shard in shards)
  return (np.concatenate([shard['samples'] for shard in shards]), nfe / num_samples,
          seconds / num_samples)


def _stored_shard(path, count, batch_size):
  """The shard at `path` as a dict, if it is there with `count` samples drawn in batches of
  `batch_size`; else None."""
  if not os.path.exists(path):
    return None
  with np.load(path) as stored:
    shard = dict(stored)
  if int(shard['batch_size']) != batch_size or len(shard['samples']) != count:
    return None
  return shard
