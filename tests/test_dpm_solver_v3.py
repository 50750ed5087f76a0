"""DPM-Solver-v3 and its empirical model statistics (EMS) against closed forms and exact flows.

On Gaussian data N(mu, Sigma = U diag(e) U^T) under the VP-SDE the noise prediction is linear,
eps = sigma V^-1 (x - alpha mu) with V = alpha^2 Sigma + sigma^2 I, and the probability-flow
ODE keeps the whitened w = diag(d)^-1/2 U^T (x - alpha mu) fixed (d_k = alpha^2 e_k + sigma^2;
tests/gaussian_flow.py). So along the ODE f = (1 - l) x / alpha - x0_hat = F w + f0 and
f^(1) = F' w + f0' are affine in w ~ N(0, I), and the EMS (samplers/ems.py) have closed forms:
  l = diag(sigma^2 V^-1),  s = (F F'^T)_ii / (F F^T)_ii,  b = f0' - s f0,
  F = U diag(sigma^2 / (alpha sqrt(d))) - diag(l) U diag(sqrt(d) / alpha),  f0 = -l mu,
with the VP derivatives dlog alpha / dlambda = sigma^2, dlog sigma^2 / dlambda = -2 alpha^2.
"""
import glob
import math
import os

import pytest
import torch

from configs.default import get_default_config
from gaussian_flow import exact_flow, gaussian_data, loglog_slope
from sde_lib.gaussian_mixture import GaussianMixture, exact_score_fn, random_mixture, ring_mixture
from gmm_oracle import assert_matches, reference_distance
from models import get_model
from pipeline import sampling as draw_module
from samplers.ddim import ddim
from pipeline.sampling import data_sampler
from samplers.dpm_solver_v3 import dpm_solver_v3
from samplers.ems import EMS, compute_ems
from samplers.driver import sample
from samplers.fast import budgeted, fast_times
from samplers.registry import get_sampler
from sde_lib import VPSDE
from utils.errors import ConfigError

T_END = 1e-3


pytestmark = pytest.mark.usefixtures('float64_one_thread')


def vp_coeffs(lambdas):
  """alpha^2, sigma^2 of the VP-SDE at lambda: sigmoid(2 lambda), sigmoid(-2 lambda)."""
  return torch.sigmoid(2 * lambdas), torch.sigmoid(-2 * lambdas)


def gaussian_truth(gaussian, lambdas, l=None, l_d=None):
  """Closed-form EMS of Gaussian data on the grid `lambdas` (see the module docstring): a dict
  with l, l_d (exact), and s, b with their Monte-Carlo standard errors for n = 1 (divide by
  sqrt(n)) given l and l_d (default: the exact ones; pass an estimator's to check its s, b
  conditionally on them); also the Rademacher standard errors of l and l' for n = 1."""
  U, e, mu = gaussian.eigvecs[0], gaussian.eigvals[0], gaussian.means[0]
  a2, s2 = (c[:, None] for c in vp_coeffs(lambdas))            # [G, 1]
  alpha = a2.sqrt()
  d = a2 * e + s2                                              # [G, K]
  d_d = 2 * a2 * s2 * (e - 1)                                  # dd/dlambda
  j = s2 / d                                                   # eigenvalues of J = sigma^2 V^-1
  j_d = j * (-2 * a2 - d_d / d)
  q, r = s2 / (alpha * d.sqrt()), d.sqrt() / alpha
  q_d, r_d = q * (-2 * a2 - s2 - d_d / (2 * d)), r * (d_d / (2 * d) - s2)
  exact_l = torch.einsum('ik,gk->gi', U ** 2, j)
  exact_l_d = torch.einsum('ik,gk->gi', U ** 2, j_d)
  l = exact_l if l is None else l
  l_d = exact_l_d if l_d is None else l_d
  F = U * q[:, None, :] - l[:, :, None] * U * r[:, None, :]    # [G, D, K]
  F_d = (U * q_d[:, None, :] - l_d[:, :, None] * U * r[:, None, :]
         - l[:, :, None] * U * r_d[:, None, :])
  var_f, cov, var_f1 = (F * F).sum(-1), (F * F_d).sum(-1), (F_d * F_d).sum(-1)
  s = cov / var_f
  mean_f = -l * mu
  b = -l_d * mu - s * mean_f
  residual = var_f1 - cov ** 2 / var_f
  J = torch.einsum('ik,gk,jk->gij', U, j, U)
  J_d = torch.einsum('ik,gk,jk->gij', U, j_d, U)
  off = 1 - torch.eye(U.shape[0])
  return {'l': exact_l, 'l_d': exact_l_d, 's': s, 'b': b,
          'se_s': (residual / var_f).sqrt(), 'se_b': (residual * (1 + mean_f ** 2 / var_f)).sqrt(),
          'se_l': ((J * off) ** 2).sum(-1).sqrt(), 'se_l_d': ((J_d * off) ** 2).sum(-1).sqrt()}


