"""2-rectified flow on digits (Liu et al. 2023, sec. 2.3, reflow): `rf_digits` trained 500 more
steps on 4,096 pairs (z, x) that the 1-rectified flow in runs/rf_digits (--config.distill.teacher
DIR for another run) draws with its ODE (iPNDM, 20 evaluations: our best sampler on it, where
Liu et al. use RK45; --config.reflow.sampling.* picks another), starting from its weights. Not a
paper table row: the digits counterpart of Liu et al.'s CIFAR-10 2-rectified flow
(docs/flow_matching.md, docs/results.md). Sampling: the flow's Euler step, 4 steps.
"""
from configs.rf_digits import get_config as get_rf_config


def get_config():
  config = get_rf_config()
  config.training.loss = 'reflow'
  config.training.n_iters = 500

  config.distill.teacher = 'runs/rf_digits'
  config.distill.init_from_teacher = True
  config.reflow.num_pairs = 4096
  config.reflow.sampling.update(method='ipndm', steps=20)

  config.sampling.steps = 4
  return config
