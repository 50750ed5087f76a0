"""VP-SDE on CIFAR-10, Song et al. 2021 (Table 3, "DDPM++ cont. (VP)" training recipe):
continuous DSM, batch 128, Adam lr 2e-4 with 5,000 warm-up steps, gradient clipping at 1,
EMA 0.9999, 1.3M iterations, PC sampling (reverse diffusion + Langevin, snr 0.16), N = 1000.

The DDPM++ network arrives in a later issue; until then this uses Ho et al.'s `ddpm` U-Net
(nf 128, ch_mult 1-2-2-2, 2 res blocks, attention at 16x16, dropout 0.1).
"""
from configs.default import get_default_config


def get_config():
  config = get_default_config()
  config.training.batch_size = 128
  config.training.n_iters = 1_300_000
  config.training.continuous = True
  config.training.loss = 'dsm'
  config.training.reduce_mean = False
  config.training.snapshot_freq = 10_000

  config.data.dataset = 'cifar10'
  config.data.image_size = 32
  config.data.num_channels = 3
  config.data.centered = True
  config.data.random_flip = True

  config.model.name = 'ddpm'          # DDPM++ ('ddpmpp') in a later issue
  config.model.ema_rate = 0.9999
  config.model.nf = 128
  config.model.ch_mult = (1, 2, 2, 2)
  config.model.num_res_blocks = 2
  config.model.attn_resolutions = (16,)
  config.model.dropout = 0.1

  config.optim.lr = 2e-4
  config.optim.warmup = 5000
  config.optim.grad_clip = 1.0

  config.sampling.method = 'pc'
  config.sampling.predictor = 'reverse_diffusion'
  config.sampling.corrector = 'langevin'
  config.sampling.snr = 0.16
  config.sampling.steps = 1000
  return config
