"""What the fast samplers share: the step schedule (from sde_lib/time_schedules.py), the budget
and the multistep order rule.

A fast sampler is `solver(model, x, budget, times, generator=None, **options) -> x`: it
spends at most `budget` score evaluations through `model` (a Predictions) and steps over
`times(n)`, n + 1 decreasing times from T to the schedule's end, for the n its algorithm
takes for that budget. It runs under the one driver (samplers/driver.py).

How the last step lands (`noise_removal`): with it, the solver runs to t_end on budget - 1
evaluations and the driver returns Tweedie's x0_hat(x_{t_end}, t_end), the limit of a
first-order step to t = 0 (EDM's final Euler step to sigma = 0, DDIM's step to alphabar = 1);
without it the sample x_{t_end} is returned as DPM-Solver's paper does.
"""
import functools

from sde_lib.time_schedules import chain_times, sampling_times
from utils.errors import ConfigError

# Below this many steps the multistep solvers end at orders ..., 2, 1 (lower_order_final),
# the threshold diffusers' multistep schedulers use.
LOWER_ORDER_FINAL_BELOW = 15


def multistep_order(order, step, steps, lower_order_final=True):
  """The order of step `step` (0-based) of a `steps`-step multistep solver: min(order, step + 1),
  since the first steps have fewer earlier points (a lower-order warm start), and with
  `lower_order_final` below LOWER_ORDER_FINAL_BELOW steps also at most steps - step. With few
  steps the last ones are the longest in log-SNR, where extrapolating the predictions by a
  high-order polynomial is least stable (Lu et al. 2022b, sec. 5; Zhao et al. 2023)."""
  if lower_order_final and steps < LOWER_ORDER_FINAL_BELOW:
    return min(order, step + 1, steps - step)
  return min(order, step + 1)


def tweedie(model, x, generator=None):
  """A budget of one evaluation: Tweedie's x0_hat(x_T, T) = E[x_0 | x_T], the best guess of the
  data from x_T alone in squared error, which every fast sampler reduces to at one evaluation."""
  return model.x0(x, model.sde.T)


def fast_times(sde, time_schedule, eps, steps, noise_removal=True, chain=None):
  """times(n): n + 1 times from T down to the schedule's end, `time_schedule` on the SDE with
  t_end = eps (`sampling_times`), or with `chain` (a DiscreteChain) its steps on the spacing
  `time_schedule` down to chain step 0 (`chain_times`; DDIM on a discrete-time model). Raises
  ConfigError now for a schedule, end time or budget that cannot run."""
  if steps - int(noise_removal) < 1:
    raise ConfigError(f"sampling.steps={steps} leaves no evaluation for the solver"
                      + (" after the final denoising (noise_removal)" if noise_removal else ""))
  if chain is not None:
    times = functools.partial(chain_times, chain, time_schedule)
  else:
    times = functools.partial(sampling_times, sde, time_schedule, t_end=eps)
  times(1)
  return times


def budgeted(solver, budget, times, **options):
  """The fast solver `solver` as a driver's solver(model, x, generator): at most `budget` score
  evaluations on `times` (from fast_times); spending more is a bug in the solver."""

  def run(model, x, generator=None):
    x = solver(model, x, budget, times, generator=generator, **options)
    if model.nfe > budget:
      raise RuntimeError(f"{solver.__name__} spent {model.nfe} evaluations of a budget of {budget}")
    return x

  return run
