"""DPM-Solver and DPM-Solver++ against DDIM, the exact Gaussian flow and analytic mixtures
(where UniPC is sampled too, with the same allowances)."""
import math

import pytest
import torch

from configs.default import get_default_config
from gaussian_flow import ORDER_BUDGETS, exact_flow, gaussian_data, loglog_slope
from sde_lib.gaussian_mixture import exact_score_fn, random_mixture, ring_mixture
from gmm_oracle import assert_matches
from samplers import get_sampler
from samplers.dpm_solver import fast_orders
from sde_lib import VPSDE
from utils.errors import ConfigError



pytestmark = pytest.mark.usefixtures('float64_one_thread')


def sample(sde, score_fn, shape, seed=1, **overrides):
  config = get_default_config().sampling
  config.update(overrides)
  return get_sampler(config, sde, shape)(score_fn, generator=torch.Generator().manual_seed(seed),
                                        progress=False)


def test_fast_orders_are_the_papers_split():
  """Lu et al. 2022a, sec. 3.4: K = NFE // 3 + 1 steps, [3, ..., 3, 2, 1] / [3, ..., 3, 1] /
  [3, ..., 3, 2] for NFE mod 3 = 0 / 1 / 2; order 2: [2, ..., 2] plus a 1 when NFE is odd."""
  assert fast_orders(6, 3) == [3, 2, 1]
  assert fast_orders(7, 3) == [3, 3, 1]
  assert fast_orders(8, 3) == [3, 3, 2]
  assert fast_orders(9, 2) == [2, 2, 2, 2, 1]
  assert fast_orders(4, 1) == [1, 1, 1, 1]
  for budget in range(1, 40):
    for order in (1, 2, 3):
      orders = fast_orders(budget, order)
      assert sum(orders) == budget and max(orders) <= order, (budget, order, orders)
      if order == 3:
        assert len(orders) == budget // 3 + 1


@pytest.mark.parametrize('variant', ['singlestep', 'multistep'])
@pytest.mark.parametrize('schedule', ['logsnr', 'karras'])
def test_first_order_is_ddim(variant, schedule):
  """DPM-Solver-1 is DDIM (Lu et al. 2022a, sec. 4.1) and so is DPM-Solver++1 (2022b, sec.
  4.1: the noise- and data-prediction first-order steps are one map). Same times, same prior
  draw, float64: 1e-6 (measured 1e-14, round-off)."""
  sde = VPSDE()
  score_fn = exact_score_fn(ring_mixture(), sde)
  x_ddim, _ = sample(sde, score_fn, (64, 2), method='ddim', steps=12, time_schedule=schedule)
  x, nfe = sample(sde, score_fn, (64, 2), method='dpm_solver', steps=12, time_schedule=schedule,
                  variant=variant, order=1)
  assert nfe == 12
  assert torch.allclose(x, x_ddim, atol=1e-6, rtol=0)


@pytest.mark.parametrize('order', [2, 3])
def test_two_steps_of_a_multistep_method_are_ddim(order):
  """With lower_order_final, two steps of DPM-Solver++ of any order run at orders 1 (warm
  start: no earlier point) and 1 (final step), so they are DDIM's two steps on the same times;
  without it the second step is 2M's and differs. 1e-10 (float64 round-off; measured 1e-15)."""
  sde = VPSDE()
  score_fn = exact_score_fn(ring_mixture(), sde)
  common = dict(steps=3, time_schedule='logsnr')
  x_ddim, _ = sample(sde, score_fn, (64, 2), method='ddim', **common)
  x, _ = sample(sde, score_fn, (64, 2), method='dpm_solver', variant='multistep', order=order,
                **common)
  x_2m, _ = sample(sde, score_fn, (64, 2), method='dpm_solver', variant='multistep', order=order,
                   lower_order_final=False, **common)
  assert torch.allclose(x, x_ddim, atol=1e-10, rtol=0)
  assert (x_2m - x_ddim).abs().max() > 1e-3


