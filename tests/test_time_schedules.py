"""The time grids of sde_lib/time_schedules.py (the fast samplers' schedules, the chain
spacings) and lambda(t) with its inverse, against closed forms and the papers' stated steps."""
import pytest
import torch

from sde_lib.time_schedules import (KARRAS_RHO, chain_times, ddim_steps, respaced_steps,
                                    sampling_times)
from configs.default import get_default_config
from samplers import get_sampler
from sde_lib import DiscreteChain, SubVPSDE, VESDE, VPSDE
from utils.errors import ConfigError

SDES = {'vp': VPSDE(), 'vp_cosine': VPSDE(schedule='cosine'), 'subvp': SubVPSDE(), 've': VESDE()}


def linear_vp_time_of_lambda(lam, beta_min=0.1, beta_max=20.0):
  """Closed-form inverse for the linear VP schedule (Lu et al. 2022, appendix): with
  log(1 + e^{-2 lambda}) = B(t) = beta_min t + (beta_max - beta_min) t^2 / 2, solve the quadratic."""
  log_term = torch.log1p(torch.exp(-2 * lam))
  return 2 * log_term / (beta_min +
                         torch.sqrt(beta_min ** 2 + 2 * (beta_max - beta_min) * log_term))


def test_time_of_log_snr_matches_the_linear_vp_closed_form():
  """Bisection against the quadratic's root: agreement to 1e-12 (bisection stops at float64's
  resolution; the closed form loses a few ulps in log1p and sqrt)."""
  lam = torch.linspace(-5.0, 9.0, 57, dtype=torch.float64)
  assert torch.allclose(VPSDE().time_of_log_snr(lam), linear_vp_time_of_lambda(lam), atol=1e-12, rtol=0)


def test_ve_log_snr_is_minus_log_sigma_and_inverts():
  """VE: m = 1, so lambda = -log sigma(t) and t = log(sigma / sigma_min) / log(sigma_max / sigma_min)."""
  sde = VESDE()
  t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
  sigma = 0.01 * 5000.0 ** t
  assert torch.allclose(sde.log_snr(t), -torch.log(sigma), atol=1e-12)
  assert torch.allclose(sde.time_of_log_snr(-torch.log(sigma)), t, atol=1e-12)


@pytest.mark.parametrize('sde', list(SDES.values()), ids=list(SDES))
@pytest.mark.parametrize('name', ['uniform', 'quadratic', 'logsnr', 'karras'])
def test_each_schedule_is_uniform_in_its_own_variable(sde, name):
  """uniform: t; quadratic: sqrt(t); logsnr: lambda; karras: sigma^(1/rho), sigma = exp(-lambda).
  Each must have equal increments (to 1e-9 of the range: bisection and float64 round-off) and
  run exactly from T to t_end."""
  t_end, steps = 1e-3, 12
  ts = sampling_times(sde, name, steps, t_end)
  assert ts.dtype == torch.float64 and len(ts) == steps + 1
  assert ts[0] == sde.T and ts[-1] == t_end and (ts[1:] < ts[:-1]).all()
  variable = {'uniform': ts, 'quadratic': ts.sqrt(), 'logsnr': sde.log_snr(ts),
              'karras': torch.exp(-sde.log_snr(ts)) ** (1 / KARRAS_RHO)}[name]
  steps_taken = variable[1:] - variable[:-1]
  span = (variable[-1] - variable[0]).abs()
  assert (steps_taken - steps_taken.mean()).abs().max() <= 1e-9 * span


