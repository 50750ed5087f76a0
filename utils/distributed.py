"""One process or several under torchrun (torch.distributed): rank, world size, the device of
this process, and the few collective operations training and evaluation use."""
import contextlib
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from utils.device import get_device


class Distributed:
  """rank / world size from torchrun's environment (WORLD_SIZE > 1; NCCL on CUDA, Gloo on the
  CPU), else a single process, for which every operation here is a no-op."""

  def __init__(self, device_name):
    self.world_size = int(os.environ.get('WORLD_SIZE', '1'))
    self.rank, local_rank = 0, 0
    self.device = get_device(device_name)
    if self.world_size > 1:
      local_rank = int(os.environ.get('LOCAL_RANK', '0'))
      if self.device.type == 'cuda':
        self.device = torch.device('cuda', local_rank)
        torch.cuda.set_device(self.device)
      if not dist.is_initialized():
        dist.init_process_group('nccl' if self.device.type == 'cuda' else 'gloo')
      self.rank = dist.get_rank()
    self.is_main = self.rank == 0

  def wrap(self, model):
    if self.world_size == 1:
      return model
    return DistributedDataParallel(model, device_ids=[self.device] if self.device.type == 'cuda' else None)

  def mean(self, value):
    """The mean of a float over processes."""
    if self.world_size == 1:
      return value
    tensor = torch.tensor([value], device=self.device, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.item() / self.world_size

  def gather(self, items):
    """Every process's list of (index, value) -> on the main process all of them, sorted by
    index; None on the others."""
    if self.world_size == 1:
      return sorted(items, key=lambda item: item[0])
    everyone = [None] * self.world_size
    dist.all_gather_object(everyone, items)
    return sorted((i for part in everyone for i in part), key=lambda item: item[0]) if self.is_main else None

  def barrier(self):
    if self.world_size > 1:
      dist.barrier()

  @contextlib.contextmanager
  def main_first(self):
    """The block runs on the main process first and on the others after it: what it computes
    and caches on disk (a sampler's statistics of the network) is computed once."""
    if not self.is_main:
      self.barrier()
    yield
    if self.is_main:
      self.barrier()

  def close(self):
    if self.world_size > 1 and dist.is_initialized():
      dist.destroy_process_group()


def shares(count, ddp=None):
  """The indices of 0, ..., count - 1 this process takes: rank, rank + W, ... under torchrun
  (`ddp`), all of them in a single process (ddp None)."""
  return range(count) if ddp is None else range(ddp.rank, count, ddp.world_size)


def gathered(items, ddp=None):
  """Every process's (index, value) pairs sorted by index on the main process, None on the
  others; a single process's own (ddp None)."""
  return sorted(items, key=lambda item: item[0]) if ddp is None else ddp.gather(items)


def main_first(ddp=None):
  """ddp.main_first() under torchrun; nothing to order in a single process (ddp None)."""
  return contextlib.nullcontext() if ddp is None else ddp.main_first()
