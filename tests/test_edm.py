"""EDM's formulation (Karras et al. 2022) against its paper and NVlabs/edm: Table 1's identities,
its losses transcribed from edm's training/loss.py, the exact denoiser of a Gaussian mixture,
and EDM's process under our samplers and likelihood.

The transcriptions (`edm_*` below) follow NVlabs/edm training/networks.py (VPPrecond, VEPrecond,
EDMPrecond) and training/loss.py (VPLoss, VELoss, EDMLoss) line by line, with the random draws
passed in so that both sides see the same ones.
"""
import math
import os

import pytest
import torch

from sde_lib.gaussian_mixture import GaussianMixture, exact_score_fn
from gmm_oracle import assert_matches, reference_distance
from models.mlp import MLP
from models.parameterizations import (EDMPreconditioning, VEPreconditioning, VPPreconditioning,
                                      VPrediction, get_parameterization)
from samplers.likelihood import likelihood
from samplers.registry import get_sampler
from configs import ve_cifar10, vp_cifar10
from configs.default import get_default_config
from models import get_eps_fn, get_score_fn, parameterization_of
from models.restore import restore
from sde_lib import EDMSDE, VESDE, VPSDE, get_sde
from training.edm_loss import EDMLoss
from training.losses import dsm_per_sample

SIGMAS = torch.logspace(-3, 2, 11, dtype=torch.float64)   # 0.001 .. 100


class LabelledNet(torch.nn.Module):
  """A fixed random function F(x, label) of 2-D points, float64: what both sides of a comparison
  call. F = tanh(x A + sin(label f) B + c) C, with frequencies f for labels of every scale."""

  def __init__(self, seed=0, width=16):
    super().__init__()
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)
    self.A, self.B, self.c, self.C = rand(2, width), rand(4, width), rand(width), rand(width, 2)
    self.f = torch.tensor([0.003, 0.1, 1.0, 3.0], dtype=torch.float64)

  def forward(self, x, labels):
    features = torch.sin(labels.to(x.dtype)[:, None] * self.f.to(x.dtype))
    return torch.tanh(x @ self.A.to(x.dtype) + features @ self.B.to(x.dtype)
                      + self.c.to(x.dtype)) @ self.C.to(x.dtype)


# --- Table 1 ------------------------------------------------------------------------------------

def test_weight_times_c_out_squared_is_one_for_the_three_variants():
  """Table 1: lambda(sigma) c_out(sigma)^2 = 1, so the loss weights the network's own error
  ||F - target||^2 by one at every sigma. EDM's lambda is the loss class's; VP's and VE's
  lambda = 1 / sigma^2 (Table 1). To rounding (1e-12)."""
  edm = EDMPreconditioning(sigma_data=0.5)
  weight = EDMLoss(EDMSDE(), edm, sigma_data=0.5).weight(SIGMAS)
  assert torch.allclose(weight * edm.c_out(SIGMAS) ** 2,
                        torch.ones_like(SIGMAS), rtol=1e-12)
  for variant in (VPPreconditioning(), VEPreconditioning()):
    assert torch.allclose(variant.c_out(SIGMAS) ** 2 / SIGMAS ** 2, torch.ones_like(SIGMAS),
                          rtol=1e-12)


@pytest.mark.parametrize('data', ['gaussian', 'two_points'])
def test_edm_input_and_training_target_have_unit_variance(data):
  """For data of std sigma_data, c_in (y + n) and the training target (y - c_skip (y + n)) /
  c_out have unit variance at every sigma (EDM app. B.6), for Gaussian data and for the
  non-Gaussian +-sigma_data. Monte Carlo with 200,000 draws: the sample variance's relative
  standard error is sqrt(2 / n) = 0.003 (Gaussian), so 0.02 is over six of them."""
  sigma_data, n = 0.5, 200_000
  edm = EDMPreconditioning(sigma_data)
  g = torch.Generator().manual_seed(0)
  if data == 'gaussian':
    y = sigma_data * torch.randn(n, generator=g, dtype=torch.float64)
  else:
    y = sigma_data * (2 * torch.randint(2, (n,), generator=g).double() - 1)
  for sigma in SIGMAS:
    x = y + sigma * torch.randn(n, generator=g, dtype=torch.float64)
    target = (y - edm.c_skip(sigma) * x) / edm.c_out(sigma)
    assert abs(target.var().item() - 1) < 0.02, (float(sigma), target.var().item())
    assert abs((edm.c_in(sigma) * x).var().item() - 1) < 0.02, float(sigma)


