"""Gaussian data, where the probability-flow ODE is solved exactly: the truth for solver orders.

For x_0 ~ N(mu, Sigma) and x_t = m(t) x_0 + s(t) z, the marginal is N(m mu, V_t), V_t =
m^2 Sigma + s^2 I, and the probability-flow ODE carries x_t to x_u = m_u mu +
V_u^{1/2} V_t^{-1/2} (x_t - m_t mu) (every V_t shares Sigma's eigenvectors, and the flow keeps
each whitened coordinate fixed). The score is linear, so a solver's error is its own alone.
"""
import math

import torch

from sde_lib.gaussian_mixture import GaussianMixture

# Budgets for the measured orders of DPM-Solver and UniPC: 2 mod 6, so DPM-Solver-fast's split
# is all order-2 steps for order 2 and [3, ..., 3, 2] for order 3 (its final order-1 step at
# other budgets adds a local O(h^2) error that dominates: 5.2e-5 at 160 against 2.4e-5 at 113).
# 44 and up: below, the third-order methods are still pre-asymptotic (3.3-3.4 over 20..170).
ORDER_BUDGETS = [44, 62, 86, 122, 170]


def gaussian_data(dim=4, seed=0):
  """One anisotropic Gaussian (eigenvalues 0.05..2, rotated, offset mean) as a 1-component mixture."""
  g = torch.Generator().manual_seed(seed)
  q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
  eigvals = torch.logspace(math.log10(0.05), math.log10(2.0), dim, dtype=torch.float64)
  cov = q @ torch.diag(eigvals) @ q.T
  mean = torch.randn(dim, generator=g, dtype=torch.float64)
  return GaussianMixture(torch.ones(1), mean[None], cov[None])


def exact_flow(gaussian, sde, x, t, u):
  """x_t (float, shape [n, D]) carried by the exact probability-flow ODE from time t to time u."""
  coeffs = [sde.marginal_coeffs(torch.tensor([float(v)], dtype=torch.float64)) for v in (t, u)]
  (m_t, s_t), (m_u, s_u) = [(float(m), float(s)) for m, s in coeffs]
  lam, vecs = gaussian.eigvals[0], gaussian.eigvecs[0]
  gain = ((m_u ** 2 * lam + s_u ** 2) / (m_t ** 2 * lam + s_t ** 2)).sqrt()
  centred = (x.double() - m_t * gaussian.means[0]) @ vecs
  return (m_u * gaussian.means[0] + (centred * gain) @ vecs.T).to(x.dtype)


def loglog_slope(budgets, errors):
  """Least-squares slope of log(error) against log(budget): minus the measured order."""
  lx = torch.log(torch.tensor(budgets, dtype=torch.float64))
  ly = torch.log(torch.tensor(errors, dtype=torch.float64))
  lx, ly = lx - lx.mean(), ly - ly.mean()
  return float((lx * ly).sum() / (lx * lx).sum())


def gaussian_score_fn(gaussian, sde):
  """score_fn(x, t) of the one-Gaussian mixture's marginals, vectorised over per-row times
  (gmm_oracle.exact_score_fn builds one perturbed mixture per distinct t): -Q diag(1 /
  (m^2 lambda + s^2)) Q^T (x - m mu); x of shape [B, D] or [B, C, H, W] with C H W = D."""
  lam, vecs, mu = gaussian.eigvals[0], gaussian.eigvecs[0], gaussian.means[0]

  def score_fn(x, t):
    m, s = (c.double()[:, None] for c in sde.marginal_coeffs(t.double()))
    centred = (x.reshape(len(x), -1).double() - m * mu) @ vecs
    return (-(centred / (m ** 2 * lam + s ** 2)) @ vecs.T).reshape(x.shape).to(x.dtype)

  return score_fn
