"""Post-hoc EMA (Karras et al. 2024, EDM2, sec. 3 and app. C): power-function averages of the
parameters, tracked during training for a few sigma_rel and snapshotted, from which the average
for any other sigma_rel is reconstructed after training by least squares.

A power-function EMA with exponent gamma averages the trajectory theta(tau), tau in [0, t], with
the profile p(tau) = (gamma + 1) tau^gamma / t^(gamma + 1) (EDM2 eq. 1), updated after each step t
(t = 1, 2, ...) as  theta_hat <- beta_t theta_hat + (1 - beta_t) theta,  beta_t = (1 - 1/t)^(gamma + 1)
(eq. 2). The product of the betas telescopes, so step tau's weight at time t is exactly
(tau / t)^(gamma + 1) - ((tau - 1) / t)^(gamma + 1): the profile integrated over (tau - 1, tau].
Its width relative to its length is sigma_rel = sqrt((gamma + 1) / ((gamma + 2)^2 (gamma + 3)))
(eq. 3), the standard deviation of tau / t under the profile (a Beta(gamma + 1, 1) density).
"""
import numpy as np
import torch

from models.ema import _named_params
from utils.errors import ConfigError

SIGMA_REL_MAX = 12 ** -0.5   # gamma = 0: the uniform average of the whole run, the widest profile


def sigma_rel_to_gamma(sigma_rel):
  """gamma of EDM2 eq. 3, the largest real root of sigma_rel^2 (gamma + 2)^2 (gamma + 3) =
  gamma + 1, i.e. gamma^3 + 7 gamma^2 + (16 - sigma_rel^-2) gamma + 12 - sigma_rel^-2 = 0."""
  if not 0 < sigma_rel <= SIGMA_REL_MAX:
    raise ConfigError(f"sigma_rel must lie in (0, {SIGMA_REL_MAX:.4f}] (gamma >= 0), got "
                      f"{sigma_rel!r}")
  s = float(sigma_rel) ** -2
  roots = np.roots([1.0, 7.0, 16.0 - s, 12.0 - s])
  return float(roots[np.abs(roots.imag) < 1e-9].real.max())


def power_beta(gamma, t):
  """beta_t = (1 - 1/t)^(gamma + 1) (EDM2 eq. 2): 0 at t = 1, so the average starts at theta_1."""
  return (1.0 - 1.0 / t) ** (gamma + 1.0)


def profile_inner_product(t_a, gamma_a, t_b, gamma_b):
  """<p_a, p_b> = integral of the two profiles' product over tau (EDM2 app. C.3):
  (gamma_a + 1)(gamma_b + 1) / (gamma_a + gamma_b + 1) (m / t_a)^(gamma_a + 1)
  (m / t_b)^(gamma_b + 1) / m with m = min(t_a, t_b); broadcasts over arrays."""
  m = np.minimum(t_a, t_b)
  return ((gamma_a + 1) * (gamma_b + 1) / (gamma_a + gamma_b + 1)
          * (m / t_a) ** (gamma_a + 1) * (m / t_b) ** (gamma_b + 1) / m)


def solve_posthoc_coefficients(t_i, gamma_i, t_r, gamma_r):
  """x minimising || sum_i x_i p_i - p_r ||_2 over the snapshots' profiles p_i (times t_i,
  exponents gamma_i) for the target profile p_r (t_r, gamma_r): the normal equations
  A x = b, A_ij = <p_i, p_j>, b_i = <p_i, p_r>, then x / sum(x) so that the weights of the
  combination sum to one (EDM2 app. C.3, their solve_posthoc_coefficients)."""
  t_i, gamma_i = np.broadcast_arrays(np.float64(t_i), np.float64(gamma_i))
  A = profile_inner_product(t_i[:, None], gamma_i[:, None], t_i[None, :], gamma_i[None, :])
  b = profile_inner_product(t_i, gamma_i, np.float64(t_r), np.float64(gamma_r))
  x = np.linalg.solve(A, b)
  return x / x.sum()


class PowerFunctionEMA:
  """Power-function EMAs of one model's parameters, one per sigma_rel (EDM2 tracks 0.05 and
  0.10), each updated with beta_t of eq. 2 at t = the number of updates so far."""

  def __init__(self, model_or_params, sigma_rels):
    self.sigma_rels = [float(s) for s in sigma_rels]
    self.gammas = [sigma_rel_to_gamma(s) for s in self.sigma_rels]
    self.t = 0
    params = _named_params(model_or_params)
    self.averages = [{name: p.detach().clone() for name, p in params.items()}
                     for _ in self.sigma_rels]

  @torch.no_grad()
  def update(self, model_or_params):
    self.t += 1
    params = _named_params(model_or_params)
    for gamma, average in zip(self.gammas, self.averages):
      beta = power_beta(gamma, self.t)
      for name, p in params.items():
        average[name].lerp_(p.detach(), 1.0 - beta)

  def state_dict(self):
    """Tensors and plain values only; also what a snapshot file holds."""
    return {'sigma_rels': list(self.sigma_rels), 't': self.t,
            'averages': [dict(average) for average in self.averages]}

  @torch.no_grad()
  def load_state_dict(self, state):
    """Strict: the same sigma_rels, parameter names and shapes."""
    if [float(s) for s in state['sigma_rels']] != self.sigma_rels:
      raise ValueError(f"the post-hoc EMA state tracks sigma_rel {list(state['sigma_rels'])}, "
                       f"the config {self.sigma_rels}")
    for saved, average in zip(state['averages'], self.averages):
      if saved.keys() != average.keys() or any(saved[k].shape != v.shape
                                                for k, v in average.items()):
        raise ValueError("the post-hoc EMA state does not match the model's parameters")
      for name, value in saved.items():
        average[name].copy_(value)
    self.t = int(state['t'])
