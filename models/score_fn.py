"""Turn a network into a score function s(x, t) (Song et al. 2021; Ho et al. 2020 eq. 11).

A network's output means what its parameterization says (models/parameterizations.py); each
gives the noise estimate eps_hat of x_t = m(t) x_0 + s(t) eps, and the score is
score(x, t) = -eps_hat(x, t) / s(t), i.e. -eps / sqrt(1 - alphabar_t) for the VP-SDE.
A network with a learned reverse variance (`config.model.learn_variance`; Nichol & Dhariwal
2021) outputs 2C channels for C-channel data: the first C are the output above, the next C its
variance output v (sde_lib/reverse_variance.py); `split_output` separates them.
"""
from models.parameterizations import get_parameterization
from sde_lib import batch_broadcast


def get_eps_fn(sde, model, continuous=True, parameterization='eps'):
  """eps_fn(x, t, classes=None) -> (eps_hat, the variance output v or None, s(t) broadcast).

  A continuous-time network sees `sde.network_label(t)` (score_sde's: t (N - 1) / T, or
  sigma(t) for the VE-SDE) at the marginal (m(t), s(t)); a discrete-time one the integer chain
  step i = sde.chain_index(t) as DDPM does (i = 999 at t = T for N = 1000) at the chain's
  (m_i, s_i). The parameterization may change what the network is shown (preconditioning) and
  turns its output into eps_hat. `classes` go to a class-conditional network (None: its null
  label, the unconditional model); an unconditional network is called without them.
  """
  meaning = get_parameterization(parameterization)

  def eps_fn(x, t, classes=None):
    if continuous:
      labels, (m, s) = sde.network_label(t), sde.marginal_coeffs(t)
    else:
      index = sde.chain_index(t)
      labels, (m, s) = index.to(t.dtype), sde.chain_coeffs(index)
    m, s = batch_broadcast(m, x), batch_broadcast(s, x)
    shown, labels = meaning.network_input(x, labels, m, s)
    output = model(shown, labels) if classes is None else model(shown, labels, classes)
    mean, v = split_output(output, x)
    return meaning.eps(mean, x, m, s, t, sde), v, s

  return eps_fn


def split_output(output, x):
  """(the first C channels of a network's output for x of C channels, the rest or None): the
  mean output and, for a learned-variance network, its variance output v."""
  channels = x.shape[1]
  rest = output[:, channels:]
  return output[:, :channels], (rest if rest.shape[1] else None)


def get_score_fn(sde, model, continuous=True, parameterization='eps'):
  """score_fn(x, t, classes=None) = -eps_hat(x, t) / s(t) (see get_eps_fn)."""
  eps_fn = get_eps_fn(sde, model, continuous, parameterization)

  def score_fn(x, t, classes=None):
    eps, _, s = eps_fn(x, t, classes)
    return -eps / s

  score_fn.continuous = continuous
  return score_fn


def get_score_and_variance_fns(sde, model, continuous=True, parameterization='eps'):
  """(score_fn, variance_output_fn) of a learned-variance network, sharing its evaluations:
  variance_output_fn(x, t) right after score_fn(x, t) on the same tensors (as the ancestral
  step asks) reuses that call's output instead of evaluating the network again. Both take an
  optional trailing `classes` (get_eps_fn)."""
  eps_fn = get_eps_fn(sde, model, continuous, parameterization)
  last = {}

  def evaluate(x, t, classes):
    if last.get('x') is not x or last.get('t') is not t or last.get('classes') is not classes:
      last.update(x=x, t=t, classes=classes, outputs=eps_fn(x, t, classes))
    return last['outputs']

  def score_fn(x, t, classes=None):
    eps, _, s = evaluate(x, t, classes)
    return -eps / s

  def variance_output_fn(x, t, classes=None):
    return evaluate(x, t, classes)[1]

  score_fn.continuous = continuous
  return score_fn, variance_output_fn


def chain_eps_fn(sde, model, continuous=True, parameterization='eps'):
  """eps_fn(x, i, classes=None) -> (eps_theta(x, i), the variance output v or None) at chain
  step i from a network queried at the step's time t_i = sde.chain_time(i): a discrete-time
  network then sees the step i itself. classes as in get_eps_fn."""
  eps_fn = get_eps_fn(sde, model, continuous, parameterization)

  def eps_at_step(x, index, classes=None):
    eps, v, _ = eps_fn(x, sde.chain_time(index).to(x.dtype), classes)
    return eps, v

  return eps_at_step
