"""Imputation by replacement (Song et al. 2021, app. I.2) and RePaint's resampling (Lugmayr et
al. 2022) against exact answers.

Gaussian data x ~ N(mu, Sigma) have the exact score of every diffused marginal
(tests/gaussian_flow.py) and a closed-form conditional given known coordinates k:
  mean mu_u + S_uk S_kk^-1 (y - mu_k),  covariance S_uu - S_uk S_kk^-1 S_ku.
Replacement approximates the conditional score by the joint score at the diffused observation,
so its completions differ from the conditional by an amount of its own (measured here), except
when the unknown coordinates are independent of the known ones, where it is exact.
"""
import math

import pytest
import torch

from configs.default import get_default_config
from gaussian_flow import gaussian_score_fn
from sde_lib.gaussian_mixture import GaussianMixture
from samplers import get_sampler
from restoration.imputation import (COLOR_BASIS, Observation, colorization, impose, impute,
                                    imputed_score_fn)
from samplers.pc import repaint_schedule
from sde_lib import DiscreteChain, VPSDE
from utils.errors import ConfigError

N = 4000
STEPS = 100
IMAGE = (1, 2, 4)                                    # 8 coordinates as a (C, H, W) image
CHECKER = torch.tensor([[1., 0., 1., 0.], [0., 1., 0., 1.]])   # 1 = known
RESAMPLING = dict(resample=5, jump_length=10)


def correlated_gaussian(dim, seed, factors=2, noise=0.1):
  """N(mu, Sigma), Sigma the correlation matrix of `factors` shared factors plus `noise` I:
  correlations up to about 0.97 for noise 0.1, so known coordinates say much of the others."""
  g = torch.Generator().manual_seed(seed)
  loadings = torch.randn(dim, factors, generator=g, dtype=torch.float64)
  cov = loadings @ loadings.T + noise * torch.eye(dim, dtype=torch.float64)
  cov = cov / torch.outer(cov.diag().sqrt(), cov.diag().sqrt())
  mean = 0.5 * torch.randn(dim, generator=g, dtype=torch.float64)
  return GaussianMixture(torch.ones(1), mean[None], cov[None])


def conditional(gaussian, known, y):
  """Mean and covariance of the unknown coordinates given x_k = y (flat boolean `known`)."""
  mu, cov = gaussian.means[0], gaussian.covs[0]
  u = ~known
  gain = torch.linalg.solve(cov[known][:, known], cov[known][:, u]).T     # S_uk S_kk^-1
  return mu[u] + gain @ (y - mu[known]), cov[u][:, u] - gain @ cov[known][:, u]


def sampling_config(method, steps=STEPS, **overrides):
  config = get_default_config().sampling
  config.method, config.steps = method, steps
  config.predictor, config.corrector = 'reverse_diffusion', 'none'
  config.update(overrides)
  return config


def complete(gaussian, observation, config, shape, resample=1, jump_length=1, seed=1,
             continuous=True):
  """Completions through get_sampler and impute, as a user draws them."""
  sde = VPSDE()
  sampler = get_sampler(config, sde, shape, continuous=continuous, resample=resample,
                        jump_length=jump_length)
  x, _ = impute(sampler, gaussian_score_fn(gaussian, sde), sampler.sde, observation, shape,
                generator=torch.Generator().manual_seed(seed), progress=False)
  return x


def errors(samples, mean, cov):
  """(|mean error|, |cov error|_F / |cov|_F) and their Monte-Carlo standard deviations,
  those of a sample mean and covariance of n draws of the samples' own law."""
  n = len(samples)
  sample_cov = torch.cov(samples.T)
  mc_mean = math.sqrt(sample_cov.trace() / n)
  mc_cov = math.sqrt((sample_cov.trace() ** 2 + sample_cov.norm() ** 2) / n) / cov.norm()
  return (float((samples.mean(0) - mean).norm()), float((sample_cov - cov).norm() / cov.norm()),
          mc_mean, float(mc_cov))


