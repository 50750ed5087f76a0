"""Consistency models' training losses and curricula (reads no config; pipeline/consistency.py
and training/losses.py build them from one).

  CD   consistency distillation (Song et al. 2023, Algorithm 2): from x_{n+1} = x + sigma_{n+1} z
       the teacher's ODE step gives x_hat_n at sigma_n, and the loss is
       d(f_theta(x_{n+1}, sigma_{n+1}), f_theta-(x_hat_n, sigma_n)), theta- <- mu theta- + (1 - mu) theta.
  iCT  improved consistency training (Song & Dhariwal 2023): x_n = x + sigma_n z with the same z,
       the target the student itself under stop-gradient, pseudo-Huber d, weight
       1 / (sigma_{n+1} - sigma_n), n drawn by a discretized lognormal, N doubling 10 -> 1280.
  ECT  easy consistency tuning (Geng et al. 2024): t ~ lognormal, r = t (1 - n(t) / q^(stage+1))
       shrinking towards t stage by stage from r = 0 (the diffusion loss), weight 1 / (t - r).

Every f here is a consistency function in EDM's variables, f(x^, sigma, classes) with
x^ = x_0 + sigma z (`consistency_fn` reads any model on any of our processes that way).
"""
import math

import torch

from models import get_eps_fn
from samplers.predictions import Predictions
from sde_lib import batch_broadcast
from sde_lib.time_schedules import KARRAS_RHO, karras_levels

ICT_HUBER_C = 0.00054      # iCT's pseudo-Huber c = 0.00054 sqrt(d) (sec. 3.3)


def karras_sigmas(N, sigma_min, sigma_max, rho=KARRAS_RHO):
  """sigma_i = (sigma_min^(1/rho) + (i-1)/(N-1) (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho,
  i = 1..N, ascending (CM paper sec. 5; float64, [N])."""
  return karras_levels(sigma_min, sigma_max, torch.linspace(0, 1, N, dtype=torch.float64), rho)


def ct_num_scales(k, K, s0, s1):
  """CT's N(k) = ceil(sqrt(k / K ((s1 + 1)^2 - s0^2) + s0^2) - 1) + 1 (Song et al. 2023, App. C)."""
  return math.ceil(math.sqrt(k / K * ((s1 + 1) ** 2 - s0 ** 2) + s0 ** 2) - 1) + 1


def ct_ema_decay(N, s0, mu0):
  """CT's target decay mu(k) = exp(s0 log mu0 / N(k)) (Song et al. 2023, App. C)."""
  return math.exp(s0 * math.log(mu0) / N)


def ict_num_scales(k, K, s0=10, s1=1280):
  """iCT's N(k) = min(s0 2^floor(k / K'), s1) + 1, K' = floor(K / (log2 floor(s1 / s0) + 1)):
  N - 1 doubles from s0 to s1 in equal stages (Song & Dhariwal 2023, eq. 6)."""
  stage_length = max(1, math.floor(K / (math.log2(math.floor(s1 / s0)) + 1)))   # K < stages: 1
  return min(s0 * 2 ** math.floor(k / stage_length), s1) + 1


def ict_index_probabilities(sigmas, P_mean=-1.1, P_std=2.0):
  """p(n) proportional to erf((ln sigma_{n+1} - P_mean) / (sqrt(2) P_std)) - erf((ln sigma_n -
  P_mean) / (sqrt(2) P_std)), n = 0..N-2: a lognormal over the N - 1 intervals (iCT, eq. 9)."""
  cdf = torch.erf((sigmas.log() - P_mean) / (math.sqrt(2) * P_std))
  p = cdf[1:] - cdf[:-1]
  return p / p.sum()


