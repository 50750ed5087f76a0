"""A class-conditional Gaussian mixture: exact conditional and unconditional scores of its
diffused marginals and the exact class posterior p(y | x_t), the truth guidance is tested against.

p(x) = sum_y pi_y p(x | y), each p(x | y) a GaussianMixture; under x_t = m x_0 + s z every
p_t(x | y) is a mixture again (gmm_oracle), and p_t(y | x) = pi_y p_t(x | y) / p_t(x).
"""
import torch

from sde_lib.gaussian_mixture import GaussianMixture


class ClassMixture:
  """Classes 0..K-1 with prior `class_weights` and one GaussianMixture each; label K is null."""

  def __init__(self, class_weights, mixtures):
    self.class_weights = torch.as_tensor(class_weights, dtype=torch.float64)
    self.class_weights = self.class_weights / self.class_weights.sum()
    self.mixtures = mixtures
    self.num_classes = len(mixtures)
    self.joint = GaussianMixture(
        torch.cat([p * c.weights for p, c in zip(self.class_weights, mixtures)]),
        torch.cat([c.means for c in mixtures]), torch.cat([c.covs for c in mixtures]))

  def sample(self, n, y, generator=None):
    return self.mixtures[y].sample(n, generator)

  def _at(self, mixture, sde, t):
    return mixture if t is None else mixture.perturbed(sde, t)

  def log_posterior(self, x, sde=None, t=None):
    """[B, K] log p_t(y | x) at a scalar time t (None: the data, t = 0); differentiable in x."""
    joint = torch.stack([self._at(c, sde, t).log_prob(x) for c in self.mixtures], 1)
    joint = joint + self.class_weights.log()
    return joint - torch.logsumexp(joint, 1, keepdim=True)

  def class_score_fn(self, sde):
    """class_score_fn(x, t, classes): the score of p_t(x | y), of p_t(x) where y is null."""

    def score(x, t, classes):
      out = torch.empty_like(x)
      for time in torch.unique(t):
        for label in torch.unique(classes):
          rows = (t == time) & (classes == label)
          mixture = self.joint if label == self.num_classes else self.mixtures[label]
          out[rows] = mixture.perturbed(sde, float(time)).score(x[rows])
      return out

    return score

  def log_posterior_fn(self, sde):
    """log_prob_fn(x, t) -> [B, K] exact log p_t(y | x_t), as a time-dependent classifier."""

    def log_prob(x, t):
      out = torch.empty(x.shape[0], self.num_classes, dtype=torch.float64)
      for time in torch.unique(t):
        rows = t == time
        out[rows] = self.log_posterior(x[rows], sde, float(time))
      return out

    return log_prob


def overlapping_classes():
  """Three classes in 2-D that overlap, so p(y | x) is far from 1 at unguided samples; class 1
  has two separated modes (its own mixture's per-mode statistics stay testable)."""
  eye = torch.eye(2, dtype=torch.float64)
  return ClassMixture([0.3, 0.4, 0.3], [
      GaussianMixture([1.0], [[-0.6, 0.0]], (0.25 * eye)[None]),
      GaussianMixture([0.5, 0.5], [[0.6, 0.0], [0.6, 3.0]], torch.stack([0.25 * eye, 0.16 * eye])),
      GaussianMixture([1.0], [[0.0, -1.0]], torch.diag(torch.tensor([0.64, 0.09]))[None]),
  ])
