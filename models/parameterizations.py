"""What a network's output means, turned into the noise estimate eps_hat of x_t = m x_0 + s z.

Every consumer (score functions, the chain's eps, the losses, the samplers through the score)
goes through `Parameterization.eps`; with it the score is -eps_hat / s and Tweedie's x0_hat is
(x_t - s eps_hat) / m. A parameterization may also say what the network is shown
(`network_input`): preconditioning scales the input and replaces the time label.

  'eps'        the network outputs eps (Ho et al. 2020): eps_hat = out
  'std_score'  it outputs s * score (= -eps): eps_hat = -out
  'score'      it outputs the score (score_sde's NCSN++ with scale_by_sigma): eps_hat = -s out
  'x0'         it outputs the data x_0: eps_hat = (x_t - m out) / s
"""
from utils.errors import ConfigError


class Parameterization:
  """The meaning of a network's output. `m`, `s` arrive broadcast against x (the marginal
  coefficients of the time the network is asked about: the chain's for a discrete-time model)."""

  name = None

  def network_input(self, x, labels, m, s):
    """(what the network is given, its time labels): x and the SDE's labels unless overridden."""
    return x, labels

  def eps(self, output, x, m, s, t, sde):
    """eps_hat from the network's output at (x, t)."""
    raise NotImplementedError


class NoisePrediction(Parameterization):
  name = 'eps'

  def eps(self, output, x, m, s, t, sde):
    return output


class ScaledScore(Parameterization):
  name = 'std_score'

  def eps(self, output, x, m, s, t, sde):
    return -output


class Score(Parameterization):
  name = 'score'

  def eps(self, output, x, m, s, t, sde):
    return -s * output


class DataPrediction(Parameterization):
  name = 'x0'

  def eps(self, output, x, m, s, t, sde):
    return (x - m * output) / s


PARAMETERIZATIONS = {p.name: p for p in (NoisePrediction(), ScaledScore(), Score(),
                                         DataPrediction())}


def get_parameterization(parameterization):
  """A Parameterization given itself or by name; an unknown name is a ConfigError."""
  if isinstance(parameterization, Parameterization):
    return parameterization
  if parameterization not in PARAMETERIZATIONS:
    raise ConfigError(f"unknown parameterization {parameterization!r}; "
                      f"choose one of {sorted(PARAMETERIZATIONS)}")
  return PARAMETERIZATIONS[parameterization]