def test_a_dpm_solver_2_step_is_lu_et_al_algorithm_1():
  """One step of DPM-Solver-2 from T to 1e-3 (a budget of 2, no final denoising) against a
  transcription of Lu et al. 2022a, Algorithm 1 (r1 = 1/2) with the linear VP-SDE in its own
  closed forms (their app. D): log alpha_t = -(b1 - b0) t^2 / 4 - b0 t / 2, sigma_t^2 =
  1 - alpha_t^2, lambda = log alpha - log sigma and its inverse
  t(lambda) = 2 log(e^{-2 lambda} + 1) / (sqrt(b0^2 + 2 (b1 - b0) log(e^{-2 lambda} + 1)) + b0).
  Same prior draw, float64: 1e-9 (the sampler finds t(lambda) by bisection; measured 0). On
  this long step the intermediate point matters: r1 = 1/3 moves the result by 180."""
  sde, b0, b1 = VPSDE(), 0.1, 20.0
  mixture = ring_mixture()
  score_fn = exact_score_fn(mixture, sde)
  x, nfe = sample(sde, score_fn, (64, 2), seed=5, method='dpm_solver', variant='singlestep',
                  order=2, steps=2, noise_removal=False, eps=1e-3)
  assert nfe == 2

  def alpha_sigma_lambda(t):
    log_alpha = -(b1 - b0) * t ** 2 / 4 - b0 * t / 2
    sigma = math.sqrt(-math.expm1(2 * log_alpha))
    return math.exp(log_alpha), sigma, log_alpha - math.log(sigma)

  def t_of_lambda(lam):
    log_term = math.log1p(math.exp(-2 * lam))
    return 2 * log_term / (math.sqrt(b0 ** 2 + 2 * (b1 - b0) * log_term) + b0)

  def eps_theta(x, t):
    return -alpha_sigma_lambda(t)[1] * score_fn(x, torch.full((len(x),), t))

  t_prev, t_i, r1 = 1.0, 1e-3, 0.5
  a_prev, _, lam_prev = alpha_sigma_lambda(t_prev)
  a_i, s_i, lam_i = alpha_sigma_lambda(t_i)
  h = lam_i - lam_prev
  s_mid = t_of_lambda(lam_prev + r1 * h)
  a_mid, sig_mid, _ = alpha_sigma_lambda(s_mid)
  x_prev = torch.randn(64, 2, generator=torch.Generator().manual_seed(5))
  e_prev = eps_theta(x_prev, t_prev)
  u = a_mid / a_prev * x_prev - sig_mid * (math.exp(r1 * h) - 1) * e_prev
  x_ref = (a_i / a_prev * x_prev - s_i * (math.exp(h) - 1) * e_prev
           - s_i / (2 * r1) * (math.exp(h) - 1) * (eps_theta(u, s_mid) - e_prev))
  assert torch.allclose(x, x_ref, atol=1e-9, rtol=0), (x - x_ref).abs().max().item()


def terminal_errors(variant, order, budgets):
  """Mean |x_{t_end} - exact flow of x_T| over 200 draws on Gaussian data (float64)."""
  sde, gaussian = VPSDE(), gaussian_data()
  score_fn = exact_score_fn(gaussian, sde)
  x_T = sde.prior_sampling((200, 4), generator=torch.Generator().manual_seed(1))
  exact = exact_flow(gaussian, sde, x_T, sde.T, 1e-3)
  errors = []
  for budget in budgets:
    x, _ = sample(sde, score_fn, (200, 4), method='dpm_solver', variant=variant, order=order,
                  steps=budget, noise_removal=False, time_schedule='quadratic')
    errors.append((x - exact).norm(dim=1).mean().item())
  return errors


@pytest.mark.parametrize('variant,order', [('singlestep', 1), ('singlestep', 2), ('singlestep', 3),
                                           ('multistep', 1), ('multistep', 2), ('multistep', 3)])
