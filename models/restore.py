"""A trained network for sampling and evaluation: a workdir checkpoint's EMA weights."""
import os

import torch

from models.ema import ExponentialMovingAverage
from models.registry import get_model
from utils.checkpoint import CheckpointError, load_checkpoint, load_state_strict, resolve_checkpoint
from utils.device import get_device


def restore_for_inference(config, workdir, ckpt='', device=None):
  """(model with the EMA weights, in eval mode, on `device`; its step; the checkpoint's name).

  ckpt: '' for the latest, a step number, or a path.
  """
  path = resolve_checkpoint(workdir, ckpt)
  state = load_checkpoint(path)
  model = get_model(config)
  load_state_strict(model, state['model'])
  ema = ExponentialMovingAverage(model, config.model.ema_rate, warmup=config.model.ema_warmup)
  try:
    ema.load_state_dict(state['ema'])
  except ValueError as e:
    raise CheckpointError(f"{path}: {e}") from None
  ema.copy_to(model)
  device = get_device(config.device) if device is None else torch.device(device)
  name = os.path.splitext(os.path.basename(path))[0]
  return model.to(device).eval(), int(state['step']), name
