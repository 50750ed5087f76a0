"""DSM losses against closed forms.

For Gaussian data x0 ~ N(mu, sigma0^2 I_d), x_t = m x0 + s z ~ N(m mu, v I), v = m^2 sigma0^2 + s^2,
and the exact score is -(x - m mu) / v. Its residual s * score + z = a z - b u (u, z standard
normal, a = m^2 sigma0^2 / v, b = s m sigma0 / v) has per-dimension variance a^2 + b^2 =
m^2 sigma0^2 / v = 1 - s^2 / v, so the sum over d dims is (1 - s^2/v) chi^2_d: its mean
d (1 - s^2 / v) is the objective's minimum (the irreducible part), its variance 2 d (1 - s^2/v)^2.
With likelihood weighting every sample is multiplied by g^2 / s^2.
"""
import math

import pytest
import torch
from scipy import integrate

from configs.default import get_default_config
from sde_lib import SubVPSDE, VESDE, VPSDE, get_sde
from sde_lib.gaussian_mixture import ring_mixture
from network_labels import time_of_label
from training.losses import BatchRows, drop_labels, dsm_per_sample, get_loss_fn

MU = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
SIGMA0 = 0.7
DIM = MU.numel()
SDES = {'vpsde': VPSDE(), 'subvpsde': SubVPSDE(), 'vesde': VESDE()}


def gaussian_score(x, mean_coeff, std):
  """Exact score of N(m mu, (m^2 sigma0^2 + s^2) I) at x ([B, d]); m, s of shape [B]."""
  var = (mean_coeff ** 2 * SIGMA0 ** 2 + std ** 2)[:, None]
  return -(x - mean_coeff[:, None] * MU.to(x)) / var


def gaussian_minimum(mean_coeff, std):
  """d (1 - s^2 / v): the expected loss of the exact score (sum over dims, weight s^2)."""
  return DIM * (1 - std ** 2 / (mean_coeff ** 2 * SIGMA0 ** 2 + std ** 2))


def diffusion_sq(sde, t):
  return sde.sde(torch.zeros(1, 1, dtype=torch.float64), t)[1] ** 2


@pytest.mark.parametrize('sde_name', sorted(SDES))
@pytest.mark.parametrize('likelihood_weighting', [False, True])
@pytest.mark.parametrize('t_value', [0.01, 0.1, 0.5, 1.0])
def test_exact_score_attains_closed_form_minimum_per_t(sde_name, likelihood_weighting, t_value):
  sde, n = SDES[sde_name], 20_000
  g = torch.Generator().manual_seed(0)
  t = torch.full((n,), t_value, dtype=torch.float64)
  mean_coeff, std = sde.marginal_coeffs(t)
  x0 = MU + SIGMA0 * torch.randn(n, DIM, generator=g, dtype=torch.float64)
  z = torch.randn(n, DIM, generator=g, dtype=torch.float64)
  weight = diffusion_sq(sde, t) / std ** 2 if likelihood_weighting else torch.ones_like(std)
  score_fn = lambda x, _: gaussian_score(x, mean_coeff, std)
  losses = dsm_per_sample(score_fn, x0, t, mean_coeff, std, z, weight, reduce_mean=False)
  expected = (weight * gaussian_minimum(mean_coeff, std))[0].item()
  # Each loss is expected/d * chi^2_d: the mean of n has relative std sqrt(2 / (d n)) = 0.5%;
  # 5 standard errors make a false failure a < 1e-6 event.
  tol = 5 * expected * math.sqrt(2 / (DIM * n))
  assert abs(losses.mean().item() - expected) < tol
  per_dim = dsm_per_sample(score_fn, x0, t, mean_coeff, std, z, weight, reduce_mean=True)
  torch.testing.assert_close(per_dim, losses / DIM)  # mean over dims is the sum / d, exactly


class ExactGaussianEpsModel(torch.nn.Module):
  """An eps-network that reads (m, s) off the label the loss hands it: the exact answer."""

  def __init__(self, sde, continuous):
    super().__init__()
    self.sde, self.continuous = sde, continuous

  def forward(self, x, labels):
    if self.continuous:
      mean_coeff, std = self.sde.marginal_coeffs(time_of_label(self.sde, labels))
    else:
      index = labels.round().long()
      std = self.sde.chain_std(index)
      # The chains' mean coefficients: sqrt(abar_i) (DDPM) and 1 (SMLD).
      mean_coeff = (self.sde.alphas_cumprod[index].sqrt() if isinstance(self.sde, VPSDE)
                    else torch.ones_like(std))
    return -std[:, None] * gaussian_score(x.double(), mean_coeff.double(), std.double()).float()


