"""`vp_digits` with a DiT (Peebles & Xie 2023) in place of its U-Net: 16 tokens of 2x2 patches,
4 adaLN-Zero blocks of width 96 with 4 heads (722,788 parameters against the U-Net's 701,345),
unconditional. Same data, SDE, continuous DSM loss, optimiser, EMA and batch; n_iters matches
the demo's training time (benchmarks/backbones_digits.py measured the seconds per step of both
on one CPU thread). Not a paper table row: the digits comparison of docs/results.md.
Sampled as the demo (100 reverse-diffusion steps), the best that benchmark measured for it.

The paper's own sizes (DiT-S/2 ... DiT-XL/8) are models/dit.py DIT_CONFIGS.
"""
from configs.vp_digits import get_config as digits_config


def get_config():
  config = digits_config()
  config.training.n_iters = 4200    # 3,000 U-Net steps at 1.41 DiT steps per U-Net step
  m = config.model
  m.name = 'dit'
  m.patch_size = 2
  m.hidden_size = 96
  m.depth = 4
  m.num_heads = 4
  m.mlp_ratio = 4.0
  m.qkv_bias = True
  return config
