"""DPM-Solver (Lu et al. 2022a) and DPM-Solver++ (Lu et al. 2022b): exponential integrators of
the probability-flow ODE in lambda = log(m / s).

A step from t to s (s later in sampling, lambda_s > lambda_t) with h = lambda_s - lambda_t solves
the linear part exactly and Taylor-expands the prediction in lambda:
  noise (2022a, eq. 3.4)  x_s = (m_s / m_t) x_t - m_s int e^{-lambda} eps_hat(lambda) dlambda
  data  (2022b, sec. 4)   x_s = (s_s / s_t) x_t + s_s int e^{lambda} x0_hat(lambda) dlambda
(integrals over [lambda_t, lambda_s]).
DPM-Solver uses the first with intermediate points (single-step, Runge-Kutta-like); DPM-Solver++
the second with earlier steps' predictions (multistep, Adams-like).
"""
import math

import torch

from samplers.fast import multistep_order


def _time_of(model, lam):
  return model.sde.time_of_log_snr(torch.tensor(lam, dtype=torch.float64))


def fast_orders(budget, order):
  """The orders of DPM-Solver-fast's steps for `budget` evaluations (Lu et al. 2022a, sec. 3.4):
  order 3: K = budget // 3 + 1 steps of orders [3, ..., 3, 2, 1], [3, ..., 3, 1] or
  [3, ..., 3, 2] for budget mod 3 = 0, 1, 2; order 2: [2, ..., 2] and a 1 when the budget is odd;
  order 1: `budget` steps of order 1."""
  if order == 3:
    tail = {0: [2, 1], 1: [1], 2: [2]}[budget % 3]
    return [3] * (budget // 3 + 1 - len(tail)) + tail
  if order == 2:
    return [2] * (budget // 2) + [1] * (budget % 2)
  return [1] * budget


def dpm_solver_step(model, x, t, s, order):
  """One step of DPM-Solver-1, -2 or -3 from t to s (Lu et al. 2022a: eq. 3.7 / DDIM, Algorithm 1
  with r1 = 1/2, Algorithm 2 with r1 = 1/3, r2 = 2/3); `order` evaluations of eps_hat."""
  m_t, _, lam_t = model.at(t)
  m_s, s_s, lam_s = model.at(s)
  h = lam_s - lam_t
  eps = model.eps(x, t)
  if order == 1:
    return m_s / m_t * x - s_s * math.expm1(h) * eps
  if order == 2:
    r1 = 0.5
    u = _time_of(model, lam_t + r1 * h)
    m_u, s_u, _ = model.at(u)
    x_u = m_u / m_t * x - s_u * math.expm1(r1 * h) * eps
    d1 = model.eps(x_u, u) - eps
    return m_s / m_t * x - s_s * math.expm1(h) * eps - s_s / (2 * r1) * math.expm1(h) * d1
  r1, r2 = 1 / 3, 2 / 3
  u1, u2 = _time_of(model, lam_t + r1 * h), _time_of(model, lam_t + r2 * h)
  (m_u1, s_u1, _), (m_u2, s_u2, _) = model.at(u1), model.at(u2)
  x_u1 = m_u1 / m_t * x - s_u1 * math.expm1(r1 * h) * eps
  d1 = model.eps(x_u1, u1) - eps
  x_u2 = (m_u2 / m_t * x - s_u2 * math.expm1(r2 * h) * eps
          - s_u2 * r2 / r1 * (math.expm1(r2 * h) / (r2 * h) - 1) * d1)
  d2 = model.eps(x_u2, u2) - eps
  return m_s / m_t * x - s_s * math.expm1(h) * eps - s_s / r2 * (math.expm1(h) / h - 1) * d2


def dpm_solver_singlestep(model, x, budget, times, order=3, generator=None):
  """DPM-Solver-fast (Lu et al. 2022a, sec. 3.4): the steps of `fast_orders` on times(K), noise
  prediction (its split already ends at low order); deterministic."""
  orders = fast_orders(budget, order)
  ts = times(len(orders))
  for t, s, step_order in zip(ts[:-1], ts[1:], orders):
    x = dpm_solver_step(model, x, t, s, step_order)
  return x


def dpm_solver_pp_multistep(model, x, budget, times, order=2, lower_order_final=True,
                            generator=None):
  """DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2) and its third-order 3M on times(budget),
  one evaluation of x0_hat a step; step i runs at multistep_order(order, i, budget,
  lower_order_final) from the newest predictions.

  With the newest predictions x0_0, x0_1, x0_2 at lambda_0 > lambda_1 > lambda_2, h_0 =
  lambda_0 - lambda_1, h_1 = lambda_1 - lambda_2, r0 = h_0 / h, r1 = h_1 / h:
    1    x_s = (s_s / s_t) x_t - m_s (e^{-h} - 1) x0_0                          (= DDIM)
    2M   x0_0 above becomes x0_0 + D1 / 2,  D1 = (x0_0 - x0_1) / r0             (Algorithm 2)
    3M   x_s = (s_s / s_t) x_t + m_s (h phi_1 x0_0 + h phi_2 D1 + h phi_3 D2)
  with D1 = d_0 + r0 / (r0 + r1) (d_0 - d_1) ~ h x0', D2 = 2 (d_0 - d_1) / (r0 + r1) ~ h^2 x0''
  from the slopes d_0 = (x0_0 - x0_1) / r0, d_1 = (x0_1 - x0_2) / r1, and
  h^{k+1} phi_{k+1}(h) = int_0^h e^{tau - h} tau^k / k! dtau (the Taylor terms of the data form).
  """
  ts = times(budget)
  kept, kept_lams = [], []            # the newest first
  for i, (t, s) in enumerate(zip(ts[:-1], ts[1:])):
    _, s_t, lam_t = model.at(t)
    m_s, s_s, lam_s = model.at(s)
    kept, kept_lams = [model.x0(x, t)] + kept[:order - 1], [lam_t] + kept_lams[:order - 1]
    p = multistep_order(order, i, budget, lower_order_final)
    x0s, lams = kept[:p], kept_lams[:p]
    h = lam_s - lam_t
    if len(x0s) == 1:
      x = s_s / s_t * x - m_s * math.expm1(-h) * x0s[0]
    elif len(x0s) == 2:
      r0 = (lams[0] - lams[1]) / h
      d1 = (x0s[0] - x0s[1]) / r0
      x = s_s / s_t * x - m_s * math.expm1(-h) * (x0s[0] + d1 / 2)
    else:
      r0, r1 = (lams[0] - lams[1]) / h, (lams[1] - lams[2]) / h
      d_0, d_1 = (x0s[0] - x0s[1]) / r0, (x0s[1] - x0s[2]) / r1
      d1 = d_0 + r0 / (r0 + r1) * (d_0 - d_1)
      d2 = 2 * (d_0 - d_1) / (r0 + r1)
      phi_1 = -math.expm1(-h) / h
      phi_2 = (1 - phi_1) / h
      phi_3 = (1 / 2 - phi_2) / h
      x = s_s / s_t * x + m_s * h * (phi_1 * x0s[0] + phi_2 * d1 + phi_3 * d2)
  return x
