"""UniPC against DDIM, DPM-Solver++(2M) and the exact Gaussian flow (on analytic mixtures: with
DPM-Solver in test_dpm_solver.py)."""
import pytest
import torch

from configs.default import get_default_config
from gaussian_flow import ORDER_BUDGETS, exact_flow, gaussian_data, loglog_slope
from gmm_oracle import exact_score_fn, ring_mixture
from samplers import get_sampler
from samplers.ddim import ddim
from samplers.dpm_solver import dpm_solver
from samplers.fast import fast_sample, fast_times
from samplers.unipc import unipc
from sde_lib import VPSDE
from utils.errors import ConfigError


pytestmark = pytest.mark.usefixtures('float64_one_thread')


def run(solver, sde, score_fn, shape, steps, schedule, noise_removal=True, seed=1, **options):
  """A solver through the fast-sampler driver, with options the config does not carry."""
  times = fast_times(sde, schedule, 1e-3, steps, noise_removal)
  return fast_sample(sde, score_fn, shape, solver, steps, times, noise_removal=noise_removal,
                     generator=torch.Generator().manual_seed(seed), progress=False, **options)


@pytest.mark.parametrize('variant', ['bh1', 'bh2'])
def test_first_order_predictor_is_ddim(variant):
  """UniP-1 is DDIM (Zhao et al. 2023, sec. 3.2). Same times and prior draw, float64: 1e-6
  (measured 7e-15, round-off)."""
  sde = VPSDE()
  score_fn = exact_score_fn(ring_mixture(), sde)
  x_ddim, _ = run(ddim, sde, score_fn, (64, 2), 12, 'logsnr')
  x, nfe = run(unipc, sde, score_fn, (64, 2), 12, 'logsnr', variant=variant, order=1,
               use_corrector=False)
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
  x_pp, _ = run(dpm_solver, sde, score_fn, (64, 2), 15, 'karras', variant='multistep',
                order=order)
  x, _ = run(unipc, sde, score_fn, (64, 2), 15, 'karras', variant='bh2', order=order,
             use_corrector=False)
  assert torch.allclose(x, x_pp, atol=1e-10, rtol=0)


def measured_order(variant, order, use_corrector):
  """Minus the log-log slope of the mean terminal error against the budget on Gaussian data,
  where the flow is exact (tests/gaussian_flow.py); ORDER_BUDGETS on 'quadratic', as for
  DPM-Solver (on 'logsnr' the leading error terms of the Taylor-exact multistep updates nearly
  cancel along this flow: UniP-3 measures 4.3 there, UniPC-3 3.0 over 20..160)."""
  sde, gaussian = VPSDE(), gaussian_data()
  score_fn = exact_score_fn(gaussian, sde)
  errors = []
  for budget in ORDER_BUDGETS:
    x, _ = run(unipc, sde, score_fn, (200, 4), budget, 'quadratic', noise_removal=False,
               variant=variant, order=order, use_corrector=use_corrector)
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
  predictor = measured_order(variant, order, use_corrector=False)
  corrected = measured_order(variant, order, use_corrector=True)
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
