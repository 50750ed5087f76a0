"""Seeds derived from a run's seed: one well-mixed value per (run seed, index, stream ...), so
that a step, a batch of samples or a random stream draws the same numbers however a run is
split (processes, micro-batches, shards) or resumed."""
import numpy as np
import torch


def derived_seed(seed, index, *stream, dtype=np.uint32):
  """The first word (uint32 or uint64) of np.random.SeedSequence([seed, index, *stream]), an int."""
  return int(np.random.SeedSequence([seed, index, *stream]).generate_state(1, dtype)[0])


def batch_generator(seed, index, device, *stream):
  """The generator batch `index` of a set drawn with `seed` is drawn with (`stream`: other
  sets of the same seed, e.g. evaluation's likelihoods)."""
  return torch.Generator(device).manual_seed(derived_seed(seed, index, *stream))
