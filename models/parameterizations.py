"""What a network's output means, turned into the noise estimate eps_hat of x_t = m x_0 + s z.

Every consumer (score functions, the chain's eps, the losses, the samplers through the score)
goes through `Parameterization.eps`; with it the score is -eps_hat / s and Tweedie's x0_hat is
(x_t - s eps_hat) / m. A parameterization may also say what the network is shown
(`network_input`): preconditioning scales the input and replaces the time label.

  'eps'        the network outputs eps (Ho et al. 2020): eps_hat = out
  'std_score'  it outputs s * score (= -eps): eps_hat = -out
  'score'      it outputs the score (score_sde's NCSN++ with scale_by_sigma): eps_hat = -s out
  'x0'         it outputs the data x_0: eps_hat = (x_t - m out) / s
  'velocity'   it outputs the flow's v = m' x_0 + s' z: eps_hat = (m out - m' x_t) / (m s' - m' s)
  'v'          v-prediction, v = alpha eps - sigma x_0 (Salimans & Ho 2022)
  'edm', 'vp_precond', 've_precond'   EDM's preconditionings (Karras et al. 2022, Table 1): the
               denoiser D = c_skip x^ + c_out F(c_in x^; c_noise) at x^ = x_t / m, sigma = s / m
"""
import torch

from sde_lib import batch_broadcast
from sde_lib.flows import eps_from_velocity
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


class VelocityPrediction(Parameterization):
  """The flow's velocity v = m' x_0 + s' z (flow matching, Lipman et al. 2023; rectified flow,
  Liu et al. 2023): eps_hat = (m v - m' x_t) / (m s' - m' s) (sde_lib/flows.py)."""
  name = 'velocity'

  def eps(self, output, x, m, s, t, sde):
    dm, ds = (batch_broadcast(c, x) for c in sde.marginal_coeffs_derivative(t))
    return eps_from_velocity(x, output, m, s, dm, ds)


class VPrediction(Parameterization):
  """v = alpha eps - sigma x_0 (Salimans & Ho 2022, sec. 4) of the variance-preserving
  z = alpha x_0 + sigma eps, alpha = m / sqrt(m^2 + s^2), sigma = s / sqrt(m^2 + s^2) (on the
  VP-SDE alpha = m, sigma = s and z = x_t). The network sees z; eps_hat = sigma z + alpha v_hat."""
  name = 'v'

  def network_input(self, x, labels, m, s):
    return x / (m ** 2 + s ** 2) ** 0.5, labels

  def eps(self, output, x, m, s, t, sde):
    norm = (m ** 2 + s ** 2) ** 0.5
    return (s / norm) * (x / norm) + (m / norm) * output


class Preconditioning(Parameterization):
  """EDM's preconditioning (Karras et al. 2022, sec. 5, Table 1): the network F gives the denoiser
  D(x^; sigma) = c_skip(sigma) x^ + c_out(sigma) F(c_in(sigma) x^; c_noise(sigma)) in EDM's
  variables x^ = x_t / m, sigma = s / m (x^ = x_0 + sigma z on every SDE here), so that
  x0_hat = D and eps_hat = (x_t - m D) / s. Each variant gives c_skip, c_out, c_in and c_noise."""

  def c_noise(self, sigma, labels):
    """The network's noise label ([batch]), from sigma or the SDE's own time label."""
    raise NotImplementedError

  def network_input(self, x, labels, m, s):
    sigma = s / m
    return self.c_in(sigma) * (x / m), self.c_noise(sigma, labels)

  def denoise(self, output, x_hat, sigma):
    """D(x^; sigma) = c_skip x^ + c_out F, F the network's output."""
    return self.c_skip(sigma) * x_hat + self.c_out(sigma) * output

  def eps(self, output, x, m, s, t, sde):
    return (x - m * self.denoise(output, x / m, s / m)) / s


class EDMPreconditioning(Preconditioning):
  """Table 1 "Ours" (NVlabs/edm EDMPrecond): c_skip = sigma_data^2 / (sigma^2 + sigma_data^2),
  c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2), c_in = 1 / sqrt(sigma^2 +
  sigma_data^2), c_noise = ln(sigma) / 4: unit-variance input and training target for data of
  std sigma_data."""
  name = 'edm'

  def __init__(self, sigma_data=0.5):
    self.sigma_data = sigma_data   # sigma_data: the data's standard deviation

  def c_skip(self, sigma):
    return self.sigma_data ** 2 / (sigma ** 2 + self.sigma_data ** 2)

  def c_out(self, sigma):
    return sigma * self.sigma_data / (sigma ** 2 + self.sigma_data ** 2) ** 0.5

  def c_in(self, sigma):
    return 1 / (sigma ** 2 + self.sigma_data ** 2) ** 0.5

  def c_noise(self, sigma, labels=None):
    return (sigma.log() / 4).reshape(-1)


class VPPreconditioning(Preconditioning):
  """Table 1 "VP" (NVlabs/edm VPPrecond; score_sde's DDPM++): c_skip = 1, c_out = -sigma,
  c_in = 1 / sqrt(sigma^2 + 1), so F is eps; c_noise = (M - 1) t(sigma) is the VP-SDE's own label
  t (N - 1) (SDE.network_label), which this takes as given: run it on the SDE it was trained on."""
  name = 'vp_precond'

  def c_skip(self, sigma):
    return torch.ones_like(sigma)

  def c_out(self, sigma):
    return -sigma

  def c_in(self, sigma):
    return 1 / (sigma ** 2 + 1) ** 0.5

  def c_noise(self, sigma, labels):
    return labels


class VEPreconditioning(Preconditioning):
  """Table 1 "VE" (NVlabs/edm VEPrecond; score_sde's NCSN++): c_skip = 1, c_out = sigma, c_in = 1,
  so F is sigma times the score; c_noise is the VE-SDE's label sigma (SDE.network_label), of
  which NCSN++ embeds log sigma (EDM's ln(sigma / 2) is the same up to its embedding's shift).
  The network must not divide by sigma itself (model.scale_by_sigma=False; same weights)."""
  name = 've_precond'

  def c_skip(self, sigma):
    return torch.ones_like(sigma)

  def c_out(self, sigma):
    return sigma

  def c_in(self, sigma):
    return torch.ones_like(sigma)

  def c_noise(self, sigma, labels):
    return labels


PARAMETERIZATIONS = {p.name: p for p in (NoisePrediction(), ScaledScore(), Score(),
                                         DataPrediction(), VelocityPrediction(), VPrediction(),
                                         EDMPreconditioning(), VPPreconditioning(),
                                         VEPreconditioning())}


def get_parameterization(parameterization):
  """A Parameterization given itself or by name; an unknown name is a ConfigError."""
  if isinstance(parameterization, Parameterization):
    return parameterization
  if parameterization not in PARAMETERIZATIONS:
    raise ConfigError(f"unknown parameterization {parameterization!r}; "
                      f"choose one of {sorted(PARAMETERIZATIONS)}")
  return PARAMETERIZATIONS[parameterization]
