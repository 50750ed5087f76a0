"""`vp_digits` made class-conditional: the same U-Net with a label embedding added to its time
embedding, trained with label dropout 0.1 so that one network gives the conditional and the
unconditional (null label) scores of classifier-free guidance (Ho & Salimans 2021). Same data,
optimiser, EMA, sampler and 3,000 steps as the demo.

Sampling draws one row per class ('all'); `--config.sampling.guidance_scale=W` guides with
(1 + W) s(x, y) - W s(x, null).
"""
from configs.vp_digits import get_config as digits_config


def get_config():
  config = digits_config()
  config.model.class_conditional = True
  config.model.label_dropout = 0.1
  config.sampling.num_samples = 100   # ten of each class
  config.sampling.batch_size = 100
  return config
