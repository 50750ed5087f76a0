"""SDE marginals, priors and the reverse process against independent computations."""
import math

import pytest
import torch

from sde_lib import SubVPSDE, VESDE, VPSDE, get_sde
from configs.default import get_default_config

SDES = [VPSDE(), VPSDE(schedule='cosine'), SubVPSDE(), VESDE()]
IDS = ['vp', 'vp-cosine', 'subvp', 've']


@pytest.mark.parametrize('sde', SDES, ids=IDS)
def test_marginal_prob_matches_forward_simulation_of_sde(sde):
  """Simulate dx = f dt + g dw by Euler-Maruyama (2000 steps, 20000 paths, float64) from a
  fixed x_0 and compare the mean and std at t = 0.3 and 0.9 with marginal_prob.

  This checks `sde()` (drift, diffusion) against `marginal_coeffs` — two independent
  formulas. Euler's bias is O(max beta * dt) ~ 1% for beta up to 20 (the cosine schedule's
  beta stays below 26 up to t = 0.9); MC error of the std is 0.5%: 2.5% tolerance on the
  std, 0.03 std + 2% on the mean.
  """
  n, steps, x0 = 20000, 2000, 1.5
  g = torch.Generator().manual_seed(0)
  x = torch.full((n, 1), x0, dtype=torch.float64)
  dt = 0.9 / steps
  for i in range(steps):
    t = torch.full((n,), i * dt, dtype=torch.float64)
    drift, diffusion = sde.sde(x, t)
    x = x + drift * dt + diffusion[:, None] * math.sqrt(dt) * torch.randn(n, 1, generator=g, dtype=torch.float64)
    if i + 1 in (steps // 3, steps):
      t_now = torch.tensor([(i + 1) * dt], dtype=torch.float64)
      mean, std = sde.marginal_prob(torch.tensor([[x0]], dtype=torch.float64), t_now)
      start_std = sde.marginal_std(torch.zeros(1, dtype=torch.float64))   # VE: sigma_min at t=0
      expected_std = (std ** 2 - start_std ** 2).sqrt()                   # x_0 fixed, no start noise
      assert x.std().item() == pytest.approx(expected_std.item(), rel=0.025)
      assert abs(x.mean().item() - mean.item()) <= 0.03 * expected_std.item() + 0.02 * abs(mean.item())


@pytest.mark.parametrize('sde', SDES, ids=IDS)
def test_marginal_prob_matches_forward_simulation_of_discretize(sde):
  """N = 1000 steps x_{i+1} = x_i + f_i + G_i z (the DDPM / SMLD chain step) from a fixed x_0
  reach mean m(1) x_0 and variance s(1)^2 - s(0)^2 (20000 paths: 1.5% tolerance on the std,
  5 standard errors; the steps are exact transitions, so there is no discretization bias)."""
  n, x0 = 20000, 1.5
  g = torch.Generator().manual_seed(1)
  x = torch.full((n, 1), x0, dtype=torch.float64)
  for i in range(sde.N):
    t = torch.full((n,), i / sde.N, dtype=torch.float64)
    f, G = sde.discretize(x, t)
    x = x + f + G[:, None] * torch.randn(n, 1, generator=g, dtype=torch.float64)
  one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
  mean, std = sde.marginal_prob(torch.tensor([[x0]], dtype=torch.float64), one)
  expected_std = (std ** 2 - sde.marginal_std(zero) ** 2).sqrt().item()
  assert x.std().item() == pytest.approx(expected_std, rel=0.015)
  assert abs(x.mean().item() - mean.item()) <= 5 * expected_std / math.sqrt(n)


@pytest.mark.parametrize('sde', SDES, ids=IDS)
def test_transitions_compose(sde):
  """Kernel 0 -> t then t -> u equals kernel 0 -> u (Chapman-Kolmogorov for Gaussians)."""
  t, u = torch.tensor([0.3], dtype=torch.float64), torch.tensor([0.8], dtype=torch.float64)
  zero = torch.zeros(1, dtype=torch.float64)
  a1, s1 = sde.transition(zero, t)
  a2, s2 = sde.transition(t, u)
  a, s = sde.transition(zero, u)
  assert torch.allclose(a1 * a2, a, rtol=1e-12)
  assert torch.allclose(a2 ** 2 * s1 ** 2 + s2 ** 2, s ** 2, rtol=1e-10)


@pytest.mark.parametrize('sde', SDES, ids=IDS)
def test_prior_logp_is_the_gaussian_density(sde):
  z = sde.prior_sampling((7, 3, 4, 4), generator=torch.Generator().manual_seed(0))
  expected = torch.distributions.Normal(0.0, sde.prior_std()).log_prob(z).flatten(1).sum(1)
  assert torch.allclose(sde.prior_logp(z), expected, rtol=1e-5)
  # The prior's std is the marginal std at T.
  assert float(sde.marginal_std(torch.tensor([sde.T]))) == pytest.approx(sde.prior_std(), rel=1e-3)


def test_get_sde_builds_by_name_and_rejects_unknown():
  config = get_default_config()
  config.sde.name, config.sde.num_scales = 'vesde', 10
  sde = get_sde(config)
  assert isinstance(sde, VESDE) and sde.N == 10 and sde.sigma_max == config.sde.sigma_max
  config.sde.name = 'vp'
  with pytest.raises(ValueError, match='vpsde'):
    get_sde(config)
