"""pipeline/statistics.py: one cache for the statistics computed from a network's checkpoint.

A counting statistic (the mean of the network's weights, so that a stale value is visible)
checks what the cache promises: a second call reads the file instead of computing, another
setting or other checkpoint bytes compute anew, an unreadable or foreign file is computed
again with a one-line note, and without a checkpoint the value follows the weights in memory.
"""
import os

import pytest
import torch
from torch import nn

from configs.default import get_default_config
from pipeline.statistics import network_statistic


class Mean:
  """A statistic: the network's mean weight."""

  def __init__(self, value):
    self.value = value

  def state_dict(self):
    return {'value': self.value}

  @classmethod
  def from_state(cls, state):
    return cls(state['value'])


@pytest.fixture
def run(tmp_path):
  """(get(settings) -> the statistic of the checkpoint, the list of computations, the network,
  the checkpoint's path)."""
  config = get_default_config()
  model = nn.Linear(3, 2)
  checkpoint = tmp_path / 'checkpoints' / 'ckpt_1.pt'
  checkpoint.parent.mkdir()
  torch.save(model.state_dict(), checkpoint)
  computed = []

  def compute(progress):
    computed.append(progress)
    return Mean(torch.cat([p.detach().flatten() for p in model.parameters()]).mean())

  def get(settings=None, path=str(checkpoint)):
    return network_statistic(config, 'mean', settings or {'samples': 8}, compute, Mean.from_state,
                             path, model)

  return get, computed, model, checkpoint


def rewrite(model, checkpoint):
  """New weights in the checkpoint, with a new modification time."""
  with torch.no_grad():
    model.weight.add_(1.0)
  torch.save(model.state_dict(), checkpoint)
  stat = os.stat(checkpoint)
  os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1000))


def files(checkpoint):
  return sorted(f for f in os.listdir(checkpoint.parent) if f.startswith('ckpt_1.mean-'))


def test_a_statistic_is_computed_once_and_read_back(run):
  get, computed, model, checkpoint = run
  first = get()
  assert len(computed) == 1 and len(files(checkpoint)) == 1
  again = get()
  assert len(computed) == 1 and torch.equal(again.value, first.value)


def test_another_setting_or_checkpoint_is_computed_anew(run):
  get, computed, model, checkpoint = run
  before = get().value
  get({'samples': 16})
  assert len(computed) == 2 and len(files(checkpoint)) == 2
  rewrite(model, checkpoint)
  after = get().value
  assert len(computed) == 3 and torch.allclose(after, before + 0.75, atol=1e-6)   # 6 of 8 weights


def test_an_unreadable_or_foreign_file_is_computed_again_with_a_note(run, tmp_path, capsys):
  get, computed, model, checkpoint = run
  get()
  path = checkpoint.parent / files(checkpoint)[0]
  path.write_bytes(b'not a torch file')
  get()
  assert len(computed) == 2
  assert capsys.readouterr().out.count('\n') == 1       # one line
  # Another checkpoint's statistic under this name: its key says so.
  other = tmp_path / 'other' / 'ckpt_1.pt'
  other.parent.mkdir()
  with torch.no_grad():
    model.bias.add_(1.0)
  torch.save(model.state_dict(), other)
  get(path=str(other))
  os.replace(other.parent / files(other)[0], path)
  value = get().value
  assert len(computed) == 4 and 'another checkpoint' in capsys.readouterr().out
  assert torch.equal(get().value, value) and len(computed) == 4


def test_without_a_checkpoint_the_statistic_follows_the_weights(run):
  get, computed, model, checkpoint = run
  first = get(path=None)
  assert torch.equal(get(path=None).value, first.value) and len(computed) == 1
  with torch.no_grad():
    model.bias.add_(1.0)
  assert torch.allclose(get(path=None).value, first.value + 0.25, atol=1e-6)   # 2 of 8
  assert len(computed) == 2 and files(checkpoint) == []
