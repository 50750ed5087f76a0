"""benchmarks/likelihood_accuracy.py: the change of variables around k-diffusion's
log_likelihood and the error statistics, against closed forms and a hand-worked example."""
import math
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sde_lib.gaussian_mixture import GaussianMixture
from sde_lib.gaussian_mixture import exact_score_fn  # noqa: E402
from sde_lib import VPSDE  # noqa: E402


def test_kd_log_likelihood_matches_the_diffused_gaussian(float64_one_thread):
  """x_0 ~ N(0, c I) diffuses to x_eps ~ N(0, (m^2 c + s^2) I), a closed form. Its score has
  Jacobian -I / (m^2 c + s^2), so k-diffusion's single Rademacher probe gives the trace exactly
  (v^T a I v = a D) and only the solver and the prior remain: its prior N(0, sigma_max^2 I)
  against the true N(0, (c + sigma_max^2) I) of x^ at sigma_max = 152 is off by about
  D c / (2 sigma_max^2) = 1e-5 nats (a nonzero mean would add mu . z^ / sigma_max^2, of order
  |mu| sqrt(D) / sigma_max ~ 1e-2: hence mean 0), the solver at 1e-6 by 2e-5 (measured);
  hence 1e-4. eps = 0.3 (m = 0.63) makes D log m = -0.93 nats, so a wrong sign or power of m
  in the change of variables, or sigma_min = s instead of s / m, is far outside it."""
  pytest.importorskip('k_diffusion')
  from benchmarks.likelihood_accuracy import kd_log_likelihood
  from benchmarks.sampler_quality import import_k_diffusion
  sde, eps, c = VPSDE(), 0.3, 0.25
  mixture = GaussianMixture(torch.ones(1), torch.zeros(1, 2), c * torch.eye(2)[None])
  x = torch.tensor([[0.4, -0.3], [1.2, 0.5], [-0.6, -0.9]])
  m, s = (float(v) for v in sde.marginal_coeffs(torch.tensor([eps])))
  exact = torch.distributions.Normal(0.0, math.sqrt(m ** 2 * c + s ** 2)).log_prob(x).sum(1)
  logp, nfe = kd_log_likelihood(import_k_diffusion(), sde, exact_score_fn(mixture, sde), x, eps,
                                rtol=1e-6, atol=1e-6)
  assert nfe > 0
  assert torch.allclose(logp, exact, atol=1e-4), (logp, exact)


def test_error_stats_by_hand():
  """Errors 1, 2, 6: mean 3, sample std sqrt((4 + 1 + 9) / 2) = sqrt(7), s.e. sqrt(7 / 3)."""
  from benchmarks.likelihood_accuracy import error_stats
  stats = error_stats(torch.tensor([1.5, 2.5, 6.5]), torch.tensor([0.5, 0.5, 0.5]))
  assert stats['bias'] == pytest.approx(3.0, abs=1e-12)
  assert stats['spread'] == pytest.approx(math.sqrt(7), abs=1e-12)
  assert stats['stderr'] == pytest.approx(math.sqrt(7 / 3), abs=1e-12)
