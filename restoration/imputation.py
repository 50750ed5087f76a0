"""Imputation by replacement (Song et al. 2021, app. I.2): inpainting and colorization with any
sampler (RePaint's resampling walk, Lugmayr et al. 2022, is samplers/pc.py `repaint`).

The known coordinates are those of a restoration operator A = U S V^T (restoration/operators.py):
the coordinates V^T x where S is nonzero, a pixel mask's pixels (V = I) or, for colorization,
every pixel's grey coordinate (V^T = COLOR_BASIS). The same operators serve the posterior
samplers of restoration/ (DDRM, DDNM, ...): one mechanism.

Why one wrapper of the score serves every sampler: each SDE here has an elementwise drift
f(x, t) = a(t) x and a scalar diffusion g(t), and every sampler (predictors, Langevin correctors,
the probability-flow ODE, torchsde, the fast solvers) combines x and score(x, t) coordinate by
coordinate with coefficients that depend on t alone (Langevin's step size also on the norms of the
score and of its own noise, never on x). So the update of the unknown coordinates x_u depends on
the state only through x_u and the score. Evaluating the score at x with its known coordinates
replaced by y_t = m(t) y + s(t) z makes the score, and with it every update of x_u, a function of
x_u and the observation alone: that is Song et al.'s replacement method, on every sampler
unchanged. The sampler's own known coordinates are carried along unused and `impose` puts y there
at the end. Two things still read all coordinates: the fast solvers' dynamic thresholding
(sampling.thresholding: a per-sample quantile of x0_hat, which mixes in the unused known part; do
not combine it with imputation) and the adaptive solvers' error control (only the step sizes).

In another orthogonal basis V the same holds: V^T x_t = m(t) V^T x_0 + s(t) V^T z with
V^T z ~ N(0, I) again, because the SDE is isotropic and its drift elementwise; the reverse
process commutes with V^T.
"""
import torch

from restoration.operators import COLOR_BASIS, Grey, Mask, Operator  # noqa: F401 (COLOR_BASIS)
from sde_lib import batch_broadcast


class Observation:
  """What is known of x (B, C, H, W), in model space (data scaled as the model was trained).

  y: an image with the known coordinates' values (shape of x or broadcastable to it; finite, any
    value elsewhere), e.g. A^+ of a noiseless measurement.
  operator: a restoration operator whose singular values' support are the known coordinates
    V^T x, or a mask broadcastable to x (1 = known; (H, W) for a pixel mask), a Mask operator.
  """

  def __init__(self, y, operator):
    self.y = y
    self.operator = operator if isinstance(operator, Operator) else Mask(operator)

  def to(self, device):
    return Observation(self.y.to(device), self.operator)

  def known(self, x):
    return (self.operator.singulars > 0).to(x.device)

  def to_basis(self, x):
    """The spectral coordinates V^T x."""
    return self.operator.Vt(x)

  def from_basis(self, c):
    """x = V c, the inverse of `to_basis` (V is orthogonal)."""
    return self.operator.V(c)


def colorization(grey):
  """The Observation of colour images (B, 3, H, W) whose grey (R + G + B) / 3 is `grey`
  (B, 1, H, W), in model space: the Grey operator, whose known coordinate is
  (1, 1, 1)/sqrt3 of COLOR_BASIS, sqrt3 grey.

  y = grey in every channel has that grey coordinate (and zero colour). Model space: the data
  scaler x -> 2x - 1 (config.data.centered) or the identity acts on every channel alike, so the
  scaled image's grey is the scaled grey: pass the data scaler applied to a [0, 1] grey image.
  """
  return Observation(grey.expand(-1, 3, -1, -1), Grey((3,) + tuple(grey.shape[2:])))


def impose(x, observation):
  """x with its known coordinates (in the operator's basis V^T) set to those of y."""
  coords = torch.where(observation.known(x), observation.to_basis(observation.y.to(x)),
                       observation.to_basis(x))
  return observation.from_basis(coords)


def imputed_score_fn(score_fn, sde, observation, noise):
  """score_fn(x, t) evaluated at x with its known coordinates replaced by the diffused
  observation y_t = m(t) y + s(t) z, a draw of p_{0t}(y_t | y) (Song et al. 2021, app. I.2).

  `noise` (z, shape of x) is drawn once per completion rather than at each evaluation: y_t is
  still such a draw at every t, and it moves smoothly in t, as an adaptive ODE solver needs its
  right-hand side to. The price, on the stochastic samplers: a fresh z at each evaluation
  averages out over the steps, one z does not, and the completions spread more (on the
  correlated Gaussian of tests/test_imputation.py, covariance error 6.9 against 4.8 for 'pc',
  the mean error the same). `sde` is the process the sampler runs (the DiscreteChain of a
  discrete-time model sampled on its chain), whose m and s the score_fn was trained under.
  """

  def score(x, t):
    mean_coeff, std = sde.marginal_coeffs(t)
    y_t = batch_broadcast(mean_coeff, x) * observation.y.to(x) + batch_broadcast(std, x) * noise
    return score_fn(impose(x, Observation(y_t, observation.operator)), t)

  return score


def impute(sampler, score_fn, sde, observation, shape, generator=None, progress=True):
  """Completions of `observation` by `sampler` (from get_sampler, for `shape` and `sde`):
  z ~ N(0, I) drawn once, the sampler run on imputed_score_fn, y imposed on its result.
  Returns (x, nfe)."""
  device = generator.device if generator is not None else observation.y.device
  noise = torch.randn(shape, generator=generator, device=device)
  score = imputed_score_fn(score_fn, sde, observation, noise)
  x, nfe = sampler(score, generator=generator, progress=progress)
  return impose(x, observation), nfe
