"""EDM on scikit-learn's 8x8 digits: `vp_digits` (the demo: the same small U-Net, batch 64,
Adam lr 1e-3, EMA 0.999 and 3,000 steps, about five minutes on a 2-core CPU) trained the EDM way
(Karras et al. 2022, Table 1 "Ours"): EDM's process x = y + sigma n with sigma(t) = t on
[0.002, 80], its preconditioning with sigma_data = 0.75 (the digits' std in [-1, 1]; EDM's 0.5
is CIFAR-10's), and its loss (ln sigma ~ N(-1.2, 1.2^2), lambda(sigma) = (sigma^2 +
sigma_data^2) / (sigma sigma_data)^2). Not a paper table row: the demo's counterpart at the same
training time (docs/results.md; benchmarks/edm_digits.py). Sampling: EDM's Heun (Algorithm 2,
deterministic) on its rho = 7 noise levels, 18 steps = 35 evaluations, down to sigma_min 0.002,
where the likelihood starts too.
"""
from configs.vp_digits import get_config as get_demo_config


def get_config():
  config = get_demo_config()
  config.sde.name = 'edm'
  config.sde.sigma_min = 0.002
  config.sde.sigma_max = 80.0
  config.model.parameterization = 'edm'
  config.model.sigma_data = 0.75
  config.training.loss = 'edm'
  config.training.p_mean = -1.2
  config.training.p_std = 1.2

  config.sampling.method = 'heun'
  config.sampling.time_schedule = 'karras'
  config.sampling.steps = 35
  config.sampling.eps = 0.002
  config.eval.bpd_eps = 0.002
  return config
