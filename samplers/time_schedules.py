"""Step schedules of the fast samplers: the times T = t_0 > t_1 > ... > t_n = t_end they step on.

  uniform    t uniform in [t_end, T]                            (DDIM, Song et al. 2021a)
  quadratic  sqrt(t) uniform                                    (DPM-Solver's 'time_quadratic')
  logsnr     lambda(t) = log(m/s) uniform                       (DPM-Solver, Lu et al. 2022 sec. 3.3)
  karras     sigma = s/m = exp(-lambda) uniform in sigma^(1/rho), rho = 7  (EDM, Karras et al. 2022 eq. 5)

Schedules in lambda or sigma go back to t through `SDE.time_of_log_snr`, so each works on
every SDE (VP, sub-VP, VE) and schedule (linear, cosine). Times are float64.
"""
import torch

from utils.errors import ConfigError

KARRAS_RHO = 7.0   # Karras et al. 2022, Table 1


def _uniform(sde, t_end, u):
  return sde.T + u * (t_end - sde.T)


def _quadratic(sde, t_end, u):
  return (sde.T ** 0.5 + u * (t_end ** 0.5 - sde.T ** 0.5)) ** 2


def _logsnr(sde, t_end, u):
  lam_T, lam_end = sde.log_snr(torch.tensor([sde.T, t_end], dtype=torch.float64))
  return sde.time_of_log_snr(lam_T + u * (lam_end - lam_T))


def _karras(sde, t_end, u, rho=KARRAS_RHO):
  sigma_max, sigma_min = torch.exp(-sde.log_snr(torch.tensor([sde.T, t_end], dtype=torch.float64)))
  sigma = (sigma_max ** (1 / rho) + u * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
  return sde.time_of_log_snr(-torch.log(sigma))


SCHEDULES = {'uniform': _uniform, 'quadratic': _quadratic, 'logsnr': _logsnr, 'karras': _karras}


def sampling_times(sde, name, steps, t_end):
  """steps + 1 times from T down to t_end (both exact) on the schedule `name`, float64."""
  if name not in SCHEDULES:
    raise ConfigError(f"unknown sampling.time_schedule {name!r}; choose one of {sorted(SCHEDULES)}")
  if steps < 1:
    raise ConfigError(f"a schedule needs at least one step, got {steps}")
  if not 0 < t_end < sde.T:
    raise ConfigError(f"sampling.eps (the last time) must lie in (0, {sde.T}), got {t_end}")
  u = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
  times = SCHEDULES[name](sde, t_end, u)
  times[0], times[-1] = sde.T, t_end
  return times


def _chain_uniform(N, points):
  return torch.arange(points) * (N // points)


def _chain_quadratic(N, points):
  return (torch.linspace(0, (0.8 * N) ** 0.5, points, dtype=torch.float64) ** 2).long()


CHAIN_SPACINGS = {'uniform': _chain_uniform, 'quadratic': _chain_quadratic}


def chain_times(chain, name, steps):
  """The times of steps + 1 chain steps, from the highest down to chain step 0, spaced as in
  DDIM (Song et al. 2021a, appendix D.2): step indices i c (c = N // points, 'uniform') or
  floor((i sqrt(0.8 N) / (points - 1))^2) ('quadratic'). `chain` is a DiscreteChain."""
  if name not in CHAIN_SPACINGS:
    raise ConfigError(f"a discrete-time model steps on its chain: sampling.time_schedule must be "
                      f"one of {sorted(CHAIN_SPACINGS)} (got {name!r})")
  points = steps + 1
  if points > chain.N:
    raise ConfigError(f"{steps} steps need {points} chain steps; the chain has only {chain.N}")
  indices = CHAIN_SPACINGS[name](chain.N, points)
  if len(set(indices.tolist())) < points:
    raise ConfigError(f"the {name!r} spacing repeats chain steps for {points} of {chain.N}: "
                      f"take fewer steps or the 'uniform' spacing")
  return chain.base.chain_time(indices.flip(0).double())
