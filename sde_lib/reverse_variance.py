"""The variance sigma^2 of a reverse step p(x_s | x_t) = N(mean, sigma^2 I), s < t.

For a step of a linear SDE (or of its chain) with x_t = a x_s + sqrt(b) z, marginals
x_t = m_t x_0 + s_t z and the posterior q(x_s | x_t, x_0) = N(c x_0 + ..., beta-tilde):
  'beta'        b                                  (Ho et al. 2020 'fixedlarge': beta_t)
  'beta_tilde'  beta-tilde = b s_s^2 / s_t^2       ('fixedsmall': the posterior variance)
  'learned'     exp(f log b + (1 - f) log beta-tilde), f = (v + 1) / 2 from the network's
                variance output v (Nichol & Dhariwal 2021, eq. 15)
  'analytic'    beta-tilde + c^2 Var[x_0 | x_t],  c = m_s b / s_t^2 (Bao et al. 2022, Thm. 1
                with lambda^2 = beta-tilde), where Var[x_0 | x_t] per dimension is
                s_t^2 / m_t^2 (1 - Gamma_t), Gamma_t = E ||eps_theta(x_t, t)||^2 / d, clipped
                to [0, ((hi - lo) / 2)^2] for data in [lo, hi] (their Thm. 2).
The posterior mean's x_0 coefficient c is the same for every choice; only the variance differs.
This module is the one place these are computed: `step_variance` for a step between two times
of an SDE or its DiscreteChain (the ancestral sampler), `chain_step_variance` for a step of a
chain's arrays (the VLB). They differ only at the chain's decoder step (s = data), where
beta-tilde is 0: sampling keeps that 0 (with 'beta_tilde' Ho et al.'s Algorithm 2 adds no noise
at t = 1), the bound takes the beta-tilde of the step above in its place, as Ho et al.'s and
Nichol & Dhariwal's code do.
"""
import dataclasses
import math
from typing import Callable, Optional

import torch

from sde_lib.base import batch_broadcast
from utils.errors import ConfigError

VARIANCES = ('beta', 'beta_tilde', 'learned', 'analytic')
NEEDS_LEARNING = ("the 'learned' reverse variance needs a network trained with "
                  "model.learn_variance=True")


def check_variance(variance):
  if variance not in VARIANCES:
    raise ConfigError(f"unknown reverse variance {variance!r}; choose one of {list(VARIANCES)}")
  return variance


@dataclasses.dataclass
class VarianceInputs:
  """What the 'learned' and 'analytic' variances need beyond a step's coefficients."""
  output_fn: Optional[Callable] = None   # (x, t) -> the network's variance output v ('learned')
  gamma: Optional[Callable] = None       # t -> Gamma_t ('analytic'; samplers.analytic_variance)
  data_half_range: float = 1.0           # (hi - lo) / 2 of the data in model space
  bin_width: Optional[float] = None      # model-space width of one quantization level: sampling
                                         # clips the analytic std of the steps into the last two
                                         # times to 2 bin_width sqrt(pi / 2), i.e. E|sigma z| <= 2
                                         # levels (Bao et al. 2022, sec. 5); None: no clipping

  def max_sampling_std(self):
    return None if self.bin_width is None else 2.0 * self.bin_width * math.sqrt(math.pi / 2)


def check_inputs(variance, inputs):
  """ConfigError unless `inputs` (VarianceInputs) hold what `variance` needs beyond the step."""
  check_variance(variance)
  if variance == 'learned' and (inputs is None or inputs.output_fn is None):
    raise ConfigError(NEEDS_LEARNING)
  if variance == 'analytic' and (inputs is None or inputs.gamma is None):
    raise ConfigError("the 'analytic' reverse variance needs the network's Gamma table "
                      "(samplers/analytic_variance.py)")


def x0_variance(m_t, s_t, gamma, data_half_range=1.0):
  """Var[x_0 | x_t] per dimension averaged over x_t: s_t^2 / m_t^2 (1 - Gamma_t), in
  [0, data_half_range^2] (Bao et al. 2022, Thm. 1-2)."""
  var = (s_t / m_t) ** 2 * (1.0 - gamma)
  return var.clamp(min=0.0, max=data_half_range ** 2)


