"""Turn a network into a score function s(x, t) (Song et al. 2021; Ho et al. 2020 eq. 11).

A network predicting the noise eps of x_t = m(t) x_0 + s(t) eps gives
score(x, t) = -eps_theta(x, t) / s(t), i.e. -eps / sqrt(1 - alphabar_t) for the VP-SDE.
A network with a learned reverse variance (`config.model.learn_variance`; Nichol & Dhariwal
2021) outputs 2C channels for C-channel data: the first C are the output above, the next C its
variance output v (sde_lib/reverse_variance.py); `split_output` separates them.
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
  """model_fn(x, t, classes=None) -> (network output, std of x at t).

  A continuous-time network sees `sde.network_label(t)` (score_sde's: t (N - 1) / T, or
  sigma(t) for the VE-SDE) and the marginal std s(t); a discrete-time one the integer chain
  step i = sde.chain_index(t) as DDPM does (i = 999 at t = T for N = 1000) and the chain's s_i.
  `classes` go to a class-conditional network (None: its null label, the unconditional model);
  an unconditional network is called without them.
  """

  def model_fn(x, t, classes=None):
    if continuous:
      labels, std = sde.network_label(t), sde.marginal_std(t)
    else:
      index = sde.chain_index(t)
      labels, std = index.to(t.dtype), sde.chain_std(index)
    output = model(x, labels) if classes is None else model(x, labels, classes)
    return output, std

  return model_fn


def split_output(output, x):
  """(the first C channels of a network's output for x of C channels, the rest or None): the
  mean output and, for a learned-variance network, its variance output v."""
  channels = x.shape[1]
  rest = output[:, channels:]
  return output[:, :channels], (rest if rest.shape[1] else None)


def output_to_score(output, std, parameterization):
  """The score from a network output and the std s(t) of x at its time."""
  sign, power = check_parameterization(parameterization)
  return sign * output / batch_broadcast(std, output) ** power


def output_to_eps(output, std, parameterization):
  """The noise estimate eps = -s(t) score from a network output."""
  sign, power = check_parameterization(parameterization)
  return -sign * output * batch_broadcast(std, output) ** (1 - power)


def get_score_fn(sde, model, continuous=True, parameterization='eps'):
  """score_fn(x, t, classes=None): the network's output at t turned into the score (see the
  module doc); classes as in get_model_fn."""
  check_parameterization(parameterization)
  model_fn = get_model_fn(sde, model, continuous)

  def score_fn(x, t, classes=None):
    output, std = model_fn(x, t, classes)
    return output_to_score(split_output(output, x)[0], std, parameterization)

  return score_fn


def get_score_and_variance_fns(sde, model, continuous=True, parameterization='eps'):
  """(score_fn, variance_output_fn) of a learned-variance network, sharing its evaluations:
  variance_output_fn(x, t) right after score_fn(x, t) on the same tensors (as the ancestral
  step asks) reuses that call's output instead of evaluating the network again. Both take an
  optional trailing `classes` (get_model_fn)."""
  check_parameterization(parameterization)
  model_fn = get_model_fn(sde, model, continuous)
  last = {}

  def evaluate(x, t, classes):
    if last.get('x') is not x or last.get('t') is not t or last.get('classes') is not classes:
      output, std = model_fn(x, t, classes)
      last.update(x=x, t=t, classes=classes, outputs=(*split_output(output, x), std))
    return last['outputs']

  def score_fn(x, t, classes=None):
    output, _, std = evaluate(x, t, classes)
    return output_to_score(output, std, parameterization)

  def variance_output_fn(x, t, classes=None):
    return evaluate(x, t, classes)[1]

  return score_fn, variance_output_fn


def chain_eps_fn(sde, model, continuous=True, parameterization='eps'):
  """eps_fn(x, i, classes=None) -> (eps_theta(x, i), the variance output v or None) at chain
  step i from a network queried at the step's time t_i = sde.chain_time(i): a discrete-time
  network then sees the step i itself. classes as in get_model_fn."""
  check_parameterization(parameterization)
  model_fn = get_model_fn(sde, model, continuous)

  def eps_fn(x, index, classes=None):
    output, std = model_fn(x, sde.chain_time(index).to(x.dtype), classes)
    mean, v = split_output(output, x)
    return output_to_eps(mean, std, parameterization), v

  return eps_fn


def get_x0_fn(sde, score_fn):
  """x0_hat(x_t, t) = (x_t + s(t)^2 score) / m(t)  (Tweedie); for an eps-model this is
  (x_t - sqrt(1 - alphabar) eps) / sqrt(alphabar)."""

  def x0_fn(x, t):
    return sde.tweedie_x0(x, t, score_fn(x, t))

  return x0_fn
