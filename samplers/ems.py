"""Empirical model statistics (EMS) of DPM-Solver-v3 (Zheng, Lu, Chen & Zhu 2023, sec. 3).

In lambda = log(alpha / sigma) the probability-flow ODE with a noise prediction eps_theta is
  dx/dlambda = (dlog alpha / dlambda) x - sigma eps_theta(x, lambda).
DPM-Solver-v3 splits off a linear part l_lambda x (l a vector, elementwise) and writes the
rest, divided by alpha, as
  f(x, lambda) = (sigma eps_theta - l x) / alpha = e^-lambda eps_theta - l x / alpha,
then removes an affine trend s f + b from f's lambda-derivative. The EMS are the
per-dimension coefficients that make the first-order discretization error smallest in
expectation over x_lambda = alpha x_0 + sigma z, x_0 from the data:
  l = argmin E ||sigma d eps_theta / dx - diag(l)||_F^2 = E[diag(sigma d eps_theta / dx)]
  (s, b) = argmin E ||f^(1) - s f - b||^2:  s = Cov(f, f^(1)) / Var(f),  b = E f^(1) - s E f
where f^(1) = df / dlambda is the total derivative along the ODE,
  f^(1) = e^-lambda ((l - 1) eps_theta + d eps_theta / dlambda) - l' x / alpha.

Estimators (as public EMS code for the paper has them; the code here is ours): the Jacobian's
diagonal by the Rademacher identity diag(J) = E_v[v * J v], J v a Jacobian-vector product
(forward-mode autodiff); l' by differences of l on the grid. Ours in addition: the same x_0, z and v at every grid point
(common random numbers), so l's Monte-Carlo error is smooth in lambda and its differences need
no smoothing; the derivative along the ODE by a three-point difference over first-order
(DDIM) steps from x_lambda, whose quadratic off-trajectory errors cancel in the stencil: it
needs only score evaluations, so an analytic score whose time input is not differentiable
serves as well as a network; and one pass over grid and data, accumulating raw moments of
x / alpha, x0_hat and d x0_hat / dlambda, from which f's moments follow once l and l' are known
(f = (1 - l) x / alpha - x0_hat is free of the cancellation e^-lambda eps - l x / alpha has
where alpha is small).

The solver needs their integrals over the grid, precomputed (as the authors do) by the
trapezoid rule from lambda_0 = lambda(T) upwards:
  L = int l,  S = int s,  I = int e^(L+S),  B = int e^-S b,  C = int e^(L+S) B.
"""
import math

import torch
from tqdm.auto import tqdm

from utils.errors import ConfigError

EMS_VERSION = 1          # bump when the estimator changes: cached EMS then no longer count
TABLES = ('lambdas', 'times', 'l', 'l_d', 's', 'b', 'L', 'S', 'I', 'B', 'C')
VALUES = ('t_end', 'T', 'num_samples', 'version')


def cumulative_trapezoid(y, x):
  """int_{x_0}^{x_i} y along dim 0, i = 0..N (0 at i = 0); x of shape [N + 1]."""
  dx = (x[1:] - x[:-1]).reshape(-1, *([1] * (y.dim() - 1)))
  steps = dx * (y[1:] + y[:-1]) / 2
  return torch.cat([torch.zeros_like(y[:1]), steps.cumsum(0)])


