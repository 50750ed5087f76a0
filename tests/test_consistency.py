"""Consistency models (models/consistency.py, training/consistency_loss.py,
samplers/consistency.py) against the CM / iCT / ECT papers' values and exact answers."""
import math

import pytest
import torch

from configs.default import get_default_config
from models import get_score_fn, parameterization_of
from models.consistency import ConsistencyPreconditioning
from models.mlp import MLP
from samplers import get_sampler
from samplers.consistency import consistency_sigmas
from samplers.heun import heun
from samplers.predictions import Predictions
from samplers.probability_flow import flow
from sde_lib import VPSDE
from sde_lib.edm import EDMSDE
from sde_lib.gaussian_mixture import exact_score_fn, random_mixture, ring_mixture
from training import consistency_loss as cm
from utils.errors import ConfigError


# --- The consistency function -------------------------------------------------------------------

@pytest.mark.parametrize('sigma_data, sigma_min', [(0.5, 0.002), (0.75, 0.002), (1.3, 0.01)])
def test_boundary_condition_holds_exactly_at_sigma_min(sigma_data, sigma_min):
  """f(x, sigma_min) = x bit for bit (CM paper, appendix C: c_skip(eps) = 1, c_out(eps) = 0),
  for a random network, through the loss's f and through Predictions.x0, which every sampler
  reads; in float32, where sigma_min is not representable exactly, and in float64."""
  precond = ConsistencyPreconditioning(sigma_data, sigma_min)
  for dtype in (torch.float32, torch.float64):
    sigma = torch.full((4,), sigma_min, dtype=dtype)
    assert (precond.c_skip(sigma) == 1).all() and (precond.c_out(sigma) == 0).all()
  torch.manual_seed(0)
  net, sde = MLP(dim=2, hidden=32, num_layers=2), EDMSDE(sigma_min)
  x = 3 * torch.randn(64, 2)
  f = cm.consistency_fn(sde, net, precond)
  assert torch.equal(f(x, torch.full((64,), sigma_min)), x)
  model = Predictions(sde, get_score_fn(sde, net, True, precond))
  assert torch.equal(model.x0(x, sigma_min), x)


def test_c_skip_and_c_out_are_the_cm_papers_at_hand_computed_points():
  """sigma_data 0.5, sigma_min 0.002 (CM's CIFAR-10): c_skip = 0.25 / ((sigma - 0.002)^2 + 0.25),
  c_out = 0.5 (sigma - 0.002) / sqrt(sigma^2 + 0.25), by hand at sigma = 1 and 80 (to 1e-6)."""
  precond = ConsistencyPreconditioning(0.5, 0.002)
  sigma = torch.tensor([1.0, 80.0], dtype=torch.float64)
  assert torch.allclose(precond.c_skip(sigma), torch.tensor([0.2006414, 3.906293e-05],
                                                           dtype=torch.float64), rtol=1e-4)
  assert torch.allclose(precond.c_out(sigma), torch.tensor([0.4463192, 0.4999777],
                                                          dtype=torch.float64), rtol=1e-6)


def test_config_names_the_consistency_parameterization_with_the_sde_sigma_min():
  config = get_default_config()
  config.model.parameterization, config.model.sigma_data, config.sde.sigma_min = 'consistency', 0.75, 0.002
  precond = parameterization_of(config)
  assert isinstance(precond, ConsistencyPreconditioning)
  assert (precond.sigma_data, precond.sigma_min) == (0.75, 0.002)


# --- Schedules and curricula, by hand -----------------------------------------------------------

def test_karras_grid_is_the_cm_papers():
  """t_i = (eps^(1/7) + (i-1)/(N-1) (T^(1/7) - eps^(1/7)))^7, N = 18 on [0.002, 80]: the ends
  exactly and i = 10 by hand, 0.002^(1/7) = 0.4115597, 80^(1/7) = 1.8701223."""
  s = cm.karras_sigmas(18, 0.002, 80.0)
  assert s[0] == pytest.approx(0.002, rel=1e-12) and s[-1] == pytest.approx(80.0, rel=1e-12)
  assert float(s[9]) == pytest.approx(3.256822, rel=1e-6)
  assert (s[1:] > s[:-1]).all()


@pytest.mark.parametrize('k, N', [(0, 2), (50_000, 107), (100_000, 151)])
def test_ct_num_scales_at_hand_computed_steps(k, N):
  """CM's N(k) = ceil(sqrt(k/K ((s1+1)^2 - s0^2) + s0^2) - 1) + 1 with CIFAR-10's s0 = 2,
  s1 = 150, K = 100,000: k = K/2 gives ceil(sqrt(11402.5) - 1) + 1 = ceil(105.78) + 1 = 107."""
  assert cm.ct_num_scales(k, 100_000, 2, 150) == N


