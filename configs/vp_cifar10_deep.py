"""DDPM++ cont. (deep, VP) on CIFAR-10: Song et al. 2021, "Score-Based Generative Modeling
through Stochastic Differential Equations", Table 3 row "DDPM++ cont. (deep, VP)", FID 2.41
(IS 9.68), and Table 2, 3.13 bits/dim (probability-flow ODE FID 3.08); numbers reported by
the paper, not measured here.

As score_sde_pytorch's configs/vp/cifar10_ddpmpp_deep_continuous.py: vp_cifar10 with twice
the depth, 8 residual blocks per resolution, trained for 950k iterations instead of 1.3M.
Everything else as vp_cifar10: the VP-SDE (beta 0.1..20, N = 1000), continuous DSM (mean
over dimensions, t in [1e-5, 1]), CIFAR-10 in [-1, 1] with random flips, batch 128, Adam lr
2e-4, 5,000 warm-up steps, gradient clipping at 1, EMA 0.9999; DDPM++ (`ncsnpp`, nf 128,
ch_mult 1-2-2-2, attention at 16x16, dropout 0.1, BigGAN blocks, skip rescaling, positional
embedding, no FIR, no progressive paths, eps output); Euler-Maruyama predictor, no corrector,
1,000 steps down to t = 1e-3.

configs/vp_cifar10.py holds the rest; this file sets what differs (tests/test_configs.py pins
every number above).
"""
from configs import vp_cifar10


def get_config():
  config = vp_cifar10.get_config()
  config.training.n_iters = 950_000
  config.model.num_res_blocks = 8
  return config
