"""UniPC against DDIM, DPM-Solver++(2M) and the exact Gaussian flow (on analytic mixtures: with
DPM-Solver in test_dpm_solver.py)."""
import math

import pytest
import torch

from configs.default import get_default_config
from gaussian_flow import ORDER_BUDGETS, exact_flow, gaussian_data, loglog_slope
from sde_lib.gaussian_mixture import exact_score_fn, ring_mixture
from samplers import get_sampler
from samplers.ddim import ddim
from samplers.dpm_solver import dpm_solver_pp_multistep
from samplers.driver import sample
from samplers.fast import budgeted, fast_times
from samplers.unipc import unip, unipc
from sde_lib import VPSDE
from sde_lib.time_schedules import sampling_times
from utils.errors import ConfigError


pytestmark = pytest.mark.usefixtures('float64_one_thread')


def run(solver, sde, score_fn, shape, steps, schedule, noise_removal=True, seed=1, **options):
  """A solver through the sampling driver, with options the config does not carry."""
  times = fast_times(sde, schedule, 1e-3, steps, noise_removal)
  run = budgeted(solver, steps - int(noise_removal), times, **options)
  return sample(sde, score_fn, shape, run, float(times(1)[-1]), noise_removal,
                generator=torch.Generator().manual_seed(seed), progress=False)


@pytest.mark.parametrize('variant', ['bh1', 'bh2'])
def test_first_order_predictor_is_ddim(variant):
  """UniP-1 is DDIM (Zhao et al. 2023, sec. 3.2). Same times and prior draw, float64: 1e-6
  (measured 7e-15, round-off)."""
  sde = VPSDE()
  score_fn = exact_score_fn(ring_mixture(), sde)
  x_ddim, _ = run(ddim, sde, score_fn, (64, 2), 12, 'logsnr')
  x, nfe = run(unip, sde, score_fn, (64, 2), 12, 'logsnr', variant=variant, order=1)
  assert nfe == 12
  assert torch.allclose(x, x_ddim, atol=1e-6, rtol=0)


@pytest.mark.parametrize('order', [2, 3])
def test_bh2_predictor_is_dpm_solver_pp_2m_and_3m(order):
  """UniP-2 and UniP-3 with B2(h) are DPM-Solver++(2M) and (3M), along a different code path.
  With one earlier point UniP-2 takes rho = 1/2, so its step adds m_s B2(h) D / (2 r) =
  m_s (1 - e^{-h}) (x0_0 - x0_1) / (2 r0): Algorithm 2's line. Solved exactly, UniP-3's system
  integrates the quadratic through the three newest x0_hat (B(h) cancels), as 3M's Taylor form
  does with D1 ~ h x0', D2 ~ h^2 x0''; the warm-up steps agree too. 1e-10 (measured 7e-15,
  float64 round-off)."""
  sde = VPSDE()
  score_fn = exact_score_fn(ring_mixture(), sde)
  x_pp, _ = run(dpm_solver_pp_multistep, sde, score_fn, (64, 2), 15, 'karras', order=order)
  x, _ = run(unip, sde, score_fn, (64, 2), 15, 'karras', variant='bh2', order=order)
  assert torch.allclose(x, x_pp, atol=1e-10, rtol=0)


