"""Checkpoints: exact round trips, keep-k, the latest pointer, crash safety (a full disk
included), strict loading."""
import errno
import fractions
import os

import pytest
import torch

from configs.default import get_default_config
from models import ExponentialMovingAverage, get_model
from models import restore_for_inference
from test_trainer import assert_same_weights, tiny_config as tiny_run
from pipeline.train import train
from utils import checkpoint as ckpt
from utils.atomic import DiskFull, _amount


def tiny_config(hidden=16):
  config = get_default_config()
  config.model.name, config.model.hidden, config.model.num_layers = 'mlp', hidden, 1
  config.data.dataset = 'toy2d'
  config.device = 'cpu'
  return config


def trained_state(config, steps=3):
  """Model, EMA and Adam after a few real steps, so every state tensor is non-trivial."""
  torch.manual_seed(0)
  model = get_model(config)
  ema = ExponentialMovingAverage(model, 0.9)
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
  for _ in range(steps):
    x = torch.randn(8, 2)
    loss = model(x, torch.rand(8)).square().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    ema.update(model)
  return model, ema, optimizer


def state_of(model, ema, optimizer, step):
  return {'model': model.state_dict(), 'ema': ema.state_dict(),
          'optimizer': optimizer.state_dict(), 'step': step}


def assert_nested_equal(a, b):
  """Exact equality of nested dicts/lists of tensors and plain values."""
  if isinstance(a, dict):
    assert a.keys() == b.keys()
    for k in a:
      assert_nested_equal(a[k], b[k])
  elif isinstance(a, (list, tuple)):
    assert len(a) == len(b)
    for x, y in zip(a, b):
      assert_nested_equal(x, y)
  elif isinstance(a, torch.Tensor):
    assert torch.equal(a, b)
  else:
    assert a == b


def test_round_trip_restores_model_ema_and_optimizer_exactly(tmp_path):
  config = tiny_config()
  model, ema, optimizer = trained_state(config)
  saved = state_of(model, ema, optimizer, 3)
  path = ckpt.save_checkpoint(str(tmp_path), 3, saved, keep=2)
  assert path == os.path.join(tmp_path, 'checkpoints', 'ckpt_3.pt')
  loaded = ckpt.load_checkpoint(path)
  assert_nested_equal(saved, loaded)

  fresh = get_model(config)
  fresh_ema = ExponentialMovingAverage(fresh, 0.9)
  fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
  ckpt.load_state_strict(fresh, loaded['model'])
  fresh_ema.load_state_dict(loaded['ema'])
  fresh_opt.load_state_dict(loaded['optimizer'])
  assert_nested_equal(state_of(model, ema, optimizer, 3), state_of(fresh, fresh_ema, fresh_opt, 3))


def test_keeps_the_newest_k_and_points_latest_at_the_last(tmp_path):
  workdir = str(tmp_path)
  assert ckpt.latest_checkpoint(workdir) is None
  for step in (5, 10, 15, 20):
    ckpt.save_checkpoint(workdir, step, {'step': step}, keep=2)
  assert [s for s, _ in ckpt.list_checkpoints(workdir)] == [15, 20]
  with open(os.path.join(workdir, 'checkpoints', 'latest')) as f:
    assert f.read() == 'ckpt_20.pt'
  assert ckpt.latest_checkpoint(workdir).endswith('ckpt_20.pt')
  assert ckpt.resolve_checkpoint(workdir, '15').endswith('ckpt_15.pt')
  with pytest.raises(ckpt.CheckpointError, match=r"ckpt_15\.pt"):
    ckpt.resolve_checkpoint(workdir, 5)   # pruned; the message lists what exists


def test_files_derived_from_a_checkpoint_go_with_it(tmp_path):
  """A file cached beside a checkpoint (DPM-Solver-v3's EMS) is deleted when the checkpoint is
  rotated out, and only then: ckpt_1's files go, ckpt_10's (a name ckpt_1 prefixes) stay."""
  workdir = str(tmp_path)
  paths = {}
  for step in (1, 10):
    path = ckpt.save_checkpoint(workdir, step, {'step': step}, keep=3)
    paths[step] = ckpt.derived_path(path, 'ems', 'abc123')
    open(paths[step], 'w').close()
  assert paths[1] == os.path.join(workdir, 'checkpoints', 'ckpt_1.ems-abc123.pt')
  assert ckpt.derived_files(paths[1].replace('.ems-abc123', '')) == [paths[1]]
  ckpt.save_checkpoint(workdir, 20, {'step': 20}, keep=3)
  assert os.path.exists(paths[1]) and os.path.exists(paths[10])
  ckpt.save_checkpoint(workdir, 30, {'step': 30}, keep=3)
  assert not os.path.exists(paths[1]) and os.path.exists(paths[10])


