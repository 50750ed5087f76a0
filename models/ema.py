"""Exponential moving average of parameters, the weights sampling and evaluation use.

After each optimizer step, shadow <- d shadow + (1 - d) param. Without warm-up d = decay
(Ho et al. 2020 use 0.9999). With `warmup` (our default, score_sde's `use_num_updates`) the
n-th update (n = 1, 2, ...) uses d_n = min(decay, (1 + n) / (10 + n)), so short runs are not
averaged with the random initialization, which at decay 0.9999 would still weigh e^-1 after
10,000 plain updates.
"""
import torch
from torch import nn

from utils.errors import ConfigError


def _named_params(model_or_params):
  """name -> parameter for a module (its parameter names) or an iterable ('0', '1', ...)."""
  if isinstance(model_or_params, nn.Module):
    return dict(model_or_params.named_parameters())
  return {str(i): p for i, p in enumerate(model_or_params)}


class ExponentialMovingAverage:
  """EMA of a fixed set of parameters; `update`, `copy_to`, `store` and `restore` take the same
  module (or parameter iterable) the average was built from, or one with the same structure."""

  def __init__(self, model_or_params, decay, warmup=True):
    if not 0.0 <= decay <= 1.0:
      raise ConfigError(f"EMA decay must lie in [0, 1], got {decay}")
    self.decay = decay
    self.warmup = warmup
    self.num_updates = 0
    self.shadow = {name: p.detach().clone() for name, p in _named_params(model_or_params).items()}
    self.backup = None

  def current_decay(self):
    """The decay the next update uses."""
    if self.warmup:
      n = self.num_updates + 1
      return min(self.decay, (1 + n) / (10 + n))
    return self.decay

  def _match(self, model_or_params):
    params = _named_params(model_or_params)
    if params.keys() != self.shadow.keys():
      raise ValueError(f"EMA holds {len(self.shadow)} parameters but got {len(params)}; "
                       f"{_diff(self.shadow, params)}")
    return params

  @torch.no_grad()
  def update(self, model_or_params):
    decay = self.current_decay()
    self.num_updates += 1
    for name, p in self._match(model_or_params).items():
      self.shadow[name].lerp_(p.detach(), 1.0 - decay)

  @torch.no_grad()
  def copy_to(self, model_or_params):
    """Overwrite the parameters with their averages."""
    for name, p in self._match(model_or_params).items():
      p.copy_(self.shadow[name])

  def store(self, model_or_params):
    """Keep a copy of the current parameters (e.g. before `copy_to` for evaluation)."""
    self.backup = {name: p.detach().clone() for name, p in self._match(model_or_params).items()}

  @torch.no_grad()
  def restore(self, model_or_params):
    """Put back the parameters saved by `store`."""
    if self.backup is None:
      raise RuntimeError("EMA.restore called without a preceding store")
    for name, p in self._match(model_or_params).items():
      p.copy_(self.backup[name])
    self.backup = None

  def state_dict(self):
    """Tensors and plain values only (loads with torch.load(..., weights_only=True))."""
    return {'decay': self.decay, 'warmup': self.warmup, 'num_updates': self.num_updates,
            'shadow': dict(self.shadow)}

  @torch.no_grad()
  def load_state_dict(self, state):
    """Strict: the saved averages must have exactly this EMA's names and shapes."""
    saved = state['shadow']
    shapes = {name for name in saved.keys() & self.shadow.keys()
              if saved[name].shape != self.shadow[name].shape}
    if saved.keys() != self.shadow.keys() or shapes:
      raise ValueError(f"EMA state does not match the model: {_diff(self.shadow, saved)}"
                       + ''.join(f"; {name}: saved {tuple(saved[name].shape)} vs model "
                                 f"{tuple(self.shadow[name].shape)}" for name in sorted(shapes)))
    for name, value in saved.items():
      self.shadow[name].copy_(value)
    self.decay, self.warmup = float(state['decay']), bool(state['warmup'])
    self.num_updates = int(state['num_updates'])


def _diff(expected, got, limit=5):
  missing = sorted(expected.keys() - got.keys())[:limit]
  unexpected = sorted(got.keys() - expected.keys())[:limit]
  return f"missing {missing}, unexpected {unexpected}"
