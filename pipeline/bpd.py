"""Bits/dim of a data split: by the probability-flow ODE and by the DDPM variational bound.

Dequantization is done here, not by the caller of `likelihood`: each image, stored on the
grid k / (num_bins - 1), becomes K = eval.dequantization_draws points y_k of its bin by
eval.dequantization ('uniform': x = (k + u) / num_bins, u ~ U[0, 1)^D, through the data scaler,
Song et al. 2021; 'truncated_normal': Zheng et al. 2023), and its bits/dim are those of the
importance-weighted bound log (1/K) sum_k p(y_k) / q(y_k | x) on the discrete data (Theis et
al. 2016; Burda et al. 2016): evaluation/dequantization.py. 2-D toy points are continuous:
their 'bits/dim' is -log2 p(x) / D of the density itself. The VLB takes the images on their
grid, without dequantization.

Batch i of a split (eval.batch_size images) is evaluated with its own generator, seeded by
(config.seed, i, the estimator: pipeline.sampling.batch_generator), so under torchrun each process
takes every W-th batch and the gathered numbers equal one process's, for any number W.
"""
import math

import numpy as np
import torch
from torch.utils.data import default_collate
from tqdm.auto import tqdm

from data import data_range, get_data_scaler, get_eval_dataset
from evaluation.dequantization import get_dequantizer, importance_weighted_bpd
from evaluation.score_bound import bound_bpd
from evaluation.vlb import vlb
from models import parameterization_of
from models.score_fn import chain_eps_fn
from utils.seeding import batch_generator
from samplers.likelihood import bits_per_dim, likelihood
from utils.distributed import gathered, shares

# The estimators' random streams (batch_generator), apart from each other and from the samples'.
BPD, SCORE_BOUND, VLB = 1, 2, 3


def split_batches(config, split, num_images, batch_size, device, ddp=None):
  """(i, batch i) of the split's first `num_images` (0: all) in [0, 1], without flips or
  dequantization, on `device`: every batch, or with `ddp` (utils.distributed.Distributed) the
  batches i = rank, rank + W, ... of this process."""
  dataset = get_eval_dataset(config, split)
  count = min(num_images, len(dataset)) if num_images else len(dataset)
  for index in shares(math.ceil(count / batch_size), ddp):
    start = index * batch_size
    items = [dataset[i] for i in range(start, min(start + batch_size, count))]
    yield index, default_collate(items)[0].to(device)


def summary(values):
  values = np.asarray(values, np.float64)
  return {'mean': float(values.mean()), 'stderr': float(values.std(ddof=1) / math.sqrt(len(values)))
          if len(values) > 1 else float('nan'), 'num_images': len(values)}


def split_bpd(config, score_fn, sde, split='test', device='cpu', seed=0, progress=True,
              flow=None, ddp=None):
  """Per-image bits/dim of the split by the probability-flow ODE (config.eval.bpd_*,
  hutchinson, n_probes, dequantization, dequantization_draws; `flow` is the fitted q(u | x) of
  'variational'). The K draws of a batch go through the ODE together, eval.batch_size rows per
  solve. Returns ({'mean', 'stderr', 'num_images', 'nfe' (per solve), 'dequantization',
  'draws'}, per-image array); a dequantizer with log q != 0 adds 'density': the bits/dim of
  -log p(y) alone, of the dequantized points y (the bound minus E[log q]). Under torchrun
  (`ddp`) the main process gets them and the others (None, None).

  Hutchinson noise n_k in each log p(y_k) is exponentiated inside the log-mean-exp, which
  biases the bound upward (Jensen): not at all at K = 1, growing with K toward
  log E[exp(n)] (var(n) / 2 for Gaussian noise), so that bits/dim come out too low and can
  undercut the model's true value. Use hutchinson='exact' where D backward passes per ODE
  step are affordable (digits: 64), or more n_probes, which shrinks var(n) and the bias.
  """
  e, draws = config.eval, config.eval.dequantization_draws
  dequantize = get_dequantizer(e.dequantization, draws, flow)
  results = []
  batches = split_batches(config, split, e.bpd_num_images, e.batch_size, device, ddp)
  for index, x in tqdm(batches, desc=f'bits/dim ({split})', disable=not progress):
    results.append((index, batch_bpd(config, score_fn, sde, x,
                                     batch_generator(seed, index, device, BPD), dequantize)))
  results = gathered(results, ddp)
  if results is None:
    return None, None
  per_sample = np.concatenate([bpd for _, (bpd, _, _) in results])
  nfe = [n for _, (_, _, solves) in results for n in solves]
  images = results[0][1][1] is not None   # images have the density of their dequantized points
  kind = {'dequantization': e.dequantization, 'draws': draws} if images else {
      'dequantization': 'none', 'draws': 1}
  if images and e.dequantization != 'uniform':
    kind['density'] = summary(np.concatenate([density for _, (_, density, _) in results]))
  return {**summary(per_sample), 'nfe': float(np.mean(nfe)), **kind}, per_sample


