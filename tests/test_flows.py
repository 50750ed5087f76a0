"""Rectified flow and the cosine path as SDEs (sde_lib/flows.py), the velocity parameterization
and the flow-matching loss, against closed forms, the exact Gaussian / mixture flows and a
second method."""
import math

import pytest
import torch
from torchdiffeq import odeint

from configs.default import get_default_config
from gaussian_flow import exact_flow, gaussian_data, gaussian_score_fn
from sde_lib.gaussian_mixture import exact_score_fn, ring_mixture
from models import get_score_fn
from samplers import get_sampler
from samplers.ddim import ddim
from samplers.likelihood import likelihood
from samplers.predictions import Predictions
from samplers.probability_flow import flow
from sde_lib import VESDE, VPSDE, CosineFlow, RectifiedFlow, SubVPSDE, batch_broadcast
from sde_lib.base import SDE
from sde_lib.flows import (eps_from_velocity, straightness, velocity_fn, velocity_from_eps,
                           x0_from_velocity)
from sde_lib.time_schedules import sampling_times
from training.flow_matching_loss import flow_matching_per_sample, one_step_distillation_per_sample

pytestmark = pytest.mark.usefixtures('float64')

ALL_SDES = [VPSDE(), VPSDE(schedule='cosine'), SubVPSDE(), VESDE(), RectifiedFlow(), CosineFlow()]
FLOWS = [RectifiedFlow(), CosineFlow()]
TIMES = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)