@pytest.mark.parametrize('N, mu', [(2, 0.9), (107, 0.998033), (151, 0.998605)])
def test_ct_target_decay_at_hand_computed_scales(N, mu):
  """mu(k) = exp(s0 log mu0 / N(k)), s0 = 2, mu0 = 0.9: 0.9^(2/N) (to 1e-6)."""
  assert cm.ct_ema_decay(N, 2, 0.9) == pytest.approx(mu, abs=1e-6)


@pytest.mark.parametrize('k, N', [(0, 11), (49_999, 11), (50_000, 21), (100_000, 41),
                                  (150_000, 81), (349_999, 641), (350_000, 1281), (399_999, 1281)])
def test_ict_doubling_curriculum_at_hand_computed_steps(k, N):
  """iCT's N(k) = min(s0 2^floor(k/K'), s1) + 1, K' = floor(K / (log2 floor(s1/s0) + 1)):
  s0 = 10, s1 = 1280, K = 400,000 (iCT's CIFAR-10) give K' = 400,000 / 8 = 50,000, and N - 1
  doubles 10, 20, 40, ... 1280 at each multiple of K'."""
  assert cm.ict_num_scales(k, 400_000, 10, 1280) == N


def test_ict_noise_levels_follow_the_lognormal_by_monte_carlo():
  """p(n) is the mass of ln sigma ~ N(-1.1, 2^2) between sigma_n and sigma_{n+1} renormalized to
  [sigma_min, sigma_max]: against 10^6 lognormal draws binned by the grid (N = 41), every
  probability within 5 binomial standard errors + 1e-4."""
  sigmas = cm.karras_sigmas(41, 0.002, 80.0)
  p = cm.ict_index_probabilities(sigmas, -1.1, 2.0)
  g = torch.Generator().manual_seed(0)
  draws = (torch.randn(1_000_000, generator=g, dtype=torch.float64) * 2.0 - 1.1).exp()
  draws = draws[(draws >= 0.002) & (draws <= 80.0)]
  counts = torch.bucketize(draws, sigmas[1:-1]).bincount(minlength=40).double()
  freq = counts / counts.sum()
  assert torch.all((freq - p).abs() <= 5 * (p * (1 - p) / counts.sum()).sqrt() + 1e-4)


def test_ict_huber_c_is_the_papers_cifar10_value():
  """iCT (sec. 3.3): c = 0.00054 sqrt(d) = 0.03 for CIFAR-10's d = 3 x 32 x 32."""
  assert cm.ict_huber_c(3 * 32 * 32) == pytest.approx(0.03, abs=2e-4)


@pytest.mark.parametrize('t, stage, r', [(1.0, 0, 0.0), (1.0, 3, 0.803029), (10.0, 1, 7.499092)])
def test_ect_r_at_hand_computed_points(t, stage, r):
  """r = max(0, t (1 - (1 + 8 sigmoid(-t)) / 2^(stage+1))): sigmoid(-1) = 0.268941,
  sigmoid(-10) = 4.5398e-5, so r = 0, 1 - 3.151530/16 = 0.803029 and 10 (1 - 1.000363/4) = 7.499092."""
  assert float(cm.ect_r(torch.tensor([t]), stage)) == pytest.approx(r, abs=1e-5)
  assert [cm.ect_stage(k, 800, 8) for k in (0, 99, 100, 799)] == [0, 0, 1, 7]


# --- Losses: weighting, target, distances -------------------------------------------------------

def identity_f(x, sigma, classes=None):
  return x


def test_ict_loss_weighting_by_hand():
  """With f(x, sigma) = x the student minus the target is (sigma_{n+1} - sigma_n) z; on the
  levels (0.5, 1, 3), n = 1 and z = (3, 4): (sqrt(2^2 5^2 + c^2) - c) / 2 = (sqrt(101) - 1) / 2
  for c = 1 (to 1e-6)."""
  sigmas = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
  loss = cm.ict_loss(identity_f, torch.zeros(1, 2, dtype=torch.float64), torch.tensor([1]),
                     torch.tensor([[3.0, 4.0]], dtype=torch.float64), sigmas, 1.0)
  assert float(loss) == pytest.approx((math.sqrt(101) - 1) / 2, abs=1e-6)


