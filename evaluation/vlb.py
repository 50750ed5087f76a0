"""The variational bound of the DDPM chain in bits/dim (Ho et al. 2020, eq. 5).

  -log p(x_0) <= L_T + sum_{t=2}^{N} L_{t-1} + L_0, with
  L_T     = KL(q(x_N | x_0) || N(0, I)),
  L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)),    x_t ~ q(x_t | x_0),
  L_0     = -log p(x_0 | x_1), a Gaussian discretized over the pixel bins (sec. 3.3),
where p(x_{t-1} | x_t) = N(mu_theta, sigma_t^2 I), mu_theta = (x_t - beta_t / sqrt(1 - abar_t)
eps_theta(x_t, t)) / sqrt(alpha_t) (eq. 11), and sigma_t^2 is Ho et al.'s 'fixedlarge' or
'fixedsmall' choice, Nichol & Dhariwal's learned or Bao et al.'s analytic one
(sde_lib/reverse_variance.py). Every L_{t-1} is estimated with its own draw of
x_t, as Ho et al. do. Chain step i = 0..N-1 of `sde` (its arrays `discrete_betas`,
`alphas_cumprod`, `posterior_*`, at time sde.chain_time(i)) is DDPM's t = i + 1, so
`terms[:, i]` is L_i: terms[:, 0] the decoder, terms[:, i >= 1] the KL terms. On the chain
respaced to K steps S_0 = 0 < ... < S_{K-1} (Nichol & Dhariwal 2021, sec. 4) the same terms
are taken with its betas 1 - alphabar_{S_k} / alphabar_{S_{k-1}} and eps_theta(x, S_k), and
`terms` has K columns.
"""
import dataclasses
import math

import torch
from torch import special
from tqdm.auto import tqdm

from sde_lib import batch_broadcast
from sde_lib.chain import respaced_chain
from sde_lib.reverse_variance import chain_step_variance, check_variance


@dataclasses.dataclass
class VLBResult:
  total: torch.Tensor    # [batch] the bound, bits/dim
  terms: torch.Tensor    # [batch, N] L_0 (decoder), L_1 .. L_{N-1}, bits/dim
  prior: torch.Tensor    # [batch] L_T, bits/dim