def test_crash_mid_write_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
  workdir = str(tmp_path)
  ckpt.save_checkpoint(workdir, 1, {'step': 1, 'w': torch.arange(4.0)}, keep=1)
  real_save = torch.save

  def crashing_save(obj, f):
    f.write(b'PK\x03\x04 half a checkpoint')
    raise OSError('disk full')

  monkeypatch.setattr(torch, 'save', crashing_save)
  with pytest.raises(OSError, match='disk full'):
    ckpt.save_checkpoint(workdir, 2, {'step': 2, 'w': torch.zeros(4)}, keep=1)
  monkeypatch.setattr(torch, 'save', real_save)

  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['ckpt_1.pt', 'latest']
  state = ckpt.load_checkpoint(ckpt.latest_checkpoint(workdir))
  assert state['step'] == 1 and torch.equal(state['w'], torch.arange(4.0))


def test_a_full_disk_while_training_checkpoints_is_one_line_and_keeps_the_previous(
    tmp_path, monkeypatch, one_thread):
  """The disk fills while the trainer writes step 20's checkpoint: one line naming the file, the
  space it needs (the size step 20's checkpoint has once written) and the previous checkpoint,
  which stays the latest and loads; no temporary file is left, and the same command then
  resumes from step 10 to what an uninterrupted run has."""
  workdir, straight = str(tmp_path / 'run'), str(tmp_path / 'straight')
  checkpoints = os.path.join(workdir, 'checkpoints')
  train(tiny_run(10), workdir, progress=False)
  real_save = torch.save

  def disk_fills_once(obj, f):   # atomic_write's count of the size needed then succeeds
    monkeypatch.setattr(torch, 'save', real_save)
    f.write(b'PK\x03\x04 part of a checkpoint')
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(torch, 'save', disk_fills_once)
  with pytest.raises(DiskFull) as info:
    train(tiny_run(20), workdir, progress=False)

  message, previous = str(info.value), os.path.join(checkpoints, 'ckpt_10.pt')
  assert sorted(os.listdir(checkpoints)) == ['ckpt_10.pt', 'latest']
  assert ckpt.latest_checkpoint(workdir) == previous
  assert ckpt.load_checkpoint(previous)['step'] == 10
  train(tiny_run(20), workdir, progress=False)
  train(tiny_run(20), straight, progress=False)
  written = os.path.join(checkpoints, 'ckpt_20.pt')
  assert_same_weights(ckpt.load_checkpoint(written),
                      ckpt.load_checkpoint(os.path.join(straight, 'checkpoints', 'ckpt_20.pt')))
  assert '\n' not in message and message.startswith(
      f"no space left to write {written}: it needs {_amount(os.path.getsize(written))}, "), message
  assert message.endswith(f"the previous checkpoint, {previous}, is intact and still the latest")


def test_wrong_architecture_names_the_mismatch(tmp_path):
  model, ema, optimizer = trained_state(tiny_config(hidden=16), steps=1)
  ckpt.save_checkpoint(str(tmp_path), 1, state_of(model, ema, optimizer, 1), keep=1)
  other = get_model(tiny_config(hidden=32))
  with pytest.raises(ckpt.CheckpointError, match=r"does not match.*checkpoint \(16,.*vs model \(32,"):
    ckpt.load_state_strict(other, ckpt.load_checkpoint(ckpt.latest_checkpoint(str(tmp_path)))['model'])
  with pytest.raises(ckpt.CheckpointError, match='does not match'):
    restore_for_inference(tiny_config(hidden=32), str(tmp_path))


def test_loading_is_weights_only(tmp_path):
  path = str(tmp_path / 'pickled.pt')
  # A full pickle of an arbitrary class (here Fraction) must be refused, not unpickled.
  torch.save({'step': 1, 'payload': fractions.Fraction(1, 3)}, path)
  with pytest.raises(ckpt.CheckpointError, match='weights-only'):
    ckpt.load_checkpoint(path)


def test_restore_for_inference_uses_ema_weights_in_eval_mode(tmp_path):
  config = tiny_config()
  model, ema, optimizer = trained_state(config)
  ckpt.save_checkpoint(str(tmp_path), 7, state_of(model, ema, optimizer, 7), keep=1)
  restored, step, name = restore_for_inference(config, str(tmp_path), device='cpu')
  assert (step, name, restored.training) == (7, 'ckpt_7', False)
  for param_name, p in restored.named_parameters():
    assert torch.equal(p, ema.shadow[param_name])
  assert not torch.equal(dict(restored.named_parameters())['output.weight'],
                         dict(model.named_parameters())['output.weight'])  # EMA != raw weights


def test_no_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(ckpt.CheckpointError, match='no checkpoint in .*train first'):
    restore_for_inference(tiny_config(), str(tmp_path))