class EMS:
  """l, s, b (and l' = dl/dlambda) on the grid lambda(T) = lambda_0 < ... < lambda_N =
  lambda(t_end), uniform in lambda, each of shape [N + 1, *data shape], float64 on the CPU;
  `times` are the grid's times and L, S, I, B, C the integrals above."""

  def __init__(self, lambdas, times, l, l_d, s, b, t_end, T, num_samples=0):
    self.lambdas, self.times = lambdas.double().cpu(), times.double().cpu()
    self.l, self.l_d, self.s, self.b = (v.double().cpu() for v in (l, l_d, s, b))
    self.t_end, self.T, self.num_samples = float(t_end), float(T), int(num_samples)
    self.version = EMS_VERSION
    self.L = cumulative_trapezoid(self.l, self.lambdas)
    self.S = cumulative_trapezoid(self.s, self.lambdas)
    self.I = cumulative_trapezoid(torch.exp(self.L + self.S), self.lambdas)
    self.B = cumulative_trapezoid(torch.exp(-self.S) * self.b, self.lambdas)
    self.C = cumulative_trapezoid(torch.exp(self.L + self.S) * self.B, self.lambdas)
    if not all(torch.isfinite(getattr(self, k)).all() for k in TABLES):
      raise ValueError("EMS with non-finite entries: too few samples for Var(f), or a network "
                       "that returns NaN")

  @property
  def grid(self):
    """N, the number of grid intervals."""
    return self.lambdas.numel() - 1

  @property
  def shape(self):
    return tuple(self.l.shape[1:])

  def index(self, lam):
    """The grid index nearest to each lambda (a tensor)."""
    h = (self.lambdas[-1] - self.lambdas[0]) / self.grid
    return torch.round((torch.as_tensor(lam, dtype=torch.float64) - self.lambdas[0]) / h).long()

  def check_fits(self, T, t_end, shape=None):
    """ConfigError unless the grid runs from T to t_end (and the data have `shape`)."""
    same = math.isclose(self.T, T, rel_tol=1e-9) and math.isclose(self.t_end, t_end, rel_tol=1e-9)
    if not same:
      raise ConfigError(f"the EMS were computed on times [{self.t_end:g}, {self.T:g}] but sampling "
                        f"runs on [{t_end:g}, {T:g}]: compute them for sampling.eps={t_end:g}")
    if shape is not None and tuple(shape) != self.shape:
      raise ConfigError(f"the EMS are for data of shape {self.shape}, not {tuple(shape)}")

  def state_dict(self):
    """Tensors and plain values (what pipeline/statistics.py stores)."""
    return {**{k: getattr(self, k) for k in TABLES}, **{k: getattr(self, k) for k in VALUES}}

  @classmethod
  def from_state(cls, state):
    """The EMS of a state_dict; the integrals are recomputed from l, s, b, and must agree with
    the stored ones."""
    if set(state) != set(TABLES + VALUES) or state['version'] != EMS_VERSION:
      raise ConfigError(f"not the EMS of version {EMS_VERSION} (keys {sorted(state)})")
    ems = cls(state['lambdas'], state['times'], state['l'], state['l_d'], state['s'], state['b'],
              state['t_end'], state['T'], state['num_samples'])
    for k in ('L', 'S', 'I', 'B', 'C'):
      if not torch.allclose(getattr(ems, k), state[k], rtol=1e-12, atol=0):
        raise ConfigError(f"stored EMS whose integral {k} does not match their l, s, b")
    return ems


def checked_ems(ems, sde, t_end, shape):
  """`ems` (an EMS) for a dpm_solver_v3 run on [t_end, sde.T] with data of `shape`;
  ConfigError when there are none or they do not fit."""
  if ems is None:
    raise ConfigError(
        "sampling.method='dpm_solver_v3' needs the network's empirical model statistics (EMS): "
        "run.py --mode sample|eval computes them once per checkpoint from the training data "
        "(sampling.ems_samples points, sampling.ems_grid intervals) and caches them beside it; "
        "in code, compute them with samplers.ems.compute_ems(score_fn, sde, data, "
        "t_end=sampling.eps) and pass get_sampler(..., ems=...)")
  ems.check_fits(sde.T, t_end, shape)
  return ems


def _noise(score_fn, x, t, std):
  """eps_theta(x, t) = -s(t) score(x, t) at a scalar time t."""
  return -std * score_fn(x, torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype))


def _jvp_noise(score_fn, x, t, std, v):
  """eps_theta(x, t) and its Jacobian-vector product d eps_theta / dx v. Scaled dot-product
  attention runs its plain-math kernel here: the fused ones have no forward-mode derivative."""
  with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
    return torch.func.jvp(lambda y: _noise(score_fn, y, t, std), (x,), (v,))


def _coeffs(sde, t):
  """m(t), s(t) (alpha, sigma) at the float64 times t."""
  return sde.marginal_coeffs(torch.as_tensor(t, dtype=torch.float64).reshape(-1))


