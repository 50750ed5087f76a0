"""Turn a network into a score function s(x, t) (Song et al. 2021; Ho et al. 2020 eq. 11).

A network predicting the noise eps of x_t = m(t) x_0 + s(t) eps gives
score(x, t) = -eps_theta(x, t) / s(t), i.e. -eps / sqrt(1 - alphabar_t) for the VP-SDE.
A 'score' parameterization (score_sde's VE models) outputs s(t) * score instead.
"""
from sde_lib import batch_broadcast
from utils.errors import ConfigError

PARAMETERIZATIONS = {'eps': -1.0, 'score': 1.0}


def get_model_fn(sde, model, continuous=True):
  """model_fn(x, t) -> (network output, std of x at t).

  A continuous-time network sees the label t (N - 1) / T (score_sde's convention) and the
  marginal std s(t); a discrete-time one the integer chain step i = sde.chain_index(t) as DDPM
  does (i = 999 at t = T for N = 1000) and the chain's std s_i.
  """

  def model_fn(x, t):
    if continuous:
      labels, std = t * (sde.N - 1) / sde.T, sde.marginal_std(t)
    else:
      index = sde.chain_index(t)
      labels, std = index.to(t.dtype), sde.chain_std(index)
    return model(x, labels), std

  return model_fn


def get_score_fn(sde, model, continuous=True, parameterization='eps'):
  """score_fn(x, t) = sign * model(x, label(t)) / std(t), sign = -1 for eps-prediction."""
  if parameterization not in PARAMETERIZATIONS:
    raise ConfigError(f"unknown parameterization {parameterization!r}; "
                     f"choose one of {sorted(PARAMETERIZATIONS)}")
  sign = PARAMETERIZATIONS[parameterization]
  model_fn = get_model_fn(sde, model, continuous)

  def score_fn(x, t):
    out, std = model_fn(x, t)
    return sign * out / batch_broadcast(std, x)

  return score_fn


def get_x0_fn(sde, score_fn):
  """x0_hat(x_t, t) = (x_t + s(t)^2 score) / m(t)  (Tweedie); for an eps-model this is
  (x_t - sqrt(1 - alphabar) eps) / sqrt(alphabar)."""

  def x0_fn(x, t):
    return sde.tweedie_x0(x, t, score_fn(x, t))

  return x0_fn
