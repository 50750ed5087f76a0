"""A discrete-time model runs DDPM exactly: Ho et al.'s Algorithm 2 on the chain's own steps.

The truth here is written independently of sde_lib: Ho et al.'s betas linspace(1e-4, 0.02,
1000), their alphas_cumprod, Algorithm 2 transcribed line by line, and the exact eps of
Gaussian data x_0 ~ N(MU, SIGMA^2 I) under that chain,
    E[eps | x_t] = sqrt(1 - abar_t) (x_t - sqrt(abar_t) MU) / (abar_t SIGMA^2 + 1 - abar_t).
"""
import math

import pytest
import torch

from configs.default import get_default_config
from evaluation.vlb import vlb
from models.score_fn import chain_eps_fn
from models import get_score_fn
from samplers import get_sampler
from sde_lib import DiscreteChain, VESDE, VPSDE
from sde_lib.time_schedules import respaced_steps
from training.losses import get_loss_fn
from utils.errors import ConfigError

N, MU, SIGMA = 1000, 0.3, 0.5
HO_BETAS = torch.linspace(1e-4, 0.02, N, dtype=torch.float64)
HO_ALPHAS = 1 - HO_BETAS
HO_ABAR = torch.cumprod(HO_ALPHAS, 0)
HO_ABAR_PREV = torch.cat([torch.ones(1, dtype=torch.float64), HO_ABAR[:-1]])
HO_BETA_TILDE = HO_BETAS * (1 - HO_ABAR_PREV) / (1 - HO_ABAR)


def exact_eps(x, step):
  """E[eps | x_t] at Ho's 0-based step (t = step + 1) for Gaussian data; x of any float dtype."""
  abar = HO_ABAR[step].reshape(-1, *([1] * (x.dim() - 1)))
  eps = (1 - abar).sqrt() * (x.double() - abar.sqrt() * MU) / (abar * SIGMA ** 2 + 1 - abar)
  return eps.to(x.dtype)


class ExactEpsNetwork(torch.nn.Module):
  """A discrete-time 'network': reads the integer step off its label, records what it saw."""

  def __init__(self):
    super().__init__()
    self.labels, self.inputs = [], []

  def forward(self, x, labels):
    assert torch.equal(labels, labels.round()), 'a discrete-time network takes integer steps'
    self.labels.append(labels.clone())
    self.inputs.append(x.clone())
    return exact_eps(x, labels.long())


def sampling_config(variance, steps=N, method='ancestral'):
  config = get_default_config().sampling
  config.method, config.steps, config.variance = method, steps, variance
  return config


def respaced(kept):
  """Nichol & Dhariwal 2021, eq. 19: the chain keeping Ho's 0-based steps `kept` (ascending) has
  alphabar_k = alphabar_{S_k} and betas 1 - alphabar_{S_k} / alphabar_{S_{k-1}} (1 before the
  first). Returns (betas, alphabar, alphabar_prev); every step kept gives Ho's chain."""
  abar = HO_ABAR[list(kept)]
  abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
  return 1 - abar / abar_prev, abar, abar_prev


def algorithm_2(x_T, noises, variance, kept=range(N)):
  """Ho et al. 2020, Algorithm 2, with the exact eps, on the chain keeping the steps `kept`
  (all N: Ho's own; fewer: respaced(kept), the network seeing the kept step S_k); returns
  [x_T, ..., x_0].

      x_T ~ N(0, I); for t = T, ..., 1: z ~ N(0, I) if t > 1, else z = 0
      x_{t-1} = 1/sqrt(alpha_t) (x_t - (1 - alpha_t)/sqrt(1 - abar_t) eps(x_t, t)) + sigma_t z
  sigma_t^2 = beta_t ('fixedlarge') or beta-tilde_t ('fixedsmall').
  """
  kept = list(kept)
  betas, abar, abar_prev = respaced(kept)
  sigma2 = betas if variance == 'beta' else betas * (1 - abar_prev) / (1 - abar)
  K = len(kept)
  xs = [x_T.double()]
  for t in range(K, 0, -1):
    i = t - 1
    z = noises[K - t].double() if t > 1 else torch.zeros_like(xs[-1])
    x = xs[-1]
    eps = exact_eps(x, torch.full((x.shape[0],), kept[i]))
    xs.append((x - betas[i] / (1 - abar[i]).sqrt() * eps) / (1 - betas[i]).sqrt()
              + sigma2[i].sqrt() * z)
  return xs


