"""The exact posterior of a Gaussian-mixture prior under a linear Gaussian measurement.

If x ~ sum_k w_k N(mu_k, S_k) and y = A x + n, n ~ N(0, sigma_y^2 I), then
x | y ~ sum_k w'_k N(mu'_k, S'_k) with, per component (Bishop, PRML eqs. 2.113-2.117),
  K_k = S_k A^T (A S_k A^T + sigma_y^2 I)^{-1},  mu'_k = mu_k + K_k (y - A mu_k),
  S'_k = S_k - K_k A S_k,  w'_k proportional to w_k N(y; A mu_k, A S_k A^T + sigma_y^2 I).
"""
import math

import torch

from evaluation.sample_metrics import sliced_wasserstein
from sde_lib.gaussian_mixture import GaussianMixture


def dense_matrix(operator, shape):
  """The m x D matrix of operator.forward on images of `shape` (C, H, W), float64."""
  d = math.prod(shape)
  basis = torch.eye(d, dtype=torch.float64).reshape(d, *shape)
  return operator.forward(basis).reshape(d, -1).T


def posterior(prior, a, y, sigma_y):
  """The posterior mixture of `prior` given one measurement y (m,) = a x + sigma_y n."""
  a, y = a.double(), y.double().flatten()
  gram = a @ prior.covs @ a.T + sigma_y ** 2 * torch.eye(a.shape[0], dtype=torch.float64)
  gain = prior.covs @ a.T @ torch.linalg.inv(gram)                       # K_k
  residual = y[None] - prior.means @ a.T                                 # y - A mu_k
  means = prior.means + torch.einsum('kdm,km->kd', gain, residual)
  covs = prior.covs - gain @ a @ prior.covs
  covs = 0.5 * (covs + covs.transpose(1, 2))
  log_w = prior.weights.log() + torch.distributions.MultivariateNormal(
      prior.means @ a.T, gram).log_prob(y[None])
  return GaussianMixture(torch.softmax(log_w, 0), means, covs)


def posterior_mean(mixture):
  return (mixture.weights[:, None] * mixture.means).sum(0)


def mode_weights(prior, x):
  """The fraction of samples x (n, D) whose most probable prior component is k."""
  return torch.bincount(prior.assign(x), minlength=len(prior.weights)).double() / x.shape[0]


def compare(prior, post, x, seed=0):
  """Samples x (n, D) of a posterior against the exact one: the error of their mean, the
  sliced W2 to an exact sample, and the largest error of the mode weights (modes by the prior's
  most probable component, the same statistic on both)."""
  exact = post.sample(x.shape[0], torch.Generator().manual_seed(seed + 1)).double()
  x = x.double()
  return {'mean_error': (x.mean(0) - posterior_mean(post)).norm().item(),
          'sliced_w2': sliced_wasserstein(x, exact, seed=seed),
          'weight_error': (mode_weights(prior, x) - mode_weights(prior, exact)).abs().max().item()}


def floor(prior, post, n, seed=0):
  """`compare` of an exact sample of size n against the exact posterior: what Monte-Carlo
  error alone gives."""
  return compare(prior, post, post.sample(n, torch.Generator().manual_seed(seed + 2)), seed)


def checker_mixture(size=4, amplitude=1.0, seed=0):
  """A mixture on 1 x size x size images whose three modes differ by +-amplitude times a
  checkerboard on the right half: a pattern that 2x2 average pooling removes, a blur nearly
  removes and a mask of the left half does not see, so their posteriors stay multimodal.
  Weights 0.5, 0.3, 0.2; anisotropic covariances of scale 0.2."""
  g = torch.Generator().manual_seed(seed)
  d = size * size
  rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing='ij')
  checker = (((rows + cols) % 2) * 2 - 1).double() * (cols >= size // 2)
  base = 0.5 * torch.randn(d, generator=g, dtype=torch.float64)
  pattern = amplitude * checker.flatten()
  means = torch.stack([base, base + pattern, base - pattern])
  a = torch.randn(3, d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
  covs = 0.03 * (a @ a.transpose(1, 2)) + 0.01 * torch.eye(d, dtype=torch.float64)
  return GaussianMixture(torch.tensor([0.5, 0.3, 0.2]), means, covs)
