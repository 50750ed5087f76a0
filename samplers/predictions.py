"""A score_fn seen the way the fast solvers see it: noise and data predictions along m(t), s(t).

For x_t = m(t) x_0 + s(t) z (every SDE here), the score gives
  eps_hat(x, t) = -s(t) score(x, t)                     (the noise; Ho et al.'s eps_theta)
  x0_hat(x, t)  = (x + s(t)^2 score(x, t)) / m(t)       (the data; Tweedie's formula)
with lambda(t) = log(m / s), both the SDE's own (SDE.tweedie_x0, SDE.log_snr). DPM-Solver,
UniPC and DDIM write their updates in (m, s, lambda, eps_hat or x0_hat); EDM's Heun and iPNDM
in sigma = s / m and x / m. Each call is one score evaluation, counted in `nfe`. Every sampler
is given one (samplers/driver.py).
"""
import torch

from sde_lib import batch_broadcast

THRESHOLD_QUANTILE = 0.995   # dynamic thresholding (Saharia et al. 2022, Imagen, sec. 2.3)


def _times(t):
  """A float or 0-d tensor time as a float64 tensor of shape [1]."""
  return torch.as_tensor(t, dtype=torch.float64).reshape(1)


class Predictions:
  """eps_hat and x0_hat of `score_fn` under `sde`; times are python floats or 0-d tensors."""

  def __init__(self, sde, score_fn, thresholding=False, threshold_max=1.0, on_time=None):
    self.sde, self.score_fn = sde, score_fn
    self.thresholding = thresholding     # clip x0_hat per sample (data in [-1, 1] when max 1)
    self.threshold_max = threshold_max
    self.on_time = on_time               # progress callback, given each evaluated time
    self.nfe = 0

  def coeffs(self, t):
    """m(t), s(t) as float64 0-d tensors."""
    mean_coeff, std = self.sde.marginal_coeffs(_times(t))
    return mean_coeff[0], std[0]

  def at(self, t):
    """m(t), s(t) and lambda(t) as floats: an exponential integrator's constants."""
    mean_coeff, std = (float(c) for c in self.coeffs(t))
    return mean_coeff, std, float(self.log_snr(t))

  def log_snr(self, t):
    """lambda(t) = log(m / s) (SDE.log_snr), a float64 0-d tensor."""
    return self.sde.log_snr(_times(t))[0]

  def __call__(self, x, t):
    """The score at x and the [batch] times t, counted: a Predictions is itself a score_fn, the
    one the step-by-step samplers (predictors, correctors, the ODE and SDE solvers) are given."""
    self.nfe += 1
    if self.on_time is not None:
      self.on_time(t.max())
    return self.score_fn(x, t)

  def score(self, x, t):
    """The score at x and one time t (a float or a 0-d tensor), counted."""
    return self(x, torch.full((x.shape[0],), float(t), device=x.device, dtype=x.dtype))

  def eps(self, x, t):
    """eps_hat = -s(t) score."""
    return -float(self.coeffs(t)[1]) * self.score(x, t)

  def x0(self, x, t):
    """x0_hat = (x + s^2 score) / m (SDE.tweedie_x0), dynamically thresholded when asked."""
    x0 = self.sde.tweedie_x0(x, _times(t).expand(x.shape[0]), self.score(x, t))
    return self._threshold(x0) if self.thresholding else x0

  def x0_and_eps(self, x, t):
    """x0_hat and the eps_hat consistent with it, eps = (x - m x0_hat) / s, from one evaluation."""
    mean_coeff, std = (float(c) for c in self.coeffs(t))
    x0 = self.x0(x, t)
    return x0, (x - mean_coeff * x0) / std

  def sigma(self, t):
    """EDM's noise level sigma(t) = s(t) / m(t) = exp(-lambda(t)), a float."""
    mean_coeff, std = self.coeffs(t)
    return float(std / mean_coeff)

  def ode_slope(self, x_scaled, t):
    """dx^/dsigma = (x^ - D(x^; sigma)) / sigma for x^ = x / m(t), with the denoiser
    D(x^; sigma) = x0_hat(m x^, t): the probability-flow ODE in EDM's variables (Karras et al.
    2022, eq. 4 with s = 1), where every SDE here becomes the VE one."""
    mean_coeff = float(self.coeffs(t)[0])
    return (x_scaled - self.x0(mean_coeff * x_scaled, t)) / self.sigma(t)

  def _threshold(self, x0):
    """Clip each sample to [-r, r], r = max(threshold_max, its 99.5% quantile of |x0|), then
    divide by r / threshold_max (Saharia et al. 2022)."""
    r = torch.quantile(x0.abs().flatten(1).float(), THRESHOLD_QUANTILE, dim=1)
    r = batch_broadcast(r.clamp(min=self.threshold_max) / self.threshold_max, x0)
    return torch.maximum(torch.minimum(x0, r * self.threshold_max), -r * self.threshold_max) / r
