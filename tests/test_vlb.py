"""The DDPM variational bound against exact answers: Gaussian data with its optimal eps."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from evaluation.vlb import discretized_gaussian_log_prob, vlb
from models.score_fn import chain_eps_fn
from sde_lib import VPSDE
from sde_lib.reverse_variance import chain_step_variance
from sde_lib.time_schedules import respaced_steps

MU, SIGMA, NUM_BINS = 0.2, 0.3, 256
WIDTH = 2 / (NUM_BINS - 1)


def quantize(x):
  return torch.round((x + 1) / WIDTH).clamp(0, NUM_BINS - 1) * WIDTH - 1


def gaussian_optimal_eps(sde, mu=MU, sigma=SIGMA, scale=1.0):
  """E[eps | x_i] for x0 ~ N(mu, sigma^2 I) on the chain: x_i = sqrt(abar) x0 + sqrt(1-abar) eps
  is Gaussian, so E[eps | x_i] = Cov(eps, x_i) / Var(x_i) (x_i - E x_i)
  = sqrt(1 - abar) / (abar sigma^2 + 1 - abar) (x_i - sqrt(abar) mu); `scale` spoils it."""
  abar_all = sde.alphas_cumprod.double()

  def eps_fn(x, index):
    abar = abar_all[index].reshape(-1, *([1] * (x.dim() - 1)))
    return scale * (1 - abar).sqrt() / (abar * sigma ** 2 + 1 - abar) * (x - abar.sqrt() * mu), None

  return eps_fn


def exact_nll_bits(x0):
  """-log2 P(x0) / D for the discretized N(MU, SIGMA^2) the data are drawn from."""
  mean = torch.tensor(MU, dtype=torch.float64)
  return -discretized_gaussian_log_prob(x0, mean, SIGMA, NUM_BINS).sum(1) / (x0.shape[1] * math.log(2))


def test_bound_exceeds_the_exact_nll_for_both_variances():
  # Data: N(0.2, 0.3^2) quantized to 256 levels in [-1, 1], 200 samples x 64 dims, whose exact
  # NLL is known (~7.30 bits/dim). Measured gap (bound - NLL), +- one standard error ~0.006-0.02:
  #   fixedlarge ('beta'):      N=10: 0.33, N=100: 0.081, N=1000: 0.117
  #   fixedsmall ('beta_tilde'): N=10: 0.15, N=100: 1.68,  N=1000: 0.76
  # Both stay bounds. fixedlarge's decoder variance is beta-tilde_2 (Ho et al.'s choice, made for
  # sharp image decoders), below the ~beta_1 this continuous Gaussian's posterior wants, which
  # is what keeps its gap at ~0.1 for N = 1000. beta-tilde is the optimal reverse variance for a
  # point mass, beta for data much wider than the noise (Ho et al. sec. 3.2).
  x0 = quantize(MU + SIGMA * torch.randn(200, 64, generator=torch.Generator().manual_seed(0),
                                        dtype=torch.float64))
  exact = exact_nll_bits(x0)
  gaps = {}
  for n in (10, 100, 1000):
    for variance in ('beta', 'beta_tilde'):
      sde = VPSDE(N=n)
      result = vlb(gaussian_optimal_eps(sde), sde, x0, variance=variance, num_bins=NUM_BINS,
                   generator=torch.Generator().manual_seed(1), progress=False)
      assert torch.allclose(result.total, result.prior + result.terms.sum(1))
      gap = result.total - exact
      stderr = gap.std() / math.sqrt(len(gap))
      assert gap.mean() > -3 * stderr          # a bound: never below the NLL beyond MC noise
      gaps[n, variance] = gap.mean()
  assert gaps[10, 'beta'] > 0.25 and gaps[100, 'beta'] < gaps[10, 'beta'] / 3
  assert gaps[1000, 'beta'] < 0.2              # 0.117 measured, 5 standard errors of slack
  assert gaps[100, 'beta_tilde'] > 10 * gaps[100, 'beta']


def ho_reverse_variances(n, model_var_type):
  """Ho et al.'s model variances, transcribed from their definition (diffusion_utils_2.py):
  betas = linspace(1e-4, 0.02, 1000) scaled to n steps; posterior variance
  beta_t (1 - abar_{t-1}) / (1 - abar_t); 'fixedlarge' = append(posterior_variance[1], betas[1:]),
  'fixedsmall' = the posterior variance clipped at t = 1 to posterior_variance[1]."""
  betas = torch.linspace(1e-4 * 1000 / n, 0.02 * 1000 / n, n, dtype=torch.float64)
  abar = torch.cumprod(1 - betas, 0)
  abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
  posterior = betas * (1 - abar_prev) / (1 - abar)
  tail = betas[1:] if model_var_type == 'fixedlarge' else posterior[1:]
  return torch.cat([posterior[1:2], tail])


@pytest.mark.parametrize('variance,ho_name', [('beta', 'fixedlarge'), ('beta_tilde', 'fixedsmall')])
def test_reverse_variances_are_ho_et_al(variance, ho_name):
  """Each step's model variance, and the decoder term L_0 at step 1 against a direct scipy
  computation with Ho's variance there (posterior_variance[1] for both choices): 1e-9."""
  sde = VPSDE(N=1000)
  eps_fn = gaussian_optimal_eps(sde)
  x0 = quantize(MU + SIGMA * torch.randn(4, 5, generator=torch.Generator().manual_seed(3),
                                        dtype=torch.float64))
  result = vlb(eps_fn, sde, x0, variance=variance, num_bins=NUM_BINS,
               generator=torch.Generator().manual_seed(4), progress=False)
  ho_var = ho_reverse_variances(1000, ho_name)
  ours = chain_step_variance(sde.chain_arrays, torch.arange(1000), variance)
  assert torch.allclose(ours, ho_var, rtol=1e-9)
  # Replay the bound's first draw (step 1) and decode by hand.
  noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
  beta_1 = 1e-4
  x_1 = math.sqrt(1 - beta_1) * x0 + math.sqrt(beta_1) * noise
  mean = (x_1 - beta_1 / math.sqrt(beta_1) * eps_fn(x_1, torch.zeros(4, dtype=torch.long))[0]) / math.sqrt(1 - beta_1)
  std = math.sqrt(ho_var[0].item())
  lower = np.where(x0.numpy() > -1, x0.numpy() - WIDTH / 2, -np.inf)
  upper = np.where(x0.numpy() < 1, x0.numpy() + WIDTH / 2, np.inf)
  prob = norm.cdf((upper - mean.numpy()) / std) - norm.cdf((lower - mean.numpy()) / std)
  want = -np.log(prob).sum(1) / (5 * math.log(2))
  assert np.allclose(result.terms[:, 0].numpy(), want, rtol=1e-9)


