"""KID, precision / recall and the Inception Score (evaluation/sample_metrics.py) against the
papers' definitions and sets whose answers are known."""
import numpy as np
import pytest

from evaluation.sample_metrics import inception_score, kid, neighbour_radii, precision_recall


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


def test_inception_score_closed_forms():
  """Float64 throughout: agreement to 1e-12.
  Uniform p(y|x): every KL is 0, IS = 1. Confident predictions spread evenly over C classes
  in every split: KL = log C for each image, IS = C in each split (std 0). By hand, two
  images with p(y|x) = (1, 0) and (1/2, 1/2): p(y) = (3/4, 1/4), the KLs are log(4/3) and
  (1/2) log(2/3) + (1/2) log 2 = (1/2) log(4/3), their mean (3/4) log(4/3): IS = (4/3)^(3/4)
  (the 0 log 0 term counting as 0)."""
  assert inception_score(np.full((50, 8), 1 / 8), splits=5) == pytest.approx((1.0, 0.0), abs=1e-12)
  one_hot = np.eye(7)[np.arange(210) % 7]   # 10 splits of 21 images, each class 3 times in each
  assert inception_score(one_hot, splits=10) == pytest.approx((7.0, 0.0), abs=1e-12)
  mean, std = inception_score([[1.0, 0.0], [0.5, 0.5]], splits=1)
  assert mean == pytest.approx((4 / 3) ** 0.75, rel=1e-12) and std == 0


def entropy(p):
  return -(p * np.log(p)).sum(-1)


def test_inception_score_is_exp_mutual_information_over_consecutive_splits():
  """A second formula: E_x KL(p(y|x) || p(y)) = H(p(y)) - E_x H(p(y|x)), the mutual
  information of image and class. 20 Dirichlet draws in 3 splits are the images [0, 6),
  [6, 13), [13, 20) (i N // splits, as Salimans et al.); mean and population std of the
  three scores. Rounding only: 1e-12 relative."""
  probs = np.random.default_rng(3).dirichlet(np.full(5, 0.3), size=20)
  scores = [np.exp(entropy(part.mean(0)) - entropy(part).mean())
            for part in (probs[:6], probs[6:13], probs[13:])]
  assert inception_score(probs, splits=3) == pytest.approx((np.mean(scores), np.std(scores)), rel=1e-12)


def test_inception_score_splits():
  """Splits are consecutive and scored on their own: a uniform half (IS 1) then a confident
  half over 2 classes (IS 2) gives 1.5 +- 0.5 in 2 splits; a split per image is 1 each."""
  probs = np.concatenate([np.full((10, 2), 0.5), np.eye(2)[np.arange(10) % 2]])
  assert inception_score(probs, splits=2) == pytest.approx((1.5, 0.5), abs=1e-12)
  assert inception_score(probs, splits=20) == pytest.approx((1.0, 0.0), abs=1e-12)
  for splits in (0, 21):
    with pytest.raises(ValueError, match='splits'):
      inception_score(probs, splits=splits)
