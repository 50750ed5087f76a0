"""Restoration methods (restoration/): what holds exactly or by construction, against
independent truths: the observed pixels of a noiseless mask, the size of the residual a
noisy measurement leaves, PiGDM's step against a transcription of its Algorithm 1 and its
guidance against the closed-form likelihood score of a standard normal prior (where its
Gaussian p(y | x_t) is exact), its stability on an imperfect score, and replacement/RePaint
through the same operators."""
import math

import pytest
import torch

from configs.default import get_default_config
from sde_lib.gaussian_mixture import GaussianMixture, exact_score_fn
from posterior_oracle import checker_mixture, dense_matrix, posterior, posterior_mean
from restoration import METHODS, get_operator, measure, restore
from restoration.diffusion import Prior
from samplers import get_sampler
from restoration.imputation import Observation, impute
from sde_lib.ve import VESDE
from sde_lib.vp import VPSDE
from utils.errors import ConfigError

SHAPE = (1, 4, 4)
LEFT = torch.zeros(4, 4)
LEFT[:, :2] = 1


def restored(method, prior, op, y, sigma_y, n, steps=50, seed=2, **options):
  x, nfe = restore(method, exact_score_fn(prior, VPSDE()), VPSDE(), op,
                   y.expand(n, *y.shape[1:]), sigma_y, (n,) + SHAPE, steps=steps,
                   generator=torch.Generator().manual_seed(seed), **options)
  assert nfe == steps
  return x


def one_measurement(prior, op, sigma_y):
  x = prior.sample(1, torch.Generator().manual_seed(4)).double().reshape(1, *SHAPE)
  return measure(op, x, sigma_y, torch.Generator().manual_seed(1))


@pytest.mark.parametrize('method', sorted(METHODS))
def test_noiseless_mask_keeps_the_observed_pixels(float64, method):
  """sigma_y = 0: every method keeps the observed pixels (y to rounding, 1e-12). DDRM's last
  step sets y_bar on the range and DDNM's A^+ y + (I - A^+ A) x0; PiGDM and DPS only pull
  towards y (PiGDM within 0.05, DPS within 0.6 of it: measured before the projection), and
  `restore` ends a noiseless run with the projection onto {x : A x = y}."""
  prior = checker_mixture()
  op = get_operator('mask', SHAPE, mask=LEFT)
  y = one_measurement(prior, op, 0.0)
  x = restored(method, prior, op, y, 0.0, 50)
  error = (op.forward(x) - y).abs().max().item()
  print(method, error)
  assert error <= 1e-12


@pytest.mark.parametrize('resample', [1, 3])
def test_replacement_and_repaint_keep_the_observed_pixels(float64, resample):
  """restoration/imputation.py through a restoration operator: y imposed exactly (torch.equal),
  and the mean within 0.6 of the exact posterior's (measured 0.49 for replacement, 0.36 with
  RePaint's resampling; replacement is approximate like the others: DDRM 0.48, a prior draw
  0.59 on this posterior, whose mode weights hinge on the covariances)."""
  prior = checker_mixture()
  op = get_operator('mask', SHAPE, mask=LEFT)
  y = one_measurement(prior, op, 0.0)
  config = get_default_config().sampling
  config.update(method='pc', steps=50, predictor='reverse_diffusion', corrector='none')
  sampler = get_sampler(config, VPSDE(), (200,) + SHAPE, resample=resample, jump_length=5)
  x, _ = impute(sampler, exact_score_fn(prior, VPSDE()), sampler.sde,
                Observation(op.pinv(y), op), (200,) + SHAPE, torch.Generator().manual_seed(0),
                progress=False)
  assert torch.equal(op.forward(x), y.expand(200, -1))
  post = posterior(prior, dense_matrix(op, SHAPE), y, 1e-6)
  assert (x.reshape(200, -1).mean(0) - posterior_mean(post)).norm() < 0.6


