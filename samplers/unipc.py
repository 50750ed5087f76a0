"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
Diffusion Models"), data prediction, multistep, in lambda = log(m / s)."""
import math

import torch

from samplers.fast import multistep_order

# UniPC's two choices of B(h), B1(h) = h and B2(h) = e^h - 1, in the data-prediction form,
# where h enters as -h and the sign is taken into the update: h and 1 - e^{-h}.
B = {'bh1': lambda h: h, 'bh2': lambda h: -math.expm1(-h)}


def _phis(h, n):
  """phi_1(h), ..., phi_n(h) with h^{k+1} phi_{k+1}(h) = int_0^h e^{tau - h} tau^k / k! dtau:
  phi_1 = (1 - e^{-h}) / h, phi_{k+1} = (1 / k! - phi_k) / h."""
  phis = [-math.expm1(-h) / h]
  for k in range(1, n):
    phis.append((1 / math.factorial(k) - phis[-1]) / h)
  return phis


def unified_update(x, t, s, x0s, lams, b_of_h):
  """x_s from x_t = x at t and the predictions x0s (x0s[0] at t) at half-log-SNRs lams: UniP-p
  (sec. 3.2) when the other points are earlier, UniC-p (sec. 3.1) when the last one is at s.
  t and s are (m, s, lambda). With h = lambda_s - lambda_t, r_m = (lams[m] - lambda_t) / h and
  D_m = x0s[m] - x0s[0],
    x_s = (s_s / s_t) x_t + m_s (1 - e^{-h}) x0s[0] + m_s B(h) sum_m (rho_m / r_m) D_m,
    sum_m rho_m r_m^{k-1} = k! h phi_{k+1}(h) / B(h),  k = 1 .. p - 1,
  i.e. R_p(h) a_p = g_p(h) / B(h) with a_m = rho_m / r_m: the Taylor terms of the
  data-prediction solution up to x0^{(p-1)}. B(h) cancels from a system solved exactly; with
  one difference UniPC takes rho = 1/2 instead (the condition then holds to O(h), enough for
  the order), and that is where bh1 and bh2 differ.
  """
  (_, s_t, lam_t), (m_s, s_s, lam_s) = t, s
  h = lam_s - lam_t
  x_s = s_s / s_t * x - m_s * math.expm1(-h) * x0s[0]
  if len(x0s) == 1:
    return x_s
  rs = torch.tensor([(lam - lam_t) / h for lam in lams[1:]], dtype=torch.float64)
  if len(rs) == 1:
    rhos = torch.tensor([0.5], dtype=torch.float64)
  else:
    phis = _phis(h, len(x0s))
    g = torch.tensor([math.factorial(k) * h * phis[k] / b_of_h(h) for k in range(1, len(x0s))],
                     dtype=torch.float64)
    rhos = torch.linalg.solve(rs[None, :] ** torch.arange(len(rs), dtype=torch.float64)[:, None], g)
  return x_s + m_s * b_of_h(h) * sum(float(rho / r) * (x0 - x0s[0])
                                     for rho, r, x0 in zip(rhos, rs, x0s[1:]))


def unip(model, x, budget, times, variant='bh2', order=2, lower_order_final=True, generator=None):
  """UniP-p (Zhao et al. 2023, sec. 3.2) alone, multistep on times(budget): each step from the
  k = multistep_order(order, step, budget, lower_order_final) newest predictions; order p."""
  b_of_h = B[variant]
  ts = times(budget)
  at = [model.at(t) for t in ts]
  kept, kept_lams = [], []                  # the newest first
  for i in range(budget):
    kept, kept_lams = [model.x0(x, ts[i])] + kept[:order - 1], [at[i][2]] + kept_lams[:order - 1]
    p = multistep_order(order, i, budget, lower_order_final)
    x = unified_update(x, at[i], at[i + 1], kept[:p], kept_lams[:p], b_of_h)
  return x


def unipc(model, x, budget, times, variant='bh2', order=2, lower_order_final=True, generator=None):
  """UniPC-p (Zhao et al. 2023, sec. 3.3), multistep, data prediction, on times(budget): each
  step is UniP-k from the k = multistep_order(order, step, budget, lower_order_final) newest
  predictions, and is redone by UniC-k once x0_hat at its end has been evaluated for the next
  step, so the corrector costs no evaluation (the last step goes uncorrected: it would cost one).
  UniP-p has order p, UniPC-p order p + 1 (Corollary 3.2, Theorem 3.1). Deterministic.
  """
  b_of_h = B[variant]
  ts = times(budget)
  at = [model.at(t) for t in ts]
  kept, kept_lams = [], []                  # the newest first
  x0s, lams, x_start = [], [], None         # the last step's points and start
  for i in range(budget):
    x0 = model.x0(x, ts[i])
    if x0s:
      # UniC: the last step again from its start, with x0_hat at its end as one more point.
      x = unified_update(x_start, at[i - 1], at[i], x0s + [x0], lams + [at[i][2]], b_of_h)
    kept, kept_lams = [x0] + kept[:order - 1], [at[i][2]] + kept_lams[:order - 1]
    p = multistep_order(order, i, budget, lower_order_final)
    x0s, lams, x_start = kept[:p], kept_lams[:p], x
    x = unified_update(x, at[i], at[i + 1], x0s, lams, b_of_h)
  return x
