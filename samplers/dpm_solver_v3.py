"""DPM-Solver-v3 (Zheng, Lu, Chen & Zhu 2023): a multistep predictor-corrector in lambda
whose linear part and trend come from the network's empirical model statistics (EMS).

With the EMS l, s, b and their integrals L, S, I, B, C on a lambda grid (samplers/ems.py), the
ODE's solution from lambda_s to lambda_t is exact in terms of
  g(lambda) = e^-(S - S_s) f - int_s^lambda e^-(S_r - S_s) b_r dr,  f = (sigma eps - l x) / alpha,
which the EMS make as flat in lambda as they can; the solver approximates g by a polynomial
through the last few points (Zheng et al. 2023, sec. 3).
"""

import torch

from samplers.fast import multistep_order
from utils.errors import ConfigError


def recommended_setting(budget):
  """(pseudo, corrector) for `budget` score evaluations: the authors' pseudo-order predictor at
  5 or fewer (their CIFAR-10 scripts for score_sde and EDM), the corrector throughout. Their
  scripts switch the corrector off at some budgets (score_sde: 9 and 10; EDM: above 6); on our
  exact ring and 16-d mixtures it lowered the terminal error at every budget measured from 5
  to 20 (benchmarks/sampler_quality.py --sweep), so it stays on.
  """
  return budget <= 5, True


def _step(ems, model, x_s, t_s, t_t, points, pseudo):
  """x at grid point `t_t` from x_s at `t_s` (grid indices; `points` = [(index, f)], the base
  point t_s first) by the paper's exponential-integrator formula with g approximated by a
  polynomial through the points:
    x_t = alpha_t [e^(L_s - L_t) x_s / alpha_s - e^-L_t (C_t - C_s - B_s (I_t - I_s))
                   - e^(-L_t - S_s) sum_k c_k int_s^t e^(L + S) (lambda - lambda_s)^k dlambda]
  with c_0 = g_s = f_s and c_k the Taylor coefficients at lambda_s of the interpolating
  polynomial, or with `pseudo` its Newton divided differences g[lambda_0..lambda_k] (the
  paper's pseudo-order solver for few steps)."""
  L, S, B, I, C, lam = ems.L, ems.S, ems.B, ems.I, ems.C, ems.lambdas
  # g_j = e^(S_s - S_j) f_j - e^S_s (B_j - B_s), from B = int e^-S b.
  g = [_row(torch.exp(S[t_s] - S[j]), x_s) * f - _row(torch.exp(S[t_s]) * (B[j] - B[t_s]), x_s)
       for j, f in points]
  nodes = [float(lam[j] - lam[t_s]) for j, _ in points]
  coeffs = [g[0]] + (_divided_differences(nodes, g) if pseudo else _taylor(nodes, g))
  span = lam[t_s:t_t + 1] - lam[t_s]
  weight = torch.exp(L[t_s:t_t + 1] + S[t_s:t_t + 1] - L[t_t] - S[t_s])
  span_b = span.reshape(-1, *([1] * (weight.dim() - 1)))
  alpha_s = float(model.coeffs(ems.times[t_s])[0])
  alpha_t = float(model.coeffs(ems.times[t_t])[0])
  y = _row(torch.exp(L[t_s] - L[t_t]), x_s) * x_s / alpha_s
  y = y - _row(torch.exp(-L[t_t]) * (C[t_t] - C[t_s] - B[t_s] * (I[t_t] - I[t_s])), x_s)
  for k, c in enumerate(coeffs):
    y = y - _row(torch.trapezoid(weight * span_b ** k, span, dim=0), x_s) * c
  return alpha_t * y


def _row(v, x):
  """A table row (float64, CPU, data shape) as x's dtype and device, broadcast over the batch."""
  return v.to(device=x.device, dtype=x.dtype)


def _taylor(nodes, g):
  """c_1..c_n with g_j - g_0 = sum_k c_k h_j^k at the nodes h_j (h_0 = 0): the interpolating
  polynomial's Taylor coefficients at h_0."""
  n = len(nodes) - 1
  if n == 0:
    return []
  vander = torch.tensor([[h ** k for k in range(1, n + 1)] for h in nodes[1:]], dtype=torch.float64)
  inverse = torch.linalg.inv(vander).to(device=g[0].device, dtype=g[0].dtype)
  diffs = torch.stack([gj - g[0] for gj in g[1:]])
  return list(torch.einsum('kj,j...->k...', inverse, diffs))


def _divided_differences(nodes, g):
  """g[h_0, h_1], g[h_0, h_1, h_2], ...: the Newton coefficients, used as c_1, c_2, ..."""
  table, out = list(g), []
  for k in range(1, len(nodes)):
    table = [(table[j + 1] - table[j]) / (nodes[j + k] - nodes[j]) for j in range(len(table) - 1)]
    out.append(table[0])
  return out


def dpm_solver_v3(model, x, budget, times, ems=None, order=3, pseudo=None, corrector=None,
                  lower_order_final=True, generator=None):
  """`budget` steps on times(budget), each snapped to the nearest point of the EMS grid, with one
  score evaluation each (Zheng et al. 2023: the multistep predictor-corrector).

  At step i: evaluate eps at x_i, keep f_i = (sigma_i eps - l_i x_i) / alpha_i; correct x_i (when
  `corrector`) by the same formula from x_{i-1} through the points i-1, i and older ones, at the
  order of the predictor that made x_i when that is 2 or more; f_i is kept, i.e. the corrected
  point's model output is taken to have the same nonlinear part sigma eps - l x (the paper's
  corrector, which costs no evaluation);
  then predict x_{i+1} from the last p = multistep_order(order, i, budget, lower_order_final)
  points. `pseudo` and `corrector` default to recommended_setting(budget).
  `ems` is an EMS on [t_end, T] (samplers/ems.py). The solver works
  with the noise prediction: sampling.thresholding (a clip of x0_hat) does not apply.
  """
  if ems is None:
    raise ConfigError("dpm_solver_v3 needs the network's empirical model statistics (ems)")
  if order not in (1, 2, 3):
    raise ConfigError(f"dpm_solver_v3's sampling.order is 1 to 3, got {order}")
  pseudo, corrector = (d if v is None else v
                       for v, d in zip((pseudo, corrector), recommended_setting(budget)))
  ts = times(budget)
  ems.check_fits(float(ts[0]), float(ts[-1]), x.shape[1:])
  grid = ems.index(torch.stack([model.log_snr(t) for t in ts]))
  if grid[0] != 0 or grid[-1] != ems.grid or not bool((grid[1:] > grid[:-1]).all()):
    raise ConfigError(f"{budget} steps do not fall on distinct points of the EMS grid of "
                      f"{ems.grid} intervals: compute the EMS on a finer grid (sampling.ems_grid)")
  grid = grid.tolist()
  points, x_prev, p_prev = [], None, 0
  for i in range(budget):
    t = grid[i]
    alpha, sigma = (float(c) for c in model.coeffs(ems.times[t]))
    eps = model.eps(x, ems.times[t])
    f = (sigma * eps - _row(ems.l[t], x) * x) / alpha
    if corrector and p_prev >= 2:
      base, older = points[-1], points[-(p_prev - 1):-1][::-1]
      x = _step(ems, model, x_prev, base[0], t, [base, (t, f)] + older, pseudo=False)
    points = (points + [(t, f)])[-order:]
    p = multistep_order(order, i, budget, lower_order_final)
    x_prev, p_prev = x, p
    x = _step(ems, model, x, t, grid[i + 1], points[::-1][:p], pseudo)
  return x
