"""Consistency models from a config (pipeline/consistency.py, the configs): the papers'
CIFAR-10 hyperparameters pinned, a teacher run that does not fit refused in one line, and
distillation / tuning under the one trainer (checkpoints with the target network and the step)."""
import os

import pytest
import torch

from configs.cd_cifar10 import get_config as cd_cifar10
from configs.edm_digits import get_config as edm_digits
from configs.ict_cifar10 import get_config as ict_cifar10
from pipeline.consistency import consistency_loss_fn
from sde_lib import get_sde
from pipeline.train import train
from utils.checkpoint import CheckpointError, load_checkpoint
from utils.errors import ConfigError


def test_cd_cifar10_is_cm_table_3():
  """CM (Song et al. 2023) Table 3, CIFAR-10 CD: N 18, Heun, mu 0, batch 512, lr 4e-4, 800k
  iterations, EMA 0.9999, dropout 0; EDM's sigma range, sigma_data 0.5 (appendix C)."""
  c = cd_cifar10()
  assert (c.training.loss, c.model.parameterization, c.sde.name) == ('cd', 'consistency', 'edm')
  assert (c.distill.num_scales, c.distill.solver, c.distill.solver_budget) == (18, 'heun', 2)
  assert c.distill.target_ema == 0.0 and c.distill.init_from_teacher
  assert (c.training.batch_size, c.optim.lr, c.training.n_iters) == (512, 4e-4, 800_000)
  assert (c.model.ema_rate, c.model.dropout, c.model.sigma_data) == (0.9999, 0.0, 0.5)
  assert (c.sde.sigma_min, c.sde.sigma_max) == (0.002, 80.0)


def test_ict_cifar10_is_icts():
  """iCT (Song & Dhariwal 2023) sec. 3-5 on CIFAR-10: pseudo-Huber with c = 0.00054 sqrt(d),
  s0 10, s1 1280, P_mean -1.1, P_std 2.0, batch 1024, lr 1e-4, 400k iterations, dropout 0.3,
  EMA 0.99993, sigma_data 0.5 on [0.002, 80]."""
  c = ict_cifar10()
  assert (c.training.loss, c.model.parameterization, c.sde.name) == ('ict', 'consistency', 'edm')
  assert (c.distill.distance, c.distill.huber_c) == ('pseudo_huber', 0.0)
  assert (c.distill.s0, c.distill.s1, c.distill.p_mean, c.distill.p_std) == (10, 1280, -1.1, 2.0)
  assert (c.training.batch_size, c.optim.lr, c.training.n_iters) == (1024, 1e-4, 400_000)
  assert (c.model.dropout, c.model.ema_rate, c.model.sigma_data) == (0.3, 0.99993, 0.5)
  assert (c.sde.sigma_min, c.sde.sigma_max) == (0.002, 80.0)


def tiny(config, n_iters):
  config.device = 'cpu'
  config.model.update(nf=8, num_groups=4, ch_mult=(1, 2), attn_resolutions=(4,), dropout=0.0)
  config.training.update(batch_size=16, n_iters=n_iters, log_freq=1, snapshot_freq=n_iters,
                         snapshot_sampling=False, bound_images=0)
  return config


def student(loss, teacher_dir, n_iters=3):
  config = tiny(edm_digits(), n_iters)
  config.model.parameterization = 'consistency'
  config.training.loss = loss
  config.distill.teacher = teacher_dir
  config.distill.num_scales = 6
  config.sampling.update(method='consistency', steps=2, num_samples=4, batch_size=4)
  return config


def test_student_must_be_a_consistency_function_and_teacher_a_run(tmp_path):
  config = student('cd', str(tmp_path / 'nowhere'))
  config.model.parameterization = 'edm'
  with pytest.raises(ConfigError, match="parameterization='consistency'"):
    consistency_loss_fn(config, get_sde(config))
  config.model.parameterization = 'consistency'
  loss = consistency_loss_fn(config, get_sde(config))
  with pytest.raises(ConfigError, match='has no config.json'):
    loss.initialize(torch.nn.Linear(1, 1))
  config.distill.teacher = ''
  with pytest.raises(ConfigError, match='set config.distill.teacher'):
    consistency_loss_fn(config, get_sde(config)).initialize(torch.nn.Linear(1, 1))
  config.distill.distance = 'lpips'
  with pytest.raises(ConfigError, match='nothing is downloaded'):
    consistency_loss_fn(config, get_sde(config))


@pytest.mark.slow
def test_cd_and_ect_train_from_a_teacher_run_and_resume(tmp_path, one_thread):
  """A tiny edm_digits teacher (2 steps), then CD from it: the student starts from the teacher's
  weights, its checkpoint holds the step count and the target network, and resuming continues
  from them; ECT runs from the same teacher and iCT without one; a teacher with another network
  is refused in one line naming the misfit."""
  teacher = str(tmp_path / 'teacher')
  train(tiny(edm_digits(), 2), teacher, progress=False)
  cd = str(tmp_path / 'cd')
  train(student('cd', teacher, n_iters=2), cd, progress=False)
  state = load_checkpoint(os.path.join(cd, 'checkpoints', 'ckpt_2.pt'))
  assert state['loss']['k'] == 2 and set(state['loss']['target']) == set(state['model'])
  train(student('cd', teacher, n_iters=3), cd, progress=False)
  assert load_checkpoint(os.path.join(cd, 'checkpoints', 'ckpt_3.pt'))['loss']['k'] == 3
  ect = str(tmp_path / 'ect')
  train(student('ect', teacher, n_iters=2), ect, progress=False)
  assert load_checkpoint(os.path.join(ect, 'checkpoints', 'ckpt_2.pt'))['loss']['k'] == 2
  ict = str(tmp_path / 'ict')
  train(student('ict', '', n_iters=2), ict, progress=False)
  assert load_checkpoint(os.path.join(ict, 'checkpoints', 'ckpt_2.pt'))['loss']['k'] == 2
  other = student('cd', teacher)
  other.model.nf = 16
  with pytest.raises(CheckpointError, match='init_from_teacher'):
    train(other, str(tmp_path / 'other'), progress=False)