@pytest.mark.parametrize('sde', ALL_SDES, ids=lambda s: type(s).__name__)
def test_marginal_derivative_is_the_finite_difference(sde):
  """m'(t), s'(t) (closed form on the flows, from f and g on the others) against central
  differences of m, s with h = 1e-5: truncation O(h^2) ~ 1e-9 of the third derivative, so
  1e-6 relative."""
  h = 1e-5
  (m_hi, s_hi), (m_lo, s_lo) = sde.marginal_coeffs(TIMES + h), sde.marginal_coeffs(TIMES - h)
  dm, ds = sde.marginal_coeffs_derivative(TIMES)
  torch.testing.assert_close(dm, (m_hi - m_lo) / (2 * h), rtol=1e-6, atol=1e-8)
  torch.testing.assert_close(ds, (s_hi - s_lo) / (2 * h), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize('sde', FLOWS, ids=lambda s: type(s).__name__)
def test_flow_sde_has_the_path_as_marginal(sde):
  """The SDE built from (m, s) (f = m'/m, g^2 = 2 s s' - 2 f s^2) gives back the path's
  derivatives through the moment equations of SDE.marginal_coeffs_derivative; and the
  closed forms: rectified flow f = -1/(1-t), g^2 = 2t/(1-t); cosine f = -pi/2 tan(pi t/2),
  g^2 = pi tan(pi t/2). Float64 round-off, 1e-10."""
  dm, ds = SDE.marginal_coeffs_derivative(sde, TIMES)
  torch.testing.assert_close((dm, ds), sde.marginal_coeffs_derivative(TIMES), rtol=1e-10,
                             atol=1e-10)
  f, g = sde.sde(torch.ones_like(TIMES), TIMES)
  if isinstance(sde, RectifiedFlow):
    f_true, g2_true = -1 / (1 - TIMES), 2 * TIMES / (1 - TIMES)
  else:
    tan = torch.tan(math.pi * TIMES / 2)
    f_true, g2_true = -math.pi / 2 * tan, math.pi * tan
  torch.testing.assert_close(f, f_true, rtol=1e-10, atol=1e-10)
  torch.testing.assert_close(g ** 2, g2_true, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('sde', ALL_SDES, ids=lambda s: type(s).__name__)
def test_conversions_round_trip(sde):
  """From x_t = m x_0 + s z and v = m' x_0 + s' z (known pairs): eps and x0 from (x, v), v from
  (x, eps) recover them to float64 round-off (1e-9 relative; on VE, m' = 0)."""
  g = torch.Generator().manual_seed(0)
  x0, z = torch.randn(19, 3, generator=g), torch.randn(19, 3, generator=g)
  m, s = (c[:, None] for c in sde.marginal_coeffs(TIMES))
  dm, ds = (c[:, None] for c in sde.marginal_coeffs_derivative(TIMES))
  x, v = m * x0 + s * z, dm * x0 + ds * z
  torch.testing.assert_close(eps_from_velocity(x, v, m, s, dm, ds), z, rtol=1e-9, atol=1e-9)
  torch.testing.assert_close(x0_from_velocity(x, v, m, s, dm, ds), x0, rtol=1e-9, atol=1e-9)
  torch.testing.assert_close(velocity_from_eps(x, z, m, s, dm, ds), v, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize('sde', FLOWS + [VPSDE()], ids=lambda s: type(s).__name__)
def test_gaussian_velocity_is_the_time_derivative_of_the_exact_flow(sde):
  """Gaussian data: the exact ODE map x_t -> x_u is closed form (tests/gaussian_flow.py); its
  derivative in u at u = t (central difference, h = 1e-5: O(h^2)) is the velocity, which the
  conversion of the exact score and the probability-flow drift f x - g^2/2 score both give.
  1e-6 relative."""
  gaussian = gaussian_data(dim=4)
  score_fn = gaussian_score_fn(gaussian, sde)
  x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
  velocity = velocity_fn(sde, score_fn)
  drift = sde.reverse(score_fn, probability_flow=True)
  h = 1e-5
  for t in (0.1, 0.5, 0.9):
    tt = torch.full((8,), t)
    fd = (exact_flow(gaussian, sde, x, t, t + h) - exact_flow(gaussian, sde, x, t, t - h)) / (2 * h)
    torch.testing.assert_close(velocity(x, tt), fd, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(drift.sde(x, tt)[0], fd, rtol=1e-6, atol=1e-6)


def test_velocity_model_on_vp_reproduces_the_probability_flow():
  """The VP path in flow coordinates: a 'network' that outputs the exact mixture velocity,
  read through model.parameterization='velocity', runs the probability-flow ODE to the same
  samples as the exact score from the same x_T; so does the flow's ODE dx/dt = v integrated
  directly. Both dopri5 at rtol = atol = 1e-8, so agreement to 1e-5."""
  sde = VPSDE()
  mixture = ring_mixture()
  score_fn = exact_score_fn(mixture, sde)
  velocity = velocity_fn(sde, score_fn)
  network = lambda x, labels: velocity(x, labels / (sde.N - 1) * sde.T)
  velocity_score = get_score_fn(sde, network, True, 'velocity')
  x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(2))
  reference, _ = flow(sde, score_fn, x_T, sde.T, 1e-3, rtol=1e-8, atol=1e-8)
  through_velocity, _ = flow(sde, velocity_score, x_T, sde.T, 1e-3, rtol=1e-8, atol=1e-8)
  ts = torch.tensor([sde.T, 1e-3])
  direct = odeint(lambda t, x: velocity(x, t.expand(len(x))), x_T, ts, rtol=1e-8, atol=1e-8,
                  options={'step_t': ts})[-1]
  torch.testing.assert_close(through_velocity, reference, rtol=1e-5, atol=1e-5)
  torch.testing.assert_close(direct, reference, rtol=1e-5, atol=1e-5)


def test_euler_on_rectified_flow_is_ddim():
  """On x_t = (1 - t) x_0 + t z the Euler step x + (u - t) v of the flow's ODE lands on
  (1 - u) x0_hat + u eps_hat, DDIM's step (Liu et al. 2023; Song et al. 2021a): the torchdiffeq
  Euler solve of the PF-ODE and DDIM on the same uniform times agree to round-off (1e-10)."""
  sde = RectifiedFlow()
  score_fn = exact_score_fn(ring_mixture(), sde)
  x_T = torch.randn(32, 2, generator=torch.Generator().manual_seed(3))
  euler, _ = flow(sde, score_fn, x_T, sde.T, 1e-3, method='euler', steps=10)
  times = lambda n: sampling_times(sde, 'uniform', n, 1e-3)
  stepped = ddim(Predictions(sde, score_fn), x_T, 10, times)
  torch.testing.assert_close(euler, stepped, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('path', [RectifiedFlow, CosineFlow])
def test_bits_per_dim_on_flows_is_the_exact_density(path):
  """The probability-flow likelihood with the exact divergence on the ring mixture equals its
  exact log-density at the start time: within 1e-3 nats/dim. T = 1 - 1e-6 so that the prior
  N(0, I) is p_T up to O(1e-6) (sde_lib/flows.py); dopri5 at 1e-7."""
  sde = path(T=1 - 1e-6)
  mixture = ring_mixture()
  x = mixture.sample(16, torch.Generator().manual_seed(4)).double()
  eps = 1e-5
  result = likelihood(exact_score_fn(mixture, sde), sde, x, eps=eps, rtol=1e-7, atol=1e-7,
                      hutchinson='exact')
  exact = mixture.perturbed(sde, eps).log_prob(x)
  assert (result.logp - exact).abs().max() / 2 < 1e-3


@pytest.mark.parametrize('method', ['dpm_solver', 'unipc', 'heun', 'ipndm', 'ddim'])
def test_fast_samplers_run_on_rectified_flow(method):
  """Every fast sampler on the rectified-flow path (log-SNR from -6.9 at T, sigma = s/m up to
  999) at 50 evaluations lands within 0.05 RMS of the exact ODE endpoint of the same x_T
  (dopri5, 1e-8), well under the ring's mode std 0.2."""
  sde = RectifiedFlow()
  score_fn = exact_score_fn(ring_mixture(), sde)
  config = get_default_config().sampling
  config.method, config.steps = method, 50
  x, _ = get_sampler(config, sde, (256, 2))(score_fn, torch.Generator().manual_seed(5), False)
  x_T = sde.prior_sampling((256, 2), torch.Generator().manual_seed(5))
  reference, _ = flow(sde, score_fn, x_T, sde.T, config.eps, rtol=1e-8, atol=1e-8)
  t_end = torch.full((256,), config.eps)
  reference = sde.tweedie_x0(reference, t_end, score_fn(reference, t_end))
  assert (x - reference).square().mean().sqrt() < 0.05


def test_straightness_of_a_quarter_circle():
  """x(t) = (cos(pi t/2), sin(pi t/2)) on [0, 1] has speed pi/2 and chord sqrt(2), so
  S = int ||v - chord||^2 dt / 2 dims = (pi^2/4 - 2) / 2; a straight line has S = 0.
  1000 Euler secants: O(1/1000^2) of the exact value, 1e-5."""
  t = torch.linspace(1, 0, 1001)
  curve = torch.stack([torch.cos(math.pi * t / 2), torch.sin(math.pi * t / 2)], -1)[:, None]
  assert abs(straightness(curve, t) - (math.pi ** 2 / 4 - 2) / 2) < 1e-5
  line = (t[:, None] * torch.tensor([1.0, 2.0]))[:, None]
  assert straightness(line, t) < 1e-20


def test_flow_matching_loss_is_minimal_at_the_exact_velocity():
  """The regression target's conditional mean is the exact velocity (Lipman et al. 2023,
  Theorem 2): on Gaussian data the Monte-Carlo loss of the exact eps (100k draws) is the
  closed-form conditional variance E Var[m' x_0 + s' z | x_t] = tr(m'^2 Sigma + s'^2 I -
  C V^-1 C), C = m m' Sigma + s s' I, within 4 standard errors, and moving the velocity off
  it by delta adds ||delta||^2."""
  sde, t = RectifiedFlow(), 0.4
  gaussian = gaussian_data(dim=4)
  score_fn = gaussian_score_fn(gaussian, sde)
  n = 100_000
  x0 = gaussian.sample(n, torch.Generator().manual_seed(6)).double()
  z = torch.randn(n, 4, generator=torch.Generator().manual_seed(7))
  tt = torch.full((n,), t)
  m, s = (float(c) for c in sde.marginal_coeffs(tt[:1]))
  dm, ds = (float(c) for c in sde.marginal_coeffs_derivative(tt[:1]))
  eps_fn = lambda x, t: -s * score_fn(x, t)
  losses = flow_matching_per_sample(eps_fn, sde, x0, z, tt, reduce_mean=False)
  cov = gaussian.covs[0]
  eye = torch.eye(4, dtype=torch.float64)
  c = m * dm * cov + s * ds * eye
  v = m ** 2 * cov + s ** 2 * eye
  exact = torch.trace(dm ** 2 * cov + ds ** 2 * eye - c @ torch.linalg.solve(v, c))
  assert abs(losses.mean() - exact) < 4 * losses.std() / math.sqrt(n)
  delta = torch.tensor([0.1, -0.2, 0.0, 0.3], dtype=torch.float64)
  # a velocity off by delta is an eps off by -m delta / (m s' - m' s)
  shifted = lambda x, t: eps_fn(x, t) - m * delta / (m * ds - dm * s)
  moved = flow_matching_per_sample(shifted, sde, x0, z, tt, reduce_mean=False)
  excess = moved - losses
  assert abs(excess.mean() - delta.square().sum()) < 4 * excess.std() / math.sqrt(n)


def test_a_point_mass_flows_straight_and_one_step_is_exact():
  """Data at one point mu: x_t = (1 - t) mu + t z, so eps_hat(x, t) = (x - m mu) / s exactly and
  the flow from z is the segment to mu at constant velocity z - mu (Liu et al. 2023: the
  rectified flow of a deterministic coupling is straight). Its straightness, the one-step
  distillation loss on the pairs (z, mu) and the flow-matching loss on them are 0 to round-off
  (1e-20)."""
  sde = RectifiedFlow()
  mu = torch.tensor([1.5, -0.5])

  def eps_fn(x, t):
    m, s = (batch_broadcast(c, x) for c in sde.marginal_coeffs(t))
    return (x - m * mu) / s

  z = torch.randn(64, 2, generator=torch.Generator().manual_seed(8))
  x = mu.expand(64, 2)
  assert one_step_distillation_per_sample(eps_fn, sde, z, x).max() < 1e-20
  t = torch.rand(64, generator=torch.Generator().manual_seed(9)) * sde.T
  assert flow_matching_per_sample(eps_fn, sde, x, z, t).max() < 1e-20
  times = torch.linspace(sde.T, 0, 11)
  points = [z]
  for a, b in zip(times[:-1], times[1:]):
    tt = a.expand(64)
    m, s = (batch_broadcast(c, z) for c in sde.marginal_coeffs(tt))
    dm, ds = (batch_broadcast(c, z) for c in sde.marginal_coeffs_derivative(tt))
    points.append(points[-1] + (b - a) * velocity_from_eps(points[-1], eps_fn(points[-1], tt),
                                                           m, s, dm, ds))
  assert straightness(torch.stack(points), times) < 1e-20
