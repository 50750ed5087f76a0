"""VP-SDE on the 2-D ring of 8 Gaussians (radius 4, std 0.2): a residual MLP, continuous DSM
(Song et al. 2021 eq. 7, lambda = s(t)^2), 3,000 steps, trains in well under a minute on a CPU.

Not a paper table row: the toy run every sampler and the likelihood can be checked against,
since the data density is known exactly.
"""
from configs.default import get_default_config


def get_config():
  config = get_default_config()
  config.training.batch_size = 256
  config.training.n_iters = 3000
  config.training.reduce_mean = True
  config.training.log_freq = 100
  config.training.snapshot_freq = 1000
  config.training.snapshot_samples = 2000

  config.data.dataset = 'toy2d'
  config.data.centered = False        # points are used as drawn
  config.data.random_flip = False

  config.model.name = 'mlp'
  config.model.hidden = 128
  config.model.num_layers = 3
  config.model.ema_rate = 0.999
  config.model.dropout = 0.0

  config.optim.lr = 2e-3
  config.optim.warmup = 100

  config.sampling.method = 'pc'
  config.sampling.predictor = 'reverse_diffusion'
  config.sampling.corrector = 'none'
  config.sampling.steps = 200
  config.sampling.num_samples = 2000
  config.sampling.batch_size = 2000
  return config