def test_ddim_chain_spacings_are_song_et_al_s():
  """DDIM's appendix D.2: 'uniform' takes chain steps 0, c, 2c, ... (c = N // S), 'quadratic'
  floor of (i sqrt(0.8 N) / (S - 1))^2; times are then chain_time of those steps, highest first."""
  sde = VPSDE()
  chain = DiscreteChain(sde)
  ts = chain_times(chain, 'uniform', 9)   # 10 chain steps
  assert torch.allclose(ts, torch.tensor([(i + 1) / 1000 for i in range(900, -1, -100)], dtype=torch.float64))
  quad = chain_times(chain, 'quadratic', 9)
  # The official code's 'quad' sequence for 1000 steps and 10 timesteps (ermongroup/ddim,
  # runners/diffusion.py: int of np.linspace(0, sqrt(0.8 N), S) ** 2), as literals: i^2 800 / 81
  # rounded down, checked in exact fractions.
  expected = [0, 9, 39, 88, 158, 246, 355, 483, 632, 800]
  assert torch.allclose(quad, torch.tensor([(i + 1) / 1000 for i in reversed(expected)], dtype=torch.float64))


def test_nichol_dhariwal_respacing_and_ddim_spacing_keep_the_papers_steps():
  """10 of 1000 steps. Nichol & Dhariwal 2021 sec. 4: "K evenly spaced real numbers between 1
  and T (inclusive)", rounded: 1 + 111 i, i.e. 0-based 0, 111, ..., 999, the first and the last
  step both kept. DDIM (Song et al. 2021a, appendix D.2, tau_i = c i; its code's stride
  c = N // S = 100): 0, 100, ..., 900, never the last step. A DiscreteChain's PC grid is on the
  first, its times t_i = (i + 1) / 1000 then the data time 0; 'ddim' on a chain on the second."""
  assert respaced_steps(1000, 10) == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]
  assert ddim_steps('uniform', 1000, 10) == [0, 100, 200, 300, 400, 500, 600, 700, 800, 900]
  chain = DiscreteChain(VPSDE())
  respaced = [1.0 - 0.111 * k for k in range(10)] + [0.0]
  assert torch.allclose(chain.time_grid(10).double(), torch.tensor(respaced, dtype=torch.float64))
  uniform = torch.tensor([0.901 - 0.1 * k for k in range(10)], dtype=torch.float64)
  assert torch.allclose(chain_times(chain, 'uniform', 9), uniform)


@pytest.mark.parametrize('method,solver', [('ode', dict(ode_method='euler')),
                                           ('sde', dict(sde_solver='euler'))])
def test_pc_grid_and_the_fixed_step_solvers_take_the_stated_steps(method, solver):
  """4 steps from T = 1 to eps = 0.001 are 0.999 / 4 = 0.24975 long: the PC grid for 5 score
  evaluations is 1, 0.75025, 0.5005, 0.25075, 0.001, then 0, where its last step lands; the
  Euler solvers of torchdiffeq ('ode') and torchsde ('sde') given 4 steps evaluate the score at
  exactly the first four of those times (torchsde once more at T, checking the drift's shape)."""
  sde = VPSDE()
  stated = [1.0, 0.75025, 0.5005, 0.25075, 0.001]
  assert torch.allclose(sde.time_grid(5, 1e-3), torch.tensor(stated + [0.0]), atol=1e-7, rtol=0)
  seen = []

  def score_fn(x, t):
    seen.append(float(t[0]))
    return -x

  config = get_default_config().sampling
  config.update(dict(method=method, steps=4, eps=1e-3, noise_removal=False, **solver))
  get_sampler(config, sde, (2, 1))(score_fn, generator=torch.Generator().manual_seed(0), progress=False)
  assert sorted(set(seen), reverse=True) == pytest.approx(stated[:4], abs=1e-6)


def test_bad_schedules_are_config_errors():
  sde = VPSDE()
  with pytest.raises(ConfigError, match='time_schedule'):
    sampling_times(sde, 'cubic', 10, 1e-3)
  with pytest.raises(ConfigError, match='eps'):
    sampling_times(sde, 'logsnr', 10, 0.0)
  chain = DiscreteChain(VPSDE(N=10))
  with pytest.raises(ConfigError, match='only 10'):
    chain_times(chain, 'uniform', 10)
  with pytest.raises(ConfigError, match='chain'):
    chain_times(chain, 'karras', 5)
  with pytest.raises(ConfigError, match='repeats'):
    chain_times(chain, 'quadratic', 8)