def test_respacing_keeps_nichol_and_dhariwals_steps_and_all_of_them_at_k_n():
  """Their K evenly spaced steps from 0 to N - 1, rounded half to even as their respacing does
  (hand-computed: a stride of 4.5 from 0 gives 0, round(4.5) = 4, 9; a stride of 3.5 gives 0,
  round(3.5) = 4, 7); K = N keeps every step, and its betas are Ho's to round-off (1e-15);
  fewer than 2 or more than N steps are refused."""
  assert respaced_steps(10, 3) == [0, 4, 9]
  assert respaced_steps(8, 3) == [0, 4, 7]
  assert respaced_steps(10, 4) == [0, 3, 6, 9]
  assert respaced_steps(N, N) == list(range(N))
  kept = respaced_steps(N, 50)
  assert len(kept) == 50 and kept[0] == 0 and kept[-1] == N - 1
  assert all(20 <= b - a <= 21 for a, b in zip(kept, kept[1:]))   # stride 999 / 49 = 20.39
  assert (respaced(range(N))[0] - HO_BETAS).abs().max() < 1e-15
  for bad in (1, N + 1):
    with pytest.raises(ConfigError, match='respaced'):
      respaced_steps(N, bad)


def test_the_respaced_chain_has_the_originals_alphas_cumprod_at_its_steps():
  """DiscreteChain's grid for K steps lies on the kept steps, where its (m, s) are the original
  chain's sqrt(alphabar), sqrt(1 - alphabar) (float64, 1e-12), then the data (1, 0)."""
  chain = DiscreteChain(VPSDE())
  for K in (N, 100, 20):
    kept = respaced_steps(N, K)
    times = chain.time_grid(K).double()
    mean_coeff, std = chain.marginal_coeffs(times)
    expected = HO_ABAR[kept].flip(0).sqrt()
    assert torch.allclose(mean_coeff[:-1].double(), expected, atol=1e-12, rtol=0)
    assert torch.allclose(std[:-1].double(), (1 - expected ** 2).sqrt(), atol=1e-12, rtol=0)
    assert float(mean_coeff[-1]) == 1.0 and float(std[-1]) == 0.0


@pytest.mark.parametrize('steps', [N, 50])
@pytest.mark.parametrize('dtype,tolerance', [('float64', 1e-9), ('float32', 1e-5)])
@pytest.mark.parametrize('variance', ['beta', 'beta_tilde'])
def test_discrete_ancestral_sampler_is_algorithm_2(variance, dtype, tolerance, steps, request):
  """Same noise, step for step: the states the network sees and the final sample agree with the
  transcription, on Ho's chain and on the 50-step respaced one (sampling.steps = 50); the
  network sees the labels 999, 998, ..., 0 (or the kept steps) exactly. Run in float64 the two
  agree to 1e-9 (measured ~1e-13: the same arithmetic in another order); the float32 sampler
  to 1e-5 (measured 3e-6: rounding of 1e-7 per step over 1000 steps, amplified where x0_hat =
  x / sqrt(abar) magnifies by 150 near t = T)."""
  if dtype == 'float64':
    request.getfixturevalue('float64')
  shape = (64, 3)
  network = ExactEpsNetwork()
  score_fn = get_score_fn(VPSDE(), network, continuous=False)
  sampler = get_sampler(sampling_config(variance, steps), VPSDE(), shape, continuous=False)
  x0, nfe = sampler(score_fn, generator=torch.Generator().manual_seed(0), progress=False)

  g = torch.Generator().manual_seed(0)   # the sampler's draws: x_T, then one z per step
  x_T = torch.randn(shape, generator=g)
  noises = [torch.randn(shape, generator=g) for _ in range(steps)]
  kept = respaced_steps(N, steps)
  expected = algorithm_2(x_T, noises, variance, kept)

  assert nfe == steps
  assert torch.equal(torch.stack(network.labels)[:, 0], torch.tensor(kept[::-1]).float())
  seen = torch.stack(network.inputs).double()
  assert (seen - torch.stack(expected[:-1])).abs().max().item() < tolerance
  assert (x0.double() - expected[-1]).abs().max().item() < tolerance


