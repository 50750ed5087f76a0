"""Analytic Gaussian mixtures with exact score and density under any of our SDEs: the truth
every sampler and estimator is tested against, and a score to debug a sampler with.

If x_0 ~ sum_k w_k N(mu_k, Sigma_k) and x_t = m(t) x_0 + s(t) z, then
x_t ~ sum_k w_k N(m mu_k, m^2 Sigma_k + s^2 I): its score and log-density are closed-form.
"""
import math

import torch


class GaussianMixture:
  """sum_k w_k N(mu_k, Sigma_k) in R^D, float64 inside.

  Sigma_k = U_k diag(lam_k) U_k^T is diagonalised once, so a perturbed mixture
  (covariances m^2 Sigma_k + s^2 I = U_k diag(m^2 lam_k + s^2) U_k^T) needs no new inverse.
  """

  def __init__(self, weights, means, covs, _eig=None):
    self.weights = torch.as_tensor(weights, dtype=torch.float64)
    self.weights = self.weights / self.weights.sum()
    self.means = torch.as_tensor(means, dtype=torch.float64)        # [K, D]
    self.covs = torch.as_tensor(covs, dtype=torch.float64)          # [K, D, D]
    self.dim = self.means.shape[1]
    self.eigvals, self.eigvecs = torch.linalg.eigh(self.covs) if _eig is None else _eig

  def sample(self, n, generator=None):
    k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
    z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
    root = self.eigvecs[k] * self.eigvals[k].clamp(min=0).sqrt()[:, None, :]
    return (self.means[k] + torch.einsum('nij,nj->ni', root, z)).float()

  def perturbed(self, sde, t):
    """The mixture of x_t for a scalar time t under `sde` (a GMM again)."""
    m, s = sde.marginal_coeffs(torch.tensor([float(t)], dtype=torch.float64))
    m, s = float(m), float(s)
    eye = torch.eye(self.dim, dtype=torch.float64)
    eig = (m ** 2 * self.eigvals + s ** 2, self.eigvecs)
    return GaussianMixture(self.weights, m * self.means, m ** 2 * self.covs + s ** 2 * eye, _eig=eig)

  def _rotated(self, x):
    """Coordinates of x - mu_k in each component's eigenbasis, [n, K, D]."""
    diff = x.double()[:, None, :] - self.means[None]
    return torch.einsum('nkd,kde->nke', diff, self.eigvecs)

  def _component_logp(self, y):
    """[n, K] log w_k N(x; mu_k, Sigma_k) from rotated coordinates y."""
    maha = (y ** 2 / self.eigvals[None]).sum(-1)
    logdet = self.eigvals.log().sum(-1)
    return (self.weights.log()[None] - 0.5 * (maha + logdet[None] + self.dim * math.log(2 * math.pi)))

  def log_prob(self, x):
    return torch.logsumexp(self._component_logp(self._rotated(x)), dim=1)

  def responsibilities(self, x):
    return torch.softmax(self._component_logp(self._rotated(x)), dim=1)

  def assign(self, x):
    """Most probable component of each point."""
    return self._component_logp(self._rotated(x)).argmax(1)

  def score(self, x):
    """grad_x log p(x) = sum_k r_k(x) Sigma_k^{-1} (mu_k - x)."""
    y = self._rotated(x)
    r = torch.softmax(self._component_logp(y), dim=1)
    per_comp = torch.einsum('kde,nke->nkd', self.eigvecs, -y / self.eigvals[None])
    return torch.einsum('nk,nkd->nd', r, per_comp).to(x.dtype)


def exact_score_fn(mixture, sde):
  """score_fn(x, t) of the mixture's marginals under `sde`; x of shape [B, D] or [B, C, H, W]."""

  def score_fn(x, t):
    flat = x.reshape(x.shape[0], -1)
    if bool((t == t[0]).all()):
      return mixture.perturbed(sde, float(t[0])).score(flat).reshape(x.shape)
    out = torch.empty_like(flat)
    for value in torch.unique(t):
      rows = t == value
      out[rows] = mixture.perturbed(sde, float(value)).score(flat[rows])
    return out.reshape(x.shape)

  return score_fn


def ring_mixture(n_modes=8, radius=2.0, std=0.2, dim=2):
  """n_modes equal-weight isotropic Gaussians on a circle in the first two coordinates."""
  angles = torch.arange(n_modes, dtype=torch.float64) * 2 * math.pi / n_modes
  means = torch.zeros(n_modes, dim, dtype=torch.float64)
  means[:, 0], means[:, 1] = radius * torch.cos(angles), radius * torch.sin(angles)
  covs = std ** 2 * torch.eye(dim, dtype=torch.float64).expand(n_modes, dim, dim)
  return GaussianMixture(torch.ones(n_modes), means, covs)


def random_mixture(dim, n_modes=3, seed=0):
  """A D-dimensional mixture with unequal weights, separated means and anisotropic covariances."""
  g = torch.Generator().manual_seed(seed)
  weights = torch.rand(n_modes, generator=g, dtype=torch.float64) + 0.5
  means = 2.0 * torch.randn(n_modes, dim, generator=g, dtype=torch.float64)
  a = torch.randn(n_modes, dim, dim, generator=g, dtype=torch.float64) / math.sqrt(dim)
  covs = 0.05 * (a @ a.transpose(1, 2)) + 0.05 * torch.eye(dim, dtype=torch.float64)
  return GaussianMixture(weights, means, covs)
