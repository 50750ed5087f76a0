"""Langevin correctors leave the target p_t invariant: run alone, they sample it."""
import pytest
import torch

from gmm_oracle import GaussianMixture, exact_score_fn
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
