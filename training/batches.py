"""The training data order: each step's global batch, and a process's share of it.

Step k trains on batch k - 1 of DistributedSampler's order of its epoch (seeded, reshuffled
every epoch, drop_last). With W processes the sampler deals the epoch's permutation out in
turn, so the j-th item of process r sits at position W j + r of the batch a single process
would train on, and the W shares make up exactly that batch. An item's random augmentation
(flip, dequantization) is drawn from a seed of (run seed, step, position), and the losses draw
a sample's t and noise the same way (training.losses.drawn), so a step computes the same
thing however its global batch is split over processes and micro-batches (training.grad_accum).

A DataLoader (workers, pinned memory) loads the shares of steps start+1, ..., n_iters. What a
step loads is a function of the step number alone: a resumed run continues the data order
exactly, with no loader state to keep beyond the step in the checkpoint.
"""
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate

from utils.errors import ConfigError
from utils.seeding import derived_seed

# Random streams of a step (step_seed): the items' augmentations, the losses' draws for the
# global batch, and torch's global generator (network dropout) in each process.
DATA, LOSS, PROCESS = 0, 1, 2


def step_seed(seed, step, *stream):
  """A well-mixed 63-bit seed for one (run seed, step, stream ...)."""
  return derived_seed(seed, step, *stream, dtype=np.uint64) >> 1


class StepBatches(Dataset):
  """Item i: (images, labels, positions) of process `rank`'s share of step i + 1's global batch
  of `global_batch` items; `positions` are the items' places in that batch."""

  def __init__(self, dataset, global_batch, world_size, rank, seed):
    self.dataset, self.global_batch, self.seed = dataset, global_batch, seed
    self.share = global_batch // world_size
    self.sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                      seed=seed, drop_last=True)
    self.per_epoch = len(self.sampler) // self.share
    if self.per_epoch == 0:
      raise ConfigError(f"the data set has {len(dataset)} items, fewer than one batch of "
                        f"{global_batch}; lower training.batch_size")
    self.positions = torch.arange(self.share) * world_size + rank
    self._epoch, self._order = None, None

  def position(self, step):
    """(epoch, batch within it) of step `step`'s batch: where the data order stands after it."""
    return divmod(step, self.per_epoch)

  def _epoch_order(self, epoch):
    if epoch != self._epoch:
      self.sampler.set_epoch(epoch)
      self._epoch, self._order = epoch, list(self.sampler)
    return self._order

  def __getitem__(self, index):
    epoch, i = self.position(index)
    chunk = self._epoch_order(epoch)[i * self.share:(i + 1) * self.share]
    seeds = torch.randint(2 ** 62, (self.global_batch,), generator=torch.Generator().manual_seed(
        step_seed(self.seed, index + 1, DATA)))
    items = []
    for item, position in zip(chunk, self.positions.tolist()):
      torch.default_generator.manual_seed(int(seeds[position]))   # the item's augmentation
      items.append(self.dataset[item])
    images, labels = default_collate(items)
    return images, labels, self.positions


def step_loader(batches, start, stop, num_workers=0, pin_memory=False):
  """A DataLoader of batches[start], ..., batches[stop - 1]: the shares of steps start + 1 to
  stop, in order, prepared by `num_workers` worker processes (0: the calling process)."""
  return DataLoader(batches, batch_size=None, sampler=range(start, stop), num_workers=num_workers,
                    pin_memory=pin_memory, prefetch_factor=4 if num_workers else None)