def exact_ems(gaussian, sde, grid):
  """The closed-form EMS on a grid of `grid` intervals from lambda(T) to lambda(T_END)."""
  lam = sde.log_snr(torch.tensor([sde.T, T_END]))
  lambdas = torch.linspace(float(lam[0]), float(lam[1]), grid + 1)
  times = sde.time_of_log_snr(lambdas)
  times[0], times[-1] = sde.T, T_END
  truth = gaussian_truth(gaussian, lambdas)
  return EMS(lambdas, times, truth['l'], truth['l_d'], truth['s'], truth['b'], T_END, sde.T)


def solve(sde, score_fn, solver, budget, n, dim, schedule='logsnr', noise_removal=False, **options):
  """(x, nfe) of `solver` through the fast samplers' driver from x_T drawn with seed 1."""
  times = fast_times(sde, schedule, T_END, budget, noise_removal=noise_removal)
  run = budgeted(solver, budget - int(noise_removal), times, **options)
  return sample(sde, score_fn, (n, dim), run, float(times(1)[-1]), noise_removal,
                generator=torch.Generator().manual_seed(1), progress=False)


def test_ems_estimator_matches_closed_form_on_gaussian_data():
  """compute_ems on 4000 draws of a rotated anisotropic 4-d Gaussian, against the closed forms.

  l: within 5 standard errors of its Rademacher estimator (sqrt(sum_{j != i} J_ij^2 / n)),
  plus 1e-12. l': the same for the differentiated estimator plus 0.01 for the grid differences
  (the second differences of l over h = 0.16 are below 2e-3). s and b given the estimated l, l':
  within 5 standard errors of a least-squares slope and intercept from n draws (residual
  variance / (n Var f), times 1 + E[f]^2 / Var f for b). A flipped sign or a factor of two in
  any of them is off by 10 to 1000 standard errors.
  """
  sde, gaussian, n = VPSDE(), gaussian_data(), 4000
  data = gaussian.sample(n, torch.Generator().manual_seed(0)).double()
  ems = compute_ems(exact_score_fn(gaussian, sde), sde, data, T_END, grid=60, batch_size=n,
                    generator=torch.Generator().manual_seed(1), progress=False)
  assert ems.shape == (4,) and ems.num_samples == n and ems.grid == 60
  truth = gaussian_truth(gaussian, ems.lambdas)
  root_n = math.sqrt(n)
  assert ((ems.l - truth['l']).abs() <= 5 * truth['se_l'] / root_n + 1e-12).all()
  assert ((ems.l_d - truth['l_d']).abs() <= 5 * truth['se_l_d'] / root_n + 0.01).all()
  given = gaussian_truth(gaussian, ems.lambdas, ems.l, ems.l_d)
  assert ((ems.s - given['s']).abs() <= 5 * given['se_s'] / root_n).all()
  assert ((ems.b - given['b']).abs() <= 5 * given['se_b'] / root_n).all()


def test_first_order_step_is_exact_for_independent_coordinates():
  """For data with independent Gaussian coordinates the noise prediction's Jacobian is diagonal
  and constant, so the optimal l (sec. 3.2) removes all of N = sigma eps - l x's dependence on
  x: f = -l mu depends on lambda alone, f^(1) = s f + b holds exactly, g of eq. 10 is constant,
  and the paper's first-order step (eq. 11 with g = g_s) has no discretization error. One step
  from T to t_end with EMS estimated from 500 draws therefore misses the exact flow only by the
  trapezoid rule's error in the EMS integrals: measured 3.8e-3 on 50 grid intervals, 9.5e-4 on
  100 (second order: ratio 4 +- 1 required), against DDIM's 4.2 for the same single step.
  """
  sde = VPSDE()
  gaussian = GaussianMixture(torch.ones(1), torch.tensor([[0.5, -1.0, 0.2, 1.0]]),
                             torch.diag(torch.tensor([0.05, 0.3, 1.0, 2.0]))[None])
  score_fn = exact_score_fn(gaussian, sde)
  data = gaussian.sample(500, torch.Generator().manual_seed(0)).double()
  x_T = sde.prior_sampling((200, 4), generator=torch.Generator().manual_seed(1))
  exact = exact_flow(gaussian, sde, x_T, sde.T, T_END)
  errors = []
  for grid in (50, 100):
    ems = compute_ems(score_fn, sde, data, T_END, grid=grid, batch_size=500,
                      generator=torch.Generator().manual_seed(1), progress=False)
    x, nfe = solve(sde, score_fn, dpm_solver_v3, 1, 200, 4, ems=ems, order=1)
    assert nfe == 1
    errors.append((x - exact).norm(dim=1).max().item())
  x_ddim, _ = solve(sde, score_fn, ddim, 1, 200, 4)
  assert errors[1] < 2e-3 and 3 <= errors[0] / errors[1] <= 5, errors
  assert (x_ddim - exact).norm(dim=1).max().item() > 1.0