@pytest.mark.parametrize('steps', [20, 7])
@pytest.mark.parametrize('variance', ['beta', 'beta_tilde'])
def test_each_term_matches_monte_carlo(variance, steps):
  # E_{x_t}[L_{t-1}] from the closed-form KLs vs a Monte-Carlo estimate that uses only forward
  # densities: draw x_{t-1} ~ q(x_{t-1} | x0), x_t ~ q(x_t | x_{t-1}) and average
  # log q(x_t | x_{t-1}) + log q(x_{t-1} | x0) - log q(x_t | x0) - log p(x_{t-1} | x_t)
  # (Bayes gives the posterior). Same for L_T against N(0, I). A spoiled eps (scale 0.8) makes
  # every term nonzero. 10000 draws each side; agreement within 4.5 combined standard errors.
  # On the 20-step chain and respaced to 7 of its steps S_k, where the forward kernel between
  # kept steps has a^2 = abar_{S_k} / abar_{S_{k-1}} and the model's variance is 1 - a^2
  # ('beta') or (1 - a^2)(1 - abar_{S_{k-1}}) / (1 - abar_{S_k}) (Nichol & Dhariwal eq. 19).
  sde = VPSDE(N=20)
  eps_fn = gaussian_optimal_eps(sde, scale=0.8)
  g = torch.Generator().manual_seed(2)
  x0 = quantize(MU + SIGMA * torch.randn(1, 3, generator=g, dtype=torch.float64)).expand(10000, 3)
  result = vlb(eps_fn, sde, x0, variance=variance, num_bins=NUM_BINS, steps=steps, generator=g,
               progress=False)
  kept = respaced_steps(sde.N, steps)
  assert result.terms.shape == (len(x0), steps)
  to_bits = 1 / (3 * math.log(2))
  abar = sde.alphas_cumprod.double()[kept]
  betas = 1 - abar / torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
  model_var = betas if variance == 'beta' else betas * (1 - abar.roll(1)) / (1 - abar)

  def logn(x, mean, var):
    return (-0.5 * ((x - mean) ** 2 / var + torch.log(2 * math.pi * var))).sum(1)
  for i in range(1, steps):
    x_prev = abar[i - 1].sqrt() * x0 + (1 - abar[i - 1]).sqrt() * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    x_t = (1 - betas[i]).sqrt() * x_prev + betas[i].sqrt() * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    index = torch.full((len(x0),), kept[i])
    model_mean = (x_t - betas[i] / (1 - abar[i]).sqrt() * eps_fn(x_t, index)[0]) / (1 - betas[i]).sqrt()
    log_ratio = (logn(x_t, (1 - betas[i]).sqrt() * x_prev, betas[i]) + logn(x_prev, abar[i - 1].sqrt() * x0, 1 - abar[i - 1])
                 - logn(x_t, abar[i].sqrt() * x0, 1 - abar[i]) - logn(x_prev, model_mean, model_var[i]))
    mc = log_ratio * to_bits
    closed = result.terms[:, i]
    stderr = math.sqrt(mc.var() / len(mc) + closed.var() / len(closed))
    assert abs(mc.mean() - closed.mean()) < 4.5 * stderr + 1e-9, i
  x_n = abar[-1].sqrt() * x0 + (1 - abar[-1]).sqrt() * torch.randn(x0.shape, generator=g, dtype=torch.float64)
  mc_prior = (logn(x_n, abar[-1].sqrt() * x0, 1 - abar[-1]) - logn(x_n, torch.zeros(()), torch.ones(()))) * to_bits
  assert abs(mc_prior.mean() - result.prior[0]) < 4.5 * mc_prior.std() / math.sqrt(len(mc_prior))


