"""The probability-flow likelihood against exact densities (Gaussian data, Gaussian mixtures)."""
import math

import pytest
import torch

from sde_lib.gaussian_mixture import GaussianMixture, exact_score_fn, random_mixture
from samplers.likelihood import (DIVERGENCE_ESTIMATORS, bits_per_dim, likelihood, probe_divergence,
                                 unit_probes)
from sde_lib import VESDE, VPSDE

EPS = 1e-3


def corrected_logp(result, sde, mixture):
  """The ODE's log-likelihood with the prior N(0, prior_std^2 I) swapped for the true p_T, so
  that only the integration and divergence errors remain (the prior mismatch of a mixture
  with means ~2 is ~0.02 nats for the VP-SDE, ~0.06 for the VE-SDE)."""
  return result.logp - sde.prior_logp(result.z) + mixture.perturbed(sde, sde.T).log_prob(result.z)


def test_gaussian_data_exact_divergence():
  # Anisotropic Gaussian data, VP-SDE: every p_t is Gaussian. Measured error with the exact
  # divergence at rtol = atol = 1e-6: ~3e-5 nats (1e-5: ~2e-3; 1e-7: ~2e-6, i.e. roughly
  # linear in the tolerance), so 1e-3 leaves a 30x margin.
  cov = torch.tensor([[0.5, 0.2, 0.0], [0.2, 0.3, 0.1], [0.0, 0.1, 0.2]], dtype=torch.float64)
  data = GaussianMixture([1.0], [[1.0, -0.5, 0.3]], cov[None])
  sde = VPSDE()
  x = data.sample(8, generator=torch.Generator().manual_seed(0)).double()
  result = likelihood(exact_score_fn(data, sde), sde, x, eps=EPS, rtol=1e-6, atol=1e-6,
                      hutchinson='exact')
  truth = data.perturbed(sde, EPS).log_prob(x)
  assert torch.allclose(corrected_logp(result, sde, data), truth, atol=1e-3)
  # With the N(0, I) prior itself the error is the tiny KL(p_T || prior) of this data.
  assert torch.allclose(result.logp, truth, atol=2e-2)
  assert result.z.shape == x.shape and result.bpd is None


@pytest.mark.parametrize('sde', [VPSDE(), VESDE(), VPSDE(schedule='cosine')],
                         ids=['vp', 've', 'vp_cosine'])
def test_mixture_exact_divergence(sde):
  # Error vs rtol = atol (max over 16 points, exact divergence): VP 1e-5 -> 2e-3, 1e-6 -> 3e-5;
  # VE 1e-6 -> 2e-5; cosine VP 1e-6 -> 2e-3, 1e-7 -> 6e-5. At 1e-7, 1e-3 holds for all three.
  mixture = random_mixture(2)
  x = mixture.sample(16, generator=torch.Generator().manual_seed(1)).double()
  result = likelihood(exact_score_fn(mixture, sde), sde, x, eps=EPS, rtol=1e-7, atol=1e-7,
                      hutchinson='exact')
  truth = mixture.perturbed(sde, EPS).log_prob(x)
  assert torch.allclose(corrected_logp(result, sde, mixture), truth, atol=1e-3)


@pytest.mark.parametrize('hutchinson', ['gaussian', 'rademacher'])
def test_mixture_hutchinson_is_unbiased(hutchinson):
  # With one probe per solve the per-point error is a zero-mean random variable (std ~1.5
  # nats here, falling like 1/sqrt(n_probes): ~0.7 with 4, ~0.3 with 64). Its mean over 64
  # points must lie within 4 standard errors of 0; the solver's own error (~2e-3) is negligible.
  sde = VPSDE()
  mixture = random_mixture(2)
  x = mixture.sample(64, generator=torch.Generator().manual_seed(3)).double()
  result = likelihood(exact_score_fn(mixture, sde), sde, x, eps=EPS, rtol=1e-5, atol=1e-5,
                      hutchinson=hutchinson, generator=torch.Generator().manual_seed(4))
  err = corrected_logp(result, sde, mixture) - mixture.perturbed(sde, EPS).log_prob(x)
  stderr = err.std() / math.sqrt(len(err))
  assert abs(err.mean()) < 4 * stderr
  assert err.std() > 1e-2      # the estimate really is stochastic (the probes are used)


