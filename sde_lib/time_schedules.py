"""Every time grid the samplers, the DDPM bound and consistency models step on, by name.

A process keeps only its own times: T, chain step i at t_i = `SDE.chain_time(i)` ((i+1) T / N
for the VP-SDE), and a DiscreteChain's data time; the grids over them are made here.

Schedules on a process (`sampling_times`, the fast samplers and restoration): n + 1 times
T = t_0 > t_1 > ... > t_n = t_end, float64.
  uniform    t uniform in [t_end, T]                            (DDIM, Song et al. 2021a)
  quadratic  sqrt(t) uniform                                    (DPM-Solver's 'time_quadratic')
  logsnr     lambda(t) = log(m/s) uniform                       (DPM-Solver, Lu et al. 2022 sec. 3.3)
  karras     sigma = s/m = exp(-lambda) uniform in sigma^(1/rho), rho = 7  (EDM, Karras et al. 2022 eq. 5)
Schedules in lambda or sigma go back to t through `SDE.time_of_log_snr`, so each works on
every SDE (VP, sub-VP, VE) and schedule (linear, cosine).

Spacings of an N-step chain: which K of its steps 0..N-1 a sampler visits.
  Nichol & Dhariwal 2021 sec. 4 (`respaced_steps`): K evenly spaced from the first step to the
    last, rounded (10 of 1000: 0, 111, ..., 999); a DiscreteChain's grid (`respaced_grid`) and
    the DDPM bound's respaced chain (`sde_lib.chain.respaced_chain`).
  DDIM, Song et al. 2021a, appendix D.2 (`ddim_steps`, 'ddim' on a discrete-time model through
    `chain_times`): 'uniform' 0, c, 2c, ... with c = N // K (10 of 1000: 0, 100, ..., 900), or
    'quadratic' floor((i sqrt(0.8 N) / (K - 1))^2).

The PC samplers' grids, `steps` times where the score is evaluated and then the time the last
step lands on (`SDE.time_grid` names its own): `uniform_grid` (linspace(T, eps), then 0),
`karras_grid` (EDM's eq. 5 in t, then 0) and `respaced_grid` (a DiscreteChain's respaced steps,
then its data time); in the default dtype.

EDM's levels uniform in sigma^(1/rho) (`karras_levels`) make the karras schedule, EDM's chain
and PC grid, and the consistency models' noise levels (samplers/consistency.py, training/).

Not grids: torchdiffeq's fixed-step ODE solvers and torchsde take a step size and lay their
steps from the start time themselves (`fixed_step`); the adaptive SDE solver chooses each step.
"""
import torch

from utils.errors import ConfigError

KARRAS_RHO = 7.0   # Karras et al. 2022, Table 1


def karras_levels(start, end, u, rho=KARRAS_RHO):
  """(start^(1/rho) + u (end^(1/rho) - start^(1/rho)))^rho at u in [0, 1]: levels uniform in
  level^(1/rho) from `start` (u = 0) to `end` (u = 1) (EDM, Karras et al. 2022, eq. 5)."""
  return (start ** (1 / rho) + u * (end ** (1 / rho) - start ** (1 / rho))) ** rho


def _uniform(sde, t_end, u):
  return sde.T + u * (t_end - sde.T)


def _quadratic(sde, t_end, u):
  return (sde.T ** 0.5 + u * (t_end ** 0.5 - sde.T ** 0.5)) ** 2


def _logsnr(sde, t_end, u):
  lam_T, lam_end = sde.log_snr(torch.tensor([sde.T, t_end], dtype=torch.float64))
  return sde.time_of_log_snr(lam_T + u * (lam_end - lam_T))


def _karras(sde, t_end, u):
  sigma_max, sigma_min = torch.exp(-sde.log_snr(torch.tensor([sde.T, t_end], dtype=torch.float64)))
  return sde.time_of_log_snr(-torch.log(karras_levels(sigma_max, sigma_min, u)))


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


