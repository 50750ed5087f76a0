"""The score-matching bound (evaluation/score_bound.py) on Gaussian data x ~ N(mu, Sigma), where
every term has a closed form.

With the exact score the integrand of the diffusion term is -2 dH(p_t)/dt (Fokker-Planck), so
the mean bound over the data is
    H(p_eps) + KL(p_T || pi) + E[offset],
    E[offset] = D/2 log(2 pi v) + tr C / (2 v) - D/2 (log(2 pi s^2) + 1),  v = s^2 / m^2 at eps,
with C = Cov(x | x_eps) the Gaussian posterior covariance: the data's entropy H(p_0) (its exact
NLL) plus the prior's KL and the eps term E[offset] + H(p_eps) - H(p_0) >= 0. A score off by a
constant delta raises the bound by 1/2 int_eps^T g^2 dt ||delta||^2 (the cross term has mean 0)
plus s_eps^2 ||delta||^2 / 2 (the decoder's mean moves by s^2 delta / m).
"""
import math

import pytest
import torch

from gaussian_flow import gaussian_data, gaussian_score_fn
from evaluation.score_bound import offset_term, prior_term, score_matching_bound
from sde_lib import SubVPSDE, VESDE, VPSDE
from sde_lib.gaussian_mixture import GaussianMixture

SDES = {'vpsde': VPSDE(), 'subvpsde': SubVPSDE(), 'vesde': VESDE(sigma_max=20.0)}
EPS = 1e-3
N = 20_000


def entropy(cov):
  return 0.5 * torch.logdet(2 * math.pi * math.e * cov).item()


def coeffs(sde, t):
  return (float(v) for v in sde.marginal_coeffs(torch.tensor([t], dtype=torch.float64)))


def closed_form_terms(gaussian, sde, eps):
  """(exact NLL H(p_0), KL(p_T || pi), the eps term) of the exact score's mean bound."""
  mu, cov = gaussian.means[0], gaussian.covs[0]
  dim, eye = len(mu), torch.eye(len(mu), dtype=torch.float64)
  m_T, s_T = coeffs(sde, sde.T)
  var_T, prior_var = m_T ** 2 * cov + s_T ** 2 * eye, sde.prior_std() ** 2
  kl = 0.5 * (torch.trace(var_T).item() / prior_var + m_T ** 2 * (mu @ mu).item() / prior_var
              - dim + dim * math.log(prior_var) - torch.logdet(var_T).item())
  m, s = coeffs(sde, eps)
  var_eps = m ** 2 * cov + s ** 2 * eye
  posterior = cov - m ** 2 * cov @ torch.linalg.solve(var_eps, cov)
  v = (s / m) ** 2
  offset = (0.5 * dim * math.log(2 * math.pi * v) + torch.trace(posterior).item() / (2 * v)
            - 0.5 * dim * (math.log(2 * math.pi * s ** 2) + 1))
  return entropy(cov), kl, offset + entropy(var_eps) - entropy(cov)


def mean_and_stderr(values):
  return values.mean().item(), values.std().item() / math.sqrt(len(values))


# The prior term on SDEs whose x_T still remembers x: beta_max = 1 leaves m(T) =
# exp(-(beta_max - beta_min) / 4 - beta_min / 2) = 0.76 on VP and sub-VP (on the default
# beta_max = 20, m(T) = 7e-3 and -log pi(x_T) hardly depends on x).
M_T = math.exp(-(1.0 - 0.1) / 4 - 0.1 / 2)
PRIOR_SDES = {'vpsde': (VPSDE(beta_max=1.0), M_T, math.sqrt(1 - M_T ** 2), 1.0),
              'subvpsde': (SubVPSDE(beta_max=1.0), M_T, 1 - M_T ** 2, 1.0),
              'vesde': (VESDE(sigma_max=20.0), 1.0, math.sqrt(20.0 ** 2 - 0.01 ** 2), 20.0)}


@pytest.mark.parametrize('sde_name', sorted(PRIOR_SDES))
def test_prior_term_is_the_cross_entropy_of_x_T_under_the_prior(float64, sde_name):
  # E_z[-log pi(m x + s z)] = D/2 log(2 pi p^2) + (m^2 ||x||^2 + D s^2) / (2 p^2) for the prior
  # N(0, p^2 I), with m(T), s(T) and p stated in closed form (PRIOR_SDES; VE: s(T)^2 =
  # sigma_max^2 - sigma_min^2). Four points with norms 0 to 5, each drawn 20,000 times; the
  # mean within 4 standard errors (about 0.01 nats on 2-6 nats).
  sde, m, s, p = PRIOR_SDES[sde_name]
  points = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, -1.0, 0.5, 0.0],
                         [3.0, 0.0, -4.0, 0.0], [-2.0, 2.0, 2.0, -2.0]], dtype=torch.float64)
  prior = prior_term(sde, points.repeat(20_000, 1), torch.Generator().manual_seed(5))
  expected = (2 * math.log(2 * math.pi * p ** 2)
              + (m ** 2 * points.square().sum(1) + 4 * s ** 2) / (2 * p ** 2))
  for k in range(4):
    mean, stderr = mean_and_stderr(prior[k::4])
    assert abs(mean - expected[k].item()) < 4 * stderr, (k, mean, expected[k].item(), stderr)


