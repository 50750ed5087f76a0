"""DDPM on CIFAR-10, Ho et al. 2020 (Table 1, "Ours (L_simple)", FID 3.17): the discrete
L_simple loss (eq. 14) on the N = 1000 linear chain beta 1e-4..0.02, their U-Net (35.7M
parameters: nf 128, ch_mult 1-2-2-2, 2 res blocks, attention at 16x16, dropout 0.1),
Adam lr 2e-4, batch 128, 5,000 warm-up steps, gradient clipping at 1, EMA 0.9999,
800k steps, random horizontal flips; ancestral sampling with 1000 steps.
"""
from configs.default import get_default_config


def get_config():
  config = get_default_config()
  config.sde.name = 'vpsde'
  config.sde.beta_min = 0.1           # N * 1e-4
  config.sde.beta_max = 20.0          # N * 0.02
  config.sde.num_scales = 1000

  config.training.loss = 'ddpm'
  config.training.continuous = False
  config.training.reduce_mean = True  # L_simple: mean squared error over pixels
  config.training.batch_size = 128
  config.training.n_iters = 800_000
  config.training.snapshot_freq = 10_000

  config.data.dataset = 'cifar10'
  config.data.image_size = 32
  config.data.num_channels = 3
  config.data.centered = True
  config.data.random_flip = True

  config.model.name = 'ddpm'
  config.model.ema_rate = 0.9999
  config.model.nf = 128
  config.model.ch_mult = (1, 2, 2, 2)
  config.model.num_res_blocks = 2
  config.model.attn_resolutions = (16,)
  config.model.dropout = 0.1

  config.optim.lr = 2e-4
  config.optim.warmup = 5000
  config.optim.grad_clip = 1.0

  config.sampling.method = 'ancestral'
  config.sampling.steps = 1000
  config.sampling.eps = 1e-3
  return config
