"""The abstract SDE and its generic reverse process (Song et al. 2021, eqs. 5-6 and 13).

Every SDE here is linear, dx = f(t) x dt + g(t) dw, so its perturbation kernel is Gaussian,
p_{0t}(x_t | x_0) = N(m(t) x_0, s(t)^2 I), and is fully described by `marginal_coeffs(t)`.
The exact one-step transition, the discretization, the reverse SDE and the probability-flow
ODE are all derived here from `sde` and `marginal_coeffs`, so a new SDE gets every sampler.
"""
import abc
import math

import torch

from sde_lib.time_schedules import uniform_grid

WEIGHT_GRID = 2 ** 14 + 1   # points of the numerical antiderivative of g^2 / s^2 (in log t)


def _interpolate(x, xs, ys):
  """Piecewise-linear y(x) through (xs, ys), xs increasing; x clamped to [xs[0], xs[-1]]."""
  x = x.clamp(xs[0], xs[-1])
  i = torch.searchsorted(xs, x.contiguous()).clamp(1, len(xs) - 1)
  x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
  return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def batch_broadcast(v, x):
  """Reshape a [batch] tensor so that it broadcasts against x of shape [batch, ...], in x's
  dtype and on its device (coefficients computed in float64 on the CPU, like the DDPM chain's,
  do not promote x)."""
  return v.reshape(-1, *([1] * (x.dim() - 1))).to(device=x.device, dtype=x.dtype)


