"""Predictors: one step of the reverse process from time t down to s < t.

Each takes the noise z ~ N(0, I) from its caller (so tests can drive two algorithms with the same
noise) and returns (x_s, mean of x_s), the mean being the step without noise.
"""
import torch

from sde_lib import batch_broadcast
from sde_lib.reverse_variance import (NEEDS_LEARNING, check_variance, reverse_variance,
                                      x0_variance)
from utils.errors import ConfigError


def euler_maruyama(sde, score_fn, x, t, s, z):
  """x_s = x_t - [f - g^2 score] h + g sqrt(h) z,  h = t - s  (Song et al. 2021, reverse SDE eq. 6)."""
  h = batch_broadcast(t - s, x)
  drift, g = sde.reverse(score_fn).sde(x, t)
  x_mean = x - drift * h
  return x_mean + batch_broadcast(g, x) * h.sqrt() * z, x_mean


def reverse_diffusion(sde, score_fn, x, t, s, z):
  """x_s = x_t - f + G^2 score + G z with f, G the forward step from s to t (Song et al. 2021 eq. 46)."""
  rev_f, rev_g = sde.reverse(score_fn).discretize(x, t, t - s)
  x_mean = x - rev_f
  return x_mean + batch_broadcast(rev_g, x) * z, x_mean


def get_ancestral(variance='beta_tilde', inputs=None, clip_below=None):
  """DDPM's ancestral step (Ho et al. 2020, Algorithm 2), for any linear SDE.

  x_s ~ N(mean, sigma^2), mean that of q(x_s | x_t, x0_hat), x0_hat = (x_t + s_t^2 score) / m_t.
  With the transition x_t = a x_s + sqrt(b) z the posterior mean is
  (a s_s^2 x_t + m_s b x0_hat) / s_t^2; sigma^2 is `variance` of sde_lib/reverse_variance.py from
  b and beta-tilde = b s_s^2 / s_t^2: 'beta_tilde', 'beta' (Ho et al. sec. 3.2), 'learned'
  (inputs.output_fn's v; Nichol & Dhariwal 2021) or 'analytic' (inputs.gamma; Bao et al.
  2022, its std clipped to inputs.max_sampling_std() on steps to times <= clip_below).
  On a DiscreteChain (a discrete-time model) this is Ho et al.'s Algorithm 2 / eq. 11 with the
  chain's alphas_cumprod (VP; respaced when it keeps fewer steps) or SMLD's ancestral step on its
  sigmas (VE); on the SDE itself the same step uses the continuous alphabar(t) at the grid's times.
  """
  check_variance(variance)
  if variance in ('learned', 'analytic') and (inputs is None or (
      inputs.output_fn if variance == 'learned' else inputs.gamma) is None):
    raise ConfigError(NEEDS_LEARNING if variance == 'learned' else "the 'analytic' reverse "
                      "variance needs the network's Gamma table (samplers/analytic_variance.py)")

  def ancestral(sde, score_fn, x, t, s, z):
    m_t, std_t = sde.marginal_coeffs(t)
    m_s, std_s = sde.marginal_coeffs(s)
    a, sigma = sde.transition(s, t)
    b = sigma ** 2
    x0_hat = sde.tweedie_x0(x, t, score_fn(x, t))
    x_mean = (batch_broadcast(a * std_s ** 2, x) * x
              + batch_broadcast(m_s * b, x) * x0_hat) / batch_broadcast(std_t ** 2, x)
    beta_tilde = b * std_s ** 2 / std_t ** 2
    if variance == 'learned':
      tiny = torch.finfo(beta_tilde.dtype).tiny
      var = reverse_variance(variance, batch_broadcast(b, x), batch_broadcast(beta_tilde, x)
                             .clamp(min=tiny), v=inputs.output_fn(x, t))
    elif variance == 'analytic':
      var_x0 = x0_variance(m_t, std_t, inputs.gamma(t).to(t.dtype), inputs.data_half_range)
      var = reverse_variance(variance, b, beta_tilde, m_s * b / std_t ** 2, var_x0)
      max_std = inputs.max_sampling_std()
      if max_std is not None and clip_below is not None:
        var = torch.where(s <= clip_below, var.clamp(max=max_std ** 2), var)
    else:
      var = reverse_variance(variance, b, beta_tilde)
    std = var.sqrt() if var.dim() == x.dim() else batch_broadcast(var.sqrt(), x)
    return x_mean + std * z, x_mean

  return ancestral
