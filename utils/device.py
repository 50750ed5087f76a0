"""The device a run uses: config.device = 'auto' picks CUDA when available, else the CPU."""
import torch

from utils.errors import ConfigError


def get_device(name='auto'):
  """torch.device for 'auto', 'cpu', 'cuda', 'cuda:1', ...; a clear error for a missing GPU."""
  if name in ('auto', '', None):
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  device = torch.device(name)
  if device.type == 'cuda' and not torch.cuda.is_available():
    raise ConfigError(f"device {name!r} requested but CUDA is not available; use device='auto' or 'cpu'")
  return device
