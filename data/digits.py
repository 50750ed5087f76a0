"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, grey levels 0..16), no download.

Images are value / 16, so they lie on the 17-level grid k / 16 (use num_bins = 17 to
dequantize). The split is a fixed permutation drawn with seed SPLIT_SEED: its first
NUM_TRAIN images are `train`, the remaining 300 are `test`, the same on every machine.
A larger `image_size` (a multiple of 8, e.g. 16 or 32 so a U-Net can downsample further)
repeats each pixel (nearest-neighbour upsampling), which keeps the 17 levels.
"""
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from utils.errors import ConfigError

NATIVE_SIZE = 8
NUM_LEVELS = 17
NUM_TRAIN = 1497
SPLIT_SEED = 0


def split_indices(split, n_total):
  """Indices of `split` in a fixed seeded permutation of range(n_total)."""
  order = torch.randperm(n_total, generator=torch.Generator().manual_seed(SPLIT_SEED))
  return {'train': order[:NUM_TRAIN], 'test': order[NUM_TRAIN:]}[split]


def digits_dataset(split, image_size=NATIVE_SIZE, num_channels=1):
  """(x of shape (1, image_size, image_size) in [0, 1], digit class) items."""
  if image_size % NATIVE_SIZE:
    raise ConfigError(f"digits are {NATIVE_SIZE}x{NATIVE_SIZE}; image_size must be a multiple of "
                      f"{NATIVE_SIZE}, got {image_size}")
  if num_channels != 1:
    raise ConfigError(f"digits are grey-scale: num_channels must be 1, got {num_channels}")
  from sklearn.datasets import load_digits   # here: scikit-learn takes seconds to import
  bunch = load_digits()
  images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / (NUM_LEVELS - 1)
  labels = torch.as_tensor(bunch.target, dtype=torch.long)
  index = split_indices(split, len(images))
  images = F.interpolate(images[index], scale_factor=image_size // NATIVE_SIZE, mode='nearest')
  return TensorDataset(images, labels[index])
