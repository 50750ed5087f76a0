"""Importance-sampled time for likelihood weighting (sde_lib/likelihood_time.py) against
independent truths: the density g(t)^2 / s(t)^2 computed from the SDE's drift and marginals,
the base class's numerical antiderivative (trapezoids, no closed form), and a Kolmogorov-
Smirnov test of the draws against the CDF built from that numerical antiderivative."""
import math

import pytest
import torch

from sde_lib import SDE, SubVPSDE, VESDE, VPSDE
from sde_lib.likelihood_time import LikelihoodTime

SDES = {'vp linear': VPSDE(), 'vp cosine': VPSDE(schedule='cosine'), 'subvp linear': SubVPSDE(),
        'subvp cosine': SubVPSDE(schedule='cosine'), 've': VESDE()}
TIMES = torch.tensor([1e-5, 1e-3, 0.05, 0.3, 0.7, 0.95, 0.999], dtype=torch.float64)


def weight_from_definition(sde, t):
  """g(t)^2 / s(t)^2 straight from the SDE's diffusion and perturbation-kernel std."""
  g = sde.sde(torch.zeros(len(t), 1, dtype=torch.float64), t)[1]
  return g ** 2 / sde.marginal_coeffs(t)[1] ** 2


@pytest.mark.parametrize('name', sorted(SDES))
def test_closed_form_antiderivative_has_the_weight_as_derivative(name):
  # Central differences of F at relative step 1e-7 against w(t): truncation error
  # ~(h / (1 - t))^2 = 1e-8 relative where the cosine beta steepens near t = 1, rounding
  # ~1e-15 |F| / h < 1e-7 relative; 1e-6 relative tolerance.
  sde = SDES[name]
  h = 1e-7 * TIMES
  slope = (sde.likelihood_weight_integral(TIMES + h) - sde.likelihood_weight_integral(TIMES - h)) / (2 * h)
  torch.testing.assert_close(slope, weight_from_definition(sde, TIMES), rtol=1e-6, atol=0)


@pytest.mark.parametrize('name', sorted(SDES))
def test_closed_forms_match_the_numerical_antiderivative_and_invert(name):
  # The trapezoid table (geometric in t and in T - t, ~3e4 points) is within 5e-6 of the
  # closed forms in F (measured: 1e-6 to 4e-6, the cosine schedule's steep beta near its cap
  # included); 2e-5 tolerance. The closed-form inverse is exact to float64 rounding.
  sde = SDES[name]
  closed = sde.likelihood_weight_integral(TIMES)
  numeric = SDE.likelihood_weight_integral(sde, TIMES)
  shift = float(sde.likelihood_weight_integral(torch.tensor(sde.T, dtype=torch.float64)))
  torch.testing.assert_close(closed - shift, numeric, rtol=0, atol=2e-5)
  torch.testing.assert_close(sde.inverse_likelihood_weight_integral(closed), TIMES,
                             rtol=1e-12, atol=1e-14)
  numeric_inverse = SDE.inverse_likelihood_weight_integral(sde, numeric)
  torch.testing.assert_close(numeric_inverse, TIMES, rtol=1e-3, atol=0)


@pytest.mark.parametrize('name', sorted(SDES))
def test_draws_follow_the_density_kolmogorov_smirnov(name):
  # 20,000 draws on [1e-5, 1]; the KS statistic against the CDF from the numerical
  # antiderivative must stay below 1.95 / sqrt(n), the 0.1% critical value, plus the table's
  # CDF error (< 1e-6).
  sde, eps, n = SDES[name], 1e-5, 20_000
  t = LikelihoodTime(sde, eps).sample(n, generator=torch.Generator().manual_seed(0),
                                      dtype=torch.float64).sort().values
  f = lambda v: SDE.likelihood_weight_integral(sde, torch.as_tensor(v, dtype=torch.float64))
  cdf = (f(t) - f(eps)) / (f(sde.T) - f(eps))
  empirical = torch.arange(1, n + 1, dtype=torch.float64) / n
  statistic = torch.maximum((empirical - cdf).abs(), (empirical - 1 / n - cdf).abs()).max().item()
  assert statistic < 1.95 / math.sqrt(n) + 1e-4, statistic
  assert t.min() >= eps and t.max() <= sde.T


def test_weight_keeps_the_expectation_of_uniform_time():
  # E_p[Z / (T - eps) h(t)] = E_U[w(t) h(t)] for any h: with h = 1 the left side is Z / (T -
  # eps) exactly, and the right side is (1 / (T - eps)) int w, which quadrature gives.
  from scipy import integrate
  sde, eps = VPSDE(), 1e-3
  sampler = LikelihoodTime(sde, eps)
  w = lambda t: weight_from_definition(sde, torch.tensor([t], dtype=torch.float64)).item()
  integral = integrate.quad(w, eps, sde.T, points=[0.01, 0.1], limit=200)[0]
  assert sampler.weight == pytest.approx(integral / (sde.T - eps), rel=1e-8)
