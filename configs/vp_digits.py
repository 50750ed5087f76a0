"""VP-SDE on scikit-learn's 8x8 digits: a small Ho et al. U-Net (nf 32, ch_mult 1-2, one
res block per level, attention at 4x4; 0.7M parameters), continuous DSM as in Song et al.
2021 (VP, eq. 7), 3,000 steps of batch 64: about five minutes on a 2-core CPU.

Not a paper table row: the embedded default that needs no download, sized so that a
newcomer sees recognisable digits quickly. Sampling uses 100 reverse-diffusion steps
without a corrector (100 score evaluations per batch).
"""
from configs.default import get_default_config


def get_config():
  config = get_default_config()
  config.training.batch_size = 64
  config.training.n_iters = 3000
  config.training.reduce_mean = True
  config.training.log_freq = 50
  config.training.snapshot_freq = 1000
  config.training.snapshot_samples = 64

  config.data.dataset = 'digits'
  config.data.image_size = 8
  config.data.num_channels = 1
  config.data.centered = True
  config.data.random_flip = False     # digits are not mirror-symmetric
  config.data.num_bins = 17           # the data's grey levels (k / 16)
  config.data.num_classes = 10        # its labels: class-conditional models and the classifier

  config.model.name = 'ddpm'
  config.model.nf = 32
  config.model.ch_mult = (1, 2)
  config.model.num_res_blocks = 1
  config.model.attn_resolutions = (4,)
  config.model.dropout = 0.0
  config.model.num_groups = 8
  config.model.ema_rate = 0.999

  config.optim.lr = 1e-3
  config.optim.warmup = 200
  config.optim.grad_clip = 1.0

  config.sampling.method = 'pc'
  config.sampling.predictor = 'reverse_diffusion'
  config.sampling.corrector = 'none'
  config.sampling.steps = 100
  config.sampling.num_samples = 64
  config.sampling.batch_size = 64

  config.eval.num_samples = 1000
  config.eval.batch_size = 500
  return config