# --- Transcriptions of NVlabs/edm ---------------------------------------------------------------

def edm_vp_precond(net, x, sigma, beta_d=19.9, beta_min=0.1, M=1000):
  """VPPrecond.forward: c_noise = (M - 1) sigma_inv(sigma)."""
  sigma = sigma.reshape(-1, 1)
  c_skip, c_out, c_in = 1, -sigma, 1 / (sigma ** 2 + 1).sqrt()
  sigma_inv = ((beta_min ** 2 + 2 * beta_d * (1 + sigma ** 2).log()).sqrt() - beta_min) / beta_d
  c_noise = (M - 1) * sigma_inv
  return c_skip * x + c_out * net(c_in * x, c_noise.flatten())


def edm_ve_precond(net, x, sigma):
  """VEPrecond.forward: c_noise = ln(sigma / 2)."""
  sigma = sigma.reshape(-1, 1)
  c_skip, c_out, c_in, c_noise = 1, sigma, 1, (0.5 * sigma).log()
  return c_skip * x + c_out * net(c_in * x, c_noise.flatten())


def edm_edm_precond(net, x, sigma, sigma_data=0.5):
  """EDMPrecond.forward."""
  sigma = sigma.reshape(-1, 1)
  c_skip = sigma_data ** 2 / (sigma ** 2 + sigma_data ** 2)
  c_out = sigma * sigma_data / (sigma ** 2 + sigma_data ** 2).sqrt()
  c_in = 1 / (sigma_data ** 2 + sigma ** 2).sqrt()
  c_noise = sigma.log() / 4
  return c_skip * x + c_out * net(c_in * x, c_noise.flatten())


def edm_vp_loss(denoise, y, t, n_unit, beta_d=19.9, beta_min=0.1):
  """VPLoss.__call__ at the drawn time t (EDM draws t = 1 + u (epsilon_t - 1))."""
  sigma = ((0.5 * beta_d * t ** 2 + beta_min * t).exp() - 1).sqrt()
  weight = 1 / sigma ** 2
  n = n_unit * sigma[:, None]
  return weight * ((denoise(y + n, sigma) - y) ** 2).sum(1)


def edm_ve_loss(denoise, y, u, n_unit, sigma_min=0.02, sigma_max=100):
  """VELoss.__call__ for the drawn u ~ U[0, 1)."""
  sigma = sigma_min * ((sigma_max / sigma_min) ** u)
  weight = 1 / sigma ** 2
  n = n_unit * sigma[:, None]
  return weight * ((denoise(y + n, sigma) - y) ** 2).sum(1)


