"""Single steps of the predictors against independently written formulas."""
import math

import pytest
import torch
import torchsde

from sde_lib.gaussian_mixture import exact_score_fn, ring_mixture
from samplers.predictors import euler_maruyama, get_ancestral, reverse_diffusion
from samplers.reverse_sde import TorchsdeReverse
from sde_lib import SubVPSDE, VESDE, VPSDE

B = 6


def eps_model(x, t):
  """An arbitrary smooth 'network' predicting noise."""
  return torch.sin(3 * x) + t[:, None]


def vp_chain_step(sde, t, s):
  """alpha, beta, alphabar_t, alphabar_s of the chain step s -> t from the schedule (float64)."""
  abar_t = math.exp(float(sde.log_alphabar(torch.tensor(t, dtype=torch.float64))))
  abar_s = math.exp(float(sde.log_alphabar(torch.tensor(s, dtype=torch.float64))))
  alpha = abar_t / abar_s
  return alpha, 1 - alpha, abar_t, abar_s


@pytest.mark.parametrize('variance', ['beta_tilde', 'beta'])
@pytest.mark.parametrize('t,s', [(0.7, 0.69), (0.3, 0.1), (0.05, 0.0)])
def test_ancestral_equals_ho_eq11_written_with_eps(variance, t, s):
  """x_{t-1} = (x_t - beta/sqrt(1-abar_t) eps) / sqrt(alpha) + sigma z (Ho et al. eq. 11),
  sigma^2 = beta-tilde = beta (1-abar_{t-1})/(1-abar_t) or beta; same x_t, same z."""
  sde = VPSDE()
  alpha, beta, abar_t, abar_s = vp_chain_step(sde, t, s)
  g = torch.Generator().manual_seed(0)
  x = torch.randn(B, 3, generator=g, dtype=torch.float64)
  z = torch.randn(B, 3, generator=g, dtype=torch.float64)
  tt, ss = torch.full((B,), t, dtype=torch.float64), torch.full((B,), s, dtype=torch.float64)
  eps = eps_model(x, tt)
  sigma2 = beta * (1 - abar_s) / (1 - abar_t) if variance == 'beta_tilde' else beta
  ho = (x - beta / math.sqrt(1 - abar_t) * eps) / math.sqrt(alpha) + math.sqrt(sigma2) * z
  score_fn = lambda x, t: -eps_model(x, t) / sde.marginal_std(t)[:, None]
  ours, _ = get_ancestral(variance)(sde, score_fn, x, tt, ss, z)
  # float64 throughout: agreement to rounding.
  assert torch.allclose(ours, ho, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('sde', [VPSDE(), SubVPSDE(), VESDE()], ids=['vp', 'subvp', 've'])
def test_ancestral_step_samples_the_exact_posterior(sde):
  """With data a point mass at x0 the score is exact and x0_hat = x0, so one ancestral step
  must sample q(x_s | x_t, x0), computed here by Gaussian conditioning on the joint of
  x_s ~ N(m_s x0, s_s^2), x_t | x_s ~ N((m_t/m_s) x_s, s_t^2 - (m_t/m_s)^2 s_s^2)."""
  x0, t, s = 0.8, 0.6, 0.45
  tt, ss = torch.full((B,), t, dtype=torch.float64), torch.full((B,), s, dtype=torch.float64)
  (m_t, std_t), (m_s, std_s) = sde.marginal_coeffs(tt), sde.marginal_coeffs(ss)
  score_fn = lambda x, t: -(x - m_t[:, None] * x0) / std_t[:, None] ** 2
  x = torch.linspace(-2, 2, B, dtype=torch.float64)[:, None]
  a = m_t / m_s
  cov_st = a * std_s ** 2
  cond_mean = m_s * x0 + cov_st / std_t ** 2 * (x[:, 0] - m_t * x0)
  cond_var = std_s ** 2 - cov_st ** 2 / std_t ** 2
  zero, one = torch.zeros_like(x), torch.ones_like(x)
  mean, _ = get_ancestral('beta_tilde')(sde, score_fn, x, tt, ss, zero)
  shifted, _ = get_ancestral('beta_tilde')(sde, score_fn, x, tt, ss, one)
  assert torch.allclose(mean[:, 0], cond_mean, rtol=1e-9)
  assert torch.allclose((shifted - mean)[:, 0] ** 2, cond_var, rtol=1e-9)


def test_reverse_diffusion_is_song_et_al_eq_46_for_vp():
  """x_{i-1} = (2 - sqrt(1 - beta_i)) x_i + beta_i score + sqrt(beta_i) z."""
  sde = VPSDE()
  t, s = 0.5, 0.49
  _, beta, _, _ = vp_chain_step(sde, t, s)
  g = torch.Generator().manual_seed(1)
  x = torch.randn(B, 2, generator=g, dtype=torch.float64)
  z = torch.randn(B, 2, generator=g, dtype=torch.float64)
  tt, ss = torch.full((B,), t, dtype=torch.float64), torch.full((B,), s, dtype=torch.float64)
  score_fn = lambda x, t: -eps_model(x, t)
  expected = (2 - math.sqrt(1 - beta)) * x + beta * score_fn(x, tt) + math.sqrt(beta) * z
  ours, _ = reverse_diffusion(sde, score_fn, x, tt, ss, z)
  assert torch.allclose(ours, expected, rtol=1e-10, atol=1e-12)


def test_euler_maruyama_is_the_reverse_sde_step():
  """x_s = x_t + [1/2 beta x + beta score] h + sqrt(beta h) z for the VP-SDE."""
  sde = VPSDE()
  t, s = 0.5, 0.48
  h = t - s
  beta = sde.beta_min + t * (sde.beta_max - sde.beta_min)
  g = torch.Generator().manual_seed(2)
  x = torch.randn(B, 2, generator=g, dtype=torch.float64)
  z = torch.randn(B, 2, generator=g, dtype=torch.float64)
  tt, ss = torch.full((B,), t, dtype=torch.float64), torch.full((B,), s, dtype=torch.float64)
  score_fn = lambda x, t: -eps_model(x, t)
  expected = x + (0.5 * beta * x + beta * score_fn(x, tt)) * h + math.sqrt(beta * h) * z
  ours, _ = euler_maruyama(sde, score_fn, x, tt, ss, z)
  assert torch.allclose(ours, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('sde', [VPSDE(), VESDE()], ids=['vp', 've'])
def test_torchsde_euler_equals_hand_written_euler_maruyama(sde):
  """Driven by the same Brownian path, torchsde's Euler solve of the reverse SDE written in
  s = T - t and our Euler-Maruyama predictor give the same trajectory."""
  mixture = ring_mixture()
  score_fn = exact_score_fn(mixture, sde)
  n, steps, eps = 200, 50, 1e-3
  s_end = sde.T - eps
  x_T = sde.prior_std() * torch.randn(n, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
  bm = torchsde.BrownianInterval(0.0, s_end, size=(n, 2), dtype=torch.float64, entropy=5)
  times = []

  def recording(x, t):
    times.append(float(t[0]))
    return score_fn(x, t)

  reverse = TorchsdeReverse(sde, recording, (n, 2))
  solved = torchsde.sdeint(reverse, x_T, torch.tensor([0.0, s_end], dtype=torch.float64),
                           method='euler', dt=s_end / steps, bm=bm)[-1]
  grid = sorted({sde.T - t for t in times}) + [s_end]   # the s at which torchsde stepped
  x = x_T
  for a, b in zip(grid[:-1], grid[1:]):
    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    z = bm(a, b) / (b - a).sqrt()
    x, _ = euler_maruyama(sde, score_fn, x, (sde.T - a).expand(n), (sde.T - b).expand(n), z)
  # Measured gaps: 3e-7 (VP), 7e-6 (VE, whose states start at scale sigma_max = 50), from
  # BrownianInterval's own rounding of sub-interval queries; a wrong sign or scale is O(1).
  assert torch.allclose(x, solved, rtol=0, atol=1e-4)
