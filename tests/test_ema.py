"""The EMA against the recursion worked out by hand, and its checkpoint contract."""
import io

import pytest
import torch
from torch import nn

from models import ExponentialMovingAverage


def scalar_model(value=0.0):
  model = nn.Linear(1, 1, bias=False)
  nn.init.constant_(model.weight, value)
  return model


def run(ema, model, values):
  for value in values:
    with torch.no_grad():
      model.weight.fill_(value)
    ema.update(model)


def test_plain_ema_is_the_geometric_average():
  model = scalar_model(0.0)
  ema = ExponentialMovingAverage(model, decay=0.9, warmup=False)
  run(ema, model, [1.0, 2.0, 4.0])
  # 0.9^3 * 0 + 0.1 * (0.9^2 * 1 + 0.9 * 2 + 4) = 0.1 * 6.61
  assert ema.shadow['weight'].item() == pytest.approx(0.661, abs=1e-6)   # fp32 rounding


def test_warmup_ema_uses_the_growing_decay():
  model = scalar_model(0.0)
  ema = ExponentialMovingAverage(model, decay=0.5, warmup=True)
  # Decays: 2/11, 3/12, 4/13, then min(0.5, ...) from n = 8 on.
  # s1 = 9/11 * 1 = 9/11; s2 = 1/4 * 9/11 + 3/4 * 2 = 75/44; s3 = 4/13 * 75/44 + 9/13 * 4 = 471/143
  run(ema, model, [1.0, 2.0, 4.0])
  assert ema.shadow['weight'].item() == pytest.approx(471 / 143, abs=1e-6)   # fp32 rounding
  ema.num_updates = 100
  assert ema.current_decay() == 0.5


def test_store_copy_restore_swaps_the_weights():
  model = scalar_model(0.0)
  ema = ExponentialMovingAverage(model.parameters(), decay=0.5, warmup=False)
  with torch.no_grad():
    model.weight.fill_(2.0)
  ema.update(model.parameters())     # shadow 0.5 * 0 + 0.5 * 2 = 1, weight 2
  ema.store(model.parameters())
  ema.copy_to(model.parameters())
  assert model.weight.item() == 1.0
  ema.restore(model.parameters())
  assert model.weight.item() == 2.0
  with pytest.raises(RuntimeError, match='without a preceding store'):
    ema.restore(model.parameters())


def test_state_dict_round_trip_through_weights_only_load():
  torch.manual_seed(0)
  model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
  ema = ExponentialMovingAverage(model, decay=0.99)
  for _ in range(3):
    with torch.no_grad():
      model[0].weight.mul_(1.5)   # move the weights so the average differs from them
    ema.update(model)
  buffer = io.BytesIO()
  torch.save(ema.state_dict(), buffer)
  buffer.seek(0)
  loaded = ExponentialMovingAverage(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), decay=0.5)
  loaded.load_state_dict(torch.load(buffer, weights_only=True))
  assert loaded.num_updates == 3 and loaded.decay == 0.99 and loaded.warmup
  for name in ema.shadow:
    assert torch.equal(loaded.shadow[name], ema.shadow[name])
  with torch.no_grad():
    model[0].weight.add_(1.0)
  ema.update(model)
  loaded.update(model)
  assert all(torch.equal(loaded.shadow[n], ema.shadow[n]) for n in ema.shadow)


def test_mismatched_state_or_model_is_refused_with_names():
  ema = ExponentialMovingAverage(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), decay=0.9)
  other = ExponentialMovingAverage(nn.Sequential(nn.Linear(3, 4)), decay=0.9)
  with pytest.raises(ValueError, match=r"missing \['1.bias', '1.weight'\]"):
    ema.load_state_dict(other.state_dict())
  wider = ExponentialMovingAverage(nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2)), decay=0.9)
  with pytest.raises(ValueError, match=r"0.weight: saved \(5, 3\) vs model \(4, 3\)"):
    ema.load_state_dict(wider.state_dict())
  with pytest.raises(ValueError, match='EMA holds 4 parameters but got 2'):
    ema.update(nn.Sequential(nn.Linear(3, 4)))