def test_a_discrete_time_score_fn_is_sampled_on_its_chain_without_being_told():
  """get_sampler with no `continuous` argument: the discrete-time score_fn (get_score_fn(...,
  continuous=False)) says what it is, and 'ancestral' runs Algorithm 2 on its chain, step for
  step against the transcription (float32: 1e-5 as above). Stepping it on the continuous
  alphabar(t) instead differs by far more than that; asking for that explicitly is refused."""
  shape, steps = (64, 3), N
  network = ExactEpsNetwork()
  score_fn = get_score_fn(VPSDE(), network, continuous=False)
  sampler = get_sampler(sampling_config('beta_tilde', steps), VPSDE(), shape)
  x0, nfe = sampler(score_fn, generator=torch.Generator().manual_seed(0), progress=False)
  g = torch.Generator().manual_seed(0)
  x_T = torch.randn(shape, generator=g)
  noises = [torch.randn(shape, generator=g) for _ in range(steps)]
  expected = algorithm_2(x_T, noises, 'beta_tilde', respaced_steps(N, steps))
  assert nfe == steps
  assert (x0.double() - expected[-1]).abs().max().item() < 1e-5
  continuous_steps = get_sampler(sampling_config('beta_tilde', steps), VPSDE(), shape)
  x_continuous, _ = continuous_steps(lambda x, t: score_fn(x, t),   # the flag hidden
                                     generator=torch.Generator().manual_seed(0), progress=False)
  assert (x_continuous.double() - expected[-1]).abs().max().item() > 1e-3
  with pytest.raises(ConfigError, match='discrete-time'):
    get_sampler(sampling_config('beta_tilde', steps), VPSDE(), shape, continuous=True)(
        score_fn, progress=False)


def linear_chain_moments(variance):
  """Mean and variance of x_0 from Algorithm 2 with the exact eps, in closed form: eps is affine
  in x_t, so each step is x_{t-1} = A_t x_t + b_t + sigma_t z and the moments follow
  m <- A m + b, v <- A^2 v + sigma^2 (no noise at t = 1), from x_T ~ N(0, 1)."""
  sigma2 = HO_BETAS if variance == 'beta' else HO_BETA_TILDE
  mean, var = 0.0, 1.0
  for t in range(N, 0, -1):
    i = t - 1
    c = (1 - HO_ABAR[i]).sqrt() / (HO_ABAR[i] * SIGMA ** 2 + 1 - HO_ABAR[i])   # eps = c (x - sqrt(abar) MU)
    k = HO_BETAS[i] / (1 - HO_ABAR[i]).sqrt() * c
    A, b = (1 - k) / HO_ALPHAS[i].sqrt(), k * HO_ABAR[i].sqrt() * MU / HO_ALPHAS[i].sqrt()
    mean, var = A * mean + b, A ** 2 * var + (sigma2[i] if t > 1 else 0.0)
  return float(mean), float(var)


@pytest.mark.parametrize('variance', ['beta', 'beta_tilde'])
def test_final_moments_are_the_closed_form_recursion(variance, monkeypatch):
  """No Monte Carlo: the sampler is affine in its N + 1 standard normal draws, so feeding draw k
  as a unit impulse in batch row k (and no noise in the last row) gives the output's mean (last
  row) and its sensitivity L_k to draw k (row k minus the last); Var = sum_k L_k^2. Both match
  the closed-form recursion to 1e-5 (float32 sampler)."""
  rows = N + 2
  draws = iter(range(N + 1))

  def impulse(*shape, generator=None, device=None, dtype=None):
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, torch.Size)) else shape
    z = torch.zeros(shape, device=device, dtype=dtype)
    z[next(draws)] = 1.0
    return z

  monkeypatch.setattr(torch, 'randn', impulse)
  score_fn = get_score_fn(VPSDE(), ExactEpsNetwork(), continuous=False)
  sampler = get_sampler(sampling_config(variance), VPSDE(), (rows, 1), continuous=False)
  x0, _ = sampler(score_fn, progress=False)
  monkeypatch.undo()
  x0 = x0.double()[:, 0]
  mean = x0[-1].item()
  var = ((x0[:-1] - x0[-1]) ** 2).sum().item()
  want_mean, want_var = linear_chain_moments(variance)
  assert mean == pytest.approx(want_mean, abs=1e-5)
  assert var == pytest.approx(want_var, rel=1e-5)
  # Sanity of the truth itself: the chain nearly recovers the data N(MU, SIGMA^2).
  assert want_mean == pytest.approx(MU, abs=0.02) and math.sqrt(want_var) == pytest.approx(SIGMA, rel=0.05)


