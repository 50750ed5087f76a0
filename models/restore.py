"""A trained network for sampling and evaluation, from any checkpoint we can read: our own
(a workdir's ckpt_<step>.pt), score_sde_pytorch's published files, or a diffusers folder (a DDPM
UNet2DModel, a DiTTransformer2DModel)."""
import os

import torch

from models.ema import ExponentialMovingAverage
from models.dit import DiT
from models.import_diffusers import is_diffusers_folder, load_diffusers_ddpm
from models.import_diffusers_dit import load_diffusers_dit
from models.import_score_sde import from_score_sde, is_score_sde_checkpoint
from models.registry import get_classifier, get_model
from utils.checkpoint import (CheckpointError, latest_checkpoint, load_checkpoint,
                              load_state_strict, resolve_checkpoint)
from utils.device import get_device
from utils.workdir import classifier_dir


def read_checkpoint(path, model, ema_rate):
  """The checkpoint at `path` in our layout ({'model', 'ema', 'step'[, 'optimizer']}), checked
  against `model` (the configured network) before anything runs. Published weights without an
  EMA (a diffusers folder holds the averaged weights) become their own average."""
  if is_diffusers_folder(path):
    weights = (load_diffusers_dit if isinstance(model, DiT) else load_diffusers_ddpm)(path, model)
    ema = {'decay': ema_rate, 'warmup': True, 'num_updates': 0,
           'shadow': {name: weights[name].clone() for name, _ in model.named_parameters()}}
    return {'model': weights, 'ema': ema, 'step': 0}
  state = load_checkpoint(path)
  return from_score_sde(state, model) if is_score_sde_checkpoint(state) else state


def restore(config, path):
  """(the configured network with the checkpoint's raw weights, its EMA, the checkpoint in our
  layout) for the checkpoint at `path`; one line naming the path and the misfit if it does not fit."""
  model = get_model(config)
  try:
    state = read_checkpoint(path, model, config.model.ema_rate)
    load_state_strict(model, state['model'])
    ema = ExponentialMovingAverage(model, config.model.ema_rate, warmup=config.model.ema_warmup)
    ema.load_state_dict(state['ema'])
  except ValueError as e:   # CheckpointError (a ConfigError) and EMA misfits alike
    raise CheckpointError(f"{path}: {e}") from None
  return model, ema, state


def restore_for_inference(config, workdir, ckpt='', device=None):
  """(model with the EMA weights, in eval mode, on `device`; its step; the checkpoint's name).

  ckpt: '' for the latest, a step number, or a path (a file in our or score_sde's layout, or a
  diffusers folder).
  """
  path = resolve_checkpoint(workdir, ckpt)
  model, ema, state = restore(config, path)
  ema.copy_to(model)
  device = get_device(config.device) if device is None else torch.device(device)
  name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
  return model.to(device).eval(), int(state['step']), name


def classifier_checkpoint(workdir):
  """The latest checkpoint of the run's time-dependent classifier (classifier guidance)."""
  path = None if workdir is None else latest_checkpoint(classifier_dir(workdir))
  if path is None:
    raise CheckpointError(f"sampling.classifier_scale > 0 needs the run's classifier and "
                          f"{classifier_dir(workdir)} has none: train one with "
                          f"python run.py --mode train_classifier --workdir {workdir}")
  return path


def restore_classifier(config, workdir, device):
  """(the classifier of the run in `workdir`, in eval mode on `device`, its checkpoint path)."""
  path = classifier_checkpoint(workdir)
  classifier = get_classifier(config)
  try:
    load_state_strict(classifier, load_checkpoint(path)['model'], 'classifier')
  except ValueError as e:
    raise CheckpointError(f"{path}: {e}") from None
  return classifier.to(device).eval(), path
