"""SDE marginals, priors and the reverse process against independent computations."""
import math

import pytest
import torch
from scipy.integrate import solve_ivp

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
def test_discretize_is_euler_maruyama_to_second_order(sde):
  """discretize's x_{t+dt} = x + f + G z against the Euler-Maruyama step of `sde()`,
  x + drift dt + g sqrt(dt) z: f - drift dt and G^2 - g^2 dt are O(dt^2), so halving dt from
  1e-2 to 1.25e-3 must divide each error by 4 (observed order within 0.1 of 2; measured
  1.96-2.04). The times avoid zeros of the dt^2 coefficients (VP: t ~ 0.22 and 0.31, cosine
  VP: t ~ 0.5). The VE drift is zero, so there f must be exactly 0."""
  x = torch.tensor([[1.5]], dtype=torch.float64)
  for t in (0.1, 0.7, 0.95):
    tt = torch.tensor([t], dtype=torch.float64)
    drift, g = sde.sde(x, tt)
    err_f, err_var = [], []
    for dt in (1e-2, 5e-3, 2.5e-3, 1.25e-3):
      f, G = sde.discretize(x, tt, dt)
      err_f.append(abs(float(f - drift * dt)))
      err_var.append(abs(float(G ** 2 - g ** 2 * dt)))
    for errors in ((err_var,) if isinstance(sde, VESDE) else (err_f, err_var)):
      orders = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
      assert all(abs(order - 2) < 0.1 for order in orders), (t, orders)
    if isinstance(sde, VESDE):
      assert err_f == [0.0] * 4


def test_vp_discretize_is_the_ddpm_step():
  """For the linear VP-SDE a step of length dt is Ho et al.'s x' = sqrt(1 - b) x + sqrt(b) z
  with 1 - b = exp(-int_t^{t+dt} beta), the integral written out here from
  beta(t) = beta_min + t (beta_max - beta_min). Equal to float64 rounding (1e-12)."""
  sde = VPSDE(beta_min=0.1, beta_max=20.0)
  B = lambda t: 0.1 * t + (20.0 - 0.1) * t ** 2 / 2
  x = torch.tensor([[1.5], [-0.7]], dtype=torch.float64)
  for t, dt in [(0.0, 1e-3), (0.3, 1e-3), (0.999, 1e-3), (0.2, 0.05), (0.5, 0.5)]:
    b = 1 - math.exp(-(B(t + dt) - B(t)))
    f, G = sde.discretize(x, torch.full((2,), t, dtype=torch.float64), dt)
    assert torch.allclose(x + f, math.sqrt(1 - b) * x, rtol=1e-12, atol=0)
    assert torch.allclose(G, torch.full((2,), math.sqrt(b), dtype=torch.float64), rtol=1e-12, atol=0)


def test_ve_discretize_is_the_smld_step():
  """For the VE-SDE a step of length dt adds noise of variance sigma(t+dt)^2 - sigma(t)^2 and no
  drift (Song & Ermon's noise levels), sigma(t) = sigma_min (sigma_max / sigma_min)^t written out
  here. Equal to float64 rounding (1e-12)."""
  sde = VESDE(sigma_min=0.01, sigma_max=50.0)
  sigma = lambda t: 0.01 * (50.0 / 0.01) ** t
  x = torch.tensor([[1.5], [-0.7]], dtype=torch.float64)
  for t, dt in [(0.0, 1e-3), (0.3, 1e-3), (0.999, 1e-3), (0.2, 0.05)]:
    f, G = sde.discretize(x, torch.full((2,), t, dtype=torch.float64), dt)
    assert torch.equal(f, torch.zeros_like(x))
    expected = math.sqrt(sigma(t + dt) ** 2 - sigma(t) ** 2)
    assert torch.allclose(G, torch.full((2,), expected, dtype=torch.float64), rtol=1e-12, atol=0)


def moment_odes(sde, t, s):
  """a and sigma^2 of the kernel t -> s from the moment ODEs of dx = f(u) x du + g(u) dw:
  da/du = f(u) a, a(t) = 1 and dv/du = 2 f(u) v + g(u)^2, v(t) = 0, with f(u) the drift of
  `sde()` at x = 1 (scipy's DOP853, rtol 1e-11)."""

  def rhs(u, y):
    drift, g = sde.sde(torch.ones(1, 1, dtype=torch.float64), torch.tensor([u], dtype=torch.float64))
    f, g = float(drift), float(g)
    return [f * y[0], 2 * f * y[1] + g ** 2]

  sol = solve_ivp(rhs, (t, s), [1.0, 0.0], method='DOP853', rtol=1e-11, atol=1e-14)
  assert sol.success
  return sol.y[0, -1], sol.y[1, -1]


@pytest.mark.parametrize('sde', SDES, ids=IDS)
def test_transition_solves_the_moment_odes(sde):
  """transition(t, s) against the linear SDE's mean and variance ODEs integrated from `sde()`
  alone (no marginal_coeffs): two independent formulas for the same Gaussian kernel.

  Measured agreement 1e-12..1e-10 (the cosine schedule's cap at t ~ 0.9997 is a kink the
  solver steps through); asserted to 1e-8 relative.
  """
  for t, s in [(0.0, 0.3), (0.3, 0.8), (0.05, 0.06), (0.5, 1.0), (0.9, 0.999)]:
    a, sigma = sde.transition(torch.tensor([t], dtype=torch.float64),
                              torch.tensor([s], dtype=torch.float64))
    a_ode, var_ode = moment_odes(sde, t, s)
    assert float(a) == pytest.approx(a_ode, rel=1e-8), (t, s)
    assert float(sigma) ** 2 == pytest.approx(var_ode, rel=1e-8), (t, s)


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
