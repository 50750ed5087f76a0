"""DDIM against the ancestral sampler, a transcription of Song et al.'s eq. 12, and its order."""
import pytest
import torch

from configs.default import get_default_config
from gaussian_flow import exact_flow, gaussian_data, loglog_slope
from sde_lib.gaussian_mixture import exact_score_fn, ring_mixture
from samplers import get_sampler
from sde_lib import VPSDE


pytestmark = pytest.mark.usefixtures('float64')


def sample(sde, score_fn, shape, continuous=True, seed=1, **overrides):
  config = get_default_config().sampling
  config.update(overrides)
  return get_sampler(config, sde, shape, continuous=continuous)(
      score_fn, generator=torch.Generator().manual_seed(seed), progress=False)


def test_eta_one_on_the_full_chain_is_the_ancestral_sampler():
  """DDIM with eta = 1 on every chain step is Ho et al.'s Algorithm 2 with beta-tilde (Song et
  al. 2021a, sec. 4.1): same prior and noise draws, so the samples agree to float64 round-off
  (1e-10 after 100 steps)."""
  sde = VPSDE(N=100)
  score_fn = exact_score_fn(ring_mixture(), sde)
  x_ddim, nfe = sample(sde, score_fn, (64, 2), continuous=False, method='ddim', eta=1.0, steps=100,
                       time_schedule='uniform')
  x_anc, _ = sample(sde, score_fn, (64, 2), continuous=False, method='ancestral', steps=100)
  assert nfe == 100
  assert torch.allclose(x_ddim, x_anc, atol=1e-10, rtol=0)


def test_eta_one_on_the_sde_is_the_ancestral_predictor_on_the_same_times():
  """On a continuous-time model both step over linspace(T, eps, steps) and then land on the
  data (ancestral: its last step to t = 0 has zero variance, i.e. Tweedie's x0_hat)."""
  sde = VPSDE()
  score_fn = exact_score_fn(ring_mixture(), sde)
  x_ddim, _ = sample(sde, score_fn, (64, 2), method='ddim', eta=1.0, steps=30, time_schedule='uniform')
  x_anc, _ = sample(sde, score_fn, (64, 2), method='ancestral', steps=30)
  assert torch.allclose(x_ddim, x_anc, atol=1e-10, rtol=0)


@pytest.mark.parametrize('eta', [0.0, 0.5])
def test_discrete_model_runs_song_et_al_eq_12_on_its_chain(eta):
  """A direct transcription of DDIM's eq. 12 with the chain's alphas_cumprod on the steps
  tau = 0, c, 2c, ... (c = N / S) and alphabar = 1 below step 0, fed the same eps_theta and
  the same noise: agreement to 1e-10."""
  sde, steps = VPSDE(), 20
  mixture = ring_mixture()
  score_fn = exact_score_fn(mixture, sde)
  x, nfe = sample(sde, score_fn, (64, 2), continuous=False, method='ddim', eta=eta, steps=steps,
                  time_schedule='uniform')

  g = torch.Generator().manual_seed(1)
  x_ref = torch.randn(64, 2, generator=g)
  abar = sde.alphas_cumprod
  tau = list(range(0, 1000, 1000 // steps))
  for i, prev in zip(reversed(tau), list(reversed(tau))[1:] + [None]):
    a, a_prev = abar[i], (abar[prev] if prev is not None else torch.tensor(1.0, dtype=torch.float64))
    t = torch.full((64,), (i + 1) / 1000)
    eps = -(1 - a).sqrt() * score_fn(x_ref, t)
    sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()
    x0 = (x_ref - (1 - a).sqrt() * eps) / a.sqrt()
    x_ref = a_prev.sqrt() * x0 + (1 - a_prev - sigma ** 2).sqrt() * eps
    if prev is not None and eta > 0:
      x_ref = x_ref + sigma * torch.randn(64, 2, generator=g)
  assert nfe == steps
  assert torch.allclose(x, x_ref, atol=1e-10, rtol=0)


def test_deterministic_ddim_is_first_order():
  """DDIM (eta = 0) is the first-order exponential integrator of the probability-flow ODE (Lu et
  al. 2022, sec. 3.3): on Gaussian data, where the flow is exact (tests/gaussian_flow.py), the
  terminal error over budgets 10..80 (logsnr schedule, no final denoising) falls with slope -1
  within 0.3 (measured: -0.95)."""
  sde, gaussian = VPSDE(), gaussian_data()
  score_fn = exact_score_fn(gaussian, sde)
  x_T = sde.prior_sampling((200, 4), generator=torch.Generator().manual_seed(1))
  exact = exact_flow(gaussian, sde, x_T, sde.T, 1e-3)
  budgets, errors = [10, 20, 40, 80], []
  for budget in budgets:
    x, nfe = sample(sde, score_fn, (200, 4), method='ddim', steps=budget, noise_removal=False,
                    time_schedule='logsnr')
    assert nfe == budget
    errors.append((x - exact).norm(dim=1).mean().item())
  assert abs(-loglog_slope(budgets, errors) - 1) <= 0.3, errors
