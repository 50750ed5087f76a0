"""Map data in [0, 1] to the model's range and back: x -> 2x - 1 when `config.data.centered`."""
import torch

from data.transforms import quantize


def get_data_scaler(config):
  """[0, 1] -> [-1, 1] when centered, identity otherwise."""
  if config.data.centered:
    return lambda x: x * 2.0 - 1.0
  return lambda x: x


def get_data_inverse_scaler(config):
  """[-1, 1] -> [0, 1] when centered, identity otherwise."""
  if config.data.centered:
    return lambda x: (x + 1.0) / 2.0
  return lambda x: x


def get_samples_to_data(config):
  """Model-space samples -> data space: the inverse scaler and, for a model of uniformly
  dequantized images (data.uniform_dequantization), the level of the bin each value falls in
  (data.transforms.quantize): such a model's samples spread over the bins [k, k + 1) /
  num_bins, while the data lie on the levels k / (num_bins - 1)."""
  inverse_scaler = get_data_inverse_scaler(config)
  if config.data.uniform_dequantization and config.data.dataset != 'toy2d':
    return lambda x: quantize(inverse_scaler(x), config.data.num_bins)
  return inverse_scaler


def data_range(config):
  """(lo, hi): the model-space images of 0 and 1, the ends of the data's range."""
  scaler = get_data_scaler(config)
  return float(scaler(torch.zeros(()))), float(scaler(torch.ones(())))