@pytest.mark.parametrize('name', ['blur', 'sr2', 'mask'])
@pytest.mark.parametrize('method', ['ddrm', 'ddnm', 'pigdm'])
def test_a_noisy_measurement_is_honoured(float64, method, name):
  """||A x_hat - y|| about sigma_y sqrt(m) (sigma_y = 0.2): the restoration explains y up to
  about its noise. Exact posterior samples give 0.66 to 0.96 of it here; the methods 0.32 to
  1.1 (DDNM+ leans towards y). Held within [0.25, 1.5]: copying y (A x_hat = y) gives 0, a
  prior draw 2 to 7. DPS's normalised step leaves a residual of the order of its step size
  zeta whatever sigma_y (printed by benchmarks/restoration_quality.py), so it is not held to this."""
  prior = checker_mixture()
  op = get_operator(name, SHAPE, mask=LEFT, kernel_size=3, kernel_std=1.0)
  y = one_measurement(prior, op, 0.2)
  x = restored(method, prior, op, y, 0.2, 200)
  ratio = ((op.forward(x) - y).flatten(1).norm(dim=1) / (0.2 * math.sqrt(y.numel()))).mean()
  print(method, name, float(ratio))
  assert 0.25 <= ratio <= 1.5


def one_step(method, score_fn, sde, op, y, sigma_y, x, t, t_next, eta, seed=3):
  """x_{t'} from x_t: one step of `method` on the grid (t, t')."""
  grid = [(t, *map(float, sde.marginal_coeffs(torch.tensor(t)))),
          (t_next, *map(float, sde.marginal_coeffs(torch.tensor(t_next))))]
  prior = Prior(score_fn, sde)
  return METHODS[method](prior, op, y, sigma_y, x, grid, torch.Generator().manual_seed(seed),
                         eta=eta)


@pytest.mark.parametrize('name, sigma_y', [('blur', 0.05), ('sr2', 0.0), ('mask', 0.2)])
def test_pigdm_step_is_algorithm_1(float64, name, sigma_y):
  """One step against Song et al. 2023, Algorithm 1, transcribed in DDPM variables with the
  dense H and the full Jacobian: x_hat = (x_t + (1 - abar_t) score) / sqrt(abar_t),
  eps_theta = -sqrt(1 - abar_t) score, c1 = eta sqrt((1 - abar_t / abar_s)(1 - abar_s) /
  (1 - abar_t)), c2 = sqrt(1 - abar_s - c1^2), r_t^2 = 1 - abar_t (sigma_t^2 / (1 + sigma_t^2)),
  g = r_t^2 ((y - H x_hat)^T (r_t^2 H H^T + sigma_y^2 I)^{-1} H dx_hat/dx_t)^T, at sigma_y = 0
  the pseudoinverse form ((H^+ y - H^+ H x_hat)^T dx_hat/dx_t)^T (eq. 8), and
  x_s = sqrt(abar_s) x_hat + c1 z + c2 eps_theta + sqrt(abar_s abar_t) g (the authors' code,
  NVlabs/RED-diff algos/pgdm.py). From t = 0.2 to 0.15 on the checker mixture's exact score,
  x_t drawn from its marginal (the guidance moves x_s by 0.06 to 1.3 there): equal to 1e-10
  (rounding)."""
  prior, sde = checker_mixture(), VPSDE()
  score_fn = exact_score_fn(prior, sde)
  op = get_operator(name, SHAPE, mask=LEFT, kernel_size=3, kernel_std=1.0)
  h = dense_matrix(op, SHAPE)
  y = one_measurement(prior, op, sigma_y)
  t, t_next, eta = 0.2, 0.15, 0.5
  abar, abar_s = (float(sde.marginal_coeffs(torch.tensor(v))[0]) ** 2 for v in (t, t_next))
  x0_true = prior.sample(3, torch.Generator().manual_seed(7)).double().reshape(3, *SHAPE)
  x = math.sqrt(abar) * x0_true + math.sqrt(1 - abar) * torch.randn(
      x0_true.shape, generator=torch.Generator().manual_seed(0), dtype=x0_true.dtype)
  got = one_step('pigdm', score_fn, sde, op, y, sigma_y, x, t, t_next, eta)
  r2 = 1 - abar
  c1 = eta * math.sqrt((1 - abar / abar_s) * (1 - abar_s) / (1 - abar))
  c2 = math.sqrt(1 - abar_s - c1 ** 2)
  z = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
  vec = lambda v: v.reshape(-1)
  for i in range(x.shape[0]):
    def x_hat(v):
      score = score_fn(v.reshape(1, *SHAPE), torch.full((1,), t))
      return vec((v.reshape(1, *SHAPE) + (1 - abar) * score) / math.sqrt(abar))
    xi = vec(x[i])
    jac = torch.autograd.functional.jacobian(x_hat, xi)
    x0 = x_hat(xi)
    eps_theta = (xi - math.sqrt(abar) * x0) / math.sqrt(1 - abar)
    if sigma_y == 0:
      pinv = torch.linalg.pinv(h)
      g = jac.T @ (pinv @ vec(y) - pinv @ h @ x0)
    else:
      cov = r2 * h @ h.T + sigma_y ** 2 * torch.eye(h.shape[0], dtype=h.dtype)
      g = r2 * (jac.T @ h.T @ torch.linalg.solve(cov, vec(y) - h @ x0))
    want = (math.sqrt(abar_s) * x0 + c1 * vec(z[i]) + c2 * eps_theta
            + math.sqrt(abar_s * abar) * g)
    assert torch.allclose(vec(got[i]), want, atol=1e-10), (got[i], want)


