"""Data sets against independent facts: sklearn's raw digits, the exact ring mixture of the
shared oracle, the definition of the bins, and images written here pixel by pixel."""
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

import data
from configs.default import get_default_config
from data.transforms import ImageAugmentation
from sde_lib.gaussian_mixture import ring_mixture
from utils.errors import ConfigError


def config_for(dataset, **fields):
  config = get_default_config()
  config.data.dataset = dataset
  config.data.random_flip = False
  if dataset == 'digits':
    config.data.image_size, config.data.num_channels = 8, 1
  for key, value in fields.items():
    setattr(config.data, key, value)
  return config


def stack(dataset):
  xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
  return torch.stack(xs), torch.as_tensor(ys)


# ---- digits -------------------------------------------------------------------------------

def test_digits_split_sizes_shape_range_and_levels():
  train, _ = stack(data.get_dataset(config_for('digits'), 'train'))
  test, _ = stack(data.get_dataset(config_for('digits'), 'test'))
  assert train.shape == (1497, 1, 8, 8) and test.shape == (300, 1, 8, 8)
  assert train.dtype == torch.float32
  assert train.min() == 0.0 and train.max() == 1.0
  levels = torch.unique(torch.cat([train, test]) * 16)
  assert torch.equal(levels, torch.arange(17, dtype=torch.float32))   # 0..16 exactly


def test_digits_splits_partition_sklearn_images_deterministically():
  config = config_for('digits')
  train, train_y = stack(data.get_dataset(config, 'train'))
  test, test_y = stack(data.get_dataset(config, 'test'))
  again, _ = stack(data.get_dataset(config, 'train'))
  assert torch.equal(train, again)
  # Together the two splits are sklearn's images (with their labels), each exactly once.
  bunch = load_digits()
  ours = np.concatenate([torch.cat([train, test]).reshape(-1, 64).numpy() * 16,
                         torch.cat([train_y, test_y])[:, None].numpy()], axis=1)
  raw = np.concatenate([bunch.images.reshape(-1, 64), bunch.target[:, None]], axis=1)
  assert np.array_equal(ours[np.lexsort(ours.T)], raw[np.lexsort(raw.T)])
  # Disjoint: no test row occurs in train (the raw set has no exact duplicates across them).
  train_rows = {row.tobytes() for row in ours[:1497]}
  raw_rows = [row.tobytes() for row in raw]
  assert len(set(raw_rows)) == len(raw_rows)
  assert not any(row.tobytes() in train_rows for row in ours[1497:])


def test_digits_upsampling_repeats_pixels():
  small, _ = stack(data.get_dataset(config_for('digits'), 'test'))
  large, _ = stack(data.get_dataset(config_for('digits', image_size=16), 'test'))
  assert large.shape == (300, 1, 16, 16)
  for di in range(2):
    for dj in range(2):
      assert torch.equal(large[..., di::2, dj::2], small)
  with pytest.raises(ValueError, match='multiple of 8'):
    data.get_dataset(config_for('digits', image_size=12))


# ---- scalers and augmentations --------------------------------------------------------------

def test_scaler_maps_unit_interval_to_centered_and_back():
  x = torch.rand(4, 1, 8, 8)
  config = config_for('digits', centered=True)
  scaled = data.get_data_scaler(config)(x)
  assert torch.allclose(scaled, 2 * x - 1)
  assert data.get_data_scaler(config)(torch.tensor([0.0, 1.0])).tolist() == [-1.0, 1.0]
  assert torch.allclose(data.get_data_inverse_scaler(config)(scaled), x, atol=1e-7)  # fp32 rounding
  config.data.centered = False
  assert torch.equal(data.get_data_scaler(config)(x), x)
  assert torch.equal(data.get_data_inverse_scaler(config)(x), x)


def test_flip_mirrors_only_the_width_axis():
  image = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)   # no symmetry at all
  flipper = ImageAugmentation([(image, 7)], flip=True)
  torch.manual_seed(0)
  outcomes = [flipper[0] for _ in range(40)]
  assert all(label == 7 for _, label in outcomes)
  seen = {'same' if torch.equal(x, image) else 'width' if torch.equal(x, image.flip(2)) else 'other'
          for x, _ in outcomes}
  assert seen == {'same', 'width'}   # P(one outcome missing in 40 fair draws) = 2^-39


def test_get_dataset_flips_train_split_only():
  config = config_for('digits', random_flip=True)
  plain, _ = stack(data.get_dataset(config_for('digits'), 'test'))
  torch.manual_seed(0)
  test, _ = stack(data.get_dataset(config, 'test'))
  assert torch.equal(test, plain)
  train_plain, _ = stack(data.get_dataset(config_for('digits'), 'train'))
  train, _ = stack(data.get_dataset(config, 'train'))
  flipped = ~(train == train_plain).flatten(1).all(1)
  assert torch.equal(train[flipped], train_plain[flipped].flip(-1))
  assert 0.4 < flipped.float().mean() < 0.6   # Binomial(1497, 1/2): 0.1 is > 7 std