def gaussian_kl(mean1, var1, mean2, var2):
  """Elementwise KL(N(mean1, var1) || N(mean2, var2))."""
  return 0.5 * (torch.log(var2 / var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


def log_normal_mass(a, b):
  """log(Phi(b) - Phi(a)) for a < b (either may be infinite), accurate in both tails: the
  interval is reflected into the lower tail, where log Phi is well resolved."""
  flip = (a + b) > 0
  lower, upper = torch.where(flip, -b, a), torch.where(flip, -a, b)
  log_upper = special.log_ndtr(upper)
  # An infinite lower end adds nothing; kept out of log_ndtr so that gradients stay finite.
  finite = torch.isfinite(lower)
  safe_lower = torch.where(finite, lower, upper - 1.0)
  log_rest = torch.log(-torch.expm1(special.log_ndtr(safe_lower) - log_upper))
  return log_upper + torch.where(finite, log_rest, 0.0)


def discretized_gaussian_log_prob(x0, mean, std, num_bins, data_range=(-1.0, 1.0)):
  """log P(x0's bin) under N(mean, std^2), elementwise (Ho et al. 2020 sec. 3.3).

  x0 lies on the grid lo + k w, w = (hi - lo) / (num_bins - 1) (w = 2/255 for 8-bit data
  in [-1, 1]); its bin is [x0 - w/2, x0 + w/2], the outermost bins extended to -inf / +inf,
  so the probabilities of all bins sum to 1.
  """
  lo, hi = data_range
  width = (hi - lo) / (num_bins - 1)
  k = torch.round((x0 - lo) / width).clamp(0, num_bins - 1)
  center = lo + k * width
  std = torch.as_tensor(std, dtype=x0.dtype, device=x0.device)
  # The outer ends are set after standardizing: (-inf - mean) / std would give NaN gradients.
  lower = torch.where(k > 0, (center - width / 2 - mean) / std, -math.inf)
  upper = torch.where(k < num_bins - 1, (center + width / 2 - mean) / std, math.inf)
  return log_normal_mass(lower, upper)


def per_sample_bits(nats):
  """Sum over all but the batch dimension, in bits per dimension."""
  flat = nats.flatten(1)
  return flat.sum(1) / (flat.shape[1] * math.log(2))


def chain_terms(chain, index, x0, x_t, eps, model_var, num_bins, data_range):
  """L_i in nats per element at the chain steps `index` (one per sample) of `chain`
  (ChainArrays), for x_t drawn at those steps and eps_theta(x_t): the decoder's discretized
  Gaussian where i = 0, else KL(q(x_{i-1} | x_i, x_0) || N(mu_theta, model_var))."""
  at = lambda array: batch_broadcast(array.to(x0.device)[index], x0)
  abar, betas = at(chain.alphas_cumprod), at(chain.betas)
  mean = (x_t - betas / (1.0 - abar).sqrt() * eps) / at(chain.alphas).sqrt()
  q_mean = at(chain.posterior_mean_coef1) * x0 + at(chain.posterior_mean_coef2) * x_t
  post_var = batch_broadcast(chain.posterior_variance.to(x0.device)[index.clamp(min=1)], x0)
  # Each branch sees harmless values where the other is taken, so gradients stay finite.
  decoder = batch_broadcast(index == 0, x0).bool()
  nll = -discretized_gaussian_log_prob(x0, torch.where(decoder, mean, x0),
                                       torch.where(decoder, model_var, 1.0).sqrt(), num_bins,
                                       data_range)
  kl = gaussian_kl(q_mean, post_var, torch.where(decoder, q_mean, mean),
                   torch.where(decoder, post_var, model_var))
  return torch.where(decoder, nll, kl)


def model_variances(chain, index, variance, x0, inputs=None, v=None):
  """sigma^2 of p(x_{i-1} | x_i) at the steps `index`, broadcast against x0 (per element for
  a learned variance): sde_lib.reverse_variance.chain_step_variance in x0's dtype."""
  if variance != 'learned':
    return batch_broadcast(chain_step_variance(chain, index.cpu(), variance, inputs), x0)
  return chain_step_variance(chain, index.cpu(), variance, inputs, v)


def vlb(eps_fn, sde, x0, variance='beta_tilde', num_bins=256, data_range=(-1.0, 1.0),
        steps=None, inputs=None, generator=None, progress=True):
  """The bound of eq. 5 for x0 (model space, on the num_bins grid of data_range) under the
  chain of `sde` (a VPSDE), respaced to `steps` steps when fewer than its N, and eps_fn(x, i)
  (see models.score_fn.chain_eps_fn). The reverse variance (sde_lib/reverse_variance.py) is 'beta',
  'beta_tilde', 'learned' (the network's variance output, on the respaced chain's betas) or
  'analytic' (inputs.gamma(i) at the original step i). Returns a VLBResult."""
  check_variance(variance)
  device, dtype = x0.device, x0.dtype
  kept, chain = respaced_chain(sde, steps or sde.N)
  if variance == 'analytic':   # Gamma at the original steps' times
    times = sde.chain_time(torch.as_tensor(kept, dtype=torch.float64))
    inputs = dataclasses.replace(inputs, gamma=lambda i, gamma=inputs.gamma: gamma(times[i]))
  abar = chain.alphas_cumprod.to(device=device, dtype=dtype)
  batch = x0.shape[0]

  prior_var = sde.prior_std() ** 2
  prior = per_sample_bits(gaussian_kl(abar[-1].sqrt() * x0, 1.0 - abar[-1],
                                      torch.zeros_like(x0), torch.full_like(x0, prior_var)))
  terms = torch.empty(batch, len(kept), device=device, dtype=dtype)
  for i, step in enumerate(tqdm(kept, desc='VLB', disable=not progress, leave=False)):
    noise = torch.randn(x0.shape, generator=generator, device=device, dtype=dtype)
    x_t = abar[i].sqrt() * x0 + (1.0 - abar[i]).sqrt() * noise
    with torch.no_grad():
      eps, v = eps_fn(x_t, torch.full((batch,), step, device=device, dtype=torch.long))
    index = torch.full((batch,), i, dtype=torch.long)
    model_var = model_variances(chain, index, variance, x0, inputs, v)
    terms[:, i] = per_sample_bits(chain_terms(chain, index.to(device), x0, x_t, eps, model_var,
                                              num_bins, data_range))
  return VLBResult(total=prior + terms.sum(1), terms=terms, prior=prior)