def loss_config(sde_name, loss='dsm', continuous=True, likelihood_weighting=False, eps=1e-5,
                importance_sampling=False):
  config = get_default_config()
  config.sde.name = sde_name
  config.training.loss = loss
  config.training.continuous = continuous
  config.training.likelihood_weighting = likelihood_weighting
  config.training.importance_sampling = importance_sampling
  config.training.reduce_mean = False
  config.training.eps = eps
  return config


def monte_carlo_loss(config, sde, batches=20, batch_size=4000):
  """Mean and standard error of the loss over independent batches of Gaussian data."""
  loss_fn = get_loss_fn(config, sde)
  model = ExactGaussianEpsModel(sde, config.training.continuous)
  g = torch.Generator().manual_seed(1)
  values = []
  for _ in range(batches):
    x0 = (MU + SIGMA0 * torch.randn(batch_size, DIM, generator=g, dtype=torch.float64)).float()
    values.append(loss_fn(model, x0, generator=g).mean().item())
  values = torch.tensor(values, dtype=torch.float64)
  return values.mean().item(), values.std().item() / math.sqrt(batches)


@pytest.mark.parametrize('sde_name,likelihood_weighting,eps,importance_sampling', [
    ('vpsde', False, 1e-5, False), ('subvpsde', False, 1e-5, False), ('vesde', False, 1e-5, False),
    # g^2/s^2 ~ 1/t: eps = 1e-2 keeps the Monte-Carlo variance finite enough to test ...
    ('vpsde', True, 1e-2, False), ('subvpsde', True, 1e-2, False), ('vesde', True, 1e-2, False),
    # ... unless t is drawn from g^2/s^2 itself (Song et al. 2021b): then eps = 1e-5 is fine.
    ('vpsde', True, 1e-5, True), ('subvpsde', True, 1e-5, True), ('vesde', True, 1e-5, True)])
def test_continuous_loss_averages_closed_form_over_t(sde_name, likelihood_weighting, eps,
                                                     importance_sampling):
  config = loss_config(sde_name, likelihood_weighting=likelihood_weighting, eps=eps,
                       importance_sampling=importance_sampling)
  sde = get_sde(config)

  def integrand(t):
    t = torch.tensor([t], dtype=torch.float64)
    mean_coeff, std = sde.marginal_coeffs(t)
    weight = diffusion_sq(sde, t) / std ** 2 if likelihood_weighting else 1.0
    return (weight * gaussian_minimum(mean_coeff, std)).item()

  expected = integrate.quad(integrand, eps, sde.T, limit=200)[0] / (sde.T - eps)
  mean, stderr = monte_carlo_loss(config, sde)
  # 5 standard errors of 20 independent batch means (t and data both random).
  assert abs(mean - expected) < 5 * stderr
  assert stderr < 0.05 * expected  # the check is sharp: the error bar is a few % at most


@pytest.mark.parametrize('sde_name,loss', [('vpsde', 'ddpm'), ('vpsde', 'dsm'), ('vesde', 'dsm')])
def test_discrete_loss_averages_closed_form_over_chain(sde_name, loss):
  """DDPM's L_simple (eps-MSE on the chain) and SMLD's DSM: uniform over the N chain steps."""
  config = loss_config(sde_name, loss=loss, continuous=False)
  config.sde.num_scales = 100
  sde = get_sde(config)
  index = torch.arange(sde.N)
  std = sde.chain_std(index).double()
  mean_coeff = sde.alphas_cumprod.sqrt() if sde_name == 'vpsde' else torch.ones_like(std)
  expected = gaussian_minimum(mean_coeff, std).mean().item()
  mean, stderr = monte_carlo_loss(config, sde)
  assert abs(mean - expected) < 5 * stderr  # 5 standard errors of 20 batch means


