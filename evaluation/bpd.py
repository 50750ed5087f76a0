"""Bits/dim of a data split: by the probability-flow ODE and by the DDPM variational bound.

Dequantization is done here, not by the caller of `likelihood`: each image, stored on the
grid k / (num_bins - 1), becomes K = eval.dequantization_draws points y_k of its bin by
eval.dequantization ('uniform': x = (k + u) / num_bins, u ~ U[0, 1)^D, through the data scaler,
Song et al. 2021; 'truncated_normal': Zheng et al. 2023), and its bits/dim are those of the
importance-weighted bound log (1/K) sum_k p(y_k) / q(y_k | x) on the discrete data (Theis et
al. 2016; Burda et al. 2016): evaluation/dequantization.py. 2-D toy points are continuous:
their 'bits/dim' is -log2 p(x) / D of the density itself. The VLB takes the images on their
grid, without dequantization.
"""
import math

import numpy as np
import torch
from tqdm.auto import tqdm

from data import data_range, get_data_scaler, get_eval_dataset
from evaluation.dequantization import get_dequantizer, importance_weighted_bpd
from evaluation.score_bound import bound_bpd
from evaluation.vlb import vlb
from models.score_fn import chain_eps_fn
from samplers.likelihood import bits_per_dim, likelihood


def split_batches(config, split, num_images, batch_size, device):
  """Batches of the split's first `num_images` (0: all) in [0, 1], without flips or
  dequantization, on `device`."""
  dataset = get_eval_dataset(config, split)
  if num_images:
    dataset = torch.utils.data.Subset(dataset, range(min(num_images, len(dataset))))
  loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
  for x, _ in loader:
    yield x.to(device)


def summary(values):
  values = np.asarray(values, np.float64)
  return {'mean': float(values.mean()), 'stderr': float(values.std(ddof=1) / math.sqrt(len(values)))
          if len(values) > 1 else float('nan'), 'num_images': len(values)}


def split_bpd(config, score_fn, sde, split='test', device='cpu', generator=None, progress=True,
              flow=None):
  """Per-image bits/dim of the split by the probability-flow ODE (config.eval.bpd_*,
  hutchinson, n_probes, dequantization, dequantization_draws; `flow` is the fitted q(u | x) of
  'variational'). The K draws of a batch go through the ODE together, eval.batch_size rows per
  solve. Returns ({'mean', 'stderr', 'num_images', 'nfe' (per solve), 'dequantization',
  'draws'}, per-image array); a dequantizer with log q != 0 adds 'density': the bits/dim of
  -log p(y) alone, of the dequantized points y (the bound minus E[log q]).

  Hutchinson noise n_k in each log p(y_k) is exponentiated inside the log-mean-exp, which
  biases the bound upward (Jensen): not at all at K = 1, growing with K toward
  log E[exp(n)] (var(n) / 2 for Gaussian noise), so that bits/dim come out too low and can
  undercut the model's true value. Use hutchinson='exact' where D backward passes per ODE
  step are affordable (digits: 64), or more n_probes, which shrinks var(n) and the bias.
  """
  e, scaler = config.eval, get_data_scaler(config)
  draws = e.dequantization_draws
  dequantize = get_dequantizer(e.dequantization, draws, flow)
  solve = lambda y: likelihood(score_fn, sde, y, eps=e.bpd_eps, rtol=e.bpd_rtol, atol=e.bpd_atol,
                               hutchinson=e.hutchinson, n_probes=e.n_probes, generator=generator)
  per_sample, density, nfe, images = [], [], [], False
  batches = split_batches(config, split, e.bpd_num_images, e.batch_size, device)
  for x in tqdm(batches, desc=f'bits/dim ({split})', disable=not progress):
    images, dim = x.dim() == 4, x[0].numel()
    if images:
      y, log_q = dequantize(x.repeat(draws, 1, 1, 1), config.data.num_bins, scaler, sde,
                            e.bpd_eps, generator)
      results = [solve(rows) for rows in y.split(e.batch_size)]
      logp = torch.cat([result.logp for result in results])
      bpd = importance_weighted_bpd(logp, log_q, draws, dim, config.data.num_bins, scaler)
      density.append(bits_per_dim(logp, dim, config.data.num_bins, scaler).reshape(draws, -1)
                     .mean(0).cpu().numpy())
    else:
      results = [solve(scaler(x))]
      bpd = -results[0].logp / (dim * math.log(2))
    per_sample.append(bpd.cpu().numpy())
    nfe += [result.nfe for result in results]
  per_sample = np.concatenate(per_sample)
  kind = {'dequantization': e.dequantization, 'draws': draws} if images else {
      'dequantization': 'none', 'draws': 1}
  if images and e.dequantization != 'uniform':
    kind['density'] = summary(np.concatenate(density))
  return {**summary(per_sample), 'nfe': float(np.mean(nfe)), **kind}, per_sample


def split_score_bound(config, score_fn, sde, split='test', device='cpu', generator=None,
                      progress=True):
  """Per-image bits/dim of the score-matching bound (evaluation/score_bound.py) over the
  split's first eval.bpd_num_images images, uniformly dequantized, at eps = eval.bpd_eps, each
  averaged over eval.score_bound_times draws of (t, z). Returns ({'mean', 'stderr',
  'num_images', 'times'}, per-image array)."""
  e, scaler = config.eval, get_data_scaler(config)
  per_sample = []
  for x in tqdm(split_batches(config, split, e.bpd_num_images, e.batch_size, device),
                desc=f'score-matching bound ({split})', disable=not progress):
    with torch.no_grad():
      bpd = bound_bpd(score_fn, sde, x, config.data.num_bins, scaler, e.bpd_eps,
                      e.score_bound_times, generator)
    per_sample.append(bpd.cpu().numpy())
  per_sample = np.concatenate(per_sample)
  return {**summary(per_sample), 'times': e.score_bound_times, 'eps': e.bpd_eps}, per_sample


def split_vlb(config, model, sde, split='test', device='cpu', generator=None, progress=True,
              inputs=None):
  """The DDPM bound over the split's first config.eval.vlb_num_images images, with the reverse
  variance config.eval.vlb_variance (not the sampler's: the bound is a property of the model,
  whichever sampler draws from it), on the chain respaced to config.eval.vlb_steps steps
  (0: the whole chain); `inputs` (VarianceInputs) carry the Gamma table of 'analytic'. Returns
  ({'mean', 'stderr', 'num_images', 'prior'}, per-sample totals, mean per-step terms), bits/dim."""
  scaler = get_data_scaler(config)
  eps_fn = chain_eps_fn(sde, model, config.training.continuous, config.model.parameterization)
  totals, terms, priors = [], [], []
  batches = split_batches(config, split, config.eval.vlb_num_images, config.eval.batch_size, device)
  for x in tqdm(batches, desc=f'VLB ({split})', disable=not progress):
    result = vlb(eps_fn, sde, scaler(x), variance=config.eval.vlb_variance,
                 num_bins=config.data.num_bins, data_range=data_range(config),
                 steps=config.eval.vlb_steps or None, inputs=inputs, generator=generator,
                 progress=progress)
    totals.append(result.total.cpu().numpy())
    terms.append(result.terms.cpu().numpy())
    priors.append(result.prior.cpu().numpy())
  totals, terms = np.concatenate(totals), np.concatenate(terms)
  return ({**summary(totals), 'prior': float(np.concatenate(priors).mean())}, totals, terms.mean(0))