@pytest.fixture(scope='module')
def inpainting():
  """The Gaussian, an observation of a draw of it on the checkerboard, and the conditional."""
  gaussian = correlated_gaussian(8, seed=0)
  x = gaussian.sample(1, generator=torch.Generator().manual_seed(2)).double()
  known = CHECKER.flatten().bool()
  observation = Observation(x.reshape(1, *IMAGE), CHECKER)
  return gaussian, observation, conditional(gaussian, known, x[0, known])


# ---- the parts ----------------------------------------------------------------------------

def test_color_basis_is_the_papers_orthogonal_decoupling():
  """Orthogonal, the grey row (1, 1, 1)/sqrt3, and the transpose of the matrix score_sde's
  colorization applies to row vectors (its float32 constants: agreement to 1e-7)."""
  published = torch.tensor([[5.7735014e-01, -8.1649649e-01, 4.7008697e-08],
                            [5.7735026e-01, 4.0824834e-01, 7.0710671e-01],
                            [5.7735026e-01, 4.0824822e-01, -7.0710683e-01]], dtype=torch.float64)
  assert torch.allclose(COLOR_BASIS @ COLOR_BASIS.T, torch.eye(3, dtype=torch.float64),
                        atol=1e-15)
  assert torch.allclose(COLOR_BASIS[0], torch.full((3,), 3 ** -0.5, dtype=torch.float64),
                        atol=1e-16)
  assert torch.allclose(COLOR_BASIS.T, published, atol=1e-7)


def test_impose_sets_known_pixels_exactly():
  g = torch.Generator().manual_seed(0)
  x, y = (torch.randn(5, *IMAGE, generator=g) for _ in range(2))
  out = impose(x, Observation(y, CHECKER))
  known = CHECKER.bool().expand_as(x)
  assert torch.equal(out[known], y[known]) and torch.equal(out[~known], x[~known])


def test_color_basis_round_trip_and_impose_change_the_grey_only(float64):
  """to_basis and from_basis invert each other, and imposing a grey image changes each pixel
  by a multiple of (1, 1, 1) to the grey (R + G + B) / 3 given: float64 rounding (1e-15),
  as B B^T = I only to rounding."""
  g = torch.Generator().manual_seed(0)
  x = torch.randn(5, 3, 2, 4, generator=g)
  grey = torch.randn(5, 1, 2, 4, generator=g)
  observation = colorization(grey)
  assert torch.allclose(observation.from_basis(observation.to_basis(x)), x, atol=1e-15)
  out = impose(x, observation)
  assert torch.allclose(out.mean(1, keepdim=True), grey, atol=1e-15)
  change = out - x
  assert torch.allclose(change, change.mean(1, keepdim=True).expand_as(change), atol=1e-15)


def test_score_sees_the_diffused_observation_at_known_pixels(float64):
  """The score_fn gets y_t = m(t) y + s(t) z where known and x elsewhere, with the VP-SDE's
  closed form m(t) = exp(-t^2 (b1 - b0) / 4 - t b0 / 2), s = sqrt(1 - m^2): float64 rounding."""
  g = torch.Generator().manual_seed(0)
  x, y, z = (torch.randn(3, *IMAGE, generator=g) for _ in range(3))
  t = torch.tensor([0.05, 0.5, 1.0])
  seen = []

  def score_fn(inputs, times):
    seen.append(inputs)
    return -inputs

  out = imputed_score_fn(score_fn, VPSDE(), Observation(y, CHECKER), z)(x, t)
  m = torch.exp(-t ** 2 * (20 - 0.1) / 4 - t * 0.1 / 2).reshape(3, 1, 1, 1)
  expected = torch.where(CHECKER.bool(), m * y + (1 - m ** 2).sqrt() * z, x)
  assert torch.allclose(seen[0], expected, atol=1e-14) and torch.equal(out, -seen[0])


