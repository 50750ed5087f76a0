"""Restoration with a diffusion prior: measurement operators with their SVD (operators.py) and
the training-free posterior samplers that run on any score_fn (DPS, PiGDM, DDRM, DDNM).
Replacement and RePaint are restoration/imputation.py, on the same operators.

  x, nfe = restore('ddrm', score_fn, sde, operator, y, sigma_y, shape, steps=100)
"""
import torch

from restoration.ddnm import ddnm
from restoration.ddrm import ddrm
from restoration.diffusion import Prior, time_grid
from restoration.dps import dps
from restoration.operators import OPERATORS, get_operator, measure
from restoration.pigdm import pigdm
from utils.errors import ConfigError

METHODS = {'dps': dps, 'pigdm': pigdm, 'ddrm': ddrm, 'ddnm': ddnm}

__all__ = ['METHODS', 'OPERATORS', 'get_operator', 'measure', 'restore']


def restore(method, score_fn, sde, operator, y, sigma_y, shape, steps=100, schedule='uniform',
            eps=1e-3, generator=None, device='cpu', **options):
  """(x, nfe): restorations of the measurements y = A x + sigma_y n (model space) by `method`
  (a name in METHODS) from a prior draw x_T, on `steps` times of `schedule` from T to eps and
  a last step to t = 0; `options` are the method's own (eta, zeta, ...). A noiseless
  measurement (sigma_y = 0) is a constraint every method meets exactly: the result is projected
  onto {x : A x = y}, x + A^+ (y - A x) (a no-op up to rounding for DDRM and DDNM, whose last
  step already sets the range part; DPS and PiGDM only pull towards y)."""
  if method not in METHODS:
    raise ConfigError(f"unknown restoration method {method!r}; choose one of {sorted(METHODS)}")
  if sigma_y < 0:
    raise ConfigError(f"the measurement noise sigma_y must be >= 0, got {sigma_y}")
  operator.check(torch.empty(0, *shape[1:]))
  prior = Prior(score_fn, sde)
  x = sde.prior_sampling(shape, generator=generator, device=device)
  grid = time_grid(sde, steps, schedule, eps)
  with torch.no_grad():   # DPS and PiGDM take their gradients under enable_grad
    y = y.to(x)
    x = METHODS[method](prior, operator, y, sigma_y, x, grid, generator, **options)
    if sigma_y == 0:
      x = x + operator.pinv(y - operator.forward(x))
  return x, prior.nfe
