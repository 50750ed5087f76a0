"""The flow-matching loss: regression of the velocity (Lipman et al. 2023, eq. 23; Liu et al.
2023, eq. 1), for any network parameterization and any path x_t = m(t) x_0 + s(t) z.

  L = E_{t, x_0, z} || v_theta(x_t, t) - (m'(t) x_0 + s'(t) z) ||^2,   t ~ U[eps, T],

with v_theta the velocity of the network's eps_hat (sde_lib/flows.py velocity_from_eps): for
model.parameterization 'velocity' the network's own output. Reflow (Liu et al. 2023, sec. 2.3)
is the same regression on coupled pairs (z, x_0) drawn by a trained flow's ODE instead of
independent ones: pass the coupled z (`draw_couplings`); its one-step distillation fits a
single Euler step to the pairs (`one_step_distillation_per_sample`).
"""
import torch

from samplers.probability_flow import flow
from sde_lib import batch_broadcast
from sde_lib.flows import velocity_from_eps


def flow_matching_per_sample(eps_fn, sde, x0, z, t, reduce_mean=True):
  """||v_theta(x_t, t) - (m' x_0 + s' z)||^2 per sample (mean or sum over dimensions), x_t =
  m x_0 + s z; eps_fn(x, t) is the network's eps_hat."""
  m, s = (batch_broadcast(c, x0) for c in sde.marginal_coeffs(t))
  dm, ds = (batch_broadcast(c, x0) for c in sde.marginal_coeffs_derivative(t))
  x_t = m * x0 + s * z
  v_hat = velocity_from_eps(x_t, eps_fn(x_t, t), m, s, dm, ds)
  sq = (v_hat - (dm * x0 + ds * z)).square().flatten(1)
  return sq.mean(1) if reduce_mean else sq.sum(1)


def flow_matching_times(sde, n, eps, device, generator=None):
  """t ~ U[eps, T] (RectifiedFlow's eps = 1e-3 keeps t off the data end)."""
  return eps + (sde.T - eps) * torch.rand(n, device=device, generator=generator)


def draw_couplings(sde, score_fn, z, eps=1e-3, rtol=1e-5, atol=1e-5, method='dopri5', steps=None):
  """Reflow's pairs (z, x): x the end of the trained flow's ODE (the probability flow of
  `score_fn`) started at x_T = z, by any torchdiffeq solver, to t = eps and then Tweedie's x0
  (the score is -eps_hat / s, undefined at s = 0) (Liu et al. 2023, Algorithm 1: Z_1 =
  ODE[v_k](Z_0)). The pairs are the data of the next (k+1)-rectified flow; returns (z, x)."""
  x, _ = flow(sde, score_fn, z, sde.T, eps, method, rtol, atol, steps)
  t = torch.full((z.shape[0],), eps, device=z.device, dtype=z.dtype)
  return z, sde.tweedie_x0(x, t, score_fn(x, t))


def one_step_distillation_per_sample(eps_fn, sde, z, x, reduce_mean=True):
  """||z - T v_theta(z, T) - x||^2 per sample: one Euler step of the flow from T to 0 fitted to
  the coupled data x of z (Liu et al. 2023, sec. 2.3, distillation with k = 1)."""
  t = torch.full((z.shape[0],), sde.T, device=z.device, dtype=z.dtype)
  m, s = (batch_broadcast(c, z) for c in sde.marginal_coeffs(t))
  dm, ds = (batch_broadcast(c, z) for c in sde.marginal_coeffs_derivative(t))
  one_step = z - sde.T * velocity_from_eps(z, eps_fn(z, t), m, s, dm, ds)
  sq = (one_step - x).square().flatten(1)
  return sq.mean(1) if reduce_mean else sq.sum(1)