def reverse_variance(variance, b, beta_tilde, coef_x0=None, var_x0=None, v=None):
  """sigma^2 of the step (see the module docstring) from its forward variance b, its
  posterior variance beta_tilde (already clipped at the decoder step), and for 'analytic'
  the posterior mean's x_0 coefficient and Var[x_0 | x_t], for 'learned' the output v."""
  check_variance(variance)
  if variance == 'beta':
    return b
  if variance == 'beta_tilde':
    return beta_tilde
  if variance == 'learned':
    if v is None:
      raise ConfigError(NEEDS_LEARNING)
    frac = (v + 1.0) / 2.0
    return torch.exp(frac * torch.log(b) + (1.0 - frac) * torch.log(beta_tilde))
  return beta_tilde + coef_x0 ** 2 * var_x0   # 'analytic'


def step_variance(sde, t, s, variance, inputs=None, x=None, clip_below=None):
  """sigma^2 of the reverse step from t down to s < t of the linear SDE `sde` (or its
  DiscreteChain), with the step's transition x_t = a x_s + sqrt(b) z (sde.transition) and
  marginals: b, beta-tilde = b s_s^2 / s_t^2, c = m_s b / s_t^2. Shape [batch], or that of x
  for 'learned' (v = inputs.output_fn(x, t)); 'analytic' takes Gamma_t = inputs.gamma(t) and
  clips its std to inputs.max_sampling_std() on steps to times s <= clip_below."""
  m_t, std_t = sde.marginal_coeffs(t)
  m_s, std_s = sde.marginal_coeffs(s)
  b = sde.transition(s, t)[1] ** 2
  beta_tilde = b * std_s ** 2 / std_t ** 2
  if variance == 'learned':
    # beta-tilde is 0 at the data: kept finite (in x's dtype) so that log(beta-tilde) is.
    return reverse_variance(variance, batch_broadcast(b, x),
                            batch_broadcast(beta_tilde, x).clamp(min=torch.finfo(x.dtype).tiny),
                            v=inputs.output_fn(x, t))
  if variance != 'analytic':
    return reverse_variance(variance, b, beta_tilde)
  var_x0 = x0_variance(m_t, std_t, inputs.gamma(t).to(t.dtype), inputs.data_half_range)
  var = reverse_variance(variance, b, beta_tilde, m_s * b / std_t ** 2, var_x0)
  max_std = inputs.max_sampling_std()
  if max_std is not None and clip_below is not None:
    var = torch.where(s <= clip_below, var.clamp(max=max_std ** 2), var)
  return var


def chain_step_variance(chain, index, variance, inputs=None, v=None):
  """sigma^2 of p(x_{i-1} | x_i) at the steps `index` (a LongTensor) of `chain` (ChainArrays);
  step 0 is the decoder p(x_0 | x_1) of DDPM's t = 1, where the papers' conventions are kept:
  'beta' and 'beta_tilde' take beta-tilde of step 1 (Ho et al.'s code), 'learned' interpolates
  between beta_0 and it (Nichol & Dhariwal's), 'analytic' is exact there (beta-tilde_0 = 0, c = 1:
  sigma^2 = Var[x_0 | x_1]). `inputs.gamma(index)` gives Gamma at a chain step ('analytic');
  v is the network's variance output ('learned')."""
  decoder = index == 0
  b, beta_tilde = chain.betas[index], chain.posterior_variance[index]
  clipped = chain.posterior_variance[index.clamp(min=1)]
  if variance == 'analytic':
    abar = chain.alphas_cumprod[index]
    var_x0 = x0_variance(abar.sqrt(), (1.0 - abar).sqrt(), inputs.gamma(index),
                         inputs.data_half_range)
    return reverse_variance(variance, b, beta_tilde, chain.posterior_mean_coef1[index], var_x0)
  if variance == 'beta':
    b = torch.where(decoder, clipped, b)
  if v is not None:
    b, clipped = batch_broadcast(b, v), batch_broadcast(clipped, v)
  return reverse_variance(variance, b, clipped, v=v)