def test_prior_term_is_the_closed_form_kl_on_a_short_chain():
  """L_T = KL(q(x_N | x0) || N(0, I)) / (D log 2) with q(x_N | x0) = N(sqrt(abar_N) x0,
  (1 - abar_N) I): per coordinate 1/2 (abar_N x0^2 - abar_N - log(1 - abar_N)) nats. On DDPM
  chains abar_N ~ 4e-5 and the mean of q(x_N | x0) hardly matters, so here a chain with
  abar_N far from 0: beta_max = 1, N = 10, Ho et al.'s betas linspace(0.1 / N, 1 / N, N) and
  abar_N = prod(1 - beta_i) = 0.565, computed from the betas, not read from the chain. Float64
  arithmetic on the same numbers: 1e-12."""
  sde = VPSDE(beta_min=0.1, beta_max=1.0, N=10)
  abar_n = float(np.prod(1 - np.linspace(0.01, 0.1, 10)))
  assert abs(abar_n - 0.565) < 1e-3
  x0 = torch.tensor([[-1.0, -0.2, 0.4, 1.0], [0.0, 0.6, -0.8, 0.2]], dtype=torch.float64)
  result = vlb(gaussian_optimal_eps(sde), sde, x0, num_bins=NUM_BINS,
               generator=torch.Generator().manual_seed(0), progress=False)
  nats = 0.5 * (abar_n * x0 ** 2 - abar_n - math.log(1 - abar_n))
  assert torch.allclose(result.prior, nats.sum(1) / (4 * math.log(2)), rtol=1e-12, atol=0)


