"""score_sde's continuous-time network inputs, inverted by hand for oracle networks."""
import math

from sde_lib import VESDE


def time_of_label(sde, label):
  """t from the label a continuous network gets: VE networks see sigma(t) = sigma_min
  (sigma_max / sigma_min)^t, the others t (N - 1) / T."""
  if isinstance(sde, VESDE):
    return sde.T * (label / sde.sigma_min).log() / math.log(sde.sigma_max / sde.sigma_min)
  return label * sde.T / (sde.N - 1)