def test_more_probes_reduce_the_error():
  # The Hutchinson variance falls like 1/n_probes: 16 probes must cut the spread of the
  # per-point error well below a single probe's (expected ratio 1/4; asserted < 1/2).
  sde = VPSDE()
  mixture = random_mixture(2)
  x = mixture.sample(32, generator=torch.Generator().manual_seed(5)).double()
  truth = mixture.perturbed(sde, EPS).log_prob(x)
  spread = {}
  for n_probes in (1, 16):
    result = likelihood(exact_score_fn(mixture, sde), sde, x, eps=EPS, rtol=1e-5, atol=1e-5,
                        n_probes=n_probes, generator=torch.Generator().manual_seed(6))
    spread[n_probes] = (corrected_logp(result, sde, mixture) - truth).std()
  assert spread[16] < 0.5 * spread[1]


@pytest.mark.parametrize('hutchinson', ['gaussian', 'rademacher'])
def test_hutchinson_against_trace_of_a_linear_map(hutchinson):
  # For f(x) = A x, v^T A v has mean tr(A) and variance 2 ||S||_F^2 (Gaussian probes) or
  # 2 (||S||_F^2 - sum_i S_ii^2) (Rademacher), S = (A + A^T) / 2. The mean of 4000 probes must
  # be within 4 standard errors of tr(A), and the per-probe variance within 10% of the closed
  # form (the sample variance of 4000 draws has relative std ~ sqrt(2/4000) * kurtosis ~ 5%).
  a = torch.randn(5, 5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
  sym = (a + a.T) / 2
  var = 2 * (sym.pow(2).sum() - (sym.diagonal().pow(2).sum() if hutchinson == 'rademacher' else 0))
  n = 4000
  x = torch.randn(1, 5, dtype=torch.float64).repeat(n, 1)   # one probe per replica: n draws
  make_probes, _ = DIVERGENCE_ESTIMATORS[hutchinson]
  probes = make_probes(1, x, torch.Generator().manual_seed(8))
  draws = probe_divergence(lambda y: y @ a.T, x, probes, 'mean')[1]
  assert abs(draws.mean() - a.trace()) < 4 * math.sqrt(var / n)
  assert abs(draws.var() / var - 1) < 0.1


@pytest.mark.parametrize('hutchinson', ['gaussian', 'rademacher'])
def test_hutchinson_unbiased_on_the_flow_drift(hutchinson):
  # The nonlinear case: the PF drift of a 3-D mixture at t = 0.3, at 4 points. 2000 one-probe
  # estimates per point (the points replicated, so one backward pass draws them all) average
  # to the exact divergence within 4 standard errors (their spread / sqrt(2000)).
  sde = VPSDE()
  mixture = random_mixture(3)
  flow = sde.reverse(exact_score_fn(mixture, sde), probability_flow=True)
  x = mixture.sample(4, generator=torch.Generator().manual_seed(13)).double()
  _, exact = probe_divergence(lambda y: flow.sde(y, torch.full((4,), 0.3, dtype=torch.float64))[0],
                              x, unit_probes(1, x, None), 'sum')
  n = 2000
  replicas = x.repeat(n, 1)
  make_probes, reduce = DIVERGENCE_ESTIMATORS[hutchinson]
  probes = make_probes(1, replicas, torch.Generator().manual_seed(14))
  t = torch.full((len(replicas),), 0.3, dtype=torch.float64)
  _, draws = probe_divergence(lambda y: flow.sde(y, t)[0], replicas, probes, reduce)
  draws = draws.reshape(n, 4)
  stderr = draws.std(0) / math.sqrt(n)
  assert ((draws.mean(0) - exact).abs() < 4 * stderr).all()
  assert (stderr > 0).all()


def test_exact_divergence_is_the_jacobian_trace():
  # The 'exact' estimator against the trace of the full Jacobian of the PF drift of a
  # mixture, computed by torch.autograd.functional.jacobian; equal to rounding (1e-10).
  sde = VPSDE()
  mixture = random_mixture(3)
  flow = sde.reverse(exact_score_fn(mixture, sde), probability_flow=True)
  x = mixture.sample(4, generator=torch.Generator().manual_seed(9)).double()
  t = torch.full((4,), 0.3, dtype=torch.float64)
  _, div = probe_divergence(lambda y: flow.sde(y, t)[0], x, unit_probes(1, x, None), 'sum')
  for i in range(4):
    jac = torch.autograd.functional.jacobian(lambda y: flow.sde(y[None], t[:1])[0][0], x[i])
    assert abs(div[i] - jac.trace()) < 1e-10


def test_nfe_counts_score_evaluations():
  sde = VPSDE()
  mixture = random_mixture(2)
  score = exact_score_fn(mixture, sde)
  calls = []
  counted = lambda x, t: calls.append(1) or score(x, t)
  x = mixture.sample(4, generator=torch.Generator().manual_seed(10)).double()
  result = likelihood(counted, sde, x, eps=EPS, rtol=1e-4, atol=1e-4, hutchinson='exact')
  assert result.nfe == len(calls) > 0


def test_bits_per_dim_of_uniform_data():
  # Uniform dequantized data on [0, 1]^D has log-density 0; every one of 256 bins then has
  # probability 256^-D, i.e. exactly 8 bits/dim. The same data mapped to [-1, 1] has density
  # 2^-D there, and the scaler's Jacobian must give back the same 8 bits/dim.
  dim = 3072
  assert bits_per_dim(torch.zeros(2), dim, 256).tolist() == pytest.approx([8.0, 8.0], abs=1e-12)
  logp_centered = torch.full((2,), -dim * math.log(2))
  bpd = bits_per_dim(logp_centered, dim, 256, scaler=lambda v: 2 * v - 1)
  assert bpd.tolist() == pytest.approx([8.0, 8.0], abs=1e-12)


@pytest.mark.parametrize('scaler_name,num_bins', [('identity', 256), ('centered', 256),
                                                  ('centered', 1024), ('flipped', 256)])
def test_bpd_from_likelihood_is_the_bin_probability(scaler_name, num_bins):
  """Pixels quantized to num_bins levels on [0, 1], each N(m_d, s_d^2) before quantization; a
  bin's probability is P(k) = prod_d [Phi((k_d + 1) / K) - Phi(k_d / K)] (scipy's normal cdf
  in [0, 1], no scaler involved). The model sees the data through the scaler (identity,
  x -> 2x - 1, or x -> 3 - 4x) with its exact score; likelihood(..., num_bins, scaler) at the
  bin's centre must report -log2 P(k) / D.

  The gap is the midpoint rule's log(P / (p(centre) / K^D)) ~ (1 / (K s))^2 / 24 <= 5e-5 nats
  per dim (s >= 0.12), plus ~1e-4 nats of solver error, prior mismatch and eps = 1e-5
  (measured against the density itself): asserted to 5e-4 bits/dim, while one bin too many or too few is off by log2(K / (K - 1))
  >= 1.4e-3 and a missing scaler Jacobian by log2 |slope| >= 1.
  """
  from scipy.stats import norm
  scaler, slope = {'identity': (lambda v: v, 1.0), 'centered': (lambda v: 2 * v - 1, 2.0),
                   'flipped': (lambda v: 3 - 4 * v, -4.0)}[scaler_name]
  m = torch.tensor([0.45, 0.6], dtype=torch.float64)
  s = torch.tensor([0.12, 0.2], dtype=torch.float64)
  g = torch.Generator().manual_seed(11)
  levels = torch.floor((m + s * torch.randn(6, 2, generator=g, dtype=torch.float64)) * num_bins)
  levels = levels.clamp(0, num_bins - 1)
  data = GaussianMixture([1.0], scaler(m)[None], torch.diag(slope ** 2 * s ** 2)[None])
  # beta_max = 40 leaves m(T) = e^-10 of the data's mean at T, so that the N(0, I) prior is
  # p_T to ~1e-4 nats at every point; with 20 the mean's e^-5 shifts log p_T(z) by ~0.01.
  sde = VPSDE(beta_max=40.0)
  x = scaler((levels + 0.5) / num_bins)
  result = likelihood(exact_score_fn(data, sde), sde, x, eps=1e-5, rtol=1e-6, atol=1e-6,
                      hutchinson='exact', num_bins=num_bins, scaler=scaler)
  k = levels.numpy()
  prob = norm.cdf((k + 1) / num_bins, m.numpy(), s.numpy()) - norm.cdf(k / num_bins, m.numpy(), s.numpy())
  exact = -torch.as_tensor(prob).log2().sum(1) / 2
  assert (result.bpd - exact).abs().max() < 5e-4, (result.bpd - exact)


def test_rejects_unknown_estimator():
  with pytest.raises(ValueError, match='divergence estimator'):
    likelihood(lambda x, t: x, VPSDE(), torch.zeros(1, 2), hutchinson='skilling')


def test_split_bpd_of_quantized_gaussian_images(monkeypatch):
  # 64 images of 1x2x2 pixels, each pixel N(0.5, 0.15^2) quantized to 17 levels k/16. Dequantized
  # as (k + u)/17 they follow, up to the jitter, N(m, s^2) with m = (16 * 0.5 + 0.5)/17 and
  # s = 16/17 * 0.15, whose exact score (centered to [-1, 1]) drives the ODE. The truth is the
  # discrete probability of the bins, P(k) = int_{k/17}^{(k+1)/17} N(x; m, s^2) dx: the ODE's
  # bits/dim must exceed -log2 P / D by the dequantization gap only (Jensen; expected ~0.005
  # bits/dim for bins of width 1/17 against s = 0.14), asserted in [-3 SE, 0.03].
  from scipy.stats import norm
  from torch.utils.data import TensorDataset
  from configs.default import get_default_config
  from pipeline.bpd import split_bpd

  g = torch.Generator().manual_seed(12)
  levels = torch.clamp(torch.round((0.5 + 0.15 * torch.randn(64, 1, 2, 2, generator=g)) * 16), 0, 16)
  monkeypatch.setattr('pipeline.bpd.get_eval_dataset',
                      lambda config, split: TensorDataset(levels / 16, torch.zeros(64)))
  m, s = (16 * 0.5 + 0.5) / 17, 16 / 17 * 0.15
  model = GaussianMixture([1.0], [[2 * m - 1] * 4], (2 * s) ** 2 * torch.eye(4, dtype=torch.float64)[None])
  config = get_default_config()
  config.data.num_bins = 17
  config.eval.batch_size = 64
  config.eval.hutchinson = 'exact'
  config.eval.bpd_eps, config.eval.bpd_rtol, config.eval.bpd_atol = 1e-4, 1e-6, 1e-6
  sde = VPSDE()
  stats, per_sample = split_bpd(config, exact_score_fn(model, sde), sde, seed=12, progress=False)
  k = levels.flatten(1).double().numpy()
  prob = norm.cdf((k + 1) / 17, m, s) - norm.cdf(k / 17, m, s)
  exact = -torch.as_tensor(prob).log().sum(1) / (4 * math.log(2))
  gap = torch.as_tensor(per_sample) - exact
  assert stats['num_images'] == 64 and stats['mean'] == pytest.approx(per_sample.mean())
  assert -3 * gap.std() / 8 < gap.mean() < 0.03
