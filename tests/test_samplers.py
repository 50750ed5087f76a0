"""Every sampler, fed the exact score of an analytic Gaussian mixture, samples that mixture.

The marginals of a mixture under a linear SDE are mixtures with known parameters
(sde_lib/gaussian_mixture.py), so the exact score is available at every t and the only errors left
are the sampler's own: discretization (O(1/steps)) and Monte-Carlo noise (O(1/sqrt(n))).
"""
import math

import pytest
import torch

from configs.default import get_default_config
from sde_lib.gaussian_mixture import GaussianMixture, exact_score_fn, random_mixture, ring_mixture
from gmm_oracle import assert_matches, reference_distance
from sde_lib import SubVPSDE, VESDE, VPSDE
from samplers import get_sampler

N_SAMPLES = 2000
SDES = {'vp': VPSDE, 'subvp': SubVPSDE, 've': VESDE}
# (method, predictor, corrector, torchsde solver) at their usual settings.
SAMPLERS = {
    'em': ('pc', 'euler_maruyama', 'none', None),
    'reverse_diffusion': ('pc', 'reverse_diffusion', 'none', None),
    'ancestral': ('ancestral', None, None, None),
    'rd+langevin': ('pc', 'reverse_diffusion', 'langevin', None),
    'em+langevin': ('pc', 'euler_maruyama', 'langevin', None),
    'ancestral+langevin': ('pc', 'ancestral', 'langevin', None),
    'rd+ald': ('pc', 'reverse_diffusion', 'ald', None),
    'em+ald': ('pc', 'euler_maruyama', 'ald', None),
    'ancestral+ald': ('pc', 'ancestral', 'ald', None),
    'ode': ('ode', None, None, None),
    'torchsde-euler': ('sde', None, None, 'euler'),
    'torchsde-milstein': ('sde', None, None, 'milstein'),
    'torchsde-srk': ('sde', None, None, 'srk'),
}


def sampling_config(name, steps=None, **overrides):
  method, predictor, corrector, solver = SAMPLERS[name]
  config = get_default_config().sampling
  # srk is strong order 1.5 and evaluates the drift several times a step: 100 steps suffice.
  config.method, config.steps = method, steps or (100 if solver == 'srk' else 500)
  config.predictor = predictor or 'none'
  config.corrector = corrector or 'none'
  config.sde_solver = solver or 'euler'
  config.update(overrides)
  return config


def draw(mixture, sde, config, n=N_SAMPLES, seed=1):
  shape = (n, mixture.dim)
  return get_sampler(config, sde, shape)(exact_score_fn(mixture, sde),
                                        generator=torch.Generator().manual_seed(seed),
                                        progress=False)


@pytest.fixture(scope='module')
def ring():
  mixture = ring_mixture(n_modes=8, radius=2.0, std=0.2)
  return mixture, reference_distance(mixture, N_SAMPLES)


@pytest.fixture(scope='module')
def mixture16():
  mixture = random_mixture(dim=16, n_modes=3, seed=0)
  return mixture, reference_distance(mixture, N_SAMPLES)


@pytest.mark.parametrize('name', list(SAMPLERS))
def test_vp_samplers_match_2d_mixture(ring, name):
  mixture, reference = ring
  x, _ = draw(mixture, VPSDE(), sampling_config(name))
  assert_matches(mixture, x, reference)


def test_ancestral_with_beta_variance_matches_2d_mixture(ring):
  """Ho et al.'s other reverse variance, sigma^2 = beta (sec. 3.2), samples the data too."""
  mixture, reference = ring
  x, _ = draw(mixture, VPSDE(), sampling_config('ancestral', variance='beta'))
  assert_matches(mixture, x, reference)


@pytest.mark.parametrize('sde_name', ['subvp', 've'])
@pytest.mark.parametrize('name', ['em', 'reverse_diffusion', 'ancestral', 'rd+langevin', 'ode',
                                  'torchsde-euler'])
def test_subvp_ve_samplers_match_2d_mixture(ring, sde_name, name):
  mixture, reference = ring
  x, _ = draw(mixture, SDES[sde_name](), sampling_config(name))
  assert_matches(mixture, x, reference)


@pytest.mark.parametrize('sde_name,name', [('vp', 'em'), ('vp', 'ancestral'), ('vp', 'rd+langevin'),
                                           ('vp', 'ode'), ('vp', 'torchsde-euler'),
                                           ('subvp', 'reverse_diffusion'), ('ve', 'rd+langevin'),
                                           ('ve', 'ode')])
def test_samplers_match_16d_mixture(mixture16, sde_name, name):
  mixture, reference = mixture16
  x, _ = draw(mixture, SDES[sde_name](), sampling_config(name))
  assert_matches(mixture, x, reference)


# rk4 is already at the Monte-Carlo floor at 5 steps; its convergence is checked against
# dopri5 in test_probability_flow.py.
FIXED_STEP_ODES = {'ode-euler': 'euler'}


def kernel_means(mixture, x, ell):
  """E_y k(x_i, y) for each x_i and E k(y, y') for y, y' drawn from the mixture, in closed form
  for the Gaussian kernel k(x, y) = exp(-|x - y|^2 / (2 ell^2)) = (2 pi ell^2)^{D/2} N(x; y, ell^2 I):
  E_y k(x, y) = (2 pi ell^2)^{D/2} sum_k w_k N(x; mu_k, Sigma_k + ell^2 I) and
  E k(y, y') = (2 pi ell^2)^{D/2} sum_{j,k} w_j w_k N(mu_j; mu_k, Sigma_j + Sigma_k + ell^2 I)."""
  d = x.shape[1]
  eye = torch.eye(d, dtype=torch.float64)
  scale = (2 * math.pi * ell ** 2) ** (d / 2)
  widened = GaussianMixture(mixture.weights, mixture.means, mixture.covs + ell ** 2 * eye)
  xy = scale * widened.log_prob(x.double()).exp()
  yy = scale * sum(w * GaussianMixture(mixture.weights, mixture.means, mixture.covs + cov + ell ** 2 * eye)
                   .log_prob(mu[None]).exp()[0]
                   for w, mu, cov in zip(mixture.weights, mixture.means, mixture.covs))
  return xy, yy.item()


