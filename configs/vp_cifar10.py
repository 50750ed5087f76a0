"""VP-SDE on CIFAR-10, Song et al. 2021 (Table 3, "DDPM++ cont. (VP)" training recipe):
continuous DSM, batch 128, Adam lr 2e-4 with 5,000 warm-up steps, gradient clipping at 1,
EMA 0.9999, 1.3M iterations, PC sampling (reverse diffusion + Langevin, snr 0.16), N = 1000.

The DDPM++ network arrives in a later issue; until then this uses Ho et al.'s `ddpm` U-Net
(nf 128, ch_mult 1-2-2-2, 2 res blocks, attention at 16x16, dropout 0.1).
The data, network, optimizer and sampler settings above are configs/default.py's own; this
file states what differs (tests/test_configs.py pins every number above).
"""
from configs.default import get_default_config


def get_config():
  config = get_default_config()
  config.training.n_iters = 1_300_000
  config.model.name = 'ddpm'          # DDPM++ ('ddpmpp') in a later issue
  return config