@torch.no_grad()
def compute_ems(score_fn, sde, data, t_end, grid=1200, batch_size=256, generator=None,
                progress=True):
  """The EMS of `score_fn` under `sde` on a grid of `grid` intervals uniform in lambda from
  lambda(T) to lambda(t_end), estimated from `data` (x_0, shape [n, ...], in the model's range;
  computed in its dtype and on its device) with one z ~ N(0, I) and one Rademacher v per
  sample drawn from `generator` (a CPU generator)."""
  n, shape = data.shape[0], tuple(data.shape[1:])
  dtype, device = data.dtype, data.device
  z = torch.randn(data.shape, generator=generator, dtype=dtype).to(device)
  v = (2 * torch.randint(0, 2, data.shape, generator=generator) - 1).to(device, dtype)
  lam_T, lam_end = sde.log_snr(torch.tensor([sde.T, t_end], dtype=torch.float64))
  lambdas = torch.linspace(float(lam_T), float(lam_end), grid + 1, dtype=torch.float64)
  times = sde.time_of_log_snr(lambdas)
  times[0], times[-1] = sde.T, t_end
  alphas, sigmas = _coeffs(sde, times)
  # Offsets of the three-point stencil for d eps / dlambda: central inside, one-sided at the
  # ends (lambda beyond [lambda(T), lambda(t_end)] has no time in [0, T]).
  delta = torch.finfo(dtype).eps ** (1 / 3)
  moments = {k: torch.zeros((grid + 1,) + shape, dtype=torch.float64, device=device)
             for k in ('l', 'y', 'd', 'u', 'yy', 'yd', 'dd', 'yu', 'du')}
  for j in tqdm(range(grid + 1), desc='EMS', disable=not progress, leave=False):
    lam, t, alpha, sigma = float(lambdas[j]), float(times[j]), float(alphas[j]), float(sigmas[j])
    h1, h2 = (delta, 2 * delta) if j == 0 else (-2 * delta, -delta) if j == grid else (-delta, delta)
    w1, w2 = h2 / (h1 * (h2 - h1)), -h1 / (h2 * (h2 - h1))   # slope at 0 of the parabola
    t_off = sde.time_of_log_snr(torch.tensor([lam + h1, lam + h2], dtype=torch.float64))
    a_off, s_off = _coeffs(sde, t_off)
    for start in range(0, n, batch_size):
      rows = slice(start, start + batch_size)
      x = alpha * data[rows] + sigma * z[rows]
      eps, jv = _jvp_noise(score_fn, x, t, sigma, v[rows])
      x0 = (x - sigma * eps) / alpha
      d_x0 = -(w1 + w2) * x0
      for h, w, t_h, a_h, s_h in zip((h1, h2), (w1, w2), t_off.tolist(), a_off.tolist(),
                                     s_off.tolist()):
        x_h = (a_h / alpha) * x - s_h * math.expm1(h) * eps    # DPM-Solver-1 step to lambda + h
        d_x0 = d_x0 + w * (x_h - s_h * _noise(score_fn, x_h, t_h, s_h)) / a_h
      y, d, u = (x / alpha).double(), x0.double(), d_x0.double()
      batch = {'l': sigma * (v[rows] * jv).double(), 'y': y, 'd': d, 'u': u, 'yy': y * y,
               'yd': y * d, 'dd': d * d, 'yu': y * u, 'du': d * u}
      for k, value in batch.items():
        moments[k][j] += value.sum(0)
  m = {k: value.cpu() / n for k, value in moments.items()}
  l = m['l']
  l_d = torch.gradient(l, spacing=(lambdas,), dim=0, edge_order=2)[0]
  # With y = x / alpha, the data prediction d = x0_hat and u = dd/dlambda along the ODE (where
  # dy/dlambda = -(y - d)): f = k y - d and f1 = -c y + k d - u, k = 1 - l, c = 1 - l + l'.
  k, c = 1 - l, 1 - l + l_d
  mean_f = k * m['y'] - m['d']
  mean_f1 = -c * m['y'] + k * m['d'] - m['u']
  mean_ff = k * k * m['yy'] - 2 * k * m['yd'] + m['dd']
  mean_ff1 = -c * k * m['yy'] + (k * k + c) * m['yd'] - k * m['yu'] - k * m['dd'] + m['du']
  var = mean_ff - mean_f ** 2
  cov = mean_ff1 - mean_f * mean_f1
  # Where f does not vary beyond the round-off of these sums any s fits: take s = 0.
  varies = var > 100 * torch.finfo(dtype).eps * (k * k * m['yy'] + m['dd'])
  s = torch.where(varies, cov / torch.where(varies, var, 1.0), 0.0)
  b = mean_f1 - s * mean_f
  return EMS(lambdas, times, l, l_d, s, b, t_end, sde.T, n)
