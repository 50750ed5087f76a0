"""Consistency distillation on CIFAR-10 (Song et al. 2023, "Consistency Models", Table 1 "CD
(LPIPS)": FID 3.55 at 1 step, 2.93 at 2, reported by the paper, not measured here) with the
paper's CIFAR-10 hyperparameters (Table 3): teacher an EDM run (`edm_cifar10`, in
runs/edm_cifar10; --config.distill.teacher DIR), its Heun step between adjacent levels of the
N = 18 Karras grid on [0.002, 80], target theta- at mu = 0, batch 512, Adam lr 4e-4, 800k steps,
EMA 0.9999, no dropout, the student started from the teacher. Two departures: the distance is
L2 (the paper's L2 rows are worse; LPIPS reads weights the user places,
--config.distill.distance=lpips --config.distill.lpips_weights=DIR, docs/consistency.md), and
the network is EDM's DDPM++ (`edm_cifar10`'s, so the student can start from the teacher) where
the paper used NCSN++. Sampling: one step (Algorithm 1); two through tau = 0.821 with
--config.sampling.steps 2.
"""
from configs.edm_cifar10 import get_config as get_edm_config


def get_config():
  config = get_edm_config()
  config.model.parameterization = 'consistency'
  config.model.dropout = 0.0
  config.model.ema_rate = 0.9999
  config.training.loss = 'cd'
  config.training.batch_size = 512
  config.training.n_iters = 800_000
  config.training.bound_images = 0
  config.optim.lr = 4e-4
  config.optim.warmup = 0

  config.distill.teacher = 'runs/edm_cifar10'
  config.distill.solver = 'heun'
  config.distill.solver_budget = 2
  config.distill.num_scales = 18
  config.distill.target_ema = 0.0
  config.distill.distance = 'l2'

  config.sampling.method = 'consistency'
  config.sampling.steps = 1
  return config