def test_ddpm_loss_is_eps_mse_of_the_network():
  """L_simple = ||eps - eps_theta(sqrt(abar_i) x0 + sqrt(1 - abar_i) eps, i)||^2, directly.
  The network sees (x_t, i); with Ho et al.'s abar_i, eps = (x_t - sqrt(abar_i) x0) /
  sqrt(1 - abar_i) is the noise that made x_t, whatever order the loss drew it in. The loss must
  be ||eps - eps_theta||^2 of that eps (float32 x_t: 1.3e-6 relative + 1e-5), and eps a
  standard normal draw: over its 768 values mean within 5 / sqrt(768) = 0.18 of 0 and standard
  deviation within 5 / sqrt(2 * 768) = 0.13 of 1 (a wrong abar_i or no noise fails these)."""
  config = loss_config('vpsde', loss='ddpm', continuous=False)
  config.sde.num_scales = 50
  sde = get_sde(config)
  seen = {}

  class Recorder(torch.nn.Module):
    def forward(self, x, labels):
      seen['x'], seen['labels'] = x, labels
      return 0.3 * x

  g = torch.Generator().manual_seed(0)
  x0 = torch.randn(16, 3, 4, 4, generator=g)
  loss = get_loss_fn(config, sde)(Recorder(), x0, generator=torch.Generator().manual_seed(5))
  labels, x_t = seen['labels'], seen['x']
  index = labels.long()
  assert torch.equal(index.float(), labels) and 0 <= index.min() and index.max() < 50
  assert len(set(index.tolist())) > 1
  # Ho et al.'s chain, scaled to N = 50 steps: beta linear from 1e-4 * 20 to 0.02 * 20.
  ho_abar = torch.cumprod(1 - torch.linspace(2e-3, 0.4, 50, dtype=torch.float64), 0)
  abar = ho_abar[index][:, None, None, None]
  eps = (x_t.double() - abar.sqrt() * x0.double()) / (1 - abar).sqrt()
  assert abs(eps.mean().item()) < 5 / math.sqrt(eps.numel())
  assert abs(eps.std().item() - 1) < 5 / math.sqrt(2 * eps.numel())
  expected = (eps - 0.3 * x_t.double()).square().flatten(1).sum(1).mean()
  torch.testing.assert_close(loss.mean().double(), expected, rtol=1.3e-6, atol=1e-5)


@pytest.mark.parametrize('sde_name', ['vpsde', 'vesde'])
def test_gmm_exact_score_beats_perturbed_scores(sde_name):
  """For a 2-D ring of Gaussians the exact score minimizes DSM; a perturbed score s* + D pays
  exactly E[s^2 ||D||^2] more (the cross term has mean 0 since E[z | x_t] = -s s*)."""
  sde, mixture, n = SDES[sde_name], ring_mixture(radius=2.0, std=0.2), 10_000
  g = torch.Generator().manual_seed(2)
  # Times where s(t) is at least comparable to the modes' std 0.2 for both SDEs, so the gap
  # (>= 0.04 E[s^2 ||score||^2]) is many standard errors of the cross term.
  for t_value in (0.3, 0.5, 0.7):
    t = torch.full((n,), t_value, dtype=torch.float64)
    mean_coeff, std = sde.marginal_coeffs(t)
    marginal = mixture.perturbed(sde, t_value)
    x0, z = mixture.sample(n, generator=g).double(), torch.randn(n, 2, generator=g, dtype=torch.float64)
    perturbations = {'scaled up': lambda s: 1.2 * s, 'scaled down': lambda s: 0.8 * s,
                     'shifted': lambda s: s + 0.3 / std[0]}
    ones = torch.ones_like(std)
    exact = dsm_per_sample(lambda x, _: marginal.score(x), x0, t, mean_coeff, std, z, ones, False)
    x_t = mean_coeff[:, None] * x0 + std[:, None] * z
    for name, perturb in perturbations.items():
      worse = dsm_per_sample(lambda x, _: perturb(marginal.score(x)), x0, t, mean_coeff, std, z,
                             ones, False)
      gap = (worse - exact).mean().item()
      delta = perturb(marginal.score(x_t)) - marginal.score(x_t)
      expected_gap = (std[:, None] ** 2 * delta ** 2).sum(1)
      # The gap minus its expectation is the mean of the zero-mean cross term; 5 standard errors.
      stderr = ((worse - exact) - expected_gap).std().item() / math.sqrt(n)
      assert gap > 5 * stderr, (name, t_value)   # exact is better, and significantly so
      assert abs(gap - expected_gap.mean().item()) < 5 * stderr, (name, t_value)


