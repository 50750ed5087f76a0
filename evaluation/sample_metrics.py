"""Sample-quality numbers reported beside FID, in the same feature space.

KID (Binkowski et al. 2018): the unbiased estimate of the squared MMD between samples and
reference with the kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets of at most
1000 of each (clean-fid's kernel_distance, seeded here).

Precision and recall (Kynkaanniemi et al. 2019): each set's manifold is the union of balls
around its points with radius the distance to their k-th nearest neighbour in the set (k = 3);
precision is the fraction of samples inside the reference's manifold, recall the fraction of
reference points inside the samples'.

Inception Score (Salimans et al. 2016): IS = exp(E_x KL(p(y|x) || p(y))) with p(y) the mean of
p(y|x) over the samples, i.e. exp of the mutual information between image and class; as in
their code, the mean and standard deviation over consecutive splits of the samples (10), each
split with its own p(y). Between 1 (every image gets the same class distribution) and the
number of classes (confident predictions spread evenly over them).
"""
import numpy as np
import torch
from cleanfid.fid import kernel_distance

PR_NEIGHBOURS = 3


def kid(features, reference, num_subsets=100, max_subset_size=1000, seed=0):
  """KID of [N, F] sample features against [M, F] reference features (clean-fid's estimator,
  whose subsets come from numpy's global generator: seeded for this call, then put back)."""
  state = np.random.get_state()
  np.random.seed(seed)
  try:
    return kernel_distance(np.asarray(features, np.float64), np.asarray(reference, np.float64),
                           num_subsets=num_subsets, max_subset_size=max_subset_size)
  finally:
    np.random.set_state(state)


def _blocks(a, b, rows=1024):
  """(block of a, its Euclidean distances to every point of b), float64, a block of rows at a
  time (never the whole [len(a), len(b)] matrix)."""
  a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
  for block in a.split(rows):
    yield block, torch.cdist(block, b)


def neighbour_radii(points, k=PR_NEIGHBOURS):
  """The distance of each point to its k-th nearest other point of the set."""
  return torch.cat([d.kthvalue(k + 1, dim=1).values for _, d in _blocks(points, points)])


def inside(points, centres, radii):
  """For each point, whether it lies in some ball (centres, radii)."""
  return torch.cat([(d <= radii[None]).any(1) for _, d in _blocks(points, centres)])


def precision_recall(features, reference, k=PR_NEIGHBOURS):
  """(precision, recall) of [N, F] sample features against [M, F] reference features."""
  precision = inside(features, reference, neighbour_radii(reference, k)).double().mean().item()
  recall = inside(reference, features, neighbour_radii(features, k)).double().mean().item()
  return precision, recall


def inception_score(probs, splits=10):
  """(mean, std) over `splits` consecutive parts of [N, C] class probabilities p(y|x) of
  exp(mean_x sum_y p(y|x) (log p(y|x) - log p(y))), p(y) the part's mean; part i is
  [i N // splits, (i + 1) N // splits), as in Salimans et al.'s code. 0 log 0 counts as 0."""
  probs = torch.as_tensor(probs, dtype=torch.float64)
  n = len(probs)
  if not 1 <= splits <= n:
    raise ValueError(f"inception_score needs 1 <= splits <= number of samples, got {splits} and {n}")
  scores = []
  for i in range(splits):
    part = probs[i * n // splits:(i + 1) * n // splits]
    marginal = part.mean(0, keepdim=True)
    kl = (torch.special.xlogy(part, part) - torch.special.xlogy(part, marginal)).sum(1)
    scores.append(kl.mean().exp().item())
  return float(np.mean(scores)), float(np.std(scores))


def sliced_wasserstein(x, y, n_projections=256, seed=0):
  """Mean over random directions of the 1-D Wasserstein-2 distance (equal sample sizes)."""
  g = torch.Generator().manual_seed(seed)
  x, y = x.double().flatten(1), y.double().flatten(1)
  dirs = torch.randn(x.shape[1], n_projections, generator=g, dtype=torch.float64)
  dirs = dirs / dirs.norm(dim=0, keepdim=True)
  px, _ = torch.sort(x @ dirs, dim=0)
  py, _ = torch.sort(y @ dirs, dim=0)
  return ((px - py) ** 2).mean().sqrt().item()
