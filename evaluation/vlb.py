"""The variational bound of the DDPM chain in bits/dim (Ho et al. 2020, eq. 5).

  -log p(x_0) <= L_T + sum_{t=2}^{N} L_{t-1} + L_0, with
  L_T     = KL(q(x_N | x_0) || N(0, I)),
  L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)),    x_t ~ q(x_t | x_0),
  L_0     = -log p(x_0 | x_1), a Gaussian discretized over the pixel bins (sec. 3.3),
where p(x_{t-1} | x_t) = N(mu_theta, sigma_t^2 I), mu_theta = (x_t - beta_t / sqrt(1 - abar_t)
eps_theta(x_t, t)) / sqrt(alpha_t) (eq. 11), and sigma_t^2 is Ho et al.'s 'fixedlarge' or
'fixedsmall' choice (`reverse_variances`). Every L_{t-1} is estimated with its own draw of
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

from models.score_fn import check_parameterization, get_model_fn, output_to_eps
from sde_lib.chain import respaced_chain
from utils.errors import ConfigError


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
  return log_upper + torch.log(-torch.expm1(special.log_ndtr(lower) - log_upper))


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
  lower = torch.where(k > 0, center - width / 2, torch.full_like(x0, -math.inf))
  upper = torch.where(k < num_bins - 1, center + width / 2, torch.full_like(x0, math.inf))
  std = torch.as_tensor(std, dtype=x0.dtype, device=x0.device)
  return log_normal_mass((lower - mean) / std, (upper - mean) / std)


def reverse_variances(chain, variance):
  """sigma_t^2 of p(x_{t-1} | x_t) per step of `chain` (ChainArrays; Ho et al. sec. 3.2 and
  their code): 'beta' is 'fixedlarge', beta_t for t >= 2; 'beta_tilde' is 'fixedsmall',
  beta-tilde_t. At t = 1 (the decoder) beta-tilde_1 = 0, so both use beta-tilde_2, as Ho et
  al. do."""
  choices = {'beta': chain.betas, 'beta_tilde': chain.posterior_variance}
  if variance not in choices:
    raise ConfigError(f"unknown reverse variance {variance!r}; choose one of {sorted(choices)}")
  return torch.cat([chain.posterior_variance[1:2], choices[variance][1:]])


def chain_eps_fn(sde, model, continuous=True, parameterization='eps'):
  """eps_theta(x, i) at chain step i from a network queried at the step's time
  t_i = sde.chain_time(i): a discrete-time network then sees the step i itself."""
  check_parameterization(parameterization)
  model_fn = get_model_fn(sde, model, continuous)

  def eps_fn(x, index):
    return output_to_eps(*model_fn(x, sde.chain_time(index).to(x.dtype)), parameterization)

  return eps_fn


def per_sample_bits(nats):
  """Sum over all but the batch dimension, in bits per dimension."""
  flat = nats.flatten(1)
  return flat.sum(1) / (flat.shape[1] * math.log(2))


def vlb(eps_fn, sde, x0, variance='beta_tilde', num_bins=256, data_range=(-1.0, 1.0),
        steps=None, generator=None, progress=True):
  """The bound of eq. 5 for x0 (model space, on the num_bins grid of data_range) under the
  chain of `sde` (a VPSDE), respaced to `steps` steps when fewer than its N, and eps_fn(x, i)
  (see chain_eps_fn). Returns a VLBResult."""
  device, dtype = x0.device, x0.dtype
  as_x = lambda v: v.to(device=device, dtype=dtype)
  kept, chain = respaced_chain(sde, steps or sde.N)
  betas, alphas, abar = as_x(chain.betas), as_x(chain.alphas), as_x(chain.alphas_cumprod)
  coef1, coef2 = as_x(chain.posterior_mean_coef1), as_x(chain.posterior_mean_coef2)
  post_var, model_var = as_x(chain.posterior_variance), as_x(reverse_variances(chain, variance))
  batch = x0.shape[0]

  prior_var = sde.prior_std() ** 2
  prior = per_sample_bits(gaussian_kl(abar[-1].sqrt() * x0, 1.0 - abar[-1],
                                      torch.zeros_like(x0), torch.full_like(x0, prior_var)))
  terms = torch.empty(batch, len(kept), device=device, dtype=dtype)
  for i, step in enumerate(tqdm(kept, desc='VLB', disable=not progress, leave=False)):
    noise = torch.randn(x0.shape, generator=generator, device=device, dtype=dtype)
    x_t = abar[i].sqrt() * x0 + (1.0 - abar[i]).sqrt() * noise
    with torch.no_grad():
      eps = eps_fn(x_t, torch.full((batch,), step, device=device, dtype=torch.long))
    mean = (x_t - betas[i] / (1.0 - abar[i]).sqrt() * eps) / alphas[i].sqrt()
    if i == 0:
      nats = -discretized_gaussian_log_prob(x0, mean, model_var[0].sqrt(), num_bins, data_range)
    else:
      q_mean = coef1[i] * x0 + coef2[i] * x_t
      nats = gaussian_kl(q_mean, post_var[i], mean, model_var[i])
    terms[:, i] = per_sample_bits(nats)
  return VLBResult(total=prior + terms.sum(1), terms=terms, prior=prior)