@pytest.mark.parametrize('sde', [VPSDE(), VESDE()], ids=['vp', 've'])
def test_pigdm_guidance_is_the_likelihood_score_of_a_standard_normal_prior(float64, sde):
  """For x_0 ~ N(0, I), x_0 | x_t is N(m x_t / (m^2 + s^2), r_t^2 I) with r_t^2 =
  s^2 / (m^2 + s^2) = sigma_t^2 / (1 + sigma_t^2), so p(y | x_t) is exactly PiGDM's
  N(A x0_hat, r_t^2 A A^T + sigma_y^2 I) (Song et al. 2023, sec. 3.1) and its score is
  (m / (m^2 + s^2)) A^T (r_t^2 A A^T + sigma_y^2 I)^{-1} (y - A x0_hat), in closed form here.
  One step (eta = 0) adds m(t') m(t) r_t^2 times it to DDIM's x_{t'} (Algorithm 1's weight): to
  1e-10, on the VP- and VE-SDE (m = 1, r_t^2 = s^2 / (1 + s^2)), blur at sigma_y = 0.1."""
  d = 16
  prior = GaussianMixture(torch.ones(1), torch.zeros(1, d), torch.eye(d)[None])
  score_fn = exact_score_fn(prior, sde)
  op = get_operator('blur', SHAPE, kernel_size=3, kernel_std=1.0)
  y = one_measurement(prior, op, 0.1)
  x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(0))
  t, t_next = 0.5, 0.45
  (m, s), (m_next, s_next) = (map(float, sde.marginal_coeffs(torch.tensor(v))) for v in (t, t_next))
  x = x * math.sqrt(m ** 2 + s ** 2)
  got = one_step('pigdm', score_fn, sde, op, y, 0.1, x, t, t_next, eta=0.0)
  h = dense_matrix(op, SHAPE)
  r2 = s ** 2 / (m ** 2 + s ** 2)
  x0 = x.reshape(4, -1) * m / (m ** 2 + s ** 2)
  cov = r2 * h @ h.T + 0.01 * torch.eye(h.shape[0], dtype=h.dtype)
  score = m / (m ** 2 + s ** 2) * torch.linalg.solve(cov, (y.reshape(1, -1) - x0 @ h.T).T).T @ h
  ddim = m_next * x0 + s_next * (x.reshape(4, -1) - m * x0) / s
  want = ddim + m_next * m * r2 * score
  assert torch.allclose(got.reshape(4, -1), want, atol=1e-10)


