"""Draw a network's samples into data space, and name a set of samples by what determines it.

Batch i of a set is drawn with its own generator seeded by (seed, i). A set is then fixed by
the network and the config fields that define it, the sampling settings, the seed, the batch
size and the device type (CPU and CUDA random streams differ), whoever draws it (a training
snapshot, --mode sample, --mode eval's shards) and however often a run is interrupted;
`samples_key` names a set by exactly these.
"""
import functools
import hashlib
import json
import os

import numpy as np
import torch

from configs.default import get_default_config
from configs.run_config import model_fields
from data import data_shape, get_data_inverse_scaler
from models import get_score_fn
from samplers.registry import get_sampler

# Fields of config.sampling that do not change how a sample is drawn: how many are drawn, and
# the batch size of --mode sample (the batch size a set is actually drawn in enters the key).
NOT_SAMPLER_SETTINGS = ('num_samples', 'batch_size')


def data_sampler(config, sde, model, device, sampling=None):
  """draw(n, generator=None, progress=True) -> (n samples in data space on the CPU, score
  evaluations per sample) with `sampling` (default config.sampling) on the network's score.

  The sampler is built here, so a setting it cannot run raises ConfigError before anything is
  drawn. The network is used as given (callers put EMA weights in and switch to eval mode).
  """
  sampling = config.sampling if sampling is None else sampling
  continuous = config.training.continuous
  score_fn = get_score_fn(sde, model, continuous, config.model.parameterization)
  inverse_scaler = get_data_inverse_scaler(config)

  @functools.lru_cache(maxsize=None)
  def sampler(n):
    return get_sampler(sampling, sde, (n,) + data_shape(config), device=device,
                       continuous=continuous)

  sampler(sampling.batch_size)   # built now: a setting it cannot run stops the caller here

  def draw(n, generator=None, progress=True):
    x, nfe = sampler(n)(score_fn, generator=generator, progress=progress)
    return inverse_scaler(x).cpu(), nfe

  return draw


def batch_generator(seed, index, device):
  """The generator batch `index` of a set drawn with `seed` is drawn with."""
  state = np.random.SeedSequence([seed, index]).generate_state(1)[0]
  return torch.Generator(device).manual_seed(int(state))


def draw_samples(draw, num_samples, batch_size, seed, device, progress=True):
  """(num_samples samples in data space, score evaluations per sample) from draw(n, generator,
  progress) (see data_sampler), in batches of batch_size seeded by batch_generator."""
  batches, nfe = [], 0.0
  for index, start in enumerate(range(0, num_samples, batch_size)):
    n = min(batch_size, num_samples - start)
    x, batch_nfe = draw(n, batch_generator(seed, index, device), progress)
    batches.append(x)
    nfe += batch_nfe * n
  return torch.cat(batches), nfe / num_samples


def sampler_name(sampling):
  """The method and the settings that differ from configs/default.py's, e.g.
  'pc_corrector-none_steps-100' or 'ode': short and readable, not unique (samples_key is)."""
  default = get_default_config().sampling
  changed = [f'{k}-{str(v).lower() if isinstance(v, bool) else v}'
             for k, v in sampling.items()
             if k not in ('method',) + NOT_SAMPLER_SETTINGS and v != default.get(k)]
  return '_'.join([sampling.method] + changed)


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


def samples_key(config, sampling, checkpoint, batch_size, device):
  """'<checkpoint>-<sampler_name>-<hash>', e.g. 'ckpt_20-pc_steps-5-3f9a0c2e71': the name of the
  set of samples `checkpoint` (a path) draws with `sampling` in batches of `batch_size`.

  The hash covers everything that determines the set (see the module docstring): the
  checkpoint (its name and the SHA-256 of its bytes, so a run retrained into the same workdir
  never meets its predecessor's samples), every sampling setting, the batch size, the seed,
  the device type and the config fields that define the model. A change to any of them
  gives a new name; the number of samples does not (a longer set begins with a shorter one).
  """
  determines = {
      'checkpoint': [os.path.basename(checkpoint), checkpoint_sha256(checkpoint)],
      'sampling': {k: v for k, v in sampling.items() if k not in NOT_SAMPLER_SETTINGS},
      'batch_size': batch_size,
      'seed': config.seed,
      'device': torch.device(device).type,
      'model': model_fields(config),
  }
  digest = hashlib.sha256(json.dumps(determines, sort_keys=True).encode()).hexdigest()[:10]
  name = os.path.splitext(os.path.basename(checkpoint))[0]
  return f'{name}-{sampler_name(sampling)}-{digest}'
