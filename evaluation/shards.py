"""Samples drawn in shards on disk, so a crash loses at most one shard and a rerun resumes.

Shard i holds samples [i * batch_size, (i + 1) * batch_size) drawn with a generator seeded by
(seed, i), so a resumed run gives the same samples as an uninterrupted one. Samples are stored
as a viewer would see them: images as uint8 [B, H, W, C] (round(255 x), as a PNG holds them),
2-D points as float32. A shard is `<dir>/shard_<i>.npz` with the samples, the score
evaluations per sample (`nfe`) and the wall time of its batch, written atomically.
"""
import math
import os
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from utils.atomic import save_npz_atomic


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


def shard_seed(seed, index):
  return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def generate_shards(shard_dir, num_samples, batch_size, draw, seed=0, device='cpu', progress=True):
  """Draw `num_samples` with draw(n, generator) -> (x in data space, nfe), reusing the shards
  already in `shard_dir`. Returns (stored samples, score evaluations per sample, seconds per
  sample), the last two averaged over all shards, including earlier runs'."""
  num_shards = math.ceil(num_samples / batch_size)
  parts, nfe, seconds = [], 0.0, 0.0
  for i in tqdm(range(num_shards), desc='sample shards', disable=not progress):
    path = os.path.join(shard_dir, f'shard_{i}.npz')
    count = min(batch_size, num_samples - i * batch_size)
    if os.path.exists(path):
      with np.load(path) as shard:
        shard = dict(shard)
      if int(shard['batch_size']) != batch_size or len(shard['samples']) != count:
        raise ValueError(f"{path} was drawn with batch size {int(shard['batch_size'])} "
                         f"({len(shard['samples'])} samples), this run uses {batch_size} "
                         f"({count}); delete {shard_dir} to draw again")
    else:
      generator = torch.Generator(device).manual_seed(shard_seed(seed, i))
      start = time.perf_counter()
      x, shard_nfe = draw(count, generator)
      shard = dict(samples=to_storage(x), nfe=np.asarray(shard_nfe),
                   seconds=np.asarray(time.perf_counter() - start), batch_size=np.asarray(batch_size))
      save_npz_atomic(path, **shard)
    parts.append(shard['samples'])
    nfe += float(shard['nfe']) * count
    seconds += float(shard['seconds'])
  return np.concatenate(parts), nfe / num_samples, seconds / num_samples
