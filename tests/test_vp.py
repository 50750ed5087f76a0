"""The VP-SDE and its DDPM chain are one process (Ho et al. 2020; Song et al. 2021)."""
import math

import pytest
import torch

from sde_lib import VPSDE


def test_ddpm_chain_is_ho_et_al():
  sde = VPSDE()
  # Ho et al. sec. 4: beta_1 = 1e-4 ... beta_T = 0.02, linear, T = 1000 (exact constants;
  # float64 linspace: 1e-12, measured exact).
  assert sde.discrete_betas[0].item() == pytest.approx(1e-4, rel=1e-12)
  assert sde.discrete_betas[-1].item() == pytest.approx(0.02, rel=1e-12)
  assert torch.allclose(sde.discrete_betas[1:] - sde.discrete_betas[:-1],
                        torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64), atol=1e-12)
  # alphabar_T of DDPM's chain is 4.04e-5 (product computed independently in float64: 1e-12,
  # measured 3e-15).
  expected = torch.prod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)).item()
  assert sde.alphas_cumprod[-1].item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize('N', [1000, 2000, 4000])
def test_chain_matches_continuous_marginal_within_o_one_over_n(N):
  """log alphabar_i of the chain vs -int_0^{(i+1)/N} beta, gap bounded by C/N.

  The chain's beta_i = beta(i/(N-1))/N is a Riemann sum of int beta off its grid by at most
  (beta_max - beta_min)/N per unit time, and -log(1-b) = b + b^2/2 + ... adds at most
  sum b_i^2/2 / (1 - b_max) <= beta_max^2 / (2N (1 - beta_max/N)).  So C = dbeta + beta_max^2/2 (1+).
  """
  sde = VPSDE(N=N)
  t = torch.arange(1, N + 1, dtype=torch.float64) / N
  gap = (torch.log(sde.alphas_cumprod.double()) - sde.log_alphabar(t)).abs()
  bound = ((sde.beta_max - sde.beta_min) + sde.beta_max ** 2 / (2 * (1 - sde.beta_max / N))) / N
  assert gap.max().item() <= bound
  # ... and the gap really is first order: it halves when N doubles, up to its own O(1/N^2)
  # term (measured 5.3 / N relative: 0.53% at N = 1000, 0.13% at 4000; the float64 chain
  # constants add ~1e-13), so 6 / N.
  gap_2n = (torch.log(VPSDE(N=2 * N).alphas_cumprod.double()[1::2]) - sde.log_alphabar(t)).abs()
  assert gap_2n.max().item() == pytest.approx(gap.max().item() / 2, rel=6 / N)


def test_simulated_ddpm_chain_has_the_alphas_cumprod_marginal():
  """x_{i+1} = sqrt(1 - beta_i) x_i + sqrt(beta_i) z with Ho's betas from x_0 = 1 ends at
  N(sqrt(abar_N), 1 - abar_N) (20000 paths: 5 standard errors on mean and std), which is
  the continuous marginal at t = 1 up to the O(1/N) gap (here |d log abar| = 0.07 < 0.25)."""
  sde, n = VPSDE(), 20000
  g = torch.Generator().manual_seed(0)
  x = torch.ones(n, dtype=torch.float64)
  for beta in torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64):
    x = (1 - beta).sqrt() * x + beta.sqrt() * torch.randn(n, generator=g, dtype=torch.float64)
  abar = sde.alphas_cumprod[-1].item()
  assert abs(x.mean().item() - math.sqrt(abar)) < 5 / math.sqrt(n)
  assert abs(x.std().item() - math.sqrt(1 - abar)) < 5 / math.sqrt(2 * n)


def test_posterior_is_gaussian_conditioning():
  """q(x_{t-1} | x_t, x_0) from the joint Gaussian of (x_{t-1}, x_t) given x_0."""
  sde = VPSDE()
  i = torch.arange(1, sde.N)
  beta = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)[i]   # Ho et al.'s chain
  alpha = 1 - beta
  abar_prev = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)[i - 1]
  # x_{t-1} = sqrt(abar_prev) x0 + sqrt(1-abar_prev) e1, x_t = sqrt(alpha) x_{t-1} + sqrt(beta) e2
  v11 = 1 - abar_prev
  v12 = alpha.sqrt() * v11
  v22 = alpha * v11 + beta
  x0, xt = 0.7, -1.3
  mu1, mu2 = abar_prev.sqrt() * x0, (alpha * abar_prev).sqrt() * x0
  cond_mean = mu1 + v12 / v22 * (xt - mu2)
  cond_var = v11 - v12 ** 2 / v22
  ours_mean = sde.chain_arrays.posterior_mean_coef1[i].double() * x0 + sde.chain_arrays.posterior_mean_coef2[i].double() * xt
  # float64 chain constants (sde_lib/vp.py), two routes to the same numbers: 1e-11 relative
  # (measured 3e-13, round-off of the cumulative product and 1 - abar).
  assert torch.allclose(ours_mean, cond_mean, rtol=1e-11, atol=0)
  assert torch.allclose(sde.chain_arrays.posterior_variance[i], cond_var, rtol=1e-11, atol=0)
  # beta-tilde is strictly below beta (they differ most at small t), so mixing them up shows.
  assert (sde.chain_arrays.posterior_variance[i] < sde.discrete_betas[i]).all()


def test_cosine_schedule_is_nichol_dhariwal():
  """alphabar(t) = cos^2((t+s)/(1+s) pi/2) / cos^2(s/(1+s) pi/2), s = 0.008, below the cap."""
  sde = VPSDE(schedule='cosine')
  t = torch.linspace(0, 0.99, 100, dtype=torch.float64)
  f = lambda u: torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
  assert torch.allclose(torch.exp(sde.log_alphabar(t)), f(t) / f(torch.zeros(1, dtype=torch.float64)),
                        rtol=1e-10)
  # beta(t) = -d log alphabar / dt, checked by central differences (O(h^2) = 1e-8).
  h = 1e-4
  tt = torch.linspace(0.1, 0.9, 9, dtype=torch.float64)
  numeric = -(sde.log_alphabar(tt + h) - sde.log_alphabar(tt - h)) / (2 * h)
  assert torch.allclose(sde.beta(tt), numeric, rtol=1e-6)
  # Their chain: beta_i = min(1 - alphabar_i / alphabar_{i-1}, 0.999); here too.
  i = torch.arange(1, 990)
  ratio = 1 - f(i.double() / 1000) / f((i.double() - 1) / 1000)
  assert torch.allclose(sde.discrete_betas[i - 1].double(), ratio.clamp(max=0.999), rtol=1e-5)
  assert sde.discrete_betas.max() <= 0.999 and torch.isfinite(sde.alphas_cumprod).all()


@pytest.mark.parametrize('N', [5, 10, 20])
def test_few_step_chain_is_finite_and_exact(N):
  """Ho's linspace(beta_min/N, beta_max/N, N) exceeds 1 for N <= 20; the derived chain's
  alphabar equals the continuous alphabar at t = i/N exactly (up to float32)."""
  sde = VPSDE(N=N)
  assert ((sde.discrete_betas > 0) & (sde.discrete_betas < 1)).all()
  t = torch.arange(1, N + 1, dtype=torch.float64) / N
  assert torch.allclose(sde.alphas_cumprod.double(), torch.exp(sde.log_alphabar(t)), rtol=1e-5, atol=1e-12)