def test_bad_loss_configs_say_what_to_change():
  with pytest.raises(ValueError, match='DDPM chain'):
    get_loss_fn(loss_config('vesde', loss='ddpm', continuous=False), VESDE())
  with pytest.raises(ValueError, match='continuous=True'):
    get_loss_fn(loss_config('vpsde', continuous=False, likelihood_weighting=True), VPSDE())
  with pytest.raises(ValueError, match="unknown training.loss 'nope'"):
    get_loss_fn(loss_config('vpsde', loss='nope'), VPSDE())
  with pytest.raises(ValueError, match='likelihood_weighting=True'):
    get_loss_fn(loss_config('vpsde', importance_sampling=True), VPSDE())


@pytest.mark.parametrize('sde_name', sorted(SDES))
def test_importance_sampled_time_lowers_the_variance(sde_name):
  # The likelihood-weighted loss of the exact Gaussian score per sample, with t uniform on
  # [eps, T] and with t ~ g^2/s^2 (same expectation: the test above). At eps = 1e-3 the uniform
  # estimate's variance is dominated by rare small t where w ~ 1/t; the importance-sampled one
  # is Z/(T - eps) (1 - s^2/v) chi^2_d, bounded. Measured variance ratios (importance /
  # uniform) over 1e5 draws: 0.059 (vpsde), 0.041 (subvpsde), 1.008 (vesde, whose w is
  # constant: p(t) is the uniform density and both estimators are the same in law).
  ratios = {}
  for importance in (False, True):
    config = loss_config(sde_name, likelihood_weighting=True, eps=1e-3,
                         importance_sampling=importance)
    sde = get_sde(config)
    loss_fn = get_loss_fn(config, sde)
    g = torch.Generator().manual_seed(7)
    x0 = (MU + SIGMA0 * torch.randn(100_000, DIM, generator=g, dtype=torch.float64)).float()
    ratios[importance] = loss_fn(ExactGaussianEpsModel(sde, True), x0, generator=g).var().item()
  ratio = ratios[True] / ratios[False]
  if sde_name == 'vesde':
    # Same law; the sample variances of 1e5 draws differ by a few percent at most.
    assert abs(ratio - 1) < 0.1, ratio
  else:
    assert ratio < 0.1, ratio


@pytest.mark.parametrize('settings', [dict(), dict(continuous=False),
                                      dict(likelihood_weighting=True, importance_sampling=True)])
def test_a_split_batch_draws_what_the_whole_batch_draws(settings):
  """Training a global batch in parts (processes, micro-batches) is the same computation: the
  per-sample losses of its two interleaved halves, each given its rows, equal those of the whole
  batch at once (the parts draw t and noise for the whole batch and keep their rows); without
  rows they would not."""
  config = loss_config('vpsde', **settings)
  sde = get_sde(config)
  loss_fn, model = get_loss_fn(config, sde), ExactGaussianEpsModel(sde, config.training.continuous)
  x0 = MU.float() + SIGMA0 * torch.randn(12, DIM, generator=torch.Generator().manual_seed(1))
  seeded = lambda: torch.Generator().manual_seed(11)
  whole = loss_fn(model, x0, seeded())
  for rank in range(2):
    index = torch.arange(rank, 12, 2)
    part = loss_fn(model, x0[index], seeded(), rows=BatchRows(index, 12))
    assert torch.allclose(part, whole[index], rtol=1e-6), rank
  assert not torch.allclose(loss_fn(model, x0[1::2], seeded()), whole[1::2])


def test_label_dropout_of_a_split_batch_is_the_whole_batchs():
  classes = torch.arange(40) % 10
  whole = drop_labels(classes, 0.5, 10, torch.Generator().manual_seed(2))
  index = torch.arange(3, 40, 4)
  part = drop_labels(classes[index], 0.5, 10, torch.Generator().manual_seed(2), BatchRows(index, 40))
  assert torch.equal(part, whole[index]) and 0 < (whole == 10).sum() < 40
