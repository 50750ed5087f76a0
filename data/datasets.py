"""get_dataset(config, split): the data set named by `config.data.dataset`.

Image data sets yield (x, label) with x float32 (C, H, W) in [0, 1]; `toy2d` yields (point of
shape (2,) as drawn, mode or cell index). Every image data set goes through the same
ImageAugmentation: `random_flip` (train split only) and `uniform_dequantization` with `num_bins`
levels, which must equal the data set's number of grey levels (17 for digits, 256 for 8-bit
files). A class-conditional model (model.class_conditional) needs data.num_classes to equal the
data set's number of classes: 10 for digits and CIFAR-10, a folder's class subfolders, the
toy ring's modes.
"""
from data import digits, pil
from data.cifar10 import cifar10_dataset
from data.folder import folder_dataset
from data.toy2d import toy2d_dataset
from data.transforms import ImageAugmentation
from utils.errors import ConfigError

SPLITS = ('train', 'test')


def _digits(c, split, download):
  return digits.digits_dataset(split, c.image_size, c.num_channels), digits.NUM_LEVELS, 10


def _cifar10(c, split, download):
  dataset = cifar10_dataset(split, c.root, c.image_size, c.num_channels, download)
  return dataset, pil.NUM_LEVELS, len(dataset.classes)


def _folder(c, split, download):
  dataset = folder_dataset(split, c.root, c.image_size, c.num_channels)
  return dataset, pil.NUM_LEVELS, len(dataset.classes)


def _toy2d(c, split, download):
  dataset = toy2d_dataset(split, c.toy_name, c.toy_size, c.toy_radius, c.toy_std, c.toy_modes)
  # The ring's label is its mode; the checkerboard's is the cell index of its 4 x 4 board.
  return dataset, None, c.toy_modes if c.toy_name == 'ring' else 16


# name -> builder(config.data, split, download) -> (data set, grey levels (None: not images),
# number of classes its labels index (0: none, every label 0))
DATASETS = {'digits': _digits, 'cifar10': _cifar10, 'folder': _folder, 'toy2d': _toy2d}


def get_dataset(config, split='train', download=False):
  """The `split` ('train' | 'test') of `config.data.dataset`; only cifar10 can download, and
  only when `download=True`. Missing files raise data.DatasetUnavailable."""
  c = config.data
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
  if c.dataset not in DATASETS:
    raise ConfigError(f"unknown data set {c.dataset!r}; choose one of {sorted(DATASETS)}")
  dataset, num_levels, num_classes = DATASETS[c.dataset](c, split, download)
  if config.model.class_conditional and c.num_classes != num_classes:
    hint = ' (one per subfolder holding its images)' if c.dataset == 'folder' else ''
    raise ConfigError(f"model.class_conditional: {c.dataset} has {num_classes} classes{hint}, "
                      f"but config.data.num_classes = {c.num_classes}")
  if num_levels is None:
    return dataset
  if c.uniform_dequantization and c.num_bins != num_levels:
    raise ConfigError(f"{c.dataset} has {num_levels} grey levels: set config.data.num_bins = "
                      f"{num_levels} to dequantize it (got {c.num_bins})")
  return ImageAugmentation(dataset, flip=c.random_flip and split == 'train',
                           num_bins=c.num_bins if c.uniform_dequantization else None)


def get_eval_dataset(config, split='test'):
  """The split as stored: no flips, no dequantization (what FID statistics, bits/dim and the
  bound are computed on)."""
  data_config = config.copy_and_resolve_references()
  data_config.data.uniform_dequantization = False
  data_config.data.random_flip = False
  return get_dataset(data_config, split)


def data_shape(config):
  """Shape of one data point: (2,) for toy2d points, else (C, H, W)."""
  if config.data.dataset == 'toy2d':
    return (2,)
  return (config.data.num_channels, config.data.image_size, config.data.image_size)
