"""`vp_digits` with a learned reverse variance (Nichol & Dhariwal 2021): the same network, data,
optimiser and budget (3,000 steps of batch 64), trained on the DDPM chain with
L_hybrid = L_simple + 0.001 L_vlb; its network outputs eps and the variance output v.

Sampled by the ancestral step with the learned variance on the chain respaced to 100 steps.
"""
from configs.vp_digits import get_config as digits_config


def get_config():
  config = digits_config()
  config.training.loss = 'ddpm'
  config.training.continuous = False
  config.model.learn_variance = True

  config.sampling.method = 'ancestral'
  config.sampling.variance = 'learned'
  config.sampling.steps = 100
  config.eval.vlb_variance = 'learned'
  return config