def edm_edm_loss(denoise, y, rnd_normal, n_unit, P_mean=-1.2, P_std=1.2, sigma_data=0.5):
  """EDMLoss.__call__ for the drawn rnd_normal ~ N(0, 1)."""
  sigma = (rnd_normal * P_std + P_mean).exp()
  weight = (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2
  n = n_unit * sigma[:, None]
  return weight * ((denoise(y + n, sigma) - y) ** 2).sum(1)


def draws(n=256, seed=1):
  g = torch.Generator().manual_seed(seed)
  y = 0.5 * torch.randn(n, 2, generator=g, dtype=torch.float64) + torch.tensor([0.3, -0.2])
  return g, y, torch.randn(n, 2, generator=g, dtype=torch.float64)


def test_table_1_vp_row_is_our_dsm_loss_on_the_same_draws(float64):
  """EDM's VPLoss with VPPrecond equals our continuous DSM loss (weight 1, sum over dimensions)
  of the same network under the 'vp_precond' parameterization on our VP-SDE (beta 0.1..20,
  N = 1000), at the same t and noise; and 'vp_precond' is the 'eps' parameterization there.
  float64: both sides agree to 1e-9 (EDM's c_noise goes through sigma_inv)."""
  net, sde = LabelledNet(), VPSDE(0.1, 20.0, 1000)
  g, y, z = draws()
  t = 1e-5 + (1 - 1e-5) * torch.rand(len(y), generator=g, dtype=torch.float64)
  edm = edm_vp_loss(lambda x, sigma: edm_vp_precond(net, x, sigma), y, t, z)
  mean_coeff, std = sde.marginal_coeffs(t)
  for name in ('vp_precond', 'eps'):
    score_fn = get_score_fn(sde, net, True, name)
    ours = dsm_per_sample(score_fn, y, t, mean_coeff, std, z, torch.ones_like(t), False)
    assert torch.allclose(ours, edm, rtol=1e-9), (name, (ours - edm).abs().max())


def test_table_1_ve_row_is_our_dsm_loss_on_the_same_draws(float64):
  """EDM's VELoss with VEPrecond equals our continuous DSM loss under 've_precond' on our VE-SDE
  with EDM's sigma_min 0.02 and sigma_max 100, at t = u. EDM's NCSN++ embeds c_noise = ln(sigma
  / 2) where ours embeds log of its label sigma: the same network G(x, ln(sigma / 2)) on both
  sides. float64, 1e-9."""
  net, sde = LabelledNet(), VESDE(0.02, 100.0, 1000)
  ours_net = lambda x, labels: net(x, (0.5 * labels).log())
  g, y, z = draws()
  u = torch.rand(len(y), generator=g, dtype=torch.float64)
  edm = edm_ve_loss(lambda x, sigma: edm_ve_precond(net, x, sigma), y, u, z)
  mean_coeff, std = sde.marginal_coeffs(u)
  ours = dsm_per_sample(get_score_fn(sde, ours_net, True, 've_precond'), y, u, mean_coeff, std, z,
                        torch.ones_like(u), False)
  assert torch.allclose(ours, edm, rtol=1e-9), (ours - edm).abs().max()


@pytest.mark.parametrize('sde', [EDMSDE(0.002, 80.0), VPSDE()], ids=['edm', 'vpsde'])
def test_edm_loss_is_edms_on_the_same_draws(sde, float64):
  """Our EDMLoss with the 'edm' preconditioning equals EDM's EDMLoss with EDMPrecond on the same
  (ln sigma, n) draws, on EDM's process (t = sigma) and on the VP-SDE (x_t = m (y + sigma n) at
  the t of sigma, the network shown x_t / m). float64; 1e-9, as the VP time is found by
  bisection of float64 lambda(t)."""
  net = LabelledNet()
  g, y, z = draws()
  rnd_normal = torch.randn(len(y), generator=g, dtype=torch.float64)
  sigma = (rnd_normal * 1.2 - 1.2).exp()
  edm = edm_edm_loss(lambda x, s: edm_edm_precond(net, x, s), y, rnd_normal, z)
  ours = EDMLoss(sde, EDMPreconditioning(0.5), -1.2, 1.2, 0.5)(net, y, sigma, z)
  assert torch.allclose(ours, edm, rtol=1e-9), (ours - edm).abs().max()


def test_edm_loss_draws_ln_sigma_from_n_p_mean_p_std():
  """ln sigma ~ N(P_mean, P_std^2): 100,000 draws' mean and std within 0.02 (over five standard
  errors, 1.2 / sqrt(1e5) = 0.004)."""
  log_sigma = EDMLoss(EDMSDE(), EDMPreconditioning(), -1.2, 1.2).sample_sigma(
      100_000, generator=torch.Generator().manual_seed(0)).log()
  assert abs(log_sigma.mean().item() + 1.2) < 0.02 and abs(log_sigma.std().item() - 1.2) < 0.02


# --- v-prediction --------------------------------------------------------------------------------

def test_v_prediction_is_edm_preconditioning_with_unit_sigma_data(float64):
  """Salimans & Ho's v-prediction is EDM's preconditioning with sigma_data = 1 and F = -v (its
  c_skip = 1 / (1 + sigma^2), c_out = sigma / sqrt(1 + sigma^2)): the same network input and the
  same eps_hat from the same output, on the VP-SDE and on EDM's process. To rounding (1e-12)."""
  g = torch.Generator().manual_seed(0)
  x, out = torch.randn(2, 64, 2, generator=g, dtype=torch.float64)
  for sde in (VPSDE(), EDMSDE()):
    t = torch.rand(64, generator=g, dtype=torch.float64) * sde.T * 0.999 + 1e-3
    m, s = (c[:, None] for c in sde.marginal_coeffs(t))
    v, edm = VPrediction(), EDMPreconditioning(sigma_data=1.0)
    assert torch.allclose(v.network_input(x, t, m, s)[0], edm.network_input(x, t, m, s)[0],
                          rtol=1e-12)
    assert torch.allclose(v.eps(out, x, m, s, t, sde), edm.eps(-out, x, m, s, t, sde), rtol=1e-12,
                          atol=1e-12)


def loss_and_draws(config, sde, net, x0, seed):
  """Our configured DSM loss of `net` on x0 with a seeded generator, and the (t, z) it drew
  (continuous_times draws u then z from the same generator)."""
  from training.losses import get_loss_fn
  loss = get_loss_fn(config, sde)(net, x0, torch.Generator().manual_seed(seed))
  g = torch.Generator().manual_seed(seed)
  t = config.training.eps + (sde.T - config.training.eps) * torch.rand(len(x0), generator=g)
  return loss, t, torch.randn(x0.shape, generator=g)


def vp_config(parameterization, weighting):
  config = get_default_config()
  config.model.parameterization = parameterization
  config.training.loss_weighting = weighting
  config.training.min_snr_gamma = 5.0
  return config


@pytest.mark.parametrize('parameterization', ['eps', 'v'])
@pytest.mark.parametrize('weighting', ['v', 'min_snr'])
def test_v_and_min_snr_weightings_equal_their_papers_formulas(parameterization, weighting):
  """On the VP-SDE with alpha = sqrt(abar), sigma = sqrt(1 - abar), SNR = alpha^2 / sigma^2:
  weighting 'v' of a v-network is Salimans & Ho's ||v_hat - v||^2, v = alpha eps - sigma x_0;
  'min_snr' is Hang et al.'s min(SNR, 5) / SNR ||eps_hat - eps||^2 for an eps-network and
  min(SNR, 5) / (SNR + 1) ||v_hat - v||^2 for a v-network (their eq. for v, as diffusers writes
  it). 'v' of an eps-network is (SNR + 1) / SNR ||eps_hat - eps||^2. Sums over the dimensions,
  the same draws; float32, 1e-5 relative."""
  sde, net = VPSDE(), LabelledNet()
  x0 = draws()[1].float()
  loss, t, z = loss_and_draws(vp_config(parameterization, weighting), sde, net, x0, seed=3)
  alpha, sigma = (c[:, None] for c in sde.marginal_coeffs(t))
  x_t = alpha * x0 + sigma * z
  out = net(x_t, sde.network_label(t))
  snr = (alpha / sigma)[:, 0] ** 2
  if parameterization == 'v':
    error = ((out - (alpha * z - sigma * x0)) ** 2).sum(1)
    weight = 1 if weighting == 'v' else snr.clamp(max=5) / (snr + 1)
  else:
    error = ((out - z) ** 2).sum(1)
    weight = (snr + 1) / snr if weighting == 'v' else snr.clamp(max=5) / snr
  assert torch.allclose(loss, weight * error, rtol=1e-4, atol=1e-5), (loss - weight * error)


# --- A Gaussian mixture's exact denoiser --------------------------------------------------------

def mixture():
  """Three anisotropic components in 2-D, std about 1."""
  covs = torch.tensor([[[0.05, 0.02], [0.02, 0.03]], [[0.02, 0.0], [0.0, 0.08]],
                       [[0.04, -0.01], [-0.01, 0.02]]], dtype=torch.float64)
  return GaussianMixture([0.5, 0.3, 0.2], [[1.0, 0.5], [-1.0, 0.8], [0.0, -1.2]], covs)


def exact_denoiser(gmm, x, sigma):
  """E[x_0 | x_0 + sigma n = x] = sum_k r_k(x) (mu_k + Sigma_k (Sigma_k + sigma^2 I)^-1 (x - mu_k)),
  r_k the responsibilities under the perturbed mixture: each component's Gaussian posterior
  mean mixed by responsibilities ([n, 2], float64)."""
  x = x.double()
  eye = torch.eye(2, dtype=torch.float64)
  r = gmm.perturbed(EDMSDE(), sigma).responsibilities(x)                        # [n, K]
  gain = gmm.covs @ torch.linalg.inv(gmm.covs + sigma ** 2 * eye)               # [K, 2, 2]
  means = gmm.means[None] + torch.einsum('kij,nkj->nki', gain, x[:, None] - gmm.means[None])
  return (r[..., None] * means).sum(1)


def test_exact_denoiser_is_tweedies_formula_of_the_exact_score():
  """The component-posterior denoiser equals Tweedie's x + sigma^2 grad log p_sigma(x) of the
  mixture's exact score: two routes to E[x_0 | x], to 1e-10."""
  gmm, g = mixture(), torch.Generator().manual_seed(0)
  score_fn = exact_score_fn(gmm, EDMSDE())
  for sigma in (0.01, 0.1, 1.0, 10.0):
    x = gmm.sample(500, g).double() + sigma * torch.randn(500, 2, generator=g, dtype=torch.float64)
    tweedie = x + sigma ** 2 * score_fn(x, torch.full((500,), sigma, dtype=torch.float64))
    assert torch.allclose(exact_denoiser(gmm, x, sigma), tweedie, atol=1e-10)


class ExactDenoiser(torch.nn.Module):
  """The exact denoiser as a network of the 'x0' parameterization on EDM's process (label = t =
  sigma), plus delta h(x) for a perturbation direction h."""

  def __init__(self, gmm, delta=0.0, direction=None):
    super().__init__()
    self.gmm, self.delta, self.direction = gmm, delta, direction

  def forward(self, x, labels):
    out = torch.stack([exact_denoiser(self.gmm, x[i:i + 1], float(s))[0]
                       for i, s in enumerate(labels)]) if len(set(labels.tolist())) > 1 else \
        exact_denoiser(self.gmm, x, float(labels[0]))
    return out if self.direction is None else out + self.delta * self.direction(x)


@pytest.mark.parametrize('sigma', [0.1, 1.0])
def test_exact_denoiser_attains_the_edm_loss_minimum(sigma):
  """E[lambda ||D - y||^2] is smallest at D = E[y | x]: on 40,000 common draws at a fixed sigma,
  moving D along h by delta = +-0.05 raises the loss, by about delta^2 lambda E||h||^2 (the
  cross term, zero in expectation at the minimum, is within four standard errors of 0); the
  identity denoiser of the same draws stays above. Three directions h: a constant, x itself,
  a bump."""
  gmm, g, n = mixture(), torch.Generator().manual_seed(0), 40_000
  y, z = gmm.sample(n, g).double(), torch.randn(n, 2, generator=g, dtype=torch.float64)
  sigmas = torch.full((n,), sigma, dtype=torch.float64)
  loss = EDMLoss(EDMSDE(), get_parameterization('x0'), sigma_data=1.0)
  best = loss(ExactDenoiser(gmm), y, sigmas, z)
  weight = loss.weight(sigmas[0])
  directions = {'constant': lambda x: torch.ones_like(x), 'linear': lambda x: x,
                'bump': lambda x: torch.exp(-(x ** 2).sum(1, keepdim=True)) * torch.ones_like(x)}
  x = y + sigma * z
  residual = exact_denoiser(gmm, x, sigma) - y
  for name, h in directions.items():
    cross = 2 * weight * (residual * h(x)).sum(1)
    assert abs(cross.mean()) < 4 * cross.std() / math.sqrt(n), name
    for delta in (0.05, -0.05):
      moved = loss(ExactDenoiser(gmm, delta, h), y, sigmas, z)
      assert moved.mean() > best.mean(), (name, delta)
  identity = loss(lambda x, labels: x, y, sigmas, z)
  assert identity.mean() > best.mean()


@pytest.mark.slow
def test_mlp_trained_with_the_edm_loss_learns_the_exact_denoiser():
  """An MLP (2 blocks of 64) with EDM's preconditioning (sigma_data = the mixture's std), trained
  by EDMLoss (P_mean -1.2, P_std 1.2) on EDM's process for 800 Adam steps of 256: at sigma in
  {0.01, 0.1, 1, 10}, on x ~ p_sigma, its denoiser's RMS error against the exact E[y | x] in the
  network's own units (times sqrt(lambda) = 1 / c_out, where the training target has unit
  variance) is below 0.4 (measured 0.08 - 0.28; sigma 0.01 and 10 lie 3 P_std from P_mean, so
  are rarely drawn), and at sigma 0.1 and 1, where the mixture's modes shape E[y | x], it is
  five times below the error of the best linear denoiser, the posterior mean of a Gaussian of the
  data's mean and covariance (measured 9x and 6x)."""
  torch.manual_seed(0)
  gmm, g = mixture(), torch.Generator().manual_seed(2)
  data = gmm.sample(100_000, torch.Generator().manual_seed(1)).double()
  precond, sde = EDMPreconditioning(float(data.std())), EDMSDE()
  net = MLP(dim=2, hidden=64, num_layers=2)
  loss = EDMLoss(sde, precond, -1.2, 1.2, precond.sigma_data)
  optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
  steps, batch = 800, 256
  for i in range(steps):
    y = gmm.sample(batch, g)
    value = loss(net, y, loss.sample_sigma(batch, generator=g), torch.randn(batch, 2, generator=g))
    optimizer.zero_grad()
    value.mean().backward()
    optimizer.step()
    optimizer.param_groups[0]['lr'] = 3e-3 * (1 - (i + 1) / steps)
  eps_fn = get_eps_fn(sde, net, True, precond)
  mean, cov = data.mean(0), torch.cov(data.T)
  for sigma in (0.01, 0.1, 1.0, 10.0):
    y = gmm.sample(4000, g).double()
    x = y + sigma * torch.randn(4000, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
      denoised = x - sigma * eps_fn(x.float(), torch.full((4000,), sigma))[0].double()
    exact = exact_denoiser(gmm, x, sigma)
    linear = mean + (x - mean) @ torch.linalg.solve(cov + sigma ** 2 * torch.eye(2), cov)
    rms = lambda d: ((d - exact) ** 2).sum(1).mean().sqrt().item()
    assert rms(denoised) / precond.c_out(torch.tensor(sigma)) < 0.4, (sigma, rms(denoised))
    if sigma in (0.1, 1.0):
      assert rms(denoised) < rms(linear) / 5, (sigma, rms(denoised), rms(linear))


# --- EDM's process under our samplers and likelihood --------------------------------------------

def sampling_config(**overrides):
  sampling = get_default_config().sampling
  sampling.update(dict(eps=0.002, **overrides))
  return sampling


@pytest.mark.parametrize('overrides', [
    dict(method='heun', time_schedule='karras', steps=35),              # EDM's default, 35 nfe
    dict(method='pc', predictor='euler_maruyama', corrector='none', steps=200),   # its time_grid
    dict(method='ode', rtol=1e-5, atol=1e-5),                           # dopri5 from T = 80
], ids=['heun', 'euler_maruyama', 'ode'])
def test_samplers_on_edms_process_draw_the_mixture(overrides, one_thread):
  """From N(0, 80^2 I) at T = sigma_max = 80 down to sigma_min = 0.002, with the mixture's exact
  score: each mode's weight, mean and covariance and the sliced W2 distance as gmm_oracle's
  assert_matches allows a many-step sampler (Euler-Maruyama on 200 steps: twice its
  allowances)."""
  gmm, sde, n = mixture(), EDMSDE(0.002, 80.0), 2000
  sampler = get_sampler(sampling_config(**overrides), sde, (n, 2))
  x, _ = sampler(exact_score_fn(gmm, sde), generator=torch.Generator().manual_seed(0),
                 progress=False)
  loose = 2 if overrides['method'] == 'pc' else 1
  assert_matches(gmm, x.double(), reference_distance(gmm, n), weight=0.01 * loose,
                 mean=0.03 * loose, cov=0.05 * loose, w2=1.5 * loose)


def test_probability_flow_likelihood_on_edms_process_is_exact_for_gaussian_data(float64):
  """Data N(0, c^2 I) in 3-D: log p_eps(x) = log N(x; 0, (c^2 + eps^2) I) at eps = 0.002, by the
  ODE from eps to T = 80 with the exact divergence. The prior N(0, 80^2 I) stands in for
  N(0, (c^2 + 80^2) I), a difference below 3 c^2 / (2 80^2) = 1.5e-4 nats; dopri5 at 1e-7;
  tolerance 1e-3 nats."""
  c, eps, sde = 0.7, 0.002, EDMSDE(0.002, 80.0)
  x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0)) * c
  score_fn = lambda x, t: -x / (c ** 2 + t[:, None] ** 2)
  result = likelihood(score_fn, sde, x, eps=eps, rtol=1e-7, atol=1e-7, hutchinson='exact')
  var = c ** 2 + eps ** 2
  exact = -0.5 * (x ** 2).sum(1) / var - 1.5 * math.log(2 * math.pi * var)
  assert torch.allclose(result.logp, exact, atol=1e-3), (result.logp - exact).abs().max()


