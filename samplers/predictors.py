"""Predictors: one step of the reverse process from time t down to s < t.

Each takes the noise z ~ N(0, I) from its caller (so tests can drive two algorithms with the same
noise) and returns (x_s, mean of x_s), the mean being the step without noise.
"""
from sde_lib import batch_broadcast
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


def get_ancestral(variance='beta_tilde'):
  """DDPM's ancestral step (Ho et al. 2020, Algorithm 2), for any linear SDE.

  x_s ~ q(x_s | x_t, x0_hat), x0_hat = (x_t + s_t^2 score) / m_t.  With the transition
  x_t = a x_s + sigma z the posterior mean is (a s_s^2 x_t + m_s sigma^2 x0_hat) / s_t^2 and its
  variance sigma^2 s_s^2 / s_t^2 (beta-tilde); 'beta' uses sigma^2 instead (Ho et al. sec. 3.2).
  On a DiscreteChain (a discrete-time model) this is Ho et al.'s Algorithm 2 / eq. 11 with the
  chain's alphas_cumprod (VP) or SMLD's ancestral step on its sigmas (VE); on the SDE itself the
  same step uses the continuous alphabar(t) at the grid's times.
  """
  if variance not in ('beta_tilde', 'beta'):
    raise ConfigError(f"unknown ancestral variance {variance!r}; choose 'beta_tilde' or 'beta'")

  def ancestral(sde, score_fn, x, t, s, z):
    std_t = sde.marginal_std(t)
    m_s, std_s = sde.marginal_coeffs(s)
    a, sigma = sde.transition(s, t)
    x0_hat = sde.tweedie_x0(x, t, score_fn(x, t))
    x_mean = (batch_broadcast(a * std_s ** 2, x) * x
              + batch_broadcast(m_s * sigma ** 2, x) * x0_hat) / batch_broadcast(std_t ** 2, x)
    var = sigma ** 2 * std_s ** 2 / std_t ** 2 if variance == 'beta_tilde' else sigma ** 2
    return x_mean + batch_broadcast(var.sqrt(), x) * z, x_mean

  return ancestral
