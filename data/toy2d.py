"""Two-dimensional toy distributions: a ring of Gaussians (with exact parameters, so samples
and likelihoods can be compared to the truth) and a checkerboard.

Each split is a fixed set of points drawn from a generator seeded by SPLIT_SEEDS[split],
so train and test are independent draws that are the same on every run.
"""
import math

import torch
from torch.utils.data import TensorDataset

from utils.errors import ConfigError

SPLIT_SEEDS = {'train': 0, 'test': 1}


def ring_mixture(radius, std, n_modes=8):
  """Equal-weight isotropic Gaussians N(mu_k, std^2 I) with mu_k = radius (cos a_k, sin a_k),
  a_k = 2 pi k / n_modes. Returns (weights [K], means [K, 2], covs [K, 2, 2]) in float64."""
  angles = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
  means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
  covs = std ** 2 * torch.eye(2, dtype=torch.float64).expand(n_modes, 2, 2).clone()
  weights = torch.full((n_modes,), 1.0 / n_modes, dtype=torch.float64)
  return weights, means, covs


def sample_ring(n, radius, std, n_modes, generator):
  """n points of the ring mixture and the index of the mode each came from."""
  _, means, _ = ring_mixture(radius, std, n_modes)
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