def test_colorization_score_sees_the_diffused_grey(float64):
  """In the colour basis the score's input differs from x by a multiple of (1, 1, 1) per pixel
  and has the grey m(t) grey + s(t) mean(z) of the diffused observation (rounding)."""
  g = torch.Generator().manual_seed(0)
  x, z = (torch.randn(3, 3, 2, 2, generator=g) for _ in range(2))
  grey = torch.randn(3, 1, 2, 2, generator=g)
  t = torch.tensor([0.05, 0.5, 1.0])
  seen = []
  imputed_score_fn(lambda inputs, times: seen.append(inputs) or inputs, VPSDE(),
                   colorization(grey), z)(x, t)
  m = torch.exp(-t ** 2 * (20 - 0.1) / 4 - t * 0.1 / 2).reshape(3, 1, 1, 1)
  assert torch.allclose(seen[0].mean(1, keepdim=True),
                        m * grey + (1 - m ** 2).sqrt() * z.mean(1, keepdim=True), atol=1e-14)
  change = seen[0] - x
  assert torch.allclose(change, change.mean(1, keepdim=True).expand_as(change), atol=1e-14)


# ---- RePaint's schedule -------------------------------------------------------------------

def algorithm_1(steps, resample):
  """Lugmayr et al. 2022, Algorithm 1 as printed, its levels t = T..1 mapped to grid indices
  T - t: for t = T..1, for u = 1..U: a step t -> t - 1; if u < U and t > 1, back to t. At
  t = 1 its U passes all compute x_0 from the same x_1 without noise (eps = z = 0 there):
  one step."""
  path = [0]
  for t in range(steps, 0, -1):
    for u in range(1, resample + 1 if t > 1 else 2):
      path.append(steps - (t - 1))
      if u < resample and t > 1:
        path.append(steps - t)
  return path


def repaint_get_schedule_jump(t_T, jump_length, jump_n_sample):
  """The RePaint authors' get_schedule_jump (their times t_T - 1 .. 0, then -1 for the data),
  transcribed and mapped to grid indices t_T - 1 - t."""
  jumps = {j: jump_n_sample - 1 for j in range(0, t_T - jump_length, jump_length)}
  t, ts = t_T, []
  while t >= 1:
    t -= 1
    ts.append(t)
    if jumps.get(t, 0) > 0:
      jumps[t] -= 1
      for _ in range(jump_length):
        t += 1
        ts.append(t)
  ts.append(-1)
  return [t_T - 1 - t for t in ts]


@pytest.mark.parametrize('steps, jump_length', [(1, 1), (7, 1), (7, 3), (100, 10)])
def test_schedule_without_resampling_is_the_plain_grid(steps, jump_length):
  assert repaint_schedule(steps, jump_length, 1) == list(range(steps + 1))


@pytest.mark.parametrize('steps, resample', [(1, 3), (2, 2), (10, 4), (50, 10)])
def test_schedule_with_unit_jumps_is_algorithm_1(steps, resample):
  assert repaint_schedule(steps, 1, resample) == algorithm_1(steps, resample)


@pytest.mark.parametrize('steps, jump_length, resample', [
    (10, 3, 2), (12, 3, 4), (100, 10, 5), (250, 10, 10), (9, 9, 3), (10, 9, 3)])