def ect_stage(k, K, stages):
  """ECT's stage of step k: floor(k stages / K), of `stages` equal stages over K steps."""
  return min(k * stages // K, stages - 1)


def ect_r(t, stage, q=2.0, k=8.0, b=1.0):
  """r = max(0, t (1 - n(t) / q^(stage + 1))), n(t) = 1 + k sigmoid(-b t) (Geng et al. 2024,
  sec. 3, "dt -> 0"): r = 0 (diffusion training) where n(t) >= q^(stage+1), r -> t later."""
  return (t * (1 - (1 + k * torch.sigmoid(-b * t)) / q ** (stage + 1))).clamp(min=0)


def l2(a, b):
  """||a - b||_2 per sample."""
  return (a - b).flatten(1).square().sum(1)


def l1(a, b):
  """||a - b||_1 per sample."""
  return (a - b).flatten(1).abs().sum(1)


def pseudo_huber(a, b, c):
  """sqrt(||a - b||_2^2 + c^2) - c per sample (iCT, sec. 3.3)."""
  return ((a - b).flatten(1).square().sum(1) + c ** 2).sqrt() - c


def ict_huber_c(dim):
  """iCT's c = 0.00054 sqrt(d) for data of d dimensions."""
  return ICT_HUBER_C * math.sqrt(dim)


def time_of_sigma(sde, sigma):
  """The time t of `sde` with s(t) / m(t) = sigma (float64 tensor)."""
  return sde.time_of_log_snr(-torch.as_tensor(sigma, dtype=torch.float64).log())


def consistency_fn(sde, model, parameterization, continuous=True):
  """f(x^, sigma, classes=None): the model's x0_hat at x_t = m(t) x^ for the t of noise level
  sigma ([batch]); with the consistency parameterization (models/consistency.py) the CM's f."""
  eps_fn = get_eps_fn(sde, model, continuous, parameterization)

  def f(x_hat, sigma, classes=None):
    t = time_of_sigma(sde, sigma).to(x_hat.dtype)
    mean_coeff, std = sde.marginal_coeffs(t)
    m, s = batch_broadcast(mean_coeff, x_hat), batch_broadcast(std, x_hat)
    x = m * x_hat
    return (x - s * eps_fn(x, t, classes)[0]) / m

  return f


def heun_ode_step(sde, score_fn, budget):
  """step(x^, sigma, sigma_next, classes) -> x^ at sigma_next, each sample between its own two
  levels (sigma, sigma_next: [batch]): EDM's Heun (Karras et al. 2022, Algorithm 2,
  deterministic) on the teacher's probability-flow ODE dx^/dsigma = (x^ - D(x^; sigma)) / sigma
  in x^ = x / m(t), D(x^; sigma) = x0_hat(m x^, t) read from score_fn(x, t, classes) of `sde`;
  ceil(budget / 2) steps on the rho = 7 grid between the two levels, the last an Euler step when
  the budget is odd (as samplers.heun.heun). Budget 2 is CM's one Heun step. Each evaluation
  takes the whole batch with per-sample times, so a step costs `budget` evaluations whatever
  the batch's mix of levels."""

  def denoiser(x_hat, sigma, classes):
    t = time_of_sigma(sde, sigma)
    mean_coeff, std = sde.marginal_coeffs(t)
    m, s = batch_broadcast(mean_coeff, x_hat), batch_broadcast(std, x_hat)
    x = m * x_hat
    return (x + s ** 2 * score_fn(x, t.to(x_hat.dtype), classes)) / m

  def step(x_hat, sigma, sigma_next, classes=None):
    n = math.ceil(budget / 2)
    levels = [karras_levels(sigma.double(), sigma_next.double(), i / n) for i in range(n + 1)]
    for i, (s, s_next) in enumerate(zip(levels[:-1], levels[1:])):
      h = batch_broadcast(s_next - s, x_hat)
      # Euler step.
      d = (x_hat - denoiser(x_hat, s, classes)) / batch_broadcast(s, x_hat)
      x_next = x_hat + h * d
      # Apply 2nd order correction.
      if 2 * (i + 1) <= budget:
        d_next = (x_next - denoiser(x_next, s_next, classes)) / batch_broadcast(s_next, x_hat)
        x_next = x_hat + h * (d + d_next) / 2
      x_hat = x_next
    return x_hat

  return step


def solver_ode_step(solver, sde, score_fn, budget):
  """step(x^, sigma, sigma_next, classes) -> x^ at sigma_next ([batch] levels, as heun_ode_step)
  by `solver`, a fast sampler of ours (samplers/: ddim, ipndm, dpm_solver, unipc), on `budget`
  evaluations of score_fn(x, t, classes) of `sde`, its substeps on the rho = 7 grid between the
  two levels, run in x^ = x / m(t). Those solvers step one time for the whole batch, so this
  makes one call per distinct pair of levels in the batch: up to N - 1 calls for CD's grid."""

  def one_pair(x_hat, sigma, sigma_next, classes):
    model = Predictions(sde, lambda x, t: score_fn(x, t, classes))
    times = lambda n: [time_of_sigma(sde, karras_levels(sigma, sigma_next, i / n))
                       for i in range(n + 1)]
    m, m_next = (float(model.coeffs(t)[0]) for t in times(1))
    return solver(model, m * x_hat, budget, times) / m_next

  def step(x_hat, sigma, sigma_next, classes=None):
    pairs = torch.stack([sigma, sigma_next], 1).double()
    out = torch.empty_like(x_hat)
    for pair in torch.unique(pairs, dim=0):
      rows = (pairs == pair).all(1)
      out[rows] = one_pair(x_hat[rows], float(pair[0]), float(pair[1]),
                           None if classes is None else classes[rows])
    return out

  return step


def cd_loss(f, f_target, step, x0, index, z, sigmas, distance, classes=None):
  """d(f_theta(x + sigma_{n+1} z, sigma_{n+1}), f_theta-(x_hat_n, sigma_n)) per sample, x_hat_n
  the teacher's ODE step from sigma_{n+1} (CM Algorithm 2, lambda = 1; `step` as heun_ode_step's,
  given the float64 levels). sigmas ascending [N], index in 0..N-2."""
  levels = sigmas.to(x0.device)
  s = levels.to(x0.dtype)
  hi, lo = s[index + 1], s[index]
  x_hi = x0 + batch_broadcast(hi, x0) * z
  with torch.no_grad():
    x_lo = step(x_hi, levels[index + 1], levels[index], classes)
    target = f_target(x_lo, lo, classes)
  return distance(f(x_hi, hi, classes), target)


def ict_loss(f, x0, index, z, sigmas, c, classes=None):
  """pseudo_huber(f(x + sigma_{n+1} z, sigma_{n+1}), sg f(x + sigma_n z, sigma_n)) /
  (sigma_{n+1} - sigma_n) per sample (Song & Dhariwal 2023: no EMA target, the same z)."""
  s = sigmas.to(x0.dtype).to(x0.device)
  hi, lo = s[index + 1], s[index]
  with torch.no_grad():
    target = f(x0 + batch_broadcast(lo, x0) * z, lo, classes)
  student = f(x0 + batch_broadcast(hi, x0) * z, hi, classes)
  return pseudo_huber(student, target, c) / (hi - lo)


def ect_loss(f, x0, t, r, z, sigma_min, distance, classes=None):
  """d(f(x + t z, t), sg f(x + r z, r)) / (t - r) per sample (Geng et al. 2024); at r below
  sigma_min the target is the data x itself (ECT's r = 0, the diffusion loss)."""
  with torch.no_grad():
    target = f(x0 + batch_broadcast(r, x0) * z, r.clamp(min=sigma_min), classes)
    target = torch.where((r > sigma_min).reshape(-1, *[1] * (x0.dim() - 1)), target, x0)
  student = f(x0 + batch_broadcast(t, x0) * z, t, classes)
  return distance(student, target) / (t - r)


def update_target(target, model, mu):
  """theta- <- stopgrad(mu theta- + (1 - mu) theta) (CM Algorithm 2)."""
  with torch.no_grad():
    for p_target, p in zip(target.parameters(), model.parameters()):
      p_target.lerp_(p.detach(), 1 - mu)
