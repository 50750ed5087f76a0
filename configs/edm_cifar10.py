"""EDM on CIFAR-10 (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models"): Table 2 row "Config F" for unconditional CIFAR-10 at 32x32, VP
architecture, FID 1.97 at 35 evaluations, reported by the paper, not measured here, and
trained with the non-leaky augmentation that this config leaves out (so expect a worse FID).

As NVlabs/edm train.py's defaults for CIFAR-10 (--arch=ddpmpp --precond=edm): the DDPM++
network (`ncsnpp`: nf 128, ch_mult 2-2-2, 4 residual blocks per resolution, attention at
16x16, dropout 0.13, positional noise embedding of c_noise = ln(sigma) / 4, plain 2x resampling),
EDM's preconditioning (sigma_data 0.5) and loss (P_mean -1.2, P_std 1.2, summed over pixels) on
EDM's process (sigma(t) = t, sigma_min 0.002, sigma_max 80); batch 512, Adam lr 1e-3 (betas 0.9,
0.999, eps 1e-8) ramped up linearly over 10 Mimg (19,531 steps), no gradient clipping, 200 Mimg
(390,625 steps), EMA half-life 0.5 Mimg (decay 0.5^(512 / 500,000) per step; EDM ramps the
half-life up over the first steps, we warm the decay up as for every config). No x-flips (EDM's
--xflip is off; its augmentation is left out). Sampling: Heun (Algorithm 2, deterministic),
18 steps = 35 evaluations on the rho = 7 noise levels down to sigma_min.

configs/default.py holds the rest; tests/test_edm_configs.py pins every number above.
"""
from configs.default import get_default_config

BATCH = 512
HALF_LIFE_IMAGES = 500_000     # EDM's --ema 0.5 (Mimg)
RAMPUP_IMAGES = 10_000_000     # EDM's lr_rampup_kimg 10000
DURATION_IMAGES = 200_000_000  # EDM's --duration 200 (Mimg)


def get_config():
  config = get_default_config()
  config.sde.name = 'edm'
  config.sde.sigma_min = 0.002
  config.sde.sigma_max = 80.0

  config.training.loss = 'edm'
  config.training.p_mean = -1.2
  config.training.p_std = 1.2
  config.training.reduce_mean = False
  config.training.batch_size = BATCH
  config.training.n_iters = DURATION_IMAGES // BATCH

  config.optim.lr = 1e-3
  config.optim.warmup = RAMPUP_IMAGES // BATCH
  config.optim.grad_clip = 0.0

  config.data.random_flip = False

  config.model.name = 'ncsnpp'
  config.model.parameterization = 'edm'
  config.model.sigma_data = 0.5
  config.model.nf = 128
  config.model.ch_mult = (2, 2, 2)
  config.model.num_res_blocks = 4
  config.model.attn_resolutions = (16,)
  config.model.dropout = 0.13
  config.model.resblock_type = 'biggan'
  config.model.embedding_type = 'positional'
  config.model.fir = False
  config.model.ema_rate = 0.5 ** (BATCH / HALF_LIFE_IMAGES)

  config.sampling.method = 'heun'
  config.sampling.time_schedule = 'karras'
  config.sampling.steps = 35
  config.sampling.eps = 0.002
  config.eval.bpd_eps = 0.002
  return config
