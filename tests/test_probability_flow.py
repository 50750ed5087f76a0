"""The probability-flow ODE is deterministic and invertible, and maps data to the prior."""
import math

import pytest
import torch

from sde_lib.gaussian_mixture import GaussianMixture, exact_score_fn, ring_mixture
from samplers.probability_flow import flow
from sde_lib import SubVPSDE, VESDE, VPSDE


@pytest.mark.parametrize('sde', [VPSDE(), SubVPSDE(), VESDE()], ids=['vp', 'subvp', 've'])
def test_encode_then_decode_returns_the_data(sde):
  """eps -> T -> eps with dopri5 at rtol = atol = 1e-6 returns x within 1e-3 (two solves, each
  with local errors ~ tolerance times the ~100 steps), and the latents follow p_T, whose exact
  moments are mean m_T E[x_0] = 0 (the ring is centred) and covariance
  (m_T^2 (radius^2 / 2 + std^2) + s_T^2) I. With n = 2000 the standard errors are
  sqrt(var_T / n) for the mean and var_T sqrt(2 / n) = 3.2% for the variance; asserted at
  4 of them. (Per point the map is checked exactly on Gaussian data below.)"""
  mixture, eps, n = ring_mixture(radius=2.0, std=0.2), 1e-3, 2000
  score_fn = exact_score_fn(mixture, sde)
  x = mixture.perturbed(sde, eps).sample(n, torch.Generator().manual_seed(0)).double()
  z, nfe_enc = flow(sde, score_fn, x, eps, sde.T, rtol=1e-6, atol=1e-6)
  z_again, _ = flow(sde, score_fn, x, eps, sde.T, rtol=1e-6, atol=1e-6)
  assert torch.equal(z, z_again)                       # deterministic
  x_back, nfe_dec = flow(sde, score_fn, z, sde.T, eps, rtol=1e-6, atol=1e-6)
  assert (x_back - x).abs().max().item() < 1e-3
  assert nfe_enc > 0 and nfe_dec > 0
  m_T, s_T = (float(c) for c in sde.marginal_coeffs(torch.tensor([sde.T], dtype=torch.float64)))
  var_T = m_T ** 2 * (2.0 ** 2 / 2 + 0.2 ** 2) + s_T ** 2
  assert z.mean(0).abs().max().item() < 4 * math.sqrt(var_T / n)
  assert torch.allclose(z.var(0), torch.full((2,), var_T, dtype=torch.float64),
                        rtol=4 * math.sqrt(2 / n), atol=0)
  assert abs(torch.cov(z.T)[0, 1].item()) < 4 * var_T / math.sqrt(n)


def test_fixed_step_solver_converges_to_the_adaptive_solution():
  """rk4 with more steps approaches dopri5's answer (4th order: error falls ~16x per halving)."""
  sde, mixture = VPSDE(), ring_mixture()
  score_fn = exact_score_fn(mixture, sde)
  z = torch.randn(200, 2, generator=torch.Generator().manual_seed(1))
  exact, _ = flow(sde, score_fn, z, sde.T, 1e-3, rtol=1e-7, atol=1e-7)
  errors = [(flow(sde, score_fn, z, sde.T, 1e-3, method='rk4', steps=k)[0] - exact).abs().max().item()
            for k in (25, 50, 100)]
  assert errors[0] > errors[1] > errors[2]
  assert errors[2] < 1e-2


@pytest.mark.parametrize('sde', [VPSDE(), SubVPSDE(), VESDE()], ids=['vp', 'subvp', 've'])
def test_encoding_of_gaussian_data_is_the_exact_affine_map(sde):
  """For Gaussian data N(mu, S) every p_t is N(m_t mu, C_t), C_t = m_t^2 S + s_t^2 I, and the
  probability-flow ODE is linear: in S's eigenbasis (shared by every C_t) the deviation u from
  the mean obeys du/dt = (f + g^2 / (2 c_t)) u = (1/2) d log c_t/dt u, so each point maps to
  z = m_T mu + C_T^{1/2} C_eps^{-1/2} (x - m_eps mu), exactly. dopri5 at rtol = atol = 1e-7
  must land there within 1e-5 of the latent's std per coordinate (measured 2e-7..8e-7); a
  flipped score sign, a g^2 without its 1/2, or a wrong marginal all move z by O(1) std.
  """
  cov = torch.tensor([[0.5, 0.2, 0.0], [0.2, 0.3, 0.1], [0.0, 0.1, 0.2]], dtype=torch.float64)
  mu = torch.tensor([1.0, -0.5, 0.3], dtype=torch.float64)
  data, eps = GaussianMixture([1.0], mu[None], cov[None]), 1e-3
  x = data.perturbed(sde, eps).sample(200, torch.Generator().manual_seed(2)).double()
  z, _ = flow(sde, exact_score_fn(data, sde), x, eps, sde.T, rtol=1e-7, atol=1e-7)
  lam, U = torch.linalg.eigh(cov)
  (m_eps, m_T), (s_eps, s_T) = sde.marginal_coeffs(torch.tensor([eps, sde.T], dtype=torch.float64))
  c_eps, c_T = m_eps ** 2 * lam + s_eps ** 2, m_T ** 2 * lam + s_T ** 2
  expected = m_T * mu + ((x - m_eps * mu) @ U * (c_T / c_eps).sqrt()) @ U.T
  err = ((z - expected) @ U / c_T.sqrt()).abs().max().item()   # in units of the latent's std
  assert err < 1e-5, err