@pytest.mark.parametrize('name', ['blur', 'sr2', 'mask'])
@pytest.mark.parametrize('sigma_y', [0.0, 0.05])
def test_pigdm_stays_bounded_on_an_imperfect_score(float64, name, sigma_y):
  """A learned score errs; PiGDM must not amplify that into divergence. The checker mixture's
  exact score with a smooth error (a small random SiLU layer, 0.1 of it in eps units, whose
  Jacobian is of that order, as a trained network's near t = T): 20 steps stay within |x| < 10
  (measured 2.3; the prior's draws lie within 3). Weighting the guidance by Tweedie's s^2 / m
  instead of Algorithm 1's m(t') m(t) r_t^2 multiplies the Jacobian's error by 1 / m^2 near
  t = T (m(T) = 0.0066): 5e3 to 6e6 here, and NaN on the digits network."""
  prior, sde = checker_mixture(), VPSDE()
  exact = exact_score_fn(prior, sde)
  g = torch.Generator().manual_seed(0)
  w1, w2 = torch.randn(16, 16, generator=g) / 4, torch.randn(16, 16, generator=g) / 4

  def score_fn(x, t):
    error = (torch.nn.functional.silu(x.flatten(1) @ w1 + 1) @ w2).reshape(x.shape)
    return exact(x, t) - 0.1 * error / sde.marginal_coeffs(t)[1][:, None, None, None]

  op = get_operator(name, SHAPE, mask=LEFT, kernel_size=3, kernel_std=1.0)
  y = one_measurement(prior, op, sigma_y)
  x, _ = restore('pigdm', score_fn, sde, op, y.expand(50, *y.shape[1:]), sigma_y, (50,) + SHAPE,
                 steps=20, generator=torch.Generator().manual_seed(2))
  print(name, sigma_y, x.abs().max().item())
  assert torch.isfinite(x).all() and x.abs().max() < 10


def test_bad_requests_are_refused():
  prior = checker_mixture()
  op = get_operator('sr2', SHAPE)
  y = torch.zeros(1, 1, 2, 2)
  with pytest.raises(ConfigError, match='unknown restoration method'):
    restore('dds', exact_score_fn(prior, VPSDE()), VPSDE(), op, y, 0.0, (1,) + SHAPE)
  with pytest.raises(ConfigError, match='sigma_y must be >= 0'):
    restore('ddrm', exact_score_fn(prior, VPSDE()), VPSDE(), op, y, -0.1, (1,) + SHAPE)
  with pytest.raises(ConfigError, match='built for images of shape'):
    restore('ddrm', exact_score_fn(prior, VPSDE()), VPSDE(), op, y, 0.0, (1, 1, 8, 8))


class Oracle:
  """A prior whose x0_hat is the truth itself: what isolates a method's own noise."""

  def __init__(self, x0):
    self.x0_true = x0

  def x0(self, x, t):
    return self.x0_true.expand_as(x)


@pytest.mark.parametrize('sigma_next', [0.3, 0.5, 2.0])
def test_ddrm_steps_keep_the_marginal_of_every_spectral_coordinate(float64, sigma_next):
  """Kawar et al. 2022 choose eq. 8's cases so that, with the true x0, V^T x_t / m stays
  N(V^T x_0, sigma_t^2) in every coordinate: on the null space, below sigma_y / s_i (noise
  sigma_y / s_i of y_bar mixed in) and above it (y_bar plus sqrt(sigma'^2 - sigma_y^2 / s_i^2)).
  One step from sigma = 3 to sigma' with x2 pooling (s = 0.5) and sigma_y = 0.2 (sigma_y / s =
  0.4, so sigma' = 0.3 is below and 0.5, 2 above): the variance of each coordinate around
  the truth, averaged, is sigma'^2 within 5% (4 x its MC error at 4000 draws, 2.2%)."""
  from restoration.ddrm import ddrm
  op = get_operator('sr2', SHAPE)
  n, sigma_y, sigma = 4000, 0.2, 3.0
  g = torch.Generator().manual_seed(0)
  x0 = torch.randn(1, *SHAPE, generator=g)
  y = op.forward(x0) + sigma_y * torch.randn(n, 1, 2, 2, generator=g)
  m, m_next = 0.5, 0.8                        # any m: the step works in x / m
  x = m * (x0 + sigma * torch.randn(n, *SHAPE, generator=g))
  grid = [(0.5, m, m * sigma), (0.2, m_next, m_next * sigma_next)]
  x_next = ddrm(Oracle(x0), op, y, sigma_y, x, grid, g)
  spread = ((op.Vt(x_next) / m_next - op.Vt(x0)) ** 2).mean(0)
  observed = op.singulars > 0
  for part in (observed, ~observed):
    assert abs(spread[part].mean() / sigma_next ** 2 - 1) < 0.05, (part, spread)