def test_edm_process_time_is_its_noise_level():
  """m = 1, s = t, and the reverse map lambda -> t of every schedule in sigma is t = exp(-lambda)
  (against the generic bisection of SDE.time_of_log_snr, 1e-9); its chain steps are EDM's eq. 5
  levels from sigma_min to sigma_max, and its PC grid those from T to eps."""
  sde = EDMSDE(0.002, 80.0, 18)
  t = torch.tensor([0.002, 0.1, 1.0, 79.0], dtype=torch.float64)
  assert torch.equal(sde.marginal_coeffs(t)[1], t)
  lam = sde.log_snr(t)
  assert torch.allclose(sde.time_of_log_snr(lam), VESDE.time_of_log_snr(sde, lam), rtol=1e-9)
  i = torch.arange(18, dtype=torch.float64)
  edm_eq_5 = (80 ** (1 / 7) + (17 - i) / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
  assert torch.allclose(sde.chain_time(i), edm_eq_5, rtol=1e-12)
  assert torch.allclose(sde.time_grid(18, 0.002)[:-1].double(), edm_eq_5.flip(0), rtol=1e-6)


# --- score_sde checkpoints under EDM's preconditioning (EDM sec. 3) -------------------------------

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'score_sde')
TINY = {'model.nf': 16, 'model.ch_mult': (1, 2), 'model.num_res_blocks': 1,
        'model.attn_resolutions': (8,), 'model.dropout': 0.0, 'data.image_size': 16}


