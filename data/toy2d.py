"""Two-dimensional toy distributions: a ring of Gaussians (with exact parameters, so samples
and likelihoods can be compared to the truth) and a checkerboard.

Each split is a fixed set of points drawn from a generator seeded by SPLIT_SEEDS[split],
so train and test are independent draws that are the same on every run.
"""
import math

import torch
from torch.utils.data import TensorDataset

from sde_lib.gaussian_mixture import ring_mixture
from utils.errors import ConfigError

SPLIT_SEEDS = {'train': 0, 'test': 1}


def sample_ring(n, radius, std, n_modes, generator):
  """n points of the ring mixture (sde_lib/gaussian_mixture.py ring_mixture, whose exact score
  and density are known) and the index of the mode each came from."""
  means = ring_mixture(n_modes, radius, std).means
  modes = torch.randint(n_modes, (n,), generator=generator)
  noise = std * torch.randn(n, 2, generator=generator, dtype=torch.float64)
  return (means[modes] + noise).float(), modes


def sample_checkerboard(n, generator, cells=4, half_width=2.0):
  """Uniform on the cells (i, j) of a cells x cells board over [-half_width, half_width]^2
  with i + j even; returns the points and their cell index i * cells + j."""
  rows = torch.randint(cells, (n,), generator=generator)
  cols = 2 * torch.randint(cells // 2, (n,), generator=generator) + rows % 2
  width = 2 * half_width / cells
  corner = torch.stack([cols, rows], dim=1).float() * width - half_width
  points = corner + width * torch.rand(n, 2, generator=generator)
  return points, rows * cells + cols


def toy2d_dataset(split, name, size, radius=4.0, std=0.2, n_modes=8):
  """(point of shape (2,), mode or cell index) items of the named toy distribution."""
  generator = torch.Generator().manual_seed(SPLIT_SEEDS[split])
  samplers = {
      'ring': lambda: sample_ring(size, radius, std, n_modes, generator),
      'checkerboard': lambda: sample_checkerboard(size, generator),
  }
  if name not in samplers:
    raise ConfigError(f"unknown toy data set {name!r}; choose one of {sorted(samplers)}")
  points, labels = samplers[name]()
  return TensorDataset(points, labels)