def test_measured_order(variant, order):
  """On Gaussian data the probability-flow ODE is solved exactly (tests/gaussian_flow.py), so
  the terminal error is the solver's alone: minus its log-log slope against the budget, over
  ORDER_BUDGETS on the 'quadratic' schedule, is the theoretical order within 0.3 (measured:
  singlestep 0.99 / 2.03 / 3.24, multistep 0.99 / 2.11 / 3.16).

  Not on 'logsnr': with equal steps in lambda the leading error terms of the Taylor-exact
  multistep 3M nearly cancel along this smooth flow (3M measures 4.1 there); steps that vary
  in lambda show the order of the method rather than of this problem."""
  errors = terminal_errors(variant, order, ORDER_BUDGETS)
  assert abs(-loglog_slope(ORDER_BUDGETS, errors) - order) <= 0.3, errors


# The mixtures the solvers' tests sample: the 2-D ring of narrow modes, and 16-D anisotropic.
MIXTURES = {'ring': ring_mixture, 'random16': lambda: random_mixture(16)}
# The schedule the solvers' mixture tests run on: the one these mixtures are sampled best on
# (benchmarks/sampler_quality.py). The registry's defaults are chosen for trained networks
# too, and DPM-Solver++ and UniPC default to logsnr, where at 10 evaluations the third-order
# methods' mode means in 16-D are off by up to 0.51 (0.12 allowed here).
SCHEDULE = 'quadratic'
# assert_matches' allowances for DPM-Solver(++) and UniPC by budget: the largest errors measured
# with 20000 draws over the settings tested below (bias plus a third of the Monte-Carlo error
# of 2000 draws), rounded up. 10 evaluations leave 3 steps of DPM-Solver-3 (cov 0.47 on the
# ring) or 9 of 2M / UniPC (0.34, 0.38 on random16); at 20 the largest is 0.17 (ring), at 50
# the errors are Monte-Carlo noise (cov 0.056, mean 0.021).
DPM_ALLOWANCE = {10: dict(weight=0.02, mean=0.12, cov=0.6),
                 20: dict(weight=0.01, mean=0.06, cov=0.25),
                 50: dict(weight=0.01, mean=0.03, cov=0.05)}
# The third-order multistep methods at 10 evaluations pass through lower_order_final only: with
# few steps the last ones are long in lambda, and extrapolating x0_hat by a quadratic over them
# blurs the modes (relative covariance error 3.3 on the ring for 3M, 3.8 for UniPC-3, without it).
SETTINGS = {'fast-3': dict(method='dpm_solver', variant='singlestep', order=3),
            '2M': dict(method='dpm_solver', variant='multistep', order=2),
            '3M': dict(method='dpm_solver', variant='multistep', order=3),
            'unipc-bh2-3': dict(method='unipc', variant='bh2', order=3),
            'unipc-bh2-2': dict(method='unipc', variant='bh2', order=2),
            'unipc-bh1-3': dict(method='unipc', variant='bh1', order=3)}


@pytest.mark.parametrize('mixture_name', list(MIXTURES))
@pytest.mark.parametrize('steps', [10, 20, 50])
@pytest.mark.parametrize('settings', list(SETTINGS))
def test_samples_match_mixture(mixture_name, settings, steps):
  """DPM-Solver(++) and UniPC with the exact mixture score (default noise_removal and eps,
  SCHEDULE): 2000 draws match the mixture's weights and per-mode moments within Monte-Carlo
  error plus the discretization allowance DPM_ALLOWANCE (gmm_oracle.assert_matches)."""
  mixture, sde = MIXTURES[mixture_name](), VPSDE()
  x, nfe = sample(sde, exact_score_fn(mixture, sde), (2000, mixture.dim), steps=steps,
                  time_schedule=SCHEDULE, **SETTINGS[settings])
  assert nfe == steps
  assert_matches(mixture, x, **DPM_ALLOWANCE[steps])


@pytest.mark.parametrize('field,value', [('variant', 'bh1'), ('variant', '2m'), ('order', 4),
                                         ('order', -1)])
def test_bad_settings_raise_config_error(field, value):
  config = get_default_config().sampling
  config.update({'method': 'dpm_solver', 'steps': 10, field: value})
  with pytest.raises(ConfigError, match=str(value)):
    get_sampler(config, VPSDE(), (4, 2))
