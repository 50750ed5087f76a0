"""Improved consistency training on digits (Song & Dhariwal 2023), no teacher: the demo's U-Net
with the consistency parameterization (sigma_data 0.75, sigma_min 0.002, sigma_max 80), iCT's
loss (no EMA target, pseudo-Huber c = 0.00054 sqrt(64), weight 1 / (sigma_{n+1} - sigma_n),
lognormal levels P_mean -1.1, P_std 2.0, N - 1 doubling from 10 to 1280 in 8 equal stages over
the run), 6,000 steps of 64 at Adam lr 5e-4, eval EMA 0.999. Not a paper table row: the digits
counterpart of `ict_cifar10`. Sampling: two steps through tau = 0.821.
"""
from configs.edm_digits import get_config as get_edm_config


def get_config():
  config = get_edm_config()
  config.model.parameterization = 'consistency'
  config.training.loss = 'ict'
  config.training.n_iters = 6000
  config.training.bound_images = 0
  config.optim.lr = 5e-4

  config.distill.distance = 'pseudo_huber'
  config.distill.s0 = 10
  config.distill.s1 = 1280
  config.distill.p_mean = -1.1
  config.distill.p_std = 2.0

  config.sampling.method = 'consistency'
  config.sampling.steps = 2
  return config
