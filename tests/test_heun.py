"""EDM's Heun sampler against a transcription of Karras et al.'s Algorithm 2 and its order."""
import math

import pytest
import torch

from configs.default import get_default_config
from gaussian_flow import exact_flow, gaussian_data, loglog_slope
from sde_lib.gaussian_mixture import exact_score_fn, ring_mixture
from samplers import get_sampler
from sde_lib import VESDE, VPSDE
from sde_lib.time_schedules import sampling_times


pytestmark = pytest.mark.usefixtures('float64')


def heun_config(**overrides):
  config = get_default_config().sampling
  config.method, config.time_schedule = 'heun', 'karras'   # EDM's, as Algorithm 2 is stated
  config.update(overrides)
  return config


@pytest.mark.parametrize('s_tmax', [20.0, math.inf])
def test_stochastic_ve_heun_is_algorithm_2(s_tmax):
  """On the VE-SDE, x^ = x and sigma is the SDE's own, so EDM's Algorithm 2 applies verbatim
  with D(x; sigma) = x + sigma^2 score(x, t(sigma)): the transcription below, fed the same
  noise, agrees to 1e-9 (float64; the times of sigma_hat come from bisection). One change to
  the algorithm: the SDE ends at sigma(T) = sigma_max, where the prior is drawn and beyond which
  there is no score, so sigma_hat is capped there. With S_tmax = inf the first steps churn at
  sigma_max (gamma = 0.41 would raise it to 70; the capped first step adds no noise), with
  S_tmax = 20 (EDM's range) the cap is never reached."""
  sde, budget, churn = VESDE(), 21, 10.0
  score_fn = exact_score_fn(ring_mixture(), sde)
  config = heun_config(steps=budget, s_churn=churn, s_tmin=0.05, s_tmax=s_tmax)
  x, nfe = get_sampler(config, sde, (32, 2))(score_fn, generator=torch.Generator().manual_seed(3),
                                            progress=False)

  def denoise(x, sigma):
    t = sde.time_of_log_snr(torch.tensor(-math.log(sigma)))
    return x + sigma ** 2 * score_fn(x, torch.full((x.shape[0],), float(t)))

  g = torch.Generator().manual_seed(3)
  steps = (budget - 1) // 2                     # one evaluation kept for the final denoising
  ts = sampling_times(sde, 'karras', steps, 1e-3)
  sigmas = [float(sde.sigma(t)) for t in ts]
  x_ref = sde.sigma_max * torch.randn(32, 2, generator=g)
  for i in range(steps):
    sigma, sigma_next = sigmas[i], sigmas[i + 1]
    gamma = min(churn / steps, math.sqrt(2) - 1) if 0.05 <= sigma <= s_tmax else 0.0
    sigma_hat = min(sigma * (1 + gamma), sde.sigma_max)
    if sigma_hat > sigma:
      x_ref = x_ref + math.sqrt(sigma_hat ** 2 - sigma ** 2) * torch.randn(32, 2, generator=g)
    d = (x_ref - denoise(x_ref, sigma_hat)) / sigma_hat
    x_next = x_ref + (sigma_next - sigma_hat) * d
    d_next = (x_next - denoise(x_next, sigma_next)) / sigma_next
    x_ref = x_ref + (sigma_next - sigma_hat) * (d + d_next) / 2
  x_ref = denoise(x_ref, sigmas[-1])            # the last step, to sigma = 0, is Euler's
  assert nfe == 2 * steps + 1 == budget
  assert torch.allclose(x, x_ref, atol=1e-9, rtol=0)


@pytest.mark.parametrize('sde', [VPSDE(), VESDE()], ids=['vp', 've'])
def test_deterministic_heun_is_second_order(sde):
  """Heun's method is second order: on Gaussian data (exact flow), the terminal error over
  budgets 20..160 (karras schedule, no final denoising) falls with slope -2 within 0.3
  (measured -2.1 on VP, -2.0 on VE)."""
  gaussian = gaussian_data()
  score_fn = exact_score_fn(gaussian, sde)
  x_T = sde.prior_sampling((200, 4), generator=torch.Generator().manual_seed(1))
  exact = exact_flow(gaussian, sde, x_T, sde.T, 1e-3)
  budgets, errors = [20, 40, 80, 160], []
  for budget in budgets:
    x, nfe = get_sampler(heun_config(steps=budget, noise_removal=False), sde, (200, 4))(
        score_fn, generator=torch.Generator().manual_seed(1), progress=False)
    assert nfe == budget
    errors.append((x - exact).norm(dim=1).mean().item())
  assert abs(-loglog_slope(budgets, errors) - 2) <= 0.3, errors


@pytest.mark.parametrize('budget,noise_removal', [(9, True), (10, True), (10, False), (11, False)])
def test_budget_is_spent_as_edm_does(budget, noise_removal):
  """EDM's k steps make 2k - 1 evaluations, the last being Euler's step to sigma = 0: a budget
  of 2k - 1 with the final denoising is k - 1 Heun steps and that step. Whatever the budget's
  parity, all of it is spent: an odd remainder goes to an Euler step before the denoising."""
  sde = VPSDE()
  config = heun_config(steps=budget, noise_removal=noise_removal)
  _, nfe = get_sampler(config, sde, (8, 2))(exact_score_fn(ring_mixture(), sde), progress=False)
  assert nfe == budget
