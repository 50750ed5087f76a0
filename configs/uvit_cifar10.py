"""U-ViT-S/2 on CIFAR-10: Bao et al. 2023, "All are Worth Words: A ViT Backbone for Diffusion
Models", Table 1 row "U-ViT-S/2", 44M parameters, FID 3.11; reported by the paper, not
measured here.

As their baofff/U-ViT configs/cifar10_uvit.py with train.py, sde.py and utils.py: the VP-SDE
(beta 0.1..20) learned by continuous noise prediction, the mean squared error over dimensions
(their LSimple; t ~ U(0, 1) there, [1e-5, 1] here, the smallest time our losses allow), the
network seeing t * 999, on CIFAR-10 in [-1, 1] with random flips, unconditional; batch 128,
AdamW (lr 2e-4, betas 0.99 / 0.999, weight decay 0.03) with 2,500 linear warm-up steps, no
gradient clipping, EMA 0.9999 without warm-up, 500k iterations, seed 1234. The network (`uvit`):
2x2 patches (256 tokens and the time token), width 512, depth 12 (6 in blocks, a middle block,
6 out blocks with long skips: 13), 8 heads, MLP ratio 4, no q/k/v biases, the time token's
sinusoid without an MLP, the final 3x3 convolution: 44,255,328 parameters. Sampling: their FID's
Euler-Maruyama on the reverse SDE, 1,000 steps down to t = 1e-3, then the mean of the last step.

configs/default.py holds the rest; this file sets what differs (tests/test_configs.py pins
every number above).
"""
from configs.default import get_default_config


def get_config():
  config = get_default_config()
  config.seed = 1234
  config.training.batch_size = 128
  config.training.n_iters = 500_000
  config.training.reduce_mean = True

  config.optim.optimizer = 'adamw'
  config.optim.lr = 2e-4
  config.optim.beta1 = 0.99
  config.optim.weight_decay = 0.03
  config.optim.warmup = 2500
  config.optim.grad_clip = 0.0

  config.sampling.method = 'pc'
  config.sampling.predictor = 'euler_maruyama'
  config.sampling.corrector = 'none'
  config.sampling.steps = 1000
  config.sampling.eps = 1e-3

  m = config.model
  m.name = 'uvit'
  m.parameterization = 'eps'
  m.ema_rate = 0.9999
  m.ema_warmup = False
  m.dropout = 0.0
  m.patch_size = 2
  m.hidden_size = 512
  m.depth = 12
  m.num_heads = 8
  m.mlp_ratio = 4.0
  m.qkv_bias = False
  m.mlp_time_embed = False
  return config