@pytest.mark.parametrize('order,pseudo,corrector,expected', [
    (1, False, False, 1), (2, False, False, 2), (3, False, False, 3), (3, False, True, 3),
    (3, True, False, 2), (3, True, True, 3)])
def test_measured_order_on_gaussian_data(order, pseudo, corrector, expected):
  """Terminal error against the exact flow from the same x_T (200 points of a rotated 4-d
  Gaussian, logsnr schedule, no final denoising) over budgets 20, 40, 80, with the closed-form
  EMS on 4000 grid intervals (their quadrature error, ~1e-7, stays below the errors measured):
  the log-log slope is minus the expected order within 0.3. The multistep predictor of order
  p has order p (measured 0.99, 1.9, 2.91); the corrector keeps it (measured 3.0: it uses the
  new point at the same order, so it lowers the constant, about 10x here, not the order). The
  pseudo-order predictor takes Newton divided differences for Taylor coefficients:
  g[l_0, l_1] = g' - g'' h / 2 + ..., an O(h^3) local error, so at 'order 3' it is of order 2
  (measured 1.94), and the corrector, interpolating properly through the new point, brings it
  back to 3 (measured 2.96). Lower-order warm start, no lower-order final steps.
  """
  sde, gaussian = VPSDE(), gaussian_data()
  score_fn = exact_score_fn(gaussian, sde)
  ems = exact_ems(gaussian, sde, 4000)
  x_T = sde.prior_sampling((200, 4), generator=torch.Generator().manual_seed(1))
  exact = exact_flow(gaussian, sde, x_T, sde.T, T_END)
  budgets, errors = [20, 40, 80], []
  for budget in budgets:
    x, nfe = solve(sde, score_fn, dpm_solver_v3, budget, 200, 4, ems=ems, order=order,
                   pseudo=pseudo, corrector=corrector, lower_order_final=False)
    assert nfe == budget
    errors.append((x - exact).norm(dim=1).mean().item())
  assert abs(-loglog_slope(budgets, errors) - expected) <= 0.3, errors


