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
from data import data_shape, get_data_inverse_scaler, get_data_scaler, get_eval_dataset
from models import get_score_fn
from samplers.ems import EMS, EMS_VERSION, compute_ems
from samplers.registry import get_sampler, resolved_sampling
from utils.checkpoint import derived_path

# Fields of config.sampling that do not change how a sample is drawn: how many are drawn, and
# the batch size of --mode sample (the batch size a set is actually drawn in enters the key).
NOT_SAMPLER_SETTINGS = ('num_samples', 'batch_size')


def data_sampler(config, sde, model, device, sampling=None, checkpoint=None):
  """draw(n, generator=None, progress=True) -> (n samples in data space on the CPU, score
  evaluations per sample) with `sampling` (default config.sampling) on the network's score.

  The sampler is built here, so a setting it cannot run raises ConfigError before anything is
  drawn. The network is used as given (callers put EMA weights in and switch to eval mode).
  'dpm_solver_v3' samples with the network's EMS: those of `checkpoint` (the path its weights
  came from), computed once and cached beside it (checkpoint_ems); without a path (training
  snapshots) those of the weights the network has when a set is drawn (current_weights_ems).
  """
  sampling = config.sampling if sampling is None else sampling
  continuous = config.training.continuous
  score_fn = get_score_fn(sde, model, continuous, config.model.parameterization)
  inverse_scaler = get_data_inverse_scaler(config)
  ems = None
  if sampling.method == 'dpm_solver_v3':
    ems = (checkpoint_ems(config, sampling, sde, score_fn, checkpoint, device) if checkpoint
           else current_weights_ems(config, sampling, sde, score_fn, model, device))

  @functools.lru_cache(maxsize=None)
  def sampler(n):
    return get_sampler(sampling, sde, (n,) + data_shape(config), device=device,
                       continuous=continuous, ems=ems)

  sampler(sampling.batch_size)   # built now: a setting it cannot run stops the caller here

  def draw(n, generator=None, progress=True):
    x, nfe = sampler(n)(score_fn, generator=generator, progress=progress)
    return inverse_scaler(x).cpu(), nfe

  return draw


def training_ems(config, sampling, sde, score_fn, device, progress=True):
  """The EMS of score_fn (samplers/ems.py) from sampling.ems_samples training points (a subset
  drawn with config.seed, as stored: no flips or dequantization; scaled to the model's range) on
  sampling.ems_grid intervals in lambda from T to sampling.eps."""
  dataset = get_eval_dataset(config, 'train')
  generator = torch.Generator().manual_seed(config.seed)
  index = torch.randperm(len(dataset), generator=generator)[:sampling.ems_samples]
  data = get_data_scaler(config)(torch.stack([dataset[int(i)][0] for i in index]))
  return compute_ems(score_fn, sde, data.to(device), sampling.eps, sampling.ems_grid,
                     sampling.batch_size, generator=generator, progress=progress)


def ems_path(config, sampling, sde, checkpoint):
  """'<checkpoint's folder>/<checkpoint name>.ems-<hash>.pt', e.g.
  'checkpoints/ckpt_20.ems-4b0e9a17c2.pt': beside the checkpoint, the hash covering what
  determines its EMS (the checkpoint's bytes, the model fields, the data config, the number of
  points, the grid and its ends, the seed, the estimator's version), so a retrained or changed
  checkpoint never meets another's EMS."""
  determines = {
      'checkpoint': checkpoint_sha256(checkpoint),
      'model': model_fields(config),
      'data': {k: v for k, v in config.data.items() if k != 'root'},
      'samples': sampling.ems_samples,
      'grid': sampling.ems_grid,
      'times': [sampling.eps, sde.T],
      'seed': config.seed,
      'version': EMS_VERSION,
  }
  digest = hashlib.sha256(json.dumps(determines, sort_keys=True).encode()).hexdigest()[:10]
  return derived_path(checkpoint, 'ems', digest)


def checkpoint_ems(config, sampling, sde, score_fn, checkpoint, device):
  """The EMS of the network loaded from `checkpoint`: read from ems_path if there, else
  computed from the training data (training_ems) and written there atomically."""
  path = ems_path(config, sampling, sde, checkpoint)
  if os.path.exists(path):
    return EMS.load(path)
  ems = training_ems(config, sampling, sde, score_fn, device)
  ems.save(path)
  return ems


def current_weights_ems(config, sampling, sde, score_fn, model, device):
  """A function returning the EMS of `model` as its weights are when it is called (there is no
  checkpoint path to cache them beside), recomputed only when the weights have changed."""
  memo = {}

  def ems():
    weights = hashlib.sha256()
    for tensor in model.state_dict().values():
      weights.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    key = weights.hexdigest()
    if key not in memo:
      memo.clear()
      memo[key] = training_ems(config, sampling, sde, score_fn, device, progress=False)
    return memo[key]

  return ems


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
  never meets its predecessor's samples), every sampling setting (a fast sampler's 'default'
  ones as they resolve: registry.resolved_sampling), the batch size, the seed,
  the device type and the config fields that define the model. A change to any of them
  gives a new name; the number of samples does not (a longer set begins with a shorter one).
  """
  determines = {
      'checkpoint': [os.path.basename(checkpoint), checkpoint_sha256(checkpoint)],
      'sampling': {k: v for k, v in resolved_sampling(sampling).items()
                   if k not in NOT_SAMPLER_SETTINGS},
      'batch_size': batch_size,
      'seed': config.seed,
      'device': torch.device(device).type,
      'model': model_fields(config),
  }
  digest = hashlib.sha256(json.dumps(determines, sort_keys=True).encode()).hexdigest()[:10]
  name = os.path.splitext(os.path.basename(checkpoint))[0]
  return f'{name}-{sampler_name(sampling)}-{digest}'