@pytest.mark.parametrize('num_bins', [17, 256])
def test_dequantization_stays_in_each_pixels_bin(num_bins):
  levels = torch.randint(num_bins, (500, 1, 4, 4), generator=torch.Generator().manual_seed(0))
  images = [(x, 0) for x in levels.float() / (num_bins - 1)]
  torch.manual_seed(1)
  deq, _ = stack(ImageAugmentation(images, num_bins=num_bins))
  assert torch.equal(torch.floor(deq * num_bins).long(), levels)
  # The offset within the bin is U[0, 1): mean 1/2, std sqrt(1/12)/sqrt(8000) = 0.0032; 5 std.
  offset = deq * num_bins - levels
  assert abs(offset.mean().item() - 0.5) < 0.016


@pytest.mark.parametrize('num_bins', [17, 256])
def test_samples_of_a_dequantized_model_go_back_to_their_bins_level(num_bins):
  # Every point of bin k, [k, k + 1) / num_bins, decodes to the stored level k / (num_bins - 1),
  # and values outside [0, 1] to the end levels; only with data.uniform_dequantization.
  config = get_default_config()
  config.data.num_bins, config.data.uniform_dequantization = num_bins, True
  levels = torch.randint(num_bins, (500, 1, 4, 4), generator=torch.Generator().manual_seed(0))
  offsets = torch.rand(levels.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
  # Offsets in [0.001, 0.999] of the bin: the scaler's rounding (1e-16) never crosses an edge.
  points = 2 * (levels + 0.001 + 0.998 * offsets) / num_bins - 1     # model space, [-1, 1]
  decode = data.get_samples_to_data(config)
  assert torch.equal(decode(points), levels.double() / (num_bins - 1))
  assert decode(torch.tensor([-1.5, 1.5])).tolist() == [0.0, 1.0]
  config.data.uniform_dequantization = False
  assert torch.equal(data.get_samples_to_data(config)(points), (points + 1) / 2)


def test_dequantized_digits_need_their_17_bins():
  config = config_for('digits', uniform_dequantization=True, num_bins=17)
  deq, _ = stack(data.get_dataset(config, 'test'))
  plain, _ = stack(data.get_dataset(config_for('digits'), 'test'))
  assert torch.equal(torch.floor(deq * 17), plain * 16)
  with pytest.raises(ValueError, match='num_bins = 17'):
    data.get_dataset(config_for('digits', uniform_dequantization=True, num_bins=256))


# ---- toy 2-D ------------------------------------------------------------------------------

# The ring's parameters written out by hand: mode k sits at angle 2 pi k / K on the circle.
R2 = 2 * math.sqrt(2)
RING_8_RADIUS_4 = [(4, 0), (R2, R2), (0, 4), (-R2, R2), (-4, 0), (-R2, -R2), (0, -4), (R2, -R2)]
RING_3_RADIUS_1_5 = [(1.5, 0), (-0.75, 0.75 * math.sqrt(3)), (-0.75, -0.75 * math.sqrt(3))]


@pytest.mark.parametrize('radius,std,expected_means', [(4.0, 0.2, RING_8_RADIUS_4),
                                                       (1.5, 0.05, RING_3_RADIUS_1_5)])
def test_ring_mixture_parameters_are_the_stated_ring(radius, std, expected_means):
  """sde_lib.gaussian_mixture.ring_mixture (the toy data's ring, whose exact score the trainer
  tests judge samples by) against coordinates written out by hand (to float64 rounding,
  1e-12): equal weights 1/K, means on the circle of the given radius starting on the x axis
  and going counter-clockwise, covariances std^2 I."""
  n_modes = len(expected_means)
  ring = ring_mixture(n_modes=n_modes, radius=radius, std=std)
  assert torch.allclose(ring.weights, torch.full((n_modes,), 1 / n_modes, dtype=torch.float64))
  assert torch.allclose(ring.means, torch.tensor(expected_means, dtype=torch.float64), rtol=0,
                        atol=1e-12)
  assert torch.equal(ring.covs, std ** 2 * torch.eye(2, dtype=torch.float64).expand(n_modes, 2, 2))


def test_ring_points_have_each_modes_mean_and_covariance():
  """20000 drawn points against the stated ring (radius 4, std 0.2, 8 modes, the means written
  out above), not against any code: each point belongs to the nearest written-out mean (modes
  are 3.1 apart at std 0.2, so no point is ambiguous) and that is the label it came with."""
  radius, std, n_modes, size = 4.0, 0.2, 8, 20_000
  config = config_for('toy2d', toy_name='ring', toy_radius=radius, toy_std=std,
                      toy_modes=n_modes, toy_size=size)
  points, modes = stack(data.get_dataset(config, 'train'))
  assert points.shape == (size, 2) and points.dtype == torch.float32
  expected = torch.tensor(RING_8_RADIUS_4, dtype=torch.float64)
  assert torch.equal(torch.cdist(points.double(), expected).argmin(1), modes)
  for k in range(n_modes):
    x = points[modes == k].double()
    n = len(x)
    # Mode share ~ Binomial(size, 1/8)/size: std 0.0023; 5 std.
    assert abs(n / size - 1 / n_modes) < 5 * math.sqrt((1 / n_modes) * (1 - 1 / n_modes) / size)
    # Sample mean: std sigma/sqrt(n); sample variance: std sigma^2 sqrt(2/n); covariance:
    # std sigma^2/sqrt(n). All checked at 5 std.
    assert torch.allclose(x.mean(0), expected[k], rtol=0, atol=5 * std / math.sqrt(n))
    cov = torch.cov(x.T)
    assert torch.allclose(cov.diagonal(), torch.full((2,), std ** 2, dtype=torch.float64), rtol=0,
                          atol=5 * std ** 2 * math.sqrt(2 / n))
    assert abs(cov[0, 1]) < 5 * std ** 2 / math.sqrt(n)


def test_toy_splits_are_fixed_and_different():
  config = config_for('toy2d', toy_size=1000)
  train, _ = stack(data.get_dataset(config, 'train'))
  assert torch.equal(train, stack(data.get_dataset(config, 'train'))[0])
  assert not torch.equal(train, stack(data.get_dataset(config, 'test'))[0])


def test_checkerboard_fills_the_even_cells_uniformly():
  size = 16_000
  points, cells = stack(data.get_dataset(config_for('toy2d', toy_name='checkerboard',
                                                    toy_size=size), 'train'))
  assert points.abs().max() <= 2.0
  col, row = torch.floor(points[:, 0] + 2).long(), torch.floor(points[:, 1] + 2).long()
  assert torch.all((row + col) % 2 == 0)
  assert torch.equal(cells, row * 4 + col)
  even = (torch.arange(16) // 4 + torch.arange(16) % 4) % 2 == 0
  counts = torch.bincount(cells, minlength=16)[even]
  # 8 equal cells: each count ~ Binomial(16000, 1/8), std 41.8; 5 std.
  assert torch.all((counts - size / 8).abs() < 5 * math.sqrt(size / 8 * 7 / 8))


# ---- file-backed data sets -------------------------------------------------------------------

def test_missing_cifar10_names_the_file_to_place(tmp_path):
  config = config_for('cifar10', root=str(tmp_path))
  with pytest.raises(data.DatasetUnavailable) as error:
    data.get_dataset(config, 'train')
  message = str(error.value)
  assert 'cifar-10-python.tar.gz' in message and str(tmp_path) in message
  assert 'cifar-10-batches-py' in message
  assert isinstance(error.value, ConfigError)   # run.py prints it as one line
  (tmp_path / 'cifar-10-python.tar.gz').write_bytes(b'not an archive')
  with pytest.raises(data.DatasetUnavailable, match='unreadable'):
    data.get_dataset(config, 'test')


def write_png(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def test_folder_center_crops_resizes_and_converts(tmp_path):
  # 12 x 20 RGB, red channel = 10 * column: a center crop to 12 keeps columns 4..15.
  columns = np.broadcast_to(10 * np.arange(20), (12, 20))
  write_png(tmp_path / 'a' / 'wide.png', np.stack([columns, np.zeros_like(columns),
                                                     np.full_like(columns, 200)], axis=-1))
  write_png(tmp_path / 'b.png', np.full((24, 24, 3), 90))     # flat grey: resizing keeps 90
  (tmp_path / 'notes.txt').write_text('not an image')
  config = config_for('folder', root=str(tmp_path), image_size=12, num_channels=3)
  images, labels = stack(data.get_dataset(config, 'train'))
  assert images.shape == (2, 3, 12, 12) and labels.tolist() == [0, 0]
  wide = images[0]            # sorted paths: a/wide.png before b.png
  assert torch.equal(torch.round(wide[0] * 255), torch.arange(40, 160, 10.0).expand(12, 12))
  assert torch.all(torch.round(wide[2] * 255) == 200)
  assert torch.all(torch.round(images[1] * 255) == 90)
  config.data.num_channels = 1                              # grey (v, v, v) -> L = v
  grey, _ = stack(data.get_dataset(config, 'test'))
  assert grey.shape == (2, 1, 12, 12) and torch.all(torch.round(grey[1] * 255) == 90)


def test_folder_split_subdirectories_and_missing_or_empty(tmp_path):
  write_png(tmp_path / 'train' / 'x.png', np.zeros((8, 8, 3)))
  write_png(tmp_path / 'train' / 'y.png', np.zeros((8, 8, 3)))
  write_png(tmp_path / 'test' / 'z.png', np.zeros((8, 8, 3)))
  config = config_for('folder', root=str(tmp_path), image_size=8, num_channels=3)
  assert len(data.get_dataset(config, 'train')) == 2
  assert len(data.get_dataset(config, 'test')) == 1
  config.data.root = str(tmp_path / 'absent')
  with pytest.raises(data.DatasetUnavailable, match='does not exist'):
    data.get_dataset(config)
  (tmp_path / 'empty').mkdir()
  config.data.root = str(tmp_path / 'empty')
  with pytest.raises(data.DatasetUnavailable, match='no images'):
    data.get_dataset(config)


def test_unknown_dataset_lists_the_valid_ones():
  with pytest.raises(ValueError, match="cifar10.*digits.*folder.*toy2d"):
    data.get_dataset(config_for('mnist'))
