"""Checks of samples against an analytic Gaussian mixture (sde_lib/gaussian_mixture.py): the
exact-vs-exact floor of the sliced Wasserstein distance and the per-mode statistics."""
import math

import torch

from evaluation.sample_metrics import sliced_wasserstein


def reference_distance(mixture, n, draws=4):
  """Mean sliced Wasserstein distance between two exact sample sets of size n: the floor a
  sampler's distance is held against."""
  g = torch.Generator().manual_seed(123)
  return sum(sliced_wasserstein(mixture.sample(n, g), mixture.sample(n, g), seed=i)
             for i in range(draws)) / draws


def assert_matches(mixture, x, reference=None, weight=0.01, mean=0.03, cov=0.05, w2=1.5):
  """Samples x against the mixture: per mode (points assigned to their most probable
  component) the weight, the mean and the covariance, each within Monte-Carlo error plus an
  allowance for the sampler's discretization bias, and with `reference` (reference_distance)
  the sliced W2 to an exact sample within w2 times the exact-vs-exact distance:
    weight  4 sqrt(w (1 - w) / n) + weight
    mean    4 sqrt(tr Sigma / n_k) + mean          (Euclidean norm of the error)
    cov     2 sqrt((d + 1) / n_k) + cov            (relative Frobenius error; a sample
            covariance's is about sqrt((d + 1) / n_k))
    spread  tr(Sigma_hat) / tr(Sigma) >= 1 / (2 (1 + c)),  c the cov bound above
  The spread check is for loose allowances: a mode collapsed to its mean has a relative
  covariance error of exactly 1, which a bound c >= 1 lets through (the fast samplers at 10
  evaluations, Heun's c = 2.2); with c < 1 the covariance bound already implies it. The
  samplers' smallest spreads: 0.25 (Heun at 10, 16-D; floor 0.15), 0.56 (Heun at 20, ring;
  floor 0.29), 0.57 (DPM-Solver-3 at 10, ring; floor 0.25).
  The defaults suit a many-step sampler; a sign or factor-of-two slip moves every statistic
  by far more.
  """
  assert torch.isfinite(x).all()
  n, d = x.shape
  k = mixture.assign(x)
  for j, (w, mu, sigma) in enumerate(zip(mixture.weights, mixture.means, mixture.covs)):
    xs = x[k == j].double()
    w_hat = xs.shape[0] / n
    assert abs(w_hat - w) <= 4 * math.sqrt(w * (1 - w) / n) + weight, (j, w_hat, float(w))
    mean_err = (xs.mean(0) - mu).norm().item()
    assert mean_err <= 4 * math.sqrt(torch.trace(sigma) / xs.shape[0]) + mean, (j, mean_err)
    sample_cov = torch.cov(xs.T)
    cov_bound = 2 * math.sqrt((d + 1) / xs.shape[0]) + cov
    cov_err = ((sample_cov - sigma).norm() / sigma.norm()).item()
    assert cov_err <= cov_bound, (j, cov_err)
    spread = (torch.trace(sample_cov) / torch.trace(sigma)).item()
    assert spread >= 1 / (2 * (1 + cov_bound)), ('spread', j, spread)
  if reference is not None:
    distance = sliced_wasserstein(x, mixture.sample(n, torch.Generator().manual_seed(7)))
    assert distance <= w2 * reference, (distance, reference)