class SDE(abc.ABC):
  """A linear forward SDE on [0, T] with N discretization steps."""

  T = 1.0

  def __init__(self, N):
    self.N = N

  @abc.abstractmethod
  def sde(self, x, t):
    """Drift f(x, t) (shape of x) and diffusion g(t) (shape [batch])."""

  @abc.abstractmethod
  def marginal_coeffs(self, t):
    """Mean coefficient m(t) and std s(t) of p_{0t}: x_t = m(t) x_0 + s(t) z."""

  @abc.abstractmethod
  def prior_std(self):
    """Std of the Gaussian prior p_T = N(0, prior_std^2 I)."""

  def marginal_prob(self, x0, t):
    """Mean m(t) x_0 and std s(t) (shape [batch]) of p_{0t}(x_t | x_0)."""
    mean_coeff, std = self.marginal_coeffs(t)
    return batch_broadcast(mean_coeff, x0) * x0, std

  def marginal_std(self, t):
    return self.marginal_coeffs(t)[1]

  def marginal_coeffs_derivative(self, t):
    """m'(t) and s'(t), from the SDE's moment equations m' = f m and (s^2)' = 2 f s^2 + g^2
    (Saerkkae & Solin 2019, eq. 6.2): s' = f s + g^2 / (2 s). Affine paths override it in
    closed form (sde_lib/flows.py)."""
    f, g = self.sde(torch.ones_like(t), t)
    mean_coeff, std = self.marginal_coeffs(t)
    return f * mean_coeff, f * std + g ** 2 / (2 * std)

  def tweedie_x0(self, x, t, score):
    """E[x_0 | x_t] = (x_t + s(t)^2 score) / m(t) (Tweedie's formula)."""
    mean_coeff, std = self.marginal_coeffs(t)
    return (x + batch_broadcast(std ** 2, x) * score) / batch_broadcast(mean_coeff, x)

  def log_snr(self, t):
    """lambda(t) = log(m(t) / s(t)), half the log signal-to-noise ratio; it decreases in t and
    is the variable of the exponential-integrator solvers (DPM-Solver, UniPC)."""
    mean_coeff, std = self.marginal_coeffs(t)
    return torch.log(mean_coeff) - torch.log(std)

  def time_of_log_snr(self, lam):
    """The time t with lambda(t) = lam (0 or T for lam outside lambda's range on [0, T]), by
    bisection in float64: lambda is monotone, so one method serves every schedule, and 64
    halvings reach float64's resolution of [0, T]."""
    lam = torch.as_tensor(lam, dtype=torch.float64)
    lo, hi = torch.zeros_like(lam), torch.full_like(lam, self.T)
    for _ in range(64):
      mid = (lo + hi) / 2
      early = self.log_snr(mid) > lam     # lambda(mid) above the target: t lies later
      lo, hi = torch.where(early, mid, lo), torch.where(early, hi, mid)
    return (lo + hi) / 2

  def likelihood_weight(self, t):
    """w(t) = g(t)^2 / s(t)^2: the likelihood weighting g^2 of denoising score matching over
    the DSM loss's own s^2 (Song et al. 2021b), the density importance-sampled t follows."""
    g = self.sde(torch.zeros(1, dtype=t.dtype, device=t.device), t)[1]
    return g ** 2 / self.marginal_coeffs(t)[1] ** 2

  def likelihood_weight_integral(self, t):
    """An antiderivative F(t) of w(t), float64. Here numerical: trapezoids in log t on a
    grid geometric in t from T * 1e-9 (w ~ 1/t near 0 on the VP-SDE) merged with one geometric
    in T - t (w can steepen near T: the cosine schedule's beta), F(T) = 0;
    the SDEs with a closed form override it (and its inverse)."""
    grid, table = self._weight_table()
    return _interpolate(torch.as_tensor(t, dtype=torch.float64).log(), grid, table)

  def inverse_likelihood_weight_integral(self, f):
    """The t with F(t) = f (float64), by interpolating the numerical table."""
    grid, table = self._weight_table()
    return _interpolate(torch.as_tensor(f, dtype=torch.float64), table, grid).exp()

  def _weight_table(self):
    if getattr(self, '_weight_cache', None) is None:
      geometric = torch.logspace(-9, 0, WEIGHT_GRID, dtype=torch.float64) * self.T
      log_t = torch.cat([geometric, self.T - geometric[:-1]]).log().unique()   # sorted
      integrand = self.likelihood_weight(log_t.exp()) * log_t.exp()    # w dt = w t dlog t
      steps = 0.5 * (integrand[1:] + integrand[:-1]) * log_t.diff()
      cumulative = torch.cat([torch.zeros(1, dtype=torch.float64), steps.cumsum(0)])
      self._weight_cache = (log_t, cumulative - cumulative[-1])
    return self._weight_cache

  def network_label(self, t):
    """The time input of a continuous-time network (score_sde's convention): t (N - 1) / T."""
    return t * ((self.N - 1) / self.T)

  # The one map between chain step i in {0..N-1} and time. Losses, the discrete-time score
  # wrapper, the chain sampler and the VLB all go through it.
  def chain_time(self, index):
    """t_i = (i + 1) T / N: step N - 1 is at T and step 0 one step above the data, so for the
    VP-SDE alphabar_i of the DDPM chain sits at t_i (Ho et al.'s t = i + 1 of 1..N)."""
    return (index + 1) * (self.T / self.N)

  def chain_index(self, t):
    """The chain step nearest to time t: round(t N / T) - 1, clamped to {0..N-1}."""
    return (torch.round(t * (self.N / self.T)) - 1).long().clamp(0, self.N - 1)

  def chain_coeffs(self, index):
    """m_i and s_i of x at chain step i: the marginal at its time t_i (the VP-SDE overrides
    this with its DDPM chain)."""
    return self.marginal_coeffs(self.chain_time(index).double())

  def chain_std(self, index):
    return self.chain_coeffs(index)[1]

  def time_grid(self, steps, eps, device=None):
    """The PC samplers' grid (sde_lib/time_schedules.py `uniform_grid`): `steps` times from T
    to eps, where the score is evaluated, then t = 0, where the last step lands."""
    return uniform_grid(self, steps, eps, device)

  def prior_sampling(self, shape, generator=None, device='cpu'):
    return self.prior_std() * torch.randn(*shape, generator=generator, device=device)

  def prior_logp(self, z):
    """log N(z; 0, prior_std^2 I) per sample, in nats."""
    dim = z[0].numel()
    sigma2 = self.prior_std() ** 2
    sq = z.flatten(1).pow(2).sum(1)
    return -0.5 * dim * math.log(2 * math.pi * sigma2) - sq / (2 * sigma2)

  def transition(self, t, s):
    """Exact kernel from time t to a later time s: x_s = a x_t + sigma z.

    For a linear SDE, a = m(s) / m(t) and sigma^2 = s(s)^2 - a^2 s(t)^2, because the
    kernels from 0 to t and from t to s compose into the kernel from 0 to s.
    """
    m_t, std_t = self.marginal_coeffs(t)
    m_s, std_s = self.marginal_coeffs(s)
    a = m_s / m_t
    var = (std_s ** 2 - a ** 2 * std_t ** 2).clamp(min=0)
    return a, var.sqrt()

  def discretize(self, x, t, dt=None):
    """f, G with x_{t+dt} = x_t + f + G z (the exact transition; dt defaults to T/N).

    For the VP-SDE this is the DDPM step x_{i+1} = sqrt(1 - beta_i) x_i + sqrt(beta_i) z;
    for the VE-SDE the SMLD step with G = sqrt(sigma_{i+1}^2 - sigma_i^2).
    """
    dt = self.T / self.N if dt is None else dt
    a, sigma = self.transition(t, t + dt)
    return (batch_broadcast(a, x) - 1) * x, sigma

  def reverse(self, score_fn, probability_flow=False):
    """The reverse-time SDE, or with probability_flow the ODE with the same marginals."""
    return ReverseSDE(self, score_fn, probability_flow)


class ReverseSDE:
  """dx = [f - c g^2 score] dt + (1-c) g dw_bar, integrated from T down to 0 (dt < 0).

  c = 1 gives the reverse SDE (Anderson 1982; Song et al. 2021 eq. 6); c = 1/2 with no noise
  gives the probability-flow ODE (eq. 13).
  """

  def __init__(self, forward, score_fn, probability_flow=False):
    self.forward = forward
    self.score_fn = score_fn
    self.probability_flow = probability_flow
    self.T = forward.T
    self.N = forward.N

  def _reverse(self, x, t, f, g):
    weight = 0.5 if self.probability_flow else 1.0
    score = self.score_fn(x, t)
    drift = f - weight * batch_broadcast(g ** 2, x) * score
    diffusion = torch.zeros_like(g) if self.probability_flow else g
    return drift, diffusion

  def sde(self, x, t):
    """Drift and diffusion of the reverse process at (x, t)."""
    f, g = self.forward.sde(x, t)
    return self._reverse(x, t, f, g)

  def discretize(self, x, t, dt=None):
    """Reverse-diffusion discretization (Song et al. 2021 eq. 46): x_{t-dt} = x - f + G^2 s + G z."""
    f, g = self.forward.discretize(x, t - (self.T / self.N if dt is None else dt), dt)
    return self._reverse(x, t, f, g)