def test_decoder_probabilities_sum_to_one():
  # Every grid point's bin mass under N(mean, std^2), for several means and widths, including
  # means outside [-1, 1] and std much smaller / larger than a bin: total 1 to 1e-12 (float64).
  grid = torch.linspace(-1, 1, NUM_BINS, dtype=torch.float64)
  for mean in (-1.3, -0.2, 0.0, 0.7, 1.5):
    for std in (1e-3, 1e-2, 0.5, 3.0):
      logp = discretized_gaussian_log_prob(grid, torch.tensor(mean, dtype=torch.float64), std, NUM_BINS)
      assert abs(logp.exp().sum().item() - 1) < 1e-12


def test_decoder_against_scipy_and_in_the_tails():
  # Bin masses against scipy's normal CDF (an independent implementation), relative 1e-9; in
  # the far tail (bin 40 std away, mass ~1e-350, underflow in a naive Phi(b) - Phi(a)) the log
  # mass must stay finite and match scipy's logcdf-based value.
  x0 = -1 + WIDTH * torch.tensor([0, 64, 128, 200, 255], dtype=torch.float64)   # grid points
  mean, std = torch.tensor(0.1, dtype=torch.float64), 0.2
  got = discretized_gaussian_log_prob(x0, mean, std, NUM_BINS).exp()
  lower = torch.where(x0 > -1, x0 - WIDTH / 2, torch.tensor(-math.inf, dtype=torch.float64))
  upper = torch.where(x0 < 1, x0 + WIDTH / 2, torch.tensor(math.inf, dtype=torch.float64))
  want = norm.cdf((upper.numpy() - 0.1) / std) - norm.cdf((lower.numpy() - 0.1) / std)
  assert torch.allclose(got, torch.as_tensor(want), rtol=1e-9)
  x_far = -1 + WIDTH * 191                                                        # ~0.498
  far = discretized_gaussian_log_prob(torch.tensor([x_far], dtype=torch.float64),
                                      torch.tensor(-0.3, dtype=torch.float64), 0.02, NUM_BINS)
  a, b = (x_far - WIDTH / 2 + 0.3) / 0.02, (x_far + WIDTH / 2 + 0.3) / 0.02
  want_far = norm.logsf(a) + math.log(-math.expm1(norm.logsf(b) - norm.logsf(a)))
  assert math.isfinite(far.item()) and abs(far.item() - want_far) < 1e-6 * abs(want_far)


def test_chain_eps_fn_queries_the_chain_steps():
  # A discrete network must see the integer step i; a continuous one the label t_i (N - 1)
  # with t_i = (i + 1) / N (Ho et al.'s t = i + 1 of 1..N, scaled to [0, 1]). A 'std_score'
  # network outputs -eps, so eps_fn flips its sign.
  sde = VPSDE(N=10)
  labels_seen = []
  net = lambda x, labels: labels_seen.append(labels) or torch.ones_like(x)
  x, index = torch.zeros(3, 2), torch.tensor([0, 4, 9])
  assert torch.equal(chain_eps_fn(sde, net, continuous=False)(x, index)[0], torch.ones(3, 2))
  assert torch.equal(labels_seen[-1], index.float())
  out, v = chain_eps_fn(sde, net, continuous=True, parameterization='std_score')(x, index)
  assert torch.equal(out, -torch.ones(3, 2)) and v is None
  assert torch.allclose(labels_seen[-1], (index + 1).float() / 10 * 9)


def test_rejects_unknown_variance_and_learned_without_output():
  with pytest.raises(ValueError, match='reverse variance'):
    vlb(lambda x, i: (x, None), VPSDE(N=5), torch.zeros(1, 2), variance='bogus')
  with pytest.raises(ValueError, match='model.learn_variance'):
    vlb(lambda x, i: (x, None), VPSDE(N=5), torch.zeros(1, 2), variance='learned', progress=False)
