"""Predictors: one step of the reverse process from time t down to s < t.

Each takes the noise z ~ N(0, I) from its caller (so tests can drive two algorithms with the same
noise) and returns (x_s, mean of x_s), the mean being the step without noise.
"""
from sde_lib import batch_broadcast
from sde_lib.reverse_variance import check_inputs, step_variance


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
  (a s_s^2 x_t + m_s b x0_hat) / s_t^2; sigma^2 is sde_lib.reverse_variance.step_variance of
  `variance`: 'beta_tilde', 'beta' (Ho et al. sec. 3.2), 'learned' (inputs.output_fn's v;
  Nichol & Dhariwal 2021) or 'analytic' (inputs.gamma; Bao et al. 2022, its std clipped to
  inputs.max_sampling_std() on steps to times <= clip_below).
  On a DiscreteChain (a discrete-time model) this is Ho et al.'s Algorithm 2 / eq. 11 with the
  chain's alphas_cumprod (VP; respaced when it keeps fewer steps) or SMLD's ancestral step on its
  sigmas (VE); on the SDE itself the same step uses the continuous alphabar(t) at the grid's times.
  """
  check_inputs(variance, inputs)

  def ancestral(sde, score_fn, x, t, s, z):
    std_t = sde.marginal_coeffs(t)[1]
    m_s, std_s = sde.marginal_coeffs(s)
    a, sigma = sde.transition(s, t)
    x0_hat = sde.tweedie_x0(x, t, score_fn(x, t))
    x_mean = (batch_broadcast(a * std_s ** 2, x) * x
              + batch_broadcast(m_s * sigma ** 2, x) * x0_hat) / batch_broadcast(std_t ** 2, x)
    var = step_variance(sde, t, s, variance, inputs, x, clip_below)
    std = var.sqrt() if var.dim() == x.dim() else batch_broadcast(var.sqrt(), x)
    return x_mean + std * z, x_mean

  return ancestral
