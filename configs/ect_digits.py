"""Easy consistency tuning on digits (Geng et al. 2024): the `edm_digits` run in runs/edm_digits
(--config.distill.teacher DIR) fine-tuned into a consistency model, starting at dt = t (its
diffusion loss) and shrinking r = t (1 - n(t) / 2^(stage+1)), n(t) = 1 + 8 sigmoid(-t), over 8
stages; t ~ lognormal(-1.1, 2.0), weight 1 / (t - r), pseudo-Huber c = 0.00054 sqrt(64); 2,000
steps of 64 at Adam lr 2e-4. Not a paper table row. Sampling: two steps through tau = 0.821.
"""
from configs.edm_digits import get_config as get_edm_config


def get_config():
  config = get_edm_config()
  config.model.parameterization = 'consistency'
  config.training.loss = 'ect'
  config.training.n_iters = 2000
  config.training.bound_images = 0
  config.optim.lr = 2e-4
  config.optim.warmup = 0

  config.distill.teacher = 'runs/edm_digits'
  config.distill.distance = 'pseudo_huber'
  config.distill.p_mean = -1.1
  config.distill.p_std = 2.0
  config.distill.ect_q = 2.0
  config.distill.ect_k = 8.0
  config.distill.ect_b = 1.0
  config.distill.ect_stages = 8

  config.sampling.method = 'consistency'
  config.sampling.steps = 2
  return config