def respaced_steps(num_steps, kept):
  """The `kept` chain steps (0-based, ascending) of a respaced chain of `num_steps`: Nichol &
  Dhariwal's K evenly spaced steps from the first to the last, each the running sum of the
  stride (N - 1) / (K - 1) rounded half to even, as their respacing rounds them (the same
  steps as theirs for every K; K = N keeps every step)."""
  if not 2 <= kept <= num_steps:
    raise ConfigError(f"a respaced chain keeps 2 to {num_steps} of the chain's {num_steps} steps "
                      f"(sampling.steps), got {kept}")
  stride, position, steps = (num_steps - 1) / (kept - 1), 0.0, []
  for _ in range(kept):
    steps.append(round(position))
    position += stride
  return steps


def _ddim_uniform(N, points):
  return (torch.arange(points) * (N // points)).tolist()


def _ddim_quadratic(N, points):
  return (torch.linspace(0, (0.8 * N) ** 0.5, points, dtype=torch.float64) ** 2).long().tolist()


DDIM_SPACINGS = {'uniform': _ddim_uniform, 'quadratic': _ddim_quadratic}


def ddim_steps(name, N, points):
  """`points` steps (0-based, ascending) of an N-step chain on DDIM's spacing `name`."""
  if name not in DDIM_SPACINGS:
    raise ConfigError(f"a discrete-time model steps on its chain: sampling.time_schedule must be "
                      f"one of {sorted(DDIM_SPACINGS)} (got {name!r})")
  if points > N:
    raise ConfigError(f"{points - 1} steps need {points} chain steps; the chain has only {N}")
  steps = DDIM_SPACINGS[name](N, points)
  if len(set(steps)) < points:
    raise ConfigError(f"the {name!r} spacing repeats chain steps for {points} of {N}: "
                      f"take fewer steps or the 'uniform' spacing")
  return steps


def chain_times(chain, name, steps):
  """The times of steps + 1 chain steps on DDIM's spacing `name`, from the highest down to chain
  step 0, float64. `chain` is a DiscreteChain."""
  kept = torch.tensor(ddim_steps(name, chain.N, steps + 1), dtype=torch.float64)
  return chain.base.chain_time(kept.flip(0))


def uniform_grid(sde, steps, eps, device=None):
  """Sampling times t_0 = T > ... > t_{K-1} = eps (K = steps, linspace in the default dtype),
  then t_K = 0, where the last step lands."""
  if steps < 1:
    raise ConfigError(f"sampling.steps must be >= 1, got {steps}")
  ts = torch.linspace(sde.T, eps, steps, device=device) if steps > 1 else torch.full((1,), sde.T, device=device)
  return torch.cat([ts, torch.zeros(1, device=device)])


def karras_grid(sde, steps, eps, device=None):
  """uniform_grid's times moved onto EDM's eq. 5 in t from T down to eps (rho = 7), then 0."""
  grid = uniform_grid(sde, steps, eps, device)
  u = torch.linspace(0, 1, steps, device=device, dtype=torch.float64)
  grid[:-1] = karras_levels(sde.T, eps, u).to(grid.dtype)
  return grid


def respaced_grid(chain, steps, device=None):
  """The times of a DiscreteChain's steps from the highest down, all N of them or the `steps`
  of the respaced chain (respaced_steps), then its data time."""
  kept = torch.tensor(respaced_steps(chain.N, steps), dtype=torch.float64)
  times = torch.cat([chain.base.chain_time(kept.flip(0)),
                     torch.tensor([chain.data_time], dtype=torch.float64)])
  return times.to(device=device, dtype=torch.get_default_dtype())


def fixed_step(start, end, steps):
  """The step size of a fixed-step solver crossing [start, end] (either order) in `steps` equal
  steps; the solver lays its steps from `start` itself."""
  return abs(end - start) / steps
