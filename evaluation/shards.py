"""Samples on disk: one stored form for every set, and eval's sets drawn in resumable shards.

Samples are stored as a viewer would see them: images as uint8 [B, H, W, C] (round(255 x), as
a PNG holds them), 2-D points as float32 [B, 2]; `samples.npz` (eval) and
`samples/<key>.npz` (--mode sample) hold them under `samples`.

Eval draws in shards, so a crash loses at most one and a rerun resumes: shard i is batch i of
samplers.draw's seeded batches, `<dir>/shard_<i>.npz` with the samples, the score evaluations
per sample (`nfe`), the wall time of its batch and its batch size, written atomically. The
directory is named by samplers.draw.samples_key, so whatever is stored there was drawn with the
same settings; only a last, partial shard of another length (num_samples changed) is drawn again.
"""
import math
import os
import time

import numpy as np
import torch
from torchvision.utils import save_image
from tqdm.auto import tqdm

from samplers.draw import batch_generator
from utils.atomic import atomic_write, save_npz_atomic
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


def generate_shards(shard_dir, num_samples, batch_size, draw, seed=0, device='cpu', progress=True):
  """Draw `num_samples` with draw(n, generator, progress, start) -> (x in data space, nfe)
  (samplers.draw.data_sampler), reusing the shards already in `shard_dir`. Returns (stored
  samples, score evaluations per sample, seconds per sample), the last two averaged over all
  shards, including earlier runs'."""
  num_shards = math.ceil(num_samples / batch_size)
  parts, nfe, seconds = [], 0.0, 0.0
  for i in tqdm(range(num_shards), desc='sample shards', disable=not progress):
    path = os.path.join(shard_dir, f'shard_{i}.npz')
    count = min(batch_size, num_samples - i * batch_size)
    shard = None
    if os.path.exists(path):
      with np.load(path) as stored:
        shard = dict(stored)
      if int(shard['batch_size']) != batch_size or len(shard['samples']) != count:
        shard = None
    if shard is None:
      start = time.perf_counter()
      x, shard_nfe = draw(count, batch_generator(seed, i, device), False, i * batch_size)
      shard = dict(samples=to_storage(x), nfe=np.asarray(shard_nfe),
                   seconds=np.asarray(time.perf_counter() - start), batch_size=np.asarray(batch_size))
      save_npz_atomic(path, **shard)
    parts.append(shard['samples'])
    nfe += float(shard['nfe']) * count
    seconds += float(shard['seconds'])
  return np.concatenate(parts), nfe / num_samples, seconds / num_samples
