"""benchmarks/diffusers_samplers.py: diffusers' schedulers run our SDE's chain with our score."""
import pytest
import torch

pytest.importorskip('diffusers')
from benchmarks.diffusers_samplers import marginal_betas, sample, scheduler  # noqa: E402
from sde_lib.gaussian_mixture import GaussianMixture
from sde_lib.gaussian_mixture import exact_score_fn  # noqa: E402
from sde_lib import SubVPSDE, VPSDE  # noqa: E402


@pytest.mark.parametrize('name,setting',
                         [('ddim', 'leading'), ('dpm_solver_multistep', 'karras 2M')])
def test_scheduler_chain_is_the_vp_marginal_at_the_chain_times(name, setting):
  """alphas_cumprod[k] = exp(-int_0^t beta) = exp(-(0.1 t + 19.9 t^2 / 2)) at t = (k + 1) / 1000,
  the linear VP-SDE's marginal in closed form: relative 2e-6, float32 rounding of the up to 1000
  factors diffusers multiplies (6e-8 each, a random walk: sqrt(1000) 6e-8 = 1.9e-6). Its
  sqrt(1 - alphas_cumprod) is our s(t_k) to 3e-4 only: float32's 1 - alphabar loses 4 digits
  at alphabar = 1 - 1e-4 (6e-8 / 1e-4 = 6e-4 on s^2, half on s)."""
  sched = scheduler(name, VPSDE(), setting)
  t = torch.arange(1, 1001, dtype=torch.float64) / 1000
  abar = torch.exp(-(0.1 * t + 19.9 * t ** 2 / 2))
  assert torch.allclose(sched.alphas_cumprod.double(), abar, rtol=2e-6, atol=0)
  assert torch.allclose((1 - sched.alphas_cumprod.double()).sqrt(), (1 - abar).sqrt(), rtol=3e-4,
                        atol=0)


def test_the_sdes_own_ddpm_chain_would_not_do():
  """Why the betas are derived from the marginal: DDPM's linspace(1e-4, 0.02) chain misses
  alphabar(t_k) by 6.5% near T (O(1/N) per step, accumulated)."""
  sde = VPSDE()
  t = sde.chain_time(torch.arange(sde.N)).double()
  gap = (sde.alphas_cumprod / sde.marginal_coeffs(t)[0] ** 2 - 1).abs().max().item()
  assert gap > 0.05


def test_non_vp_sdes_have_no_diffusers_chain():
  with pytest.raises(ValueError, match='variance-preserving'):
    marginal_betas(SubVPSDE())


@pytest.mark.parametrize('name,setting', [
    ('ddim', 'leading'), ('ddim', 'trailing'), ('ddim', 'linspace'),
    ('dpm_solver_multistep', 'linspace 2M'), ('dpm_solver_multistep', 'trailing 2M'),
    ('dpm_solver_multistep', 'linspace 3M')])
def test_a_point_mass_is_reached_exactly_in_few_steps(name, setting):
  """For data at one point mu, x0_hat(x, t) = mu for every x and t, so DDIM and DPM-Solver++
  (data prediction: every difference of x0_hat is 0) land on mu from any x_T in any number of
  steps, if and only if the scheduler reads eps at the noise level the score was taken at: a
  time map or chain off by one step leaves noise of order s(t_0) = 0.01. Tolerance 1e-4: the
  up to 2e-4 relative float32 error of diffusers' s near t = 0 times |x - m mu| (<= 0.3) at the
  last evaluation, where DDIM 'linspace' has x off its grid (measured 2e-5). 10 steps divide
  1000: DDIM 'trailing' at 7 ends at step 0 (t = 1e-3), not at the data, keeping noise 0.01.
  Each timestep is one evaluation, counted by the score itself."""
  sde = VPSDE()
  mu = torch.tensor([[1.5, -0.5, 2.0]], dtype=torch.float64)
  point = GaussianMixture([1.0], mu, torch.zeros(1, 3, 3, dtype=torch.float64))
  score, calls = exact_score_fn(point, sde), []

  def counted(x, t):
    calls.append(1)
    return score(x, t)

  x_T = sde.prior_sampling((64, 3), generator=torch.Generator().manual_seed(0))
  x, nfe = sample(name, setting, sde, counted, x_T, steps=10)
  assert nfe == len(calls) == 10
  assert torch.allclose(x.double(), mu.expand(64, 3), atol=1e-4, rtol=0), \
      (x.double() - mu).abs().max().item()