def test_ect_loss_by_hand():
  """f(x, sigma) = x: (t - r) z over (t - r) gives |z|^2 = 25 in L2 where r > sigma_min; at r = 0
  the target is the data (0): t^2 25 / t = 25 t (t = 2)."""
  z = torch.tensor([[3.0, 4.0], [3.0, 4.0]], dtype=torch.float64)
  loss = cm.ect_loss(identity_f, torch.zeros(2, 2, dtype=torch.float64),
                     torch.tensor([2.0, 2.0], dtype=torch.float64),
                     torch.tensor([1.5, 0.0], dtype=torch.float64), z, 0.002, cm.l2)
  assert loss.tolist() == pytest.approx([0.5 ** 2 * 25 / 0.5, 2.0 ** 2 * 25 / 2.0])


def test_distances_by_hand():
  a, b = torch.tensor([[3.0, -4.0]]), torch.zeros(1, 2)
  assert float(cm.l2(a, b)) == 25 and float(cm.l1(a, b)) == 7
  assert float(cm.pseudo_huber(a, b, 1.0)) == pytest.approx(math.sqrt(26) - 1)


def test_target_update_is_the_papers_ema():
  """theta- <- mu theta- + (1 - mu) theta: target 1, student 2, mu = 0.9 give 1.1."""
  target, model = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
  torch.nn.init.constant_(target.weight, 1.0), torch.nn.init.constant_(model.weight, 2.0)
  cm.update_target(target, model, 0.9)
  assert torch.allclose(target.weight, torch.full((2, 2), 1.1))


def test_cd_loss_trains_the_student_only_and_hits_zero_for_a_consistent_f():
  """The exact consistency function of Gaussian data N(0, S^2 I), f(x, sigma) = x sqrt(S^2 +
  sigma_min^2) / sqrt(S^2 + sigma^2), is where CD's loss vanishes: with an exact teacher (many
  Heun steps) the loss is below 1e-8 of its value for f = identity; the target's gradient is
  never formed."""
  S, sigma_min, sde = 0.7, 0.002, EDMSDE(0.002)
  exact = lambda x, t, classes=None: -x / (S ** 2 + t[:, None] ** 2)
  step = cm.heun_ode_step(sde, exact, 40)
  f = lambda x, sigma, classes=None: x * math.sqrt(S ** 2 + sigma_min ** 2) / (S ** 2 + sigma[:, None] ** 2).sqrt()
  sigmas = cm.karras_sigmas(18, sigma_min, 80.0)
  g = torch.Generator().manual_seed(0)
  x0, z = S * torch.randn(64, 2, generator=g, dtype=torch.float64), torch.randn(64, 2, generator=g, dtype=torch.float64)
  index = torch.randint(17, (64,), generator=g)
  exact_loss = cm.cd_loss(f, f, step, x0, index, z, sigmas, cm.l2)
  identity_loss = cm.cd_loss(identity_f, identity_f, step, x0, index, z, sigmas, cm.l2)
  assert exact_loss.mean() < 1e-8 * identity_loss.mean()


# --- The teacher's ODE step ---------------------------------------------------------------------

@pytest.mark.parametrize('sde', [EDMSDE(0.002), VPSDE()], ids=['edm', 'vp'])
def test_teacher_step_is_the_exact_ode_in_edms_variables(sde, float64):
  """On the 16-D mixture's exact score, Heun's step (budget 400; second order, measured 2e-5)
  agrees with dopri5 at 1e-10 on EDM's process to 1e-4, in x^ = x / m on any process (the VP
  teacher's step equals the EDM one), each row of a batch of mixed levels (2 -> 1.2 and
  1.2 -> 0.5) at its own levels."""
  mixture = random_mixture(16)
  edm = EDMSDE(0.002)
  g = torch.Generator().manual_seed(0)
  x = mixture.sample(32, g).double() + 2.0 * torch.randn(32, 16, generator=g, dtype=torch.float64)
  score = exact_score_fn(mixture, sde)
  step = cm.heun_ode_step(sde, lambda x, t, classes=None: score(x, t), 400)
  first = torch.arange(32) % 2 == 0
  sigma = torch.where(first, 2.0, 1.2).double()
  sigma_next = torch.where(first, 1.2, 0.5).double()
  mixed = step(x, sigma, sigma_next)
  for rows, (a, b) in [(first, (2.0, 1.2)), (~first, (1.2, 0.5))]:
    reference, _ = flow(edm, exact_score_fn(mixture, edm), x[rows], a, b, 'dopri5', 1e-10, 1e-10)
    assert torch.allclose(mixed[rows], reference, atol=1e-4)


