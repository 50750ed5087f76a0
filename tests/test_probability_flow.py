"""The probability-flow ODE is deterministic and invertible, and maps data to the prior."""
import pytest
import torch

from gmm_oracle import exact_score_fn, ring_mixture
from samplers.probability_flow import flow
from sde_lib import SubVPSDE, VESDE, VPSDE


@pytest.mark.parametrize('sde', [VPSDE(), SubVPSDE(), VESDE()], ids=['vp', 'subvp', 've'])
def test_encode_then_decode_returns_the_data(sde):
  """eps -> T -> eps with dopri5 at rtol = atol = 1e-6 returns x within 1e-3 (two solves, each
  with local errors ~ tolerance times the ~100 steps), and the latents follow the prior."""
  mixture, eps = ring_mixture(), 1e-3
  score_fn = exact_score_fn(mixture, sde)
  x = mixture.perturbed(sde, eps).sample(1000, torch.Generator().manual_seed(0))
  z, nfe_enc = flow(sde, score_fn, x, eps, sde.T, rtol=1e-6, atol=1e-6)
  z_again, _ = flow(sde, score_fn, x, eps, sde.T, rtol=1e-6, atol=1e-6)
  assert torch.equal(z, z_again)                       # deterministic
  x_back, nfe_dec = flow(sde, score_fn, z, sde.T, eps, rtol=1e-6, atol=1e-6)
  assert (x_back - x).abs().max().item() < 1e-3
  assert nfe_enc > 0 and nfe_dec > 0
  # Latents ~ N(0, prior_std^2 I): with n = 1000 the standard errors are 3% of the std for the
  # mean and 4.5% for the variance; tolerances 0.15 std and 20%.
  std = sde.prior_std()
  assert z.mean(0).abs().max().item() < 0.15 * std
  assert torch.allclose(z.var(0), torch.full((2,), std ** 2), rtol=0.2)


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