def test_schedule_walks_each_segment_resample_times(steps, jump_length, resample):
  """Sec. 4.2: the j steps above each of the levels 1, 1 + j, ... (counted from the end; those
  with j levels above them) are walked r times, the jump back up being j steps; other steps,
  and the last one onto the data, once. Also the authors' own schedule code."""
  path = repaint_schedule(steps, jump_length, resample)
  moves = [b - a for a, b in zip(path[:-1], path[1:])]
  assert path[0] == 0 and path[-1] == steps and set(moves) <= {-1, 1}
  down = [0] * steps
  for a, b in zip(path[:-1], path[1:]):
    if b == a + 1:
      down[a] += 1
  for i in range(steps):
    level = steps - i                      # the step from level n to n - 1
    segment_top = 1 + ((level - 2) // jump_length + 1) * jump_length
    resampled = level > 1 and segment_top <= steps
    assert down[i] == (resample if resampled else 1), (i, down[i])
  runs = ''.join('u' if m < 0 else 'd' for m in moves).split('d')
  assert all(len(run) in (0, jump_length) for run in runs)
  assert path == repaint_get_schedule_jump(steps, jump_length, resample)


@pytest.mark.parametrize('kwargs, match', [
    (dict(resample=0), 'resample'), (dict(resample=2, jump_length=0), 'jump_length'),
    (dict(resample=2, jump_length=STEPS + 1), 'jump_length')])
def test_bad_resampling_settings_raise_config_error(kwargs, match):
  with pytest.raises(ConfigError, match=match):
    get_sampler(sampling_config('pc'), VPSDE(), (2, 8), **kwargs)


def test_unconditional_resampling_keeps_the_data_law(float64):
  """Without an observation, RePaint's walk must still sample the data: each jump back up is
  the exact forward transition x_s = a x_t + sigma z, so (up to the sampler's discretization) the
  law at every time stays p_t. On the correlated Gaussian (exact score), 'pc' with RESAMPLING:
  mean error within 4 Monte-Carlo standard deviations (0.044 at N = 4000), relative covariance
  error within plain 'pc''s discretization error (measured 0.02) plus 4 of them (0.028 each);
  measured 0.056 / 0.049 (seed 1), 0.033 / 0.033 (seed 2). Re-noising with sigma^2 z instead
  of sigma z (too little noise) shrinks the covariance: error 0.44."""
  gaussian, sde = correlated_gaussian(8, seed=0), VPSDE()
  sampler = get_sampler(sampling_config('pc'), sde, (N, 8), **RESAMPLING)
  x, nfe = sampler(gaussian_score_fn(gaussian, sde), generator=torch.Generator().manual_seed(1),
                   progress=False)
  assert nfe == 100 + 4 * 9 * 10   # 9 of the ten-step segments are walked 4 more times
  mean_error, cov_error, mc_mean, mc_cov = errors(x, gaussian.means[0], gaussian.covs[0])
  assert mean_error <= 4 * mc_mean, (mean_error, mc_mean)
  assert cov_error <= 0.02 + 4 * mc_cov, (cov_error, mc_cov)


@pytest.mark.parametrize('method', ['ode', 'sde', 'ddim', 'dpm_solver'])
def test_resampling_only_on_pc_and_ancestral(method):
  with pytest.raises(ConfigError, match=f"'pc' and 'ancestral' samplers only, not '{method}'"):
    get_sampler(sampling_config(method, steps=20), VPSDE(), (2, 8), resample=2, jump_length=2)


# ---- completions against the Gaussian conditional -----------------------------------------

# Errors (|mean error|, relative Frobenius covariance error) of the completions of `inpainting`
# against the exact conditional, measured at seed 1 (N = 4000, 100 steps; seeds 2 and 3 agree
# within the Monte-Carlo error): replacement's own error, large here because the known
# coordinates are strongly correlated with the unknown ones (conditional variances 0.05-0.09
# against 1). The Monte-Carlo standard deviations at this N are 0.012-0.022 (mean) and
# 0.07-0.25 (covariance). Resampling (j = 10, r = 5) cuts the mean error 5x, the covariance 3x.
MEASURED = {('pc', 1): (0.538, 6.90), ('pc', 5): (0.107, 2.26),
            ('ancestral', 1): (0.526, 6.43), ('ancestral', 5): (0.102, 1.94),
            ('ode', 1): (0.793, 9.38)}


@pytest.fixture(scope='module')
def inpainting_errors(inpainting):
  """errors() of each run of MEASURED, printed (pytest -s) for the record."""
  gaussian, observation, (mean, cov) = inpainting
  known = CHECKER.flatten().bool()
  found = {}
  for method, resample in MEASURED:
    settings = RESAMPLING if resample > 1 else {}
    x = complete(gaussian, observation, sampling_config(method), (N,) + IMAGE, **settings)
    assert torch.equal(x.reshape(N, -1)[:, known],
                       observation.y.reshape(1, -1)[:, known].to(x).expand(N, -1))
    found[method, resample] = errors(x.reshape(N, -1)[:, ~known].double(), mean, cov)
    print(f"{method} resample={resample}: mean error {found[method, resample][0]:.4f} "
          f"(MC {found[method, resample][2]:.4f}), covariance error "
          f"{found[method, resample][1]:.3f} (MC {found[method, resample][3]:.3f})")
  return found


@pytest.mark.parametrize('run', list(MEASURED))
def test_inpainting_error_is_replacements_own(inpainting_errors, run):
  """Each error within its measured value plus 4 Monte-Carlo standard deviations; the known
  coordinates of every completion equal y exactly (checked in the fixture)."""
  mean_error, cov_error, mc_mean, mc_cov = inpainting_errors[run]
  assert mean_error <= MEASURED[run][0] + 4 * mc_mean
  assert cov_error <= MEASURED[run][1] + 4 * mc_cov


@pytest.mark.parametrize('method', ['pc', 'ancestral'])
def test_resampling_reduces_the_error(inpainting_errors, method):
  """Measured 5.0x (mean) and 3.0x (covariance) on 'pc', 5.2x and 3.3x on 'ancestral'; the
  bounds 3x and 2.5x leave 3 Monte-Carlo standard deviations of the ratios."""
  plain, resampled = inpainting_errors[method, 1], inpainting_errors[method, 5]
  assert resampled[0] * 3 <= plain[0]
  assert resampled[1] * 2.5 <= plain[1]


EVERY_SAMPLER = [('pc', {}), ('ancestral', {}), ('pc', dict(corrector='langevin')),
                 ('ode', {}), ('sde', {}), ('ddim', dict(steps=20)),
                 ('dpm_solver', dict(steps=20)), ('unipc', dict(steps=20)),
                 ('heun', dict(steps=40)), ('ipndm', dict(steps=20))]


@pytest.mark.parametrize('method, overrides', EVERY_SAMPLER)
def test_replacement_is_exact_for_independent_coordinates(method, overrides):
  """Unknown coordinates independent of the known ones: the conditional is the marginal
  N(mu_u, S_uu) and replacement is exact, on every sampler. n = 2000: Monte-Carlo std 0.045
  (mean) and about 0.035 (covariance); the bounds 0.15 and 0.25 add each sampler's
  discretization error at these budgets (measured: mean errors at most 0.063, covariance
  errors at most 0.16, DDIM's at 20 evaluations)."""
  unknown_part, known_part = correlated_gaussian(4, seed=3), correlated_gaussian(4, seed=4)
  u = ~CHECKER.flatten().bool()
  mean, cov = torch.zeros(8, dtype=torch.float64), torch.zeros(8, 8, dtype=torch.float64)
  mean[u], mean[~u] = unknown_part.means[0], known_part.means[0]
  cov[u.nonzero(), u.nonzero().T] = unknown_part.covs[0]
  cov[(~u).nonzero(), (~u).nonzero().T] = known_part.covs[0]
  gaussian = GaussianMixture(torch.ones(1), mean[None], cov[None])
  y = gaussian.sample(1, generator=torch.Generator().manual_seed(2)).reshape(1, *IMAGE)
  x = complete(gaussian, Observation(y, CHECKER), sampling_config(method, **overrides),
               (2000,) + IMAGE)
  assert torch.equal(x[:, :, CHECKER.bool()], y[:, :, CHECKER.bool()].expand(2000, 1, 4))
  mean_error, cov_error, _, _ = errors(x.reshape(2000, -1)[:, u].double(), mean[u],
                                       cov[u][:, u])
  print(f"independent, {method} {overrides}: mean error {mean_error:.4f}, covariance error "
        f"{cov_error:.3f}")
  assert mean_error < 0.15 and cov_error < 0.25, (mean_error, cov_error)


@pytest.mark.parametrize('method, continuous, process', [
    ('pc', True, VPSDE), ('ancestral', False, DiscreteChain), ('ddim', False, DiscreteChain),
    ('ode', False, VPSDE)])
def test_sampler_names_the_process_it_runs(method, continuous, process):
  """sampler.sde, whose m(t) and s(t) imputation diffuses y with: the chain when it steps on
  one (a discrete-time model's 'pc', 'ancestral', 'ddim'), else the SDE."""
  sampler = get_sampler(sampling_config(method, steps=20), VPSDE(), (2, 8), continuous=continuous)
  assert type(sampler.sde) is process


def test_discrete_chain_resampling_keeps_known_pixels(inpainting):
  """A discrete-time model's (respaced) chain ('ancestral', continuous=False) resamples too; its
  known pixels are y exactly and the unknown ones near the continuous run's (MEASURED, 0.10)."""
  gaussian, observation, (mean, cov) = inpainting
  known = CHECKER.flatten().bool()
  x = complete(gaussian, observation, sampling_config('ancestral'), (1000,) + IMAGE,
               continuous=False, **RESAMPLING)
  flat = x.reshape(1000, -1)
  assert torch.equal(flat[:, known], observation.y.reshape(1, -1)[:, known].to(x).expand(1000, -1))
  assert errors(flat[:, ~known].double(), mean, cov)[0] < 0.5


# Colorization: MEASURED's analogue, seed 1, N = 4000, float64: Monte-Carlo standard deviations
# 0.028 and 0.025 (mean), 0.046 and 0.037 (covariance). Resampling: 4.5x (mean), 1.8x (cov).
COLOR_MEASURED = {1: (0.120, 0.927), 5: (0.027, 0.514)}


@pytest.mark.parametrize('resample', [1, 5])
def test_colorization_matches_the_conditional_given_the_grey(float64, resample):
  """3 correlated channels on 1 x 2 pixels, the grey (R + G + B) / 3 of each pixel known.
  Truth: the conditional given the linear observation g = G x (G averages the channels),
  mean mu + S G^T (G S G^T)^-1 (g - G mu), covariance S - S G^T (G S G^T)^-1 G S, compared in
  RGB: the same norms as in the rotated basis, which is orthogonal, and the grey part is
  exact in both. Errors within the measured ones plus 4 Monte-Carlo standard deviations; the
  grey of every completion equals the input's to float64 rounding (B B^T = I to rounding)."""
  gaussian = correlated_gaussian(6, seed=1)
  mu, cov = gaussian.means[0], gaussian.covs[0]
  average = torch.zeros(2, 6, dtype=torch.float64)
  for pixel in range(2):
    average[pixel, pixel::2] = 1 / 3                 # (C, H, W) flattened: index c * 2 + w
  x0 = gaussian.sample(1, generator=torch.Generator().manual_seed(2)).double()
  grey = average @ x0[0]
  gain = torch.linalg.solve(average @ cov @ average.T, average @ cov).T
  mean, cond = mu + gain @ (grey - average @ mu), cov - gain @ average @ cov
  settings = RESAMPLING if resample > 1 else {}
  x = complete(gaussian, colorization(grey.reshape(1, 1, 1, 2)), sampling_config('pc'),
               (N, 3, 1, 2), **settings)
  assert torch.allclose(x.mean(1).reshape(N, 2), grey.expand(N, 2), atol=1e-14, rtol=0)
  mean_error, cov_error, mc_mean, mc_cov = errors(x.reshape(N, 6), mean, cond)
  print(f"colorization resample={resample}: mean error {mean_error:.4f} (MC {mc_mean:.4f}), "
        f"covariance error {cov_error:.3f} (MC {mc_cov:.3f})")
  assert mean_error <= COLOR_MEASURED[resample][0] + 4 * mc_mean
  assert cov_error <= COLOR_MEASURED[resample][1] + 4 * mc_cov
