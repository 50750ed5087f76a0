"""Affine paths x_t = alpha_t x_0 + sigma_t z as linear SDEs: rectified flow and the cosine path
(Liu et al. 2023; Lipman et al. 2023, sec. 4.1; Albergo & Vanden-Eijnden 2023).

A path (m, s) = (alpha, sigma) is the marginal of the linear SDE dx = f x dt + g dw with
  f(t) = m'/m,   g(t)^2 = 2 s s' - 2 (m'/m) s^2          (Kingma et al. 2021, app. A; our base.SDE)
whose probability-flow ODE dx/dt = f x - g^2/2 score is the flow's ODE dx/dt = v(x, t), with the
velocity v = E[m' x_0 + s' z | x_t]: the flow's ODE and its samplers are this library's PF-ODE.

Time runs from data (t = 0) to noise (t = 1), as for every SDE here. flow_matching and torchcfm
put the noise at t = 0 and the data at t = 1: their t is our 1 - t and their velocity is minus
ours (x_t = t x_1 + (1 - t) x_0 there is x_t = (1 - t) x_0 + t z here).

End time: m(1) = 0, where f, g^2 and lambda = log(m/s) diverge (Tweedie divides by m). The process
therefore stops at T = 1 - delta (delta = 1e-3 by default, RectifiedFlow's eps at the noise end),
where the prior N(0, I) is placed as RectifiedFlow and flow_matching do; the mismatch with the
true p_T = N(m(T) x_0, s(T)^2 I) is O(delta) in the likelihood.
"""
import math

import torch

from sde_lib.base import SDE, batch_broadcast


class AffinePath(SDE):
  """The linear SDE of x_t = m(t) x_0 + s(t) z, given m, s and their derivatives (`_path`)."""

  def __init__(self, N=1000, T=1 - 1e-3):
    super().__init__(N)
    self.T = T    # the noise end, < 1 where m(T) > 0

  def _path(self, t):
    """(m, s, m', s') at t."""
    raise NotImplementedError

  def marginal_coeffs(self, t):
    return self._path(t)[:2]

  def marginal_coeffs_derivative(self, t):
    return self._path(t)[2:]

  def sde(self, x, t):
    m, s, dm, ds = self._path(t)
    f = dm / m
    g2 = 2 * s * ds - 2 * f * s ** 2
    return batch_broadcast(f, x) * x, g2.clamp(min=0).sqrt()

  def prior_std(self):
    return 1.0


class RectifiedFlow(AffinePath):
  """x_t = (1 - t) x_0 + t z, v = z - x_0: the straight (conditional-OT) path of rectified flow
  (Liu et al. 2023, eq. 1) and flow matching's OT path with sigma_min = 0 (Lipman et al. eq. 20)."""

  def _path(self, t):
    return 1 - t, t, -torch.ones_like(t), torch.ones_like(t)


class CosineFlow(AffinePath):
  """x_t = cos(pi t / 2) x_0 + sin(pi t / 2) z: the variance-preserving trigonometric path
  (Albergo & Vanden-Eijnden 2023; Nichol & Dhariwal's cosine schedule without its offset)."""

  def _path(self, t):
    a = 0.5 * math.pi * t
    return torch.cos(a), torch.sin(a), -0.5 * math.pi * torch.sin(a), 0.5 * math.pi * torch.cos(a)


# Conversions between the predictions of x_t = m x_0 + s z, v = m' x_0 + s' z (coefficients
# broadcast against x). The 2x2 system has determinant m s' - m' s = m^2 d(s/m)/dt > 0 wherever
# the noise-to-signal ratio grows, i.e. on (0, 1) for every path here.

def velocity_from_eps(x, eps, m, s, dm, ds):
  """v = m' x0_hat + s' eps with x0_hat = (x - s eps) / m (Tweedie's x0 for the eps)."""
  return dm * (x - s * eps) / m + ds * eps


def velocity_fn(sde, score_fn):
  """v(x, t) = m' x0_hat + s' eps_hat of a score under `sde`: the probability-flow ODE's
  velocity, what a flow-matching network learns (any SDE here, not only the flows)."""

  def velocity(x, t):
    m, s = (batch_broadcast(c, x) for c in sde.marginal_coeffs(t))
    dm, ds = (batch_broadcast(c, x) for c in sde.marginal_coeffs_derivative(t))
    return velocity_from_eps(x, -s * score_fn(x, t), m, s, dm, ds)

  return velocity


def eps_from_velocity(x, v, m, s, dm, ds):
  """eps = (m v - m' x) / (m s' - m' s), the z of the pair (x, v)."""
  return (m * v - dm * x) / (m * ds - dm * s)


def x0_from_velocity(x, v, m, s, dm, ds):
  """x0 = (s' x - s v) / (m s' - m' s), the x_0 of the pair (x, v)."""
  return (ds * x - s * v) / (m * ds - dm * s)


def straightness(trajectory, times):
  """S = 1/(t_0 - t_K) int E ||(x_{t_0} - x_{t_K}) / (t_0 - t_K) - dx/dt||^2 dt (Liu et al. 2023,
  eq. 11), the mean over dimensions and samples, from points `trajectory` [K + 1, batch, ...] of
  an ODE solve at `times` (K + 1 decreasing, float); dx/dt of each step is its secant, exact for
  Euler's steps. S = 0 for straight paths at constant speed."""
  times = torch.as_tensor(times, dtype=trajectory.dtype)
  dt = times[:-1] - times[1:]                                             # > 0
  chord = (trajectory[0] - trajectory[-1]) / (times[0] - times[-1])
  secants = (trajectory[:-1] - trajectory[1:]) / batch_broadcast(dt, trajectory[1:])
  per_step = (secants - chord).square().flatten(1).mean(1)               # over batch and dims
  return float((per_step * dt).sum() / (times[0] - times[-1]))