def mmd2(mixture, x, ell):
  """Unbiased squared MMD between samples x and the exact mixture (kernel of width ell): only
  the samples' own term is estimated (a U-statistic), the mixture's are closed-form, so exact
  samples give 0 on average with noise O(1/n), not the O(1/sqrt(n)) floor of a two-sample
  distance."""
  x = x.double()
  n = x.shape[0]
  kxx = torch.exp(-torch.cdist(x, x).pow(2) / (2 * ell ** 2))
  xy, yy = kernel_means(mixture, x, ell)
  return ((kxx.sum() - n) / (n * (n - 1)) - 2 * xy.mean() + yy).item()


@pytest.mark.parametrize('mixture', [ring_mixture(n_modes=8, radius=2.0, std=0.2), random_mixture(2)],
                         ids=['ring', 'anisotropic'])
def test_kernel_means_match_monte_carlo(mixture):
  """The closed-form kernel means against 400000 draws (for E k(y, y'), independent pairs):
  within 5 standard errors of the Monte-Carlo means."""
  g = torch.Generator().manual_seed(5)
  n, ell = 400_000, 0.3
  x = torch.tensor([[0.0, 0.0], [2.0, 0.1], [-1.0, 1.5]], dtype=torch.float64)
  xy, yy = kernel_means(mixture, x, ell)
  y, y2 = mixture.sample(n, g).double(), mixture.sample(n, g).double()
  k_xy = torch.exp(-torch.cdist(x, y).pow(2) / (2 * ell ** 2))
  assert ((k_xy.mean(1) - xy).abs() <= 5 * k_xy.std(1) / math.sqrt(n)).all()
  k_yy = torch.exp(-(y - y2).pow(2).sum(1) / (2 * ell ** 2))
  assert abs(k_yy.mean().item() - yy) <= 5 * k_yy.std().item() / math.sqrt(n)


@pytest.mark.parametrize('name', [name for name in SAMPLERS if name != 'ode'] + list(FIXED_STEP_ODES))
def test_few_steps_are_finite_and_improve_monotonically(ring, name):
  """At 5, 10, 20 and 40 steps samples are finite and each doubling of the steps brings them
  strictly closer to the data (the adaptive ODE solver takes the steps its tolerance needs and
  is left out).

  Closeness is the squared MMD to the exact ring mixture with a kernel as wide as a mode
  (ell = 0.2), where the mixture's side is closed-form. With 3000 samples exact draws give
  |MMD^2| <= 5e-5; measured errors fall from 2e-2..4e-2 at 5 steps to 4e-4..5e-3 at 20 and
  to 1.5e-3 down to that floor at 40. Each doubling must lower the error by more than 1e-4,
  twice the floor (the smallest measured drop, ode-euler's 20 -> 40, is 3.6e-4). A sampler
  that silently caps its steps, which the old "20 beats 5" check let through, fails here.
  """
  mixture, _ = ring
  config = (sampling_config('ode', ode_method=FIXED_STEP_ODES[name]) if name in FIXED_STEP_ODES
            else sampling_config(name))
  errors = []
  for steps in (5, 10, 20, 40):
    config.steps = steps
    x, _ = draw(mixture, VPSDE(), config, n=3000)
    assert torch.isfinite(x).all(), steps
    errors.append(mmd2(mixture, x, ell=0.2))
  assert all(a - b > 1e-4 for a, b in zip(errors, errors[1:])), errors


@pytest.mark.parametrize('name,expected', [('em', 50), ('ancestral', 50), ('rd+langevin', 150),
                                           ('torchsde-euler', None), ('ode', None)])
def test_nfe_counts_score_evaluations(ring, name, expected):
  """nfe equals the number of score calls actually made: 50 predictor steps, plus 2 corrector
  steps each where there is a corrector (the solvers' counts are whatever they called)."""
  mixture, _ = ring
  sde = VPSDE()
  calls = 0
  score = exact_score_fn(mixture, sde)

  def counting_score(x, t):
    nonlocal calls
    calls += 1
    return score(x, t)

  config = sampling_config(name, steps=50, n_steps_each=2)
  _, nfe = get_sampler(config, sde, (10, 2))(counting_score, progress=False)
  assert nfe == calls > 10
  if expected is not None:
    assert nfe == expected


def test_unknown_names_are_rejected():
  sde = VPSDE()
  for field, value in [('method', 'dpm'), ('predictor', 'heun'), ('corrector', 'hmc'),
                       ('variance', 'sigma')]:
    config = sampling_config('rd+langevin', **{field: value})
    with pytest.raises(ValueError, match=value):
      get_sampler(config, sde, (4, 2))


@pytest.mark.parametrize('name', ['ancestral', 'rd+langevin', 'ode', 'torchsde-milstein'])
def test_samplers_build_no_autograd_graph(name):
  """A network's score through 20 steps leaves no graph behind (memory would grow per step)."""
  net = torch.nn.Linear(2, 2)
  config = sampling_config(name, steps=20)
  x, _ = get_sampler(config, VPSDE(), (8, 2))(lambda x, t: -net(x), progress=False)
  assert not x.requires_grad and torch.isfinite(x).all()
