"""One cache for the statistics computed from a trained network: DPM-Solver-v3's EMS
(samplers/ems.py), the analytic reverse variance's Gamma table (samplers/analytic_variance.py)
and the fitted variational dequantizer (pipeline/dequantizer.py).

`network_statistic` returns the statistic itself. Of a checkpoint, it is kept in a file beside
it (utils.checkpoint.derived_path, deleted with the checkpoint), e.g.
'checkpoints/ckpt_20.ems-4b0e9a17c2.pt', named by a hash of everything that determines it:
the checkpoint's bytes (SHA-256), the config fields that define the model, the data config,
the seed and the statistic's own settings. The file holds that key in full and is read back
with weights_only=True; one that cannot be read, or holds another key (another checkpoint,
other settings, an older format), is recomputed with a one-line note and replaced. Without a
checkpoint (training snapshots) the statistic is that of the weights the network has at the
call, kept in memory while they stay.
"""
import functools
import hashlib
import json
import os

import torch
from tqdm.auto import tqdm

from configs.run_config import model_fields
from utils.atomic import atomic_write
from utils.checkpoint import derived_path

FORMAT = 1          # the layout of a statistic's file: {'format', 'key', 'state'}
_IN_MEMORY = {}     # name -> (key, statistic) of the newest weights without a checkpoint


def network_statistic(config, name, settings, compute, restore, checkpoint=None, model=None):
  """The statistic `name` of the network: compute(progress) makes it (an object with
  .state_dict() of tensors and plain values), restore(state) rebuilds it from that state.
  With a `checkpoint` path it is read from its file when there, else computed and written
  atomically; without one it is that of `model`'s current weights."""
  if checkpoint is None:
    key = statistic_key(config, settings, weights_sha256(model))
    if _IN_MEMORY.get(name, (None,))[0] != key:
      _IN_MEMORY[name] = (key, compute(False))
    return _IN_MEMORY[name][1]
  key = statistic_key(config, settings, checkpoint_sha256(checkpoint))
  path = statistic_path(checkpoint, name, key)
  value = _read(path, key, restore)
  if value is not None:
    return value
  value = compute(True)
  stored = {'format': FORMAT, 'key': key, 'state': value.state_dict()}
  atomic_write(path, lambda f: torch.save(stored, f))
  return value


def statistic_key(config, settings, weights):
  """What determines a statistic, as a JSON string: `weights` (the SHA-256 of the checkpoint
  or of the weights), the model fields, the data config, the seed and its `settings`."""
  return json.dumps({
      'checkpoint': weights,
      'model': model_fields(config),
      'data': {k: v for k, v in config.data.items() if k != 'root'},
      'seed': config.seed,
      **settings,
  }, sort_keys=True)


def statistic_path(checkpoint, name, key):
  """'<checkpoint's folder>/<checkpoint name>.<name>-<hash of key>.pt'."""
  return derived_path(checkpoint, name, hashlib.sha256(key.encode()).hexdigest()[:10])


def _read(path, key, restore):
  """The statistic stored at `path` under `key`, or None (with a note when a file is there but
  unreadable or another key's)."""
  if not os.path.exists(path):
    return None
  try:
    stored = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(stored, dict) and stored.get('format') == FORMAT and stored.get('key') == key:
      return restore(stored['state'])
  except Exception as e:   # torch.load and a restore of damaged contents raise many kinds
    reason = (str(e).splitlines() or [''])[0][:80]
    tqdm.write(f"note: {path} cannot be read ({type(e).__name__}: {reason}); computing it again")
    return None
  tqdm.write(f"note: {path} holds another checkpoint's or settings' statistic (or an older "
             "format); computing it again")
  return None


def weights_sha256(model):
  """SHA-256 of a network's weights as they are now."""
  digest = hashlib.sha256()
  for tensor in model.state_dict().values():
    digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
  return digest.hexdigest()


def checkpoint_sha256(path):
  """SHA-256 of a checkpoint's bytes, read once while the file is unchanged (eval names one
  checkpoint once per sampler it compares). A checkpoint folder (diffusers' layout) hashes the
  names and digests of the files in it."""
  if os.path.isdir(path):
    digests = [(name, checkpoint_sha256(os.path.join(path, name)))
               for name in sorted(os.listdir(path))]
    return hashlib.sha256(json.dumps(digests).encode()).hexdigest()
  stat = os.stat(path)
  return _sha256(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _sha256(path, size, mtime_ns):
  with open(path, 'rb') as f:
    return hashlib.file_digest(f, 'sha256').hexdigest()