def test_two_bh1_steps_are_the_official_unipc_update():
  """Two steps of UniPC-2 with B1(h) (budget 2, lower_order_final off, no final denoising)
  against a transcription of the official code's data-prediction update (Zhao et al. 2023,
  github.com/wl-zhao/UniPC, multistep_uni_pc_bh_update; hh = -h, B_h = hh for 'bh1'):
  step 1 UniP-1 (DDIM) to t1; there x0_hat(x1) corrects it by UniC-1,
    x1c = x1 - a_1 B_h rho (x0_1 - x0_0),  rho = 1/2;
  step 2 is UniP-2 from x1c with the slope D1 = (x0_0 - x0_1) / r, r = (lam_0 - lam_1) / h:
    x2 = (s_2 / s_1) x1c - a_2 expm1(hh) x0_1 - a_2 B_h rho D1,  rho = 1/2.
  B(h) stays in both updates (with one difference rho is 1/2, not solved for), so bh1 and
  bh2 differ here. Alpha, sigma and lambda from the linear VP-SDE's closed form; the times are
  the sampler's. float64: 1e-9 (measured 9e-16; B1(h) = expm1(h) moves it by 100)."""
  sde, b0, b1 = VPSDE(), 0.1, 20.0
  score_fn = exact_score_fn(ring_mixture(), sde)
  config = get_default_config().sampling
  config.update(dict(method='unipc', variant='bh1', order=2, lower_order_final=False, steps=2,
                     noise_removal=False, time_schedule='logsnr', eps=1e-3))
  x, nfe = get_sampler(config, sde, (64, 2))(
      score_fn, generator=torch.Generator().manual_seed(4), progress=False)
  assert nfe == 2

  def alpha_sigma_lambda(t):
    log_alpha = -(b1 - b0) * t ** 2 / 4 - b0 * t / 2
    sigma = math.sqrt(-math.expm1(2 * log_alpha))
    return math.exp(log_alpha), sigma, log_alpha - math.log(sigma)

  def x0_pred(x, t):
    alpha, sigma, _ = alpha_sigma_lambda(t)
    return (x + sigma ** 2 * score_fn(x, torch.full((len(x),), t))) / alpha

  ts = [float(t) for t in sampling_times(sde, 'logsnr', 2, 1e-3)]
  (a0, s0, lam0), (a1, s1, lam1), (a2, s2, lam2) = (alpha_sigma_lambda(t) for t in ts)
  x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(4))
  x0_0 = x0_pred(x_T, ts[0])
  hh = -(lam1 - lam0)
  x1 = s1 / s0 * x_T - a1 * math.expm1(hh) * x0_0
  x0_1 = x0_pred(x1, ts[1])
  x1c = x1 - a1 * hh * 0.5 * (x0_1 - x0_0)                   # B_h = hh
  h = lam2 - lam1
  hh, r = -h, (lam0 - lam1) / h
  x_ref = s2 / s1 * x1c - a2 * math.expm1(hh) * x0_1 - a2 * hh * 0.5 * (x0_0 - x0_1) / r
  assert torch.allclose(x, x_ref, atol=1e-9, rtol=0), (x - x_ref).abs().max().item()


def measured_order(solver, variant, order):
  """Minus the log-log slope of the mean terminal error against the budget on Gaussian data,
  where the flow is exact (tests/gaussian_flow.py); ORDER_BUDGETS on 'quadratic', as for
  DPM-Solver (on 'logsnr' the leading error terms of the Taylor-exact multistep updates nearly
  cancel along this flow: UniP-3 measures 4.3 there, UniPC-3 3.0 over 20..160)."""
  sde, gaussian = VPSDE(), gaussian_data()
  score_fn = exact_score_fn(gaussian, sde)
  errors = []
  for budget in ORDER_BUDGETS:
    x, _ = run(solver, sde, score_fn, (200, 4), budget, 'quadratic', noise_removal=False,
               variant=variant, order=order)
    x_T = sde.prior_sampling((200, 4), generator=torch.Generator().manual_seed(1))
    errors.append((x - exact_flow(gaussian, sde, x_T, sde.T, 1e-3)).norm(dim=1).mean().item())
  return -loglog_slope(ORDER_BUDGETS, errors)


@pytest.mark.parametrize('variant', ['bh1', 'bh2'])
@pytest.mark.parametrize('order', [1, 2, 3])
def test_measured_order_and_the_correctors_gain(variant, order):
  """UniP-p has order p and UniPC-p order p + 1 (Zhao et al. 2023, Corollary 3.2 and Theorem
  3.1): both measured within 0.3 over ORDER_BUDGETS, and the corrector raises the measured
  order by 1 within 0.3 (measured: bh1 UniP 0.99 / 2.11 / 3.16, UniPC 2.07 / 3.10 / 4.04;
  bh2 UniP 0.99 / 2.11 / 3.16, UniPC 1.99 / 3.01 / 4.04)."""
  predictor = measured_order(unip, variant, order)
  corrected = measured_order(unipc, variant, order)
  assert abs(predictor - order) <= 0.3, predictor
  assert abs(corrected - (order + 1)) <= 0.3, corrected
  assert abs(corrected - predictor - 1) <= 0.3, (predictor, corrected)


@pytest.mark.parametrize('field,value', [('variant', 'multistep'), ('variant', 'bh3'),
                                         ('order', 4), ('order', -2)])
def test_bad_settings_raise_config_error(field, value):
  config = get_default_config().sampling
  config.update({'method': 'unipc', 'steps': 10, field: value})
  with pytest.raises(ConfigError, match=str(value)):
    get_sampler(config, VPSDE(), (4, 2))
