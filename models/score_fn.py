"""Turn a network into a score function s(x, t) (Song et al. 2021; Ho et al. 2020 eq. 11).

A network predicting the noise eps of x_t = m(t) x_0 + s(t) eps gives
score(x, t) = -eps_theta(x, t) / s(t), i.e. -eps / sqrt(1 - alphabar_t) for the VP-SDE.
Other output conventions (`config.model.parameterization`):
  'std_score'  the network outputs s(t) * score (= -eps);
  'score'      the network outputs the score itself (score_sde's NCSN++ with scale_by_sigma).
"""
from sde_lib import batch_broadcast
from utils.errors import ConfigError

# parameterization -> (sign, power of s(t)) with score = sign * output / s(t)^power
PARAMETERIZATIONS = {'eps': (-1.0, 1), 'std_score': (1.0, 1), 'score': (1.0, 0)}


def check_parameterization(parameterization):
  """(sign, power) of a known parameterization; an unknown one is a ConfigError."""
  if parameterization not in PARAMETERIZATIONS:
    raise ConfigError(f"unknown parameterization {parameterization!r}; "
                     f"choose one of {sorted(PARAMETERIZATIONS)}")
  return PARAMETERIZATIONS[parameterization]


def get_model_fn(sde, model, continuous=True):
  """model_fn(x, t) -> (network output, std of x at t).

  A continuous-time network sees `sde.network_label(t)` (score_sde's: t (N - 1) / T, or
  sigma(t) for the VE-SDE) and the marginal std s(t); a discrete-time one the integer chain
  step i = sde.chain_index(t) as DDPM does (i = 999 at t = T for N = 1000) and the chain's s_i.
  """

  def model_fn(x, t):
    if continuous:
      labels, std = sde.network_label(t), sde.marginal_std(t)
    else:
      index = sde.chain_index(t)
      labels, std = index.to(t.dtype), sde.chain_std(index)
    return model(x, labels), std

  return model_fn


def output_to_score(output, std, parameterization):
  """The score from a network output and the std s(t) of x at its time."""
  sign, power = check_parameterization(parameterization)
  return sign * output / batch_broadcast(std, output) ** power


def output_to_eps(output, std, parameterization):
  """The noise estimate eps = -s(t) score from a network output."""
  sign, power = check_parameterization(parameterization)
  return -sign * output * batch_broadcast(std, output) ** (1 - power)


def get_score_fn(sde, model, continuous=True, parameterization='eps'):
  """score_fn(x, t): the network's output at t turned into the score (see the module doc)."""
  check_parameterization(parameterization)
  model_fn = get_model_fn(sde, model, continuous)

  def score_fn(x, t):
    return output_to_score(*model_fn(x, t), parameterization)

  return score_fn


def get_x0_fn(sde, score_fn):
  """x0_hat(x_t, t) = (x_t + s(t)^2 score) / m(t)  (Tweedie); for an eps-model this is
  (x_t - sqrt(1 - alphabar) eps) / sqrt(alphabar)."""

  def x0_fn(x, t):
    return sde.tweedie_x0(x, t, score_fn(x, t))

  return x0_fn