@pytest.mark.parametrize('name, module, precond', [
    ('tiny_vp_ddpmpp_continuous', vp_cifar10, 'vp_precond'),
    ('tiny_ve_ncsnpp_continuous', ve_cifar10, 've_precond')], ids=['vp', 've'])
def test_score_sde_checkpoint_wrapped_in_its_preconditioning_denoises_as_tweedie(
    name, module, precond, one_thread):
  """A score_sde DDPM++ (VP) / NCSN++ (VE) checkpoint, loaded into the network its config builds
  (NCSN++ without scale_by_sigma, a division with no weights) and wrapped in EDM's VP / VE
  preconditioning, D(x^; sigma) = c_skip x^ + c_out F(c_in x^; c_noise), gives Tweedie's
  (x + s^2 score) / m of our score of the same checkpoint, at the fixture's batch and three
  times: the same network under EDM's sampler. float32; 1e-5 of the largest |x0|."""
  path = os.path.join(FIXTURES, name + '.pth')
  config = module.get_config()
  config.update_from_flattened_dict(TINY)
  model, _, _ = restore(config, path)
  sde = get_sde(config)
  score_fn = get_score_fn(sde, model.eval(), True, parameterization_of(config))
  config.model.parameterization, config.model.scale_by_sigma = precond, False
  network, _, _ = restore(config, path)
  wrapped = parameterization_of(config)
  x = torch.load(os.path.join(FIXTURES, name + '_io.pt'), weights_only=True)['x']
  for time in (0.01, 0.3, 1.0):
    t = torch.full((len(x),), time)
    mean_coeff, std = (c[:, None, None, None] for c in sde.marginal_coeffs(t))
    sigma, x_hat = std / mean_coeff, x / mean_coeff
    with torch.no_grad():
      tweedie = sde.tweedie_x0(x, t, score_fn(x, t))
      F = network.eval()(wrapped.c_in(sigma) * x_hat, wrapped.c_noise(sigma, sde.network_label(t)))
    denoised = wrapped.c_skip(sigma) * x_hat + wrapped.c_out(sigma) * F
    error = (denoised - tweedie).abs().max() / tweedie.abs().max()
    assert error < 1e-5, (time, float(error))
