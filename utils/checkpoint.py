"""Checkpoints: tensors and plain values only, written atomically, loaded strictly.

Layout: <workdir>/checkpoints/ckpt_<step>.pt and a `latest` file naming the newest one.
Every file is written to a temporary file in the same directory and moved into place with
os.replace, so a crash mid-write leaves the previous checkpoint and pointer untouched.
"""
import os
import pickle
import re

import torch

from utils.atomic import atomic_write
from utils.errors import ConfigError
from utils.workdir import checkpoint_dir, checkpoint_path

LATEST = 'latest'
_CKPT_NAME = re.compile(r'^ckpt_(\d+)\.pt$')


class CheckpointError(ConfigError):
  """No checkpoint where one was asked for, or one that does not fit; the message says which."""


def list_checkpoints(workdir):
  """[(step, path)] of the workdir's checkpoints, oldest first."""
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    return []
  found = [(int(m.group(1)), os.path.join(directory, name))
           for name in os.listdir(directory) if (m := _CKPT_NAME.match(name))]
  return sorted(found)


def latest_checkpoint(workdir):
  """Path of the checkpoint the `latest` pointer names (or the newest on disk), or None."""
  pointer = os.path.join(checkpoint_dir(workdir), LATEST)
  if os.path.exists(pointer):
    with open(pointer) as f:
      path = os.path.join(checkpoint_dir(workdir), f.read().strip())
    if os.path.exists(path):
      return path
  found = list_checkpoints(workdir)
  return found[-1][1] if found else None


def save_checkpoint(workdir, step, state, keep):
  """Write `state` (tensors and plain values) as ckpt_<step>.pt, point `latest` at it and
  delete all but the newest `keep` checkpoints. Returns the path."""
  path = checkpoint_path(workdir, step)
  atomic_write(path, lambda f: torch.save(state, f))
  atomic_write(os.path.join(checkpoint_dir(workdir), LATEST),
                lambda f: f.write(os.path.basename(path).encode()))
  for _, old in list_checkpoints(workdir)[:-max(keep, 1)]:
    os.remove(old)
  return path


def load_checkpoint(path, device='cpu'):
  """torch.load(weights_only=True): only tensors and plain containers can come back."""
  try:
    return torch.load(path, map_location=device, weights_only=True)
  except FileNotFoundError:
    raise CheckpointError(f"no checkpoint file {path}") from None
  except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
    raise CheckpointError(f"cannot load {path} as a weights-only checkpoint: "
                          f"{str(e).splitlines()[0]}") from None


def load_state_strict(module, state_dict, what='model'):
  """module.load_state_dict(strict=True), with one message naming every key and shape that differs."""
  own = module.state_dict()
  missing = sorted(own.keys() - state_dict.keys())
  unexpected = sorted(state_dict.keys() - own.keys())
  shapes = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
            for k in sorted(own.keys() & state_dict.keys()) if own[k].shape != state_dict[k].shape]
  if missing or unexpected or shapes:
    raise CheckpointError(
        f"the checkpoint's {what} does not match the configured architecture (was it trained "
        f"with another config?): missing {_head(missing)}, unexpected {_head(unexpected)}, "
        f"shape mismatches {_head(shapes)}")
  module.load_state_dict(state_dict, strict=True)


def _head(items, limit=5):
  return f"{items[:limit]}" + (f" and {len(items) - limit} more" if len(items) > limit else '')


def resolve_checkpoint(workdir, ckpt=''):
  """'' -> the latest; a step number -> ckpt_<step>.pt in the workdir; else a file path."""
  ckpt = str(ckpt).strip()
  if not ckpt:
    path = latest_checkpoint(workdir)
    if path is None:
      raise CheckpointError(f"no checkpoint in {checkpoint_dir(workdir)}; train first "
                            f"(run.py --mode train --workdir {workdir})")
    return path
  path = checkpoint_path(workdir, int(ckpt)) if ckpt.isdigit() else ckpt
  if not os.path.exists(path):
    available = [os.path.basename(p) for _, p in list_checkpoints(workdir)]
    raise CheckpointError(f"checkpoint {path} does not exist; {checkpoint_dir(workdir)} has "
                          f"{available or 'none'}")
  return path
