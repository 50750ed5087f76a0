"""Consistency distillation on digits (Song et al. 2023, Algorithm 2): the demo's U-Net with the
consistency parameterization (models/consistency.py; sigma_data 0.75, sigma_min 0.002, EDM's
process to sigma_max 80), distilled from the `edm_digits` run in runs/edm_digits (any trained
run of ours may teach: --config.distill.teacher DIR) and started from its weights: the teacher's
Heun step between adjacent levels of the N = 18 Karras grid (as CM's CIFAR-10), pseudo-Huber
distance (iCT's c = 0.00054 sqrt(64)), target network theta- at mu = 0 (CM Table 3, CIFAR-10),
2,000 steps of 64 at Adam lr 2e-4. Not a paper table row: the digits counterpart of `cd_cifar10`.
Sampling: CM Algorithm 1 in two steps through iCT's tau = 0.821.
"""
from configs.edm_digits import get_config as get_edm_config


def get_config():
  config = get_edm_config()
  config.model.parameterization = 'consistency'
  config.training.loss = 'cd'
  config.training.n_iters = 2000
  config.training.bound_images = 0       # the score-matching bound is not a consistency model's
  config.optim.lr = 2e-4
  config.optim.warmup = 0

  config.distill.teacher = 'runs/edm_digits'
  config.distill.solver = 'heun'
  config.distill.solver_budget = 2
  config.distill.num_scales = 18
  config.distill.target_ema = 0.0
  config.distill.distance = 'pseudo_huber'

  config.sampling.method = 'consistency'
  config.sampling.steps = 2
  config.sampling.consistency_sigmas = ()
  return config
