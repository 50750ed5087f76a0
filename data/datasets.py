"""get_dataset(config, split): the data set named by `config.data.dataset`.

Image data sets yield (x, label) with x float32 (C, H, W) in [0, 1]; `toy2d` yields (point of
shape (2,) as drawn, mode or cell index). Every image data set goes through the same
ImageAugmentation: `random_flip` (train split only) and `uniform_dequantization` with `num_bins`
levels, which must equal the data set's number of grey levels (17 for digits, 256 for 8-bit
files). A class-conditional model (model.class_conditional) needs data.num_classes to equal the
data set's number of classes: 10 for digits and CIFAR-10, a folder's class subfolders, the
toy ring's modes. `fit_to_data` checks both (and a folder's image sizes, colours and splits)
before a run writes anything.
"""
import os

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


# PIL modes of one-channel images
GREY_MODES = ('1', 'L', 'LA', 'P;L', 'I', 'I;16', 'F')


def fit_to_data(config, given=()):
  """Check config.data against the training split before a run writes anything; returns notes
  to print.

  data.num_bins (the bits/dim offset, whether or not training dequantizes) and
  data.num_classes have one right value for the data: a wrong one from the config file (or a
  script) is replaced by it, with a note, and a wrong one given on the command line (`given`:
  the dotted names of the fields it sets) is refused (num_classes = 0, no labels, passes for an
  unconditional model). For an image folder, a note when all its
  images share a square size or a colour kind that data.image_size or data.num_channels does
  not (they are resized and converted as configured), and when it has no test/ subfolder (its
  test split, for eval and the held-out bound, is then the training images)."""
  c = config.data
  if c.dataset not in DATASETS:
    raise ConfigError(f"unknown data set {c.dataset!r}; choose one of {sorted(DATASETS)}")
  dataset, num_levels, num_classes = DATASETS[c.dataset](c, 'train', False)
  where = f"the folder {c.root}" if c.dataset == 'folder' else c.dataset
  facts = {'num_classes': (num_classes, f"{where} has {num_classes} classes" + (
      ' (its class subfolders)' if c.dataset == 'folder' else ''))}
  if num_levels is not None:
    facts['num_bins'] = (num_levels, f"{where} has {num_levels} grey levels")
  notes = []
  for field, (value, fact) in sorted(facts.items()):
    if c[field] == value or (field == 'num_classes' and not c[field]
                             and not config.model.class_conditional):   # 0: no labels used
      continue
    if f'data.{field}' in given:
      raise ConfigError(f"config.data.{field} = {c[field]}, but {fact}: set it to {value} or "
                        f"leave it out")
    notes.append(f"data.{field} {c[field]} -> {value}: {fact}")
    c[field] = value
  if config.model.class_conditional and not num_classes:
    raise ConfigError(f"model.class_conditional needs labelled data, and {where} has no classes "
                      f"(a folder's classes are its subfolders, one per class)")
  if c.dataset == 'folder':
    notes += _folder_notes(c, dataset)
  return notes


def _folder_notes(c, dataset):
  sizes = {(width, height) for width, height, _ in dataset.formats}
  channels = {1 if mode in GREY_MODES else 3 for _, _, mode in dataset.formats}
  notes = []
  width, height = next(iter(sizes))
  if len(sizes) == 1 and width == height != c.image_size:
    notes.append(f"the images of {c.root} are {width}x{width}; they are resized to "
                 f"data.image_size = {c.image_size}")
  if len(channels) == 1 and channels != {c.num_channels}:
    notes.append(f"the images of {c.root} have {next(iter(channels))} channel(s); they are "
                 f"converted to data.num_channels = {c.num_channels}")
  if not os.path.isdir(os.path.join(c.root, 'test')):
    notes.append(f"{c.root} has no test/ subfolder: the test split (eval, the held-out bound) "
                 f"is the training images")
  return notes


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
