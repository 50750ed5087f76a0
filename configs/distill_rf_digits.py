"""One-step distillation of the 2-rectified flow on digits (Liu et al. 2023, sec. 2.3): the
`reflow_digits` run in runs/reflow_digits (--config.distill.teacher DIR for another k-rectified
flow) draws 4,096 pairs (z, x) with its ODE (iPNDM, 20 evaluations) and the student, started
from its weights, fits one Euler step z - T v(z, T) to x for 500 steps. Not a paper table row: the
digits counterpart of Liu et al.'s CIFAR-10 distilled 2-rectified flow. Sampling: that one step
(sampling.method 'ddim' with one evaluation: x0_hat at T, on this path the Euler step to 0).
"""
from configs.reflow_digits import get_config as get_reflow_config


def get_config():
  config = get_reflow_config()
  config.training.loss = 'reflow_distill'
  config.distill.teacher = 'runs/reflow_digits'

  config.sampling.method = 'ddim'
  config.sampling.time_schedule = 'uniform'
  config.sampling.steps = 1
  return config
