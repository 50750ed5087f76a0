"""Bits/dim of a data split: by the probability-flow ODE and by the DDPM variational bound.

Dequantization is done here, not by the caller of `likelihood`: an image stored on the grid
k / (num_bins - 1) becomes x = (k + u) / num_bins, u ~ U[0, 1)^D (Song et al. 2021; Ho et
al. 2020), then goes through the data scaler; its bits/dim then bound those of the discrete
data (Theis et al. 2016). 2-D toy points are continuous: their 'bits/dim' is -log2 p(x) / D
of the density itself. The VLB takes the images on their grid, without dequantization.
"""
import math

import numpy as np
import torch
from tqdm.auto import tqdm

from data import get_data_scaler, get_eval_dataset, uniform_dequantize
from evaluation.vlb import chain_eps_fn, vlb
from samplers.likelihood import likelihood


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


def split_bpd(config, score_fn, sde, split='test', device='cpu', generator=None, progress=True):
  """Per-sample bits/dim of the split by the probability-flow ODE (config.eval.bpd_*,
  hutchinson, n_probes). Returns ({'mean', 'stderr', 'num_images', 'nfe'}, per-sample array)."""
  e, scaler = config.eval, get_data_scaler(config)
  per_sample, nfe = [], []
  batches = split_batches(config, split, e.bpd_num_images, e.batch_size, device)
  for x in tqdm(batches, desc=f'bits/dim ({split})', disable=not progress):
    images = x.dim() == 4
    x = scaler(uniform_dequantize(x, config.data.num_bins, generator) if images else x)
    result = likelihood(score_fn, sde, x, eps=e.bpd_eps, rtol=e.bpd_rtol, atol=e.bpd_atol,
                        hutchinson=e.hutchinson, n_probes=e.n_probes, generator=generator,
                        num_bins=config.data.num_bins if images else None, scaler=scaler)
    bpd = result.bpd if images else -result.logp / (x[0].numel() * math.log(2))
    per_sample.append(bpd.cpu().numpy())
    nfe.append(result.nfe)
  per_sample = np.concatenate(per_sample)
  return {**summary(per_sample), 'nfe': float(np.mean(nfe))}, per_sample


def split_vlb(config, model, sde, split='test', device='cpu', generator=None, progress=True):
  """The DDPM bound over the split's first config.eval.vlb_num_images images, with the reverse
  variance config.eval.vlb_variance (not the sampler's: the bound is a property of the model,
  whichever sampler draws from it), on the chain respaced to config.eval.vlb_steps steps
  (0: the whole chain). Returns
  ({'mean', 'stderr', 'num_images', 'prior'}, per-sample totals, mean per-step terms), bits/dim."""
  scaler = get_data_scaler(config)
  eps_fn = chain_eps_fn(sde, model, config.training.continuous, config.model.parameterization)
  data_range = (float(scaler(torch.zeros(()))), float(scaler(torch.ones(()))))
  totals, terms, priors = [], [], []
  batches = split_batches(config, split, config.eval.vlb_num_images, config.eval.batch_size, device)
  for x in tqdm(batches, desc=f'VLB ({split})', disable=not progress):
    result = vlb(eps_fn, sde, scaler(x), variance=config.eval.vlb_variance,
                 num_bins=config.data.num_bins, data_range=data_range,
                 steps=config.eval.vlb_steps or None, generator=generator, progress=progress)
    totals.append(result.total.cpu().numpy())
    terms.append(result.terms.cpu().numpy())
    priors.append(result.prior.cpu().numpy())
  totals, terms = np.concatenate(totals), np.concatenate(terms)
  return ({**summary(totals), 'prior': float(np.concatenate(priors).mean())}, totals, terms.mean(0))
