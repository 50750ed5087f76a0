"""Langevin correctors leave the target p_t invariant: run alone, they sample it."""
import math

import pytest
import torch

from sde_lib.gaussian_mixture import GaussianMixture, exact_score_fn
from samplers.langevin import annealed_langevin, langevin
from sde_lib import VESDE, VPSDE


@pytest.mark.parametrize('corrector,snr', [(langevin, 0.15), (annealed_langevin, 0.15)])
@pytest.mark.parametrize('sde', [VPSDE(), VESDE()], ids=['vp', 've'])
def test_corrector_alone_converges_to_p_t(corrector, snr, sde):
  """From a wrong start (mean off by one std, four times the variance), 400 corrector steps at
  a fixed t reach the Gaussian p_t = N(m mu, m^2 var0 + s^2) in mean and variance.

  The chain relaxes by a factor ~(1 - e/var) a step, e/var >= 2 snr^2 s(t)^2/var(p_t) ~ 1e-2,
  so 400 steps leave < 2% of the initial error; Langevin's discretization bias in the
  variance is O(e/var) ~ 5%; with n = 4000 the Monte-Carlo errors are 1.6% of std (mean) and
  2.2% (variance). Tolerances: 0.1 std for the mean and 12% for the variance.
  """
  data = GaussianMixture([1.0], [[0.5, -0.5]], [[[0.3, 0.0], [0.0, 0.3]]])
  t = 0.4
  p_t = data.perturbed(sde, t)
  n = 4000
  tt = torch.full((n,), t)
  std_t = float(p_t.covs[0, 0, 0]) ** 0.5
  gen = torch.Generator().manual_seed(0)
  x = (p_t.means[0] + std_t + 2 * std_t * torch.randn(n, 2, generator=gen, dtype=torch.float64)).float()
  x, _ = corrector(sde, exact_score_fn(data, sde), x, tt, torch.full((n,), 1e-3), snr, 400, gen)
  mean_err = (x.double().mean(0) - p_t.means[0]).abs().max().item()
  assert mean_err < 0.1 * std_t
  var = x.double().var(0)
  assert torch.allclose(var, p_t.covs[0].diagonal(), rtol=0.12)


def ve_std(t):
  return 0.01 * (50.0 / 0.01) ** t      # sigma(t) of VESDE(0.01, 50)


def vp_log_alphabar(t):
  return -(0.1 * t + (20.0 - 0.1) * t ** 2 / 2)   # -int_0^t beta for VPSDE(0.1, 20)


@pytest.mark.parametrize('corrector', ['langevin', 'annealed_langevin'])
@pytest.mark.parametrize('sde_name', ['vp', 've'])
def test_step_size_gives_the_stationary_variance_of_ula(corrector, sde_name):
  """On a Gaussian target N(0, sigma^2 I) the chain x <- x - e x / sigma^2 + sqrt(2e) z is
  AR(1) and its stationary variance is exactly sigma^2 / (1 - e / (2 sigma^2)), well above
  sigma^2 when e is large: the step size e, factor 2 included, is visible in the samples.

  Algorithm 5 of Song et al. 2021 sets e = 2 alpha (r ||z|| / ||score||)^2 (norms averaged over
  the batch), alpha = m(t)^2 / m(t-h)^2 = exp(-int_{t-h}^t beta) (VP; the chain's 1 - beta_i
  is the same to 1e-4) or 1 (VE). In d = 2000 dimensions ||z|| ~ sqrt(d) and at stationarity
  ||score|| ~ sqrt(d v) / sigma^2, so e = 2 alpha r^2 sigma^4 / v, whose fixed point with the
  closed form is e / sigma^2 = 2 alpha r^2 / (1 + alpha r^2), v = sigma^2 (1 + alpha r^2)
  (corrections O(1/d)). Annealed Langevin's e = 2 alpha (r s(t))^2 is fixed; with
  sigma = s(t), v = sigma^2 / (1 - alpha r^2). r is chosen so that e / sigma^2 ~ 0.5.

  v is the mean of x^2 over 16 x 2000 coordinates and 100 steps after 20 of burn-in (the
  start's error shrinks by (1 - e / sigma^2)^2 ~ 1/4 a step): its relative standard error is
  ~0.1% (x^2 has autocorrelation (1 - e / sigma^2)^2; measured errors 0.07-0.1%). Asserted:
  v within 0.5% of the closed form, where e / 2 (the factor 2 dropped) is 12% off, and the
  step e measured from x_mean - x within 0.2% of Algorithm 5's (langevin: the norms' noise,
  measured 0.04%) or 0.1% (annealed: exact up to the chain's alpha, 6e-5 away), where
  alpha = 1 for the VP-SDE is 1% off.
  """
  d, batch, t = 2000, 16, 0.5
  h = 1e-3                                    # one step of the N = 1000 grid
  if sde_name == 've':
    sde, sigma2, alpha = VESDE(0.01, 50.0), ve_std(t) ** 2, 1.0
  else:
    sde = VPSDE(0.1, 20.0)
    sigma2 = 1 - math.exp(vp_log_alphabar(t))
    alpha = math.exp(vp_log_alphabar(t) - vp_log_alphabar(t - h))
  if corrector == 'langevin':
    snr = math.sqrt(1 / 3)
    e_expected = sigma2 * 2 * alpha * snr ** 2 / (1 + alpha * snr ** 2)
    run, e_tol = langevin, 2e-3
  else:
    snr = 0.5
    e_expected = 2 * alpha * (snr * math.sqrt(sigma2)) ** 2
    run, e_tol = annealed_langevin, 1e-3
  v_expected = sigma2 / (1 - e_expected / (2 * sigma2))
  score_fn = lambda x, tt: -x / sigma2
  gen = torch.Generator().manual_seed(0)
  x = math.sqrt(sigma2) * torch.randn(batch, d, generator=gen, dtype=torch.float64)
  tt, hh = torch.full((batch,), t, dtype=torch.float64), torch.full((batch,), h, dtype=torch.float64)
  variances, steps = [], []
  for i in range(120):
    x_prev = x
    x, x_mean = run(sde, score_fn, x, tt, hh, snr, 1, gen)
    if i >= 20:
      variances.append(x.pow(2).mean().item())
      grad = score_fn(x_prev, tt)
      steps.append(((x_mean - x_prev) * grad).sum().item() / grad.pow(2).sum().item())
  e, v = sum(steps) / len(steps), sum(variances) / len(variances)
  assert e == pytest.approx(e_expected, rel=e_tol)
  assert v == pytest.approx(v_expected, rel=5e-3)
  assert v == pytest.approx(sigma2 / (1 - e / (2 * sigma2)), rel=5e-3)