def test_training_score_wrapper_and_vlb_agree_on_alphabar_at_every_step():
  """For every chain step i, each of the three users of the chain puts x at Ho's alphabar_i and
  hands the network the label i: the training loss (its (t, m, s) draw, through the discrete
  score wrapper), the score wrapper at the sampler's grid times, and the VLB's eps queries.
  Any other step-time map (round(t (N-1)), i / (N-1), ...) fails here."""
  sde = VPSDE()
  config = get_default_config()
  config.training.loss, config.training.continuous = 'ddpm', False

  class Recorder(torch.nn.Module):
    def forward(self, x, labels):
      self.x, self.labels = x, labels
      return torch.ones_like(x)

  # Training: a batch of 4000 draws covers ~98% of the steps; x0 = 1 and the replayed noise
  # give the x_t the loss built, whose alphabar must be Ho's at the label the network saw.
  net = Recorder()
  x0 = torch.ones(4000, 1)
  get_loss_fn(config, sde)(net, x0, generator=torch.Generator().manual_seed(0))
  g = torch.Generator().manual_seed(0)
  torch.randint(N, (4000,), generator=g)
  z = torch.randn(x0.shape, generator=g)
  abar = HO_ABAR[net.labels.long()][:, None]
  assert torch.allclose(net.x.double(), abar.sqrt() + (1 - abar).sqrt() * z.double(), atol=1e-6)

  # The sampler's grid on the chain, through the score wrapper: label i and std sqrt(1 - abar_i).
  from sde_lib import DiscreteChain
  times = DiscreteChain(sde).time_grid(N)[:-1]
  score = get_score_fn(sde, net, continuous=False)(torch.zeros(N, 1), times)
  assert torch.equal(net.labels, torch.arange(N - 1, -1, -1).float())
  assert torch.allclose(-1 / score[:, 0].double(), (1 - HO_ABAR.flip(0)).sqrt(), rtol=1e-6)

  # The VLB: step i's network call sees label i and x_i = sqrt(abar_i) x0 + sqrt(1 - abar_i) noise_i.
  seen = []

  def eps_fn(x, index):
    seen.append((x.clone(), index.clone()))
    return chain_eps_fn(sde, net, continuous=False)(x, index)

  x0 = torch.full((1, 1), 0.5, dtype=torch.float64)
  vlb(eps_fn, sde, x0, num_bins=256, generator=torch.Generator().manual_seed(1), progress=False)
  g = torch.Generator().manual_seed(1)
  for i, (x, index) in enumerate(seen):
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    assert index.item() == i
    assert torch.allclose(x, HO_ABAR[i].sqrt() * x0 + (1 - HO_ABAR[i]).sqrt() * noise, atol=1e-12)
  assert len(seen) == N


def test_discrete_ve_model_walks_smld_noise_levels():
  """SMLD's chain: sigma_i = geometric from sigma_min to sigma_max (N of them); the discrete
  ancestral sampler calls the network at i = N-1..0 and its last step is Tweedie's denoiser."""
  sde = VESDE(N=10)
  sigmas = torch.exp(torch.linspace(math.log(0.01), math.log(50.0), 10, dtype=torch.float64))
  seen = []

  class Zero(torch.nn.Module):   # 'eps' parameterization with eps = 0: score 0, x0_hat = x
    def forward(self, x, labels):
      seen.append(labels.clone())
      return torch.zeros_like(x)

  score_fn = get_score_fn(sde, Zero(), continuous=False)
  sampler = get_sampler(sampling_config('beta_tilde', steps=10), sde, (5, 2), continuous=False)
  x, nfe = sampler(score_fn, generator=torch.Generator().manual_seed(0), progress=False)
  assert torch.equal(torch.stack(seen)[:, 0], torch.arange(9, -1, -1).float()) and nfe == 10
  assert torch.allclose(sde.chain_std(torch.arange(10)).double(), sigmas, rtol=1e-5)
  # With score 0 every ancestral step keeps the mean and adds the SMLD variance
  # sigma_{i}^2 - sigma_{i-1}^2 scaled by sigma_{i-1}^2 / sigma_i^2 (beta-tilde), ending at x0_hat = x.
  g = torch.Generator().manual_seed(0)
  x_T = 50.0 * torch.randn(5, 2, generator=g)
  x_ref = x_T.double()
  for i in range(9, 0, -1):
    z = torch.randn(5, 2, generator=g).double()
    var = (sigmas[i] ** 2 - sigmas[i - 1] ** 2) * sigmas[i - 1] ** 2 / sigmas[i] ** 2
    x_ref = x_ref + var.sqrt() * z
  assert torch.allclose(x.double(), x_ref, rtol=1e-5, atol=1e-5)


def test_chain_settings_that_cannot_run_are_refused():
  """A discrete-time model samples its chain or a respaced one: more steps than the chain has,
  or a predictor that needs the SDE's drift, is a ConfigError when the sampler is built."""
  with pytest.raises(ConfigError, match='sampling.steps'):
    get_sampler(sampling_config('beta', steps=N + 1), VPSDE(), (2, 1), continuous=False)
  config = sampling_config('beta', method='pc')
  config.predictor, config.corrector = 'euler_maruyama', 'none'
  with pytest.raises(ConfigError, match='euler_maruyama'):
    get_sampler(config, VPSDE(), (2, 1), continuous=False)
  # The same settings on a continuous-time model are fine.
  get_sampler(config, VPSDE(), (2, 1), continuous=True)
