"""iPNDM: improved pseudo-numerical multistep (Zhang & Chen 2023, DEIS; as in Zhou et al. 2024)."""
from utils.errors import ConfigError

# Adams-Bashforth weights of the slopes d_i, d_{i-1}, ..., newest first.
ADAMS_BASHFORTH = {1: (1.0,), 2: (3 / 2, -1 / 2), 3: (23 / 12, -16 / 12, 5 / 12),
                   4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}


def ipndm(model, x, budget, times, order=4, generator=None):
  """`budget` steps of x^_{i+1} = x^_i + (sigma_{i+1} - sigma_i) sum_j w_j d_{i-j} in EDM's
  x^ = x / m, sigma = s / m, with d = dx^/dsigma, and the fixed-step Adams-Bashforth weights
  w of order min(order, i + 1): the first steps warm up at lower order.
  """
  if order not in ADAMS_BASHFORTH:
    raise ConfigError(f"iPNDM's sampling.order is 1 to 4, got {order}")
  ts = times(budget)
  x = x / float(model.coeffs(ts[0])[0])
  slopes = []
  for t, t_next in zip(ts[:-1], ts[1:]):
    slopes = [model.ode_slope(x, t)] + slopes[:order - 1]
    weights = ADAMS_BASHFORTH[len(slopes)]
    x = x + (model.sigma(t_next) - model.sigma(t)) * sum(w * d for w, d in zip(weights, slopes))
  return x * float(model.coeffs(ts[-1])[0])
