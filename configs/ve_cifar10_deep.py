"""NCSN++ cont. (deep, VE) on CIFAR-10: Song et al. 2021, "Score-Based Generative Modeling
through Stochastic Differential Equations", Table 3 row "NCSN++ cont. (deep, VE)", FID 2.20
(IS 9.89); reported by the paper, not measured here (it reports no bits/dim for VE models).

As score_sde_pytorch's configs/ve/cifar10_ncsnpp_deep_continuous.py: ve_cifar10 with 8
residual blocks per resolution, trained for 950k iterations instead of 1.3M. Everything else
as ve_cifar10: the VE-SDE (sigma 0.01..50, N = 1000), continuous DSM (sum over dimensions,
t in [1e-5, 1]), CIFAR-10 in [0, 1] with random flips, batch 128, Adam lr 2e-4, 5,000
warm-up steps, gradient clipping at 1, EMA 0.999; NCSN++ (`ncsnpp`, nf 128, ch_mult
1-2-2-2, attention at 16x16, dropout 0.1, BigGAN blocks, skip rescaling, Fourier embedding
scale 16, FIR kernel (1, 3, 3, 1), residual input pyramid, score output); PC sampling,
reverse diffusion + one Langevin step (snr 0.16), 1,000 steps down to t = 1e-5.

configs/ve_cifar10.py holds the rest; this file sets what differs (tests/test_configs.py pins
every number above).
"""
from configs import ve_cifar10


def get_config():
  config = ve_cifar10.get_config()
  config.training.n_iters = 950_000
  config.model.num_res_blocks = 8
  return config
