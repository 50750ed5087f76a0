"""Map data in [0, 1] to the model's range and back: x -> 2x - 1 when `config.data.centered`."""
import torch


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


def data_range(config):
  """(lo, hi): the model-space images of 0 and 1, the ends of the data's range."""
  scaler = get_data_scaler(config)
  return float(scaler(torch.zeros(()))), float(scaler(torch.ones(())))
