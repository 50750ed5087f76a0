"""The consistency function's parameterization (Song et al. 2023, sec. 3 and appendix C).

  f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma)),
  c_skip = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2),
  c_out  = sigma_data (sigma - sigma_min) / sqrt(sigma^2 + sigma_data^2),

so that c_skip(sigma_min) = 1 and c_out(sigma_min) = 0 exactly: f(x, sigma_min) = x, the boundary
condition, whatever the network F. c_in and c_noise are EDM's (models/parameterizations.py), as
in openai/consistency_models. f is the model's x0_hat (its denoiser D in EDM's variables), so
every sampler, and Predictions.x0 in particular, reads a consistency model like any other.
"""
import torch

from models.parameterizations import EDMPreconditioning


class ConsistencyPreconditioning(EDMPreconditioning):
  """EDM's preconditioning with c_skip, c_out shifted to vanish / be 1 at sigma_min."""
  name = 'consistency'

  def __init__(self,
               sigma_data=0.5,      # sigma_data: the data's standard deviation
               sigma_min=0.002):    # epsilon of the paper: the noise level where f is the identity
    super().__init__(sigma_data)
    self.sigma_min = sigma_min

  def shift(self, sigma):
    """sigma - sigma_min in sigma's own precision: exactly 0 at sigma_min, in float32 too."""
    return sigma - torch.as_tensor(self.sigma_min, dtype=sigma.dtype, device=sigma.device)

  def c_skip(self, sigma):
    """sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2), written 1 / (1 + (.)^2): exactly 1
    at sigma_min."""
    return 1 / (1 + (self.shift(sigma) / self.sigma_data) ** 2)

  def c_out(self, sigma):
    return self.sigma_data * self.shift(sigma) / (sigma ** 2 + self.sigma_data ** 2) ** 0.5
