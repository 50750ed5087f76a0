"""1-rectified flow on scikit-learn's 8x8 digits: `vp_digits` (the demo: the same small U-Net,
batch, optimizer and 3,000 steps, about five minutes on a 2-core CPU) with the straight path
x_t = (1 - t) x_0 + t z, a velocity network and the flow-matching loss (Liu et al. 2023;
Lipman et al. 2023). Not a paper table row: the demo's counterpart, for comparing the two at
the same training time (docs/results.md; benchmarks/flow_digits.py). Sampling: the flow's
Euler step (the PF-ODE by Euler; RectifiedFlow's 'euler' sampler) with 20 steps.
"""
from configs.vp_digits import get_config as get_demo_config


def get_config():
  config = get_demo_config()
  config.sde.name = 'rectified_flow'
  config.training.loss = 'flow_matching'
  config.model.parameterization = 'velocity'

  config.sampling.method = 'ode'
  config.sampling.ode_method = 'euler'
  config.sampling.steps = 20
  return config
