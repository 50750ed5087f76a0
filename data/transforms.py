"""Per-item image augmentations shared by every image data set: horizontal flip and uniform
dequantization (Ho et al. 2020 sec. 3.3; Song et al. 2021 app. on likelihoods)."""
import torch
from torch.utils.data import Dataset


def bin_point(x, u, num_bins):
  """(k + u) / num_bins: the point at offset u in [0, 1) of the bin [k / num_bins, (k + 1) /
  num_bins) of a pixel stored at level k = x (num_bins - 1)."""
  return (torch.round(x * (num_bins - 1)) + u) / num_bins


def uniform_dequantize(x, num_bins, generator=None):
  """bin_point with u ~ U[0, 1): a uniform point of each pixel's bin."""
  u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
  return bin_point(x, u, num_bins)


def quantize(x, num_bins):
  """The stored level k / (num_bins - 1) of the bin [k / num_bins, (k + 1) / num_bins) that x
  (clamped to [0, 1]) falls in: the inverse of uniform_dequantize."""
  return torch.floor(x.clamp(0, 1) * num_bins).clamp(max=num_bins - 1) / (num_bins - 1)


class ImageAugmentation(Dataset):
  """Wraps a data set of (image in [0, 1] of shape (C, H, W), label) items.

  flip: mirror the width axis with probability 1/2 (callers enable it on the train split only).
  num_bins: if given, uniformly dequantize with that many levels; the images must already lie
  on the grid k / (num_bins - 1), which the data set builders check.
  Randomness comes from torch's global generator, which DataLoader seeds per worker.
  """

  def __init__(self, base, flip=False, num_bins=None):
    self.base = base
    self.flip = flip
    self.num_bins = num_bins

  def __len__(self):
    return len(self.base)

  def __getitem__(self, index):
    x, label = self.base[index]
    if self.flip and torch.rand(()) < 0.5:
      x = x.flip(-1)
    if self.num_bins is not None:
      x = uniform_dequantize(x, self.num_bins)
    return x, label
