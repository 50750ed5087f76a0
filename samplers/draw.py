"""Draw samples from a network with the configured sampler, in batches, in data space."""
import torch

from data import data_shape, get_data_inverse_scaler
from models import get_score_fn
from samplers.registry import get_sampler


@torch.no_grad()
def draw_samples(config, sde, model, num_samples, device, generator=None, progress=True):
  """(samples [num_samples, *data_shape] mapped back to data space, score evaluations per batch).

  The network is used as given (callers put EMA weights in and switch to eval mode).
  """
  score_fn = get_score_fn(sde, model, config.training.continuous, config.model.parameterization)
  inverse_scaler = get_data_inverse_scaler(config)
  batches, nfe = [], 0
  for start in range(0, num_samples, config.sampling.batch_size):
    shape = (min(config.sampling.batch_size, num_samples - start),) + data_shape(config)
    sampler = get_sampler(config.sampling, sde, shape, device=device)
    x, nfe = sampler(score_fn, generator=generator, progress=progress)
    batches.append(inverse_scaler(x).cpu())
  return torch.cat(batches), nfe
