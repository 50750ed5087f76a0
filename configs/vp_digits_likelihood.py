"""`vp_digits` trained for likelihood (Song, Durkan, Murray & Ermon 2021, ScoreFlow): the DSM loss
weighted by g(t)^2, which makes it an upper bound on the NLL, with t drawn from
p(t) ~ g^2 / s^2 so that the weighting does not blow up the loss's variance
(sde_lib/likelihood_time.py), on uniformly dequantized images (the density the bits/dim
measure; samples are mapped back to their bins' levels). Same network, optimiser, EMA,
sampler and budget as the demo: 3,000 steps of batch 64, under 10 minutes on a 2-core CPU.

Chosen by measurement (benchmarks/likelihood_training.py; docs/likelihood.md, "Maximum-likelihood
training"): without dequantized training data the weighting makes bits/dim worse, not better
(the network learns spikes at the 17 grey levels: 2.72 against the demo's 2.37 at 4,500 steps,
measured while tuning).
"""
from configs.vp_digits import get_config as digits_config


def get_config():
  config = digits_config()
  config.data.uniform_dequantization = True
  config.training.likelihood_weighting = True
  config.training.importance_sampling = True
  return config