@pytest.mark.parametrize('budget', [2, 3])
@pytest.mark.parametrize('sde', [EDMSDE(0.002), VPSDE()], ids=['edm', 'vp'])
def test_batched_heun_step_is_the_samplers_heun_per_level_in_budget_evaluations(sde, budget):
  """CD's teacher step on a float32 batch mixing all 17 adjacent pairs of the N = 18 Karras grid:
  heun_ode_step equals EDM's Heun sampler (samplers.heun.heun, one time for the whole batch)
  run pair by pair, to float32 rounding (relative 1e-6; measured 1.4e-7), at CM's budget 2 and at 3 (a Heun step
  to the middle of the pair's rho = 7 grid, then an Euler step), on the 2-D ring's exact score;
  it evaluates the score `budget` times for the whole batch, the pair-by-pair step budget x 17."""
  mixture = ring_mixture()
  score = exact_score_fn(mixture, sde)
  calls = []
  counted = lambda x, t, classes=None: calls.append(len(x)) or score(x.double(), t.double()).float()
  sigmas = cm.karras_sigmas(18, 0.002, 80.0)
  g = torch.Generator().manual_seed(0)
  index = torch.arange(68) % 17
  x = (mixture.sample(68, g).double() + sigmas[index + 1, None] * torch.randn(68, 2, generator=g, dtype=torch.float64)).float()
  batched = cm.heun_ode_step(sde, counted, budget)(x, sigmas[index + 1], sigmas[index])
  assert calls == [68] * budget
  calls.clear()
  per_level = cm.solver_ode_step(heun, sde, counted, budget)(x, sigmas[index + 1], sigmas[index])
  assert len(calls) == 17 * budget
  scale = x.abs().amax(1, keepdim=True)
  assert ((batched - per_level).abs() / scale).max() < 1e-6


# --- Multistep sampling -------------------------------------------------------------------------

def sampling_config(**overrides):
  config = get_default_config().sampling
  config.update(method='consistency', eps=0.002, **overrides)
  return config


@pytest.mark.parametrize('steps, sigmas', [(1, ()), (2, ()), (2, (2.0,)), (3, (5.0, 0.5))])
def test_multistep_sampling_draws_the_exact_consistency_models_law(steps, sigmas):
  """For data N(0, S^2 I) the exact consistency function is f(x, sigma) = x r(sigma),
  r = sqrt(S^2 + sigma_min^2) / sqrt(S^2 + sigma^2), so CM Algorithm 1 from x_T ~ N(0, 80^2)
  gives N(0, v) with v_1 = 80^2 r(80)^2 and v_{k+1} = (v_k + tau^2 - sigma_min^2) r(tau)^2, the
  default tau of two steps iCT's 0.821: the sample variance of 40,000 draws within 4 standard
  errors (sqrt(2/n) relative); exactly `steps` evaluations."""
  S, sigma_min, n = 0.7, 0.002, 40_000
  r = lambda sigma: math.sqrt(S ** 2 + sigma_min ** 2) / math.sqrt(S ** 2 + sigma ** 2)
  # the score whose Tweedie estimate x + sigma^2 score is f: (f - x) / sigma^2
  score_fn = lambda x, t: (x * (S ** 2 + sigma_min ** 2) ** 0.5 / (S ** 2 + t[:, None] ** 2) ** 0.5 - x) / t[:, None] ** 2
  sampler = get_sampler(sampling_config(steps=steps, consistency_sigmas=sigmas), EDMSDE(0.002, 80.0), (n, 2))
  x, nfe = sampler(score_fn, generator=torch.Generator().manual_seed(0), progress=False)
  taus = consistency_sigmas(steps, sigmas, 80.0, sigma_min)
  v = 80.0 ** 2 * r(80.0) ** 2
  for tau in taus:
    v = (v + tau ** 2 - sigma_min ** 2) * r(tau) ** 2
  assert nfe == steps
  assert abs(float(x.var()) / v - 1) < 4 * math.sqrt(2 / (2 * n)), (float(x.var()), v)


def test_two_step_default_is_icts_and_bad_levels_are_refused():
  assert consistency_sigmas(2, (), 80.0, 0.002) == (0.821,)
  assert len(consistency_sigmas(4, (), 80.0, 0.002)) == 3
  for steps, sigmas in [(2, (0.001,)), (2, (90.0,)), (3, (0.5, 1.0)), (3, (1.0,)), (0, ())]:
    with pytest.raises(ConfigError, match='consistency'):
      consistency_sigmas(steps, sigmas, 80.0, 0.002)