@pytest.mark.parametrize('sde_name', sorted(SDES))
def test_the_offset_decodes_at_tweedies_mean(float64, sde_name):
  # On data as narrow as the decoder (Sigma = v I, v = s^2 / m^2 at eps) the posterior is
  # C = v / 2 I and E[offset] = D/2 log(2 pi v) + D/4 - D/2 (log(2 pi s^2) + 1) (the module
  # docstring); a decoder away from E[x | x_eps] pays ~ D nats more. 20,000 points, 4 errors.
  sde, dim = SDES[sde_name], 4
  m, s = coeffs(sde, EPS)
  v = (s / m) ** 2
  narrow = GaussianMixture(torch.ones(1), torch.full((1, dim), 0.3, dtype=torch.float64),
                           v * torch.eye(dim, dtype=torch.float64)[None])
  g = torch.Generator().manual_seed(0)
  x = narrow.sample(N, g).double()
  mean, stderr = mean_and_stderr(offset_term(gaussian_score_fn(narrow, sde), sde, x, EPS, g))
  expected = 0.5 * dim * math.log(2 * math.pi * v) + dim / 4 - 0.5 * dim * (
      math.log(2 * math.pi * s ** 2) + 1)
  assert abs(mean - expected) < 4 * stderr, (mean, expected, stderr)


@pytest.mark.parametrize('importance', [True, False])
@pytest.mark.parametrize('sde_name', sorted(SDES))
def test_exact_score_bound_is_the_nll_plus_prior_and_eps_terms(float64, sde_name, importance):
  # Mean over 20,000 points (4 importance-sampled or 64 uniform (t, z) draws each) within 4
  # standard errors: with the exact score the estimate is unbiased, so a false failure is a
  # < 1e-4 event. The standard error is 0.02-0.11 nats on an NLL of 3.4 (D = 4).
  sde = SDES[sde_name]
  gaussian = gaussian_data(dim=4)
  g = torch.Generator().manual_seed(0)
  x = gaussian.sample(N, g).double()
  bound = score_matching_bound(gaussian_score_fn(gaussian, sde), sde, x, EPS,
                               num_times=4 if importance else 64, importance=importance,
                               generator=g)
  mean, stderr = mean_and_stderr(bound.total)
  nll, kl, eps_term = closed_form_terms(gaussian, sde, EPS)
  assert eps_term > -1e-6 and kl >= 0     # (sub-VP: s(eps) = 1e-4, the eps term ~ 0)
  assert abs((mean - kl - eps_term) - nll) < 4 * stderr, (mean, nll, kl, eps_term, stderr)
  assert stderr < 0.15


@pytest.mark.parametrize('sde_name', sorted(SDES))
def test_a_score_off_by_a_constant_pays_its_closed_form_price(float64, sde_name):
  # Paired draws (same generator seed) with the exact score and the exact score + delta: the
  # difference is 1/2 int g^2 ||delta||^2 + s_eps^2 ||delta||^2 / 2 plus zero-mean cross terms;
  # 4 standard errors of the paired differences.
  sde = SDES[sde_name]
  gaussian = gaussian_data(dim=4)
  exact = gaussian_score_fn(gaussian, sde)
  delta = torch.tensor([0.3, -0.2, 0.1, 0.25], dtype=torch.float64)
  off = lambda x, t: exact(x, t) + delta
  x = gaussian.sample(N, torch.Generator().manual_seed(1)).double()
  bounds = [score_matching_bound(fn, sde, x, EPS, num_times=4,
                                 generator=torch.Generator().manual_seed(2)).total
            for fn in (exact, off)]
  mean, stderr = mean_and_stderr(bounds[1] - bounds[0])
  from scipy import integrate
  g2 = lambda t: sde.sde(torch.zeros(1, dtype=torch.float64),
                         torch.tensor([t], dtype=torch.float64))[1].item() ** 2
  _, s = coeffs(sde, EPS)
  sq = (delta @ delta).item()
  expected = 0.5 * integrate.quad(g2, EPS, sde.T, limit=200)[0] * sq + 0.5 * s ** 2 * sq
  assert abs(mean - expected) < 4 * stderr + 1e-3 * expected, (mean, expected, stderr)


def test_importance_sampling_lowers_the_bounds_variance(float64):
  # Same mean (the first test), lower variance of the diffusion term on the VP-SDE, where
  # g^2 / s^2 ~ 1/t. Measured variance ratio (importance / uniform) at eps = 1e-5: 0.006.
  sde = VPSDE()
  gaussian = gaussian_data(dim=4)
  score = gaussian_score_fn(gaussian, sde)
  x = gaussian.sample(N, torch.Generator().manual_seed(3)).double()
  variances = [score_matching_bound(score, sde, x, 1e-5, importance=importance,
                                    generator=torch.Generator().manual_seed(4)).diffusion.var().item()
               for importance in (True, False)]
  assert variances[0] < 0.1 * variances[1], variances