@pytest.fixture(scope='module', params=['ring', 'mixture16'])
def mixture_and_ems(request):
  """A mixture, its EMS from 2000 of its draws (100 grid intervals down to t_end = 1e-3) and the
  mean sliced Wasserstein distance between two exact 2000-point sets (the Monte-Carlo floor)."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)     # set up before the autouse fixture: see float64_one_thread
  mixture = ring_mixture() if request.param == 'ring' else random_mixture(16)
  sde = VPSDE()
  data = mixture.sample(2000, torch.Generator().manual_seed(0)).double()
  ems = compute_ems(exact_score_fn(mixture, sde), sde, data, T_END, grid=100, batch_size=2000,
                    generator=torch.Generator().manual_seed(1), progress=False)
  reference = reference_distance(mixture, 2000)
  torch.set_num_threads(threads)
  return mixture, ems, reference


@pytest.mark.parametrize('steps', [10, 20, 50])
def test_samples_exact_mixtures(mixture_and_ems, steps):
  """config.sampling.method = 'dpm_solver_v3' at its defaults (order 2, quadratic, final
  denoising) with the exact score and EMS from the mixture's draws: nfe == steps, and
  gmm_oracle.assert_matches with a converged sampler's allowances but for the relative
  covariance error: 0.3 at 10 steps, 0.1 from 20 (measured: 0.35 / 0.17 on the ring, whose modes are
  narrow, 0.21 / 0.16 in 16-d, at logsnr), and the sliced W2 to exact draws within 1.5 times
  the exact-vs-exact one. 2000 points.
  """
  mixture, ems, reference = mixture_and_ems
  sde, n = VPSDE(), 2000
  config = get_default_config().sampling
  config.method, config.steps = 'dpm_solver_v3', steps
  x, nfe = get_sampler(config, sde, (n, mixture.dim), ems=ems)(
      exact_score_fn(mixture, sde), generator=torch.Generator().manual_seed(1), progress=False)
  assert nfe == steps
  assert torch.isfinite(x).all()
  assert_matches(mixture, x, reference, cov=0.3 if steps < 20 else 0.1)


def toy_run(tmp_path):
  """A toy2d config sampling with dpm_solver_v3 on a tiny EMS budget, an MLP and a checkpoint
  file holding its weights."""
  config = get_default_config()
  config.data.dataset, config.model.name = 'toy2d', 'mlp'
  config.model.hidden, config.model.num_layers = 16, 1
  s = config.sampling
  s.method, s.steps, s.ems_samples, s.ems_grid, s.batch_size = 'dpm_solver_v3', 4, 64, 16, 32
  model = get_model(config).float().eval()
  checkpoint = tmp_path / 'checkpoints' / 'ckpt_1.pt'
  checkpoint.parent.mkdir()
  torch.save(model.state_dict(), checkpoint)
  return config, model, str(checkpoint)


@pytest.fixture
def counted_ems(monkeypatch):
  """Counts the EMS computations the run path makes."""
  calls = []

  def counting(*args, **kwargs):
    calls.append(args)
    return compute_ems(*args, **kwargs)

  monkeypatch.setattr(draw_module, 'compute_ems', counting)
  return calls


def test_run_path_computes_ems_once_per_checkpoint(tmp_path, counted_ems):
  """data_sampler computes the EMS once from the training data and caches them beside the
  checkpoint (pipeline/statistics.py); a second sampler (--mode eval after --mode sample) loads
  them; another number of points or another checkpoint's bytes are computed anew."""
  torch.set_default_dtype(torch.float32)
  config, model, checkpoint = toy_run(tmp_path)
  sde = VPSDE()
  draw = data_sampler(config, sde, model, 'cpu', checkpoint=checkpoint)
  files = glob.glob(str(tmp_path / 'checkpoints' / 'ckpt_1.ems-*.pt'))
  assert len(counted_ems) == 1 and len(files) == 1
  x, nfe = draw(8, torch.Generator().manual_seed(0), progress=False)
  assert x.shape == (8, 2) and torch.isfinite(x).all() and nfe == 4

  data_sampler(config, sde, model, 'cpu', checkpoint=checkpoint)
  assert len(counted_ems) == 1                       # reused, not recomputed
  cached = EMS.from_state(torch.load(files[0], weights_only=True)['state'])
  assert cached.grid == 16 and cached.num_samples == 64 and cached.shape == (2,)

  config.sampling.ems_samples = 32
  data_sampler(config, sde, model, 'cpu', checkpoint=checkpoint)
  assert len(counted_ems) == 2
  config.sampling.ems_samples = 64
  with torch.no_grad():
    next(model.parameters()).add_(0.1)
  torch.save(model.state_dict(), checkpoint)
  stat = os.stat(checkpoint)   # a new mtime, however coarse the file system's clock
  os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1000))
  data_sampler(config, sde, model, 'cpu', checkpoint=checkpoint)
  assert len(counted_ems) == 3


def test_snapshot_sampling_computes_ems_for_the_current_weights(tmp_path, counted_ems):
  """Without a checkpoint path (training snapshots) the EMS are those of the weights at drawing
  time: computed at the first draw, reused while the weights stay, recomputed after a change."""
  torch.set_default_dtype(torch.float32)
  config, model, _ = toy_run(tmp_path)
  draw = data_sampler(config, VPSDE(), model, 'cpu')
  assert counted_ems == []
  draw(8, progress=False)
  draw(8, progress=False)
  assert len(counted_ems) == 1
  with torch.no_grad():
    next(model.parameters()).add_(0.1)
  draw(8, progress=False)
  assert len(counted_ems) == 2


def test_missing_or_mismatched_ems_is_a_config_error():
  """get_sampler refuses dpm_solver_v3 without EMS, naming what computes them, and EMS made for
  another end time, naming the field."""
  sde = VPSDE()
  config = get_default_config().sampling
  config.method, config.steps = 'dpm_solver_v3', 10
  with pytest.raises(ConfigError, match=r"empirical model statistics.*run\.py --mode sample\|eval"):
    get_sampler(config, sde, (4, 4))
  config.eps = 1e-2
  with pytest.raises(ConfigError, match=r"sampling\.eps=0\.01"):
    get_sampler(config, sde, (4, 4), ems=exact_ems(gaussian_data(), sde, 50))