def batch_bpd(config, score_fn, sde, x, generator, dequantize):
  """Bits/dim of one batch x in [0, 1] (images; 2-D toy points as they are), as split_bpd
  computes those of a split's batch drawn with `generator` (`dequantize`: get_dequantizer's):
  (per-image bits/dim, the bits/dim of the dequantized points' density alone (None for
  points), score evaluations per solve)."""
  e, scaler = config.eval, get_data_scaler(config)
  draws = e.dequantization_draws
  solve = lambda y: likelihood(score_fn, sde, y, eps=e.bpd_eps, rtol=e.bpd_rtol,
                               atol=e.bpd_atol, hutchinson=e.hutchinson, n_probes=e.n_probes,
                               generator=generator)
  dim, density = x[0].numel(), None
  if x.dim() == 4:   # images; 2-D toy points are continuous
    y, log_q = dequantize(x.repeat(draws, 1, 1, 1), config.data.num_bins, scaler, sde,
                          e.bpd_eps, generator)
    solves = [solve(rows) for rows in y.split(e.batch_size)]
    logp = torch.cat([result.logp for result in solves])
    bpd = importance_weighted_bpd(logp, log_q, draws, dim, config.data.num_bins, scaler)
    density = (bits_per_dim(logp, dim, config.data.num_bins, scaler).reshape(draws, -1)
               .mean(0).cpu().numpy())
  else:
    solves = [solve(scaler(x))]
    bpd = -solves[0].logp / (dim * math.log(2))
  return bpd.cpu().numpy(), density, [result.nfe for result in solves]


def split_score_bound(config, score_fn, sde, split='test', device='cpu', seed=0, progress=True,
                      ddp=None):
  """Per-image bits/dim of the score-matching bound (evaluation/score_bound.py) over the
  split's first eval.bpd_num_images images, uniformly dequantized, at eps = eval.bpd_eps, each
  averaged over eval.score_bound_times draws of (t, z). Returns ({'mean', 'stderr',
  'num_images', 'times'}, per-image array); under torchrun (None, None) off the main process."""
  e, scaler = config.eval, get_data_scaler(config)
  results = []
  for index, x in tqdm(split_batches(config, split, e.bpd_num_images, e.batch_size, device, ddp),
                       desc=f'score-matching bound ({split})', disable=not progress):
    with torch.no_grad():
      bpd = bound_bpd(score_fn, sde, x, config.data.num_bins, scaler, e.bpd_eps,
                      e.score_bound_times, batch_generator(seed, index, device, SCORE_BOUND))
    results.append((index, bpd.cpu().numpy()))
  results = gathered(results, ddp)
  if results is None:
    return None, None
  per_sample = np.concatenate([bpd for _, bpd in results])
  return {**summary(per_sample), 'times': e.score_bound_times, 'eps': e.bpd_eps}, per_sample


def split_vlb(config, model, sde, split='test', device='cpu', seed=0, progress=True,
              inputs=None, ddp=None):
  """The DDPM bound over the split's first config.eval.vlb_num_images images, with the reverse
  variance config.eval.vlb_variance (not the sampler's: the bound is a property of the model,
  whichever sampler draws from it), on the chain respaced to config.eval.vlb_steps steps
  (0: the whole chain); `inputs` (VarianceInputs) carry the Gamma table of 'analytic'. Returns
  ({'mean', 'stderr', 'num_images', 'prior'}, per-sample totals, mean per-step terms), bits/dim;
  under torchrun (None, None, None) off the main process."""
  scaler = get_data_scaler(config)
  eps_fn = chain_eps_fn(sde, model, config.training.continuous, parameterization_of(config))
  results = []
  batches = split_batches(config, split, config.eval.vlb_num_images, config.eval.batch_size,
                          device, ddp)
  for index, x in tqdm(batches, desc=f'VLB ({split})', disable=not progress):
    result = vlb(eps_fn, sde, scaler(x), variance=config.eval.vlb_variance,
                 num_bins=config.data.num_bins, data_range=data_range(config),
                 steps=config.eval.vlb_steps or None, inputs=inputs,
                 generator=batch_generator(seed, index, device, VLB), progress=progress)
    results.append((index, tuple(a.cpu().numpy() for a in (result.total, result.terms,
                                                            result.prior))))
  results = gathered(results, ddp)
  if results is None:
    return None, None, None
  totals, terms, priors = (np.concatenate(arrays) for arrays in zip(*(r for _, r in results)))
  return ({**summary(totals), 'prior': float(priors.mean())}, totals, terms.mean(0))
