"""`vp_digits` with a U-ViT (Bao et al. 2023) in place of its U-Net: the time token and 16 tokens
of 2x2 patches, 3 in blocks, a middle block and 3 out blocks with long skips, width 88 with 4
heads, no q/k/v biases and no time MLP (as their CIFAR-10 model), the final 3x3 convolution
(705,862 parameters against the U-Net's 701,345), unconditional. Same data, SDE, continuous DSM
loss, optimiser, EMA and batch; n_iters matches the demo's training time
(benchmarks/backbones_digits.py measured the seconds per step of both on one CPU thread). Not a
paper table row: the digits comparison of docs/results.md. Sampled by DPM-Solver (multistep,
order 3) at 10 evaluations, the best that benchmark measured for it; more steps did worse.
"""
from configs.vp_digits import get_config as digits_config


def get_config():
  config = digits_config()
  config.training.n_iters = 2900    # 3,000 U-Net steps at 0.97 U-ViT steps per U-Net step
  m = config.model
  m.name = 'uvit'
  m.patch_size = 2
  m.hidden_size = 88
  m.depth = 6
  m.num_heads = 4
  m.mlp_ratio = 4.0
  m.qkv_bias = False
  m.mlp_time_embed = False

  config.sampling.method = 'dpm_solver'   # its best measured (digit FD 21.9 at 10 evaluations,
  config.sampling.steps = 10              # 26.6 at 20, 31.2 with the demo's 100 steps)
  return config
