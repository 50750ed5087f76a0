"""Checkpoints: tensors and plain values only, written atomically, loaded strictly.

Layout: <workdir>/checkpoints/ckpt_<step>.pt and a `latest` file naming the newest one.
Every file is written to a temporary file in the same directory and moved into place with
os.replace, so a crash mid-write, or a full disk (one line: utils.atomic.DiskFull), leaves the
previous checkpoint and pointer untouched.
"""
import glob
import os
import pickle
import re

import torch

from utils.atomic import DiskFull, atomic_write
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
  delete all but the newest `keep` checkpoints, with the files derived from them
  (derived_path). Returns the path."""
  path = checkpoint_path(workdir, step)
  try:
    atomic_write(path, lambda f: torch.save(state, f))
  except DiskFull as e:
    previous = latest_checkpoint(workdir)
    intact = (f"the previous checkpoint, {previous}, is intact and still the latest" if previous
              else "there is no earlier checkpoint")
    raise DiskFull(f"{e}; {intact}") from None
  atomic_write(os.path.join(checkpoint_dir(workdir), LATEST),
                lambda f: f.write(os.path.basename(path).encode()))
  for _, old in list_checkpoints(workdir)[:-max(keep, 1)]:
    for derived in derived_files(old):
      os.remove(derived)
    os.remove(old)
  return path


def derived_path(checkpoint, kind, digest):
  """'<folder>/<checkpoint name>.<kind>-<digest>.pt', e.g. 'checkpoints/ckpt_20.ems-4b0e9a17c2.pt':
  where a statistic computed from a checkpoint (pipeline/statistics.py) is cached, beside it,
  deleted with it when training rotates it out; `digest` covers whatever else determines the file."""
  folder, name = _folder_and_name(checkpoint)
  return os.path.join(folder, f'{name}.{kind}-{digest}.pt')


def derived_files(checkpoint):
  """The derived_path files of `checkpoint` on disk."""
  folder, name = _folder_and_name(checkpoint)
  return glob.glob(os.path.join(glob.escape(folder), glob.escape(name) + '.*-*.pt'))


def _folder_and_name(checkpoint):
  """A checkpoint file's (or folder's) directory and its name without the extension."""
  return os.path.split(os.path.splitext(os.path.normpath(checkpoint))[0])


def load_checkpoint(path, device='cpu'):
  """torch.load(weights_only=True): only tensors and plain containers can come back."""
  try:
    return torch.load(path, map_location=device, weights_only=True)
  except FileNotFoundError:
    raise CheckpointError(f"no checkpoint file {path}") from None
  except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:   # OSError: truncated
    raise CheckpointError(f"cannot load {path} as a weights-only checkpoint: "
                          f"{str(e).splitlines()[0]}") from None


def load_newest_readable(workdir, device='cpu'):
  """(path, state, notes) of the newest checkpoint of the workdir that loads (load_checkpoint),
  going back past unreadable ones (a truncated or corrupted file, a pickle that is not weights
  only), each named in `notes`; (None, None, []) when the workdir has none. CheckpointError
  when it has checkpoints and none of them loads."""
  latest = latest_checkpoint(workdir)
  newest_first = [latest] + [p for _, p in reversed(list_checkpoints(workdir)) if p != latest]
  notes = []
  for path in newest_first if latest is not None else []:
    try:
      return path, load_checkpoint(path, device), notes
    except CheckpointError as e:
      notes.append(f"{os.path.basename(path)} is unreadable, skipped ({e})")
  if notes:
    raise CheckpointError(f"no readable checkpoint in {checkpoint_dir(workdir)}: "
                          + '; '.join(notes))
  return None, None, notes


def check_state(module, state_dict, what='model'):
  """Raise CheckpointError unless state_dict has exactly module's keys and shapes: one line
  naming the first key whose shape differs (else the first missing, else the first unexpected
  key) with both shapes, and how many keys differ in all."""
  own = module.state_dict()
  shapes = [k for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
  missing = [k for k in own if k not in state_dict]
  unexpected = [k for k in state_dict if k not in own]
  differing = shapes + missing + unexpected
  if differing:
    key = differing[0]
    theirs = tuple(state_dict[key].shape) if key in state_dict else 'absent'
    ours = tuple(own[key].shape) if key in own else 'absent'
    raise CheckpointError(
        f"the checkpoint's {what} does not match the configured architecture (was it trained "
        f"with another config?): {key}: checkpoint {theirs} vs model {ours}; {len(differing)} "
        f"keys differ ({len(shapes)} shapes, {len(missing)} missing, {len(unexpected)} unexpected)")


def load_state_strict(module, state_dict, what='model'):
  """module.load_state_dict(strict=True) after check_state's one-line refusal of a misfit."""
  check_state(module, state_dict, what)
  module.load_state_dict(state_dict, strict=True)


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
