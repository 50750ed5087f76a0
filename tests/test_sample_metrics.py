"""KID and precision / recall (evaluation/sample_metrics.py) against the papers' definitions
and sets whose answers are known."""
import numpy as np
import pytest

from evaluation.sample_metrics import kid, neighbour_radii, precision_recall


def unbiased_mmd2(x, y):
  """Binkowski et al. 2018, eq. 3 with k(x, y) = (x.y / d + 1)^3: all pairs, no subsets."""
  d = x.shape[1]
  k = lambda a, b: (a @ b.T / d + 1) ** 3
  m, n = len(x), len(y)
  kxx, kyy = k(x, x), k(y, y)
  return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
          - 2 * k(x, y).mean())


def test_kid_of_whole_sets_is_the_unbiased_mmd():
  """With one subset as large as the sets (a reordering of each), KID is the all-pairs
  unbiased estimate of the paper, to rounding (1e-10)."""
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(60, 5)), rng.normal(0.5, 1.0, size=(60, 5))
  assert kid(x, y, num_subsets=1, max_subset_size=60) == pytest.approx(unbiased_mmd2(x, y), rel=1e-10)


def test_kid_tells_equal_distributions_from_shifted_ones():
  """Two samples of one Gaussian: KID within 3 standard deviations (over 20 seeds of the
  data) of 0, as an unbiased estimate must be; a shift of 0.5 per dimension: far above."""
  rng = np.random.default_rng(1)
  same = [kid(rng.normal(size=(300, 8)), rng.normal(size=(300, 8)), num_subsets=10, seed=s)
          for s in range(20)]
  assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same))
  shifted = kid(rng.normal(size=(300, 8)), rng.normal(0.5, 1.0, size=(300, 8)), num_subsets=10)
  assert shifted > 10 * np.std(same)


def test_precision_and_recall_on_sets_with_known_answers():
  """Reference at 0, 1, ..., 9 on a line (k = 1: every radius 1). Samples 0..4: all inside
  the reference's manifold (precision 1); reference points within 1 of a sample: 0..5, so
  recall 6/10. Identical sets: (1, 1). Far-away samples: (0, 0)."""
  line = lambda values: np.asarray(values, np.float64)[:, None]
  reference = line(range(10))
  assert neighbour_radii(reference, 1).tolist() == [1.0] * 10
  assert precision_recall(line(range(5)), reference, k=1) == (1.0, 0.6)
  cloud = np.random.default_rng(2).normal(size=(200, 4))
  assert precision_recall(cloud, cloud) == (1.0, 1.0)
  assert precision_recall(cloud + 100, cloud) == (0.0, 0.0)
