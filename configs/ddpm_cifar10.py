"""DDPM on CIFAR-10, Ho et al. 2020, Table 1 row "Ours (L_simple)": FID 3.17 (IS 9.46), test
NLL <= 3.75 bits/dim; numbers reported by the paper, not measured here.

The discrete L_simple loss (eq. 14) on the N = 1000 linear chain beta 1e-4..0.02, their
U-Net (35.7M parameters: nf 128, ch_mult 1-2-2-2, 2 res blocks, attention at 16x16,
dropout 0.1), Adam lr 2e-4, batch 128, 5,000 warm-up steps, gradient clipping at 1, EMA
0.9999, 800k steps, random horizontal flips; ancestral sampling on the 1000-step chain
(Algorithm 2) with their CIFAR-10 reverse variance, 'fixedlarge' (sigma_t^2 = beta_t;
run_cifar.py).

The CIFAR-10 data, that U-Net and that optimizer are configs/default.py's own settings;
this file states what differs (tests/test_configs.py pins every number above).
"""
from configs.default import get_default_config


def get_config():
  config = get_default_config()
  config.training.loss = 'ddpm'
  config.training.continuous = False
  config.training.reduce_mean = True  # L_simple: mean squared error over pixels
  config.training.n_iters = 800_000

  config.sampling.method = 'ancestral'
  config.sampling.steps = 1000
  config.sampling.variance = 'beta'   # Ho et al.'s 'fixedlarge'
  return config
