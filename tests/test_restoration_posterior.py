"""Every restoration method against the exact posterior of a Gaussian-mixture prior (exact
score) under y = A x + n: tests/posterior_oracle.py, on 1 x 4 x 4 images.

The methods are approximations (their papers say so: DPS's and PiGDM's Gaussian p(y | x_t),
DDRM's and DDNM's per-coordinate rules); what is exact is the oracle. The bounds are the
errors measured at these seeds (400 samples, 50 steps; benchmarks/restoration_quality.py prints the
same table with more) plus a quarter, plus the exact-vs-exact floor of the same statistic:
they hold each method to what it achieves, and each is far below the error of a sample that
ignores y wherever y carries information. A sign slip, a wrong singular value or a wrong noise
level moves them by far more (docs/restoration.md lists the planted mistakes).
"""
import functools

import pytest
import torch

from sde_lib.gaussian_mixture import exact_score_fn
from posterior_oracle import checker_mixture, compare, dense_matrix, floor, posterior
from restoration import get_operator, measure, restore
from sde_lib.vp import VPSDE

SHAPE = (1, 4, 4)
N, STEPS = 400, 50
LEFT = torch.zeros(4, 4)
LEFT[:, :2] = 1
# (operator, sigma_y) -> method -> (mean error, sliced W2, weight error) measured
MEASURED = {
    ('blur', 0.05): {'ddrm': (1.14, 0.387, 0.438), 'ddnm': (1.342, 0.399, 0.515),
                     'pigdm': (0.553, 0.27, 0.203), 'dps': (1.195, 0.423, 0.42)},
    ('blur', 0.2): {'ddrm': (0.692, 0.292, 0.24), 'ddnm': (1.061, 0.432, 0.355),
                    'pigdm': (0.471, 0.199, 0.1), 'dps': (0.426, 0.167, 0.055)},
    ('sr2', 0.05): {'ddrm': (0.181, 0.085, 0.022), 'ddnm': (0.259, 0.116, 0.037),
                    'pigdm': (0.076, 0.086, 0.045), 'dps': (0.085, 0.08, 0.04)},
    ('sr2', 0.2): {'ddrm': (0.049, 0.102, 0.043), 'ddnm': (0.235, 0.122, 0.055),
                   'pigdm': (0.119, 0.116, 0.04), 'dps': (0.421, 0.164, 0.043)},
    ('mask', 0.05): {'ddrm': (0.465, 0.315, 0.31), 'ddnm': (0.548, 0.332, 0.335),
                     'pigdm': (0.548, 0.337, 0.338), 'dps': (0.563, 0.335, 0.315)},
    ('mask', 0.2): {'ddrm': (0.34, 0.184, 0.112), 'ddnm': (0.465, 0.217, 0.14),
                    'pigdm': (0.439, 0.21, 0.138), 'dps': (0.655, 0.243, 0.13)},
}
METRICS = ('mean_error', 'sliced_w2', 'weight_error')


def operator(name):
  return get_operator(name, SHAPE, mask=LEFT, kernel_size=3, kernel_std=1.0)


@functools.lru_cache(maxsize=None)
def case(name, sigma_y):
  """(prior, operator, y, exact posterior) for one measurement of a prior draw."""
  prior = checker_mixture()
  op = operator(name)
  x = prior.sample(1, torch.Generator().manual_seed(4)).double().reshape(1, *SHAPE)
  y = measure(op, x, sigma_y, torch.Generator().manual_seed(1))
  return prior, op, y, posterior(prior, dense_matrix(op, SHAPE), y, sigma_y)


def run(method, name, sigma_y, n=N, **options):
  prior, op, y, _ = case(name, sigma_y)
  x, _ = restore(method, exact_score_fn(prior, VPSDE()), VPSDE(), op,
                 y.expand(n, *y.shape[1:]), sigma_y, (n,) + SHAPE, steps=STEPS,
                 generator=torch.Generator().manual_seed(2), **options)
  return x


@pytest.mark.parametrize('name, sigma_y', list(MEASURED))
@pytest.mark.parametrize('method', ['ddrm', 'ddnm', 'pigdm', 'dps'])
def test_method_against_the_exact_posterior(float64, method, name, sigma_y):
  prior, op, y, post = case(name, sigma_y)
  got = compare(prior, post, run(method, name, sigma_y).reshape(N, -1))
  base = floor(prior, post, N)
  print(method, name, sigma_y, got, 'floor', base)
  for metric, measured in zip(METRICS, MEASURED[name, sigma_y][method]):
    assert got[metric] <= 1.25 * measured + base[metric], (metric, got[metric], measured)
