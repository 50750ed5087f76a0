"""Reflow from a run directory (pipeline/reflow.py): a small rectified flow on the 2-D ring
teaches; its pairs are its ODE's (against an independent RK4 of its velocity), written once,
reused on resuming and refused when drawn under another key; the 2-rectified flow it trains is
straighter than its teacher; teachers that cannot teach are refused in one line."""
import os

import numpy as np
import pytest
import torch

from configs.vp_toy2d import get_config as vp_toy2d
from models import restore_for_inference
from pipeline.train import train
from sde_lib import get_sde
from sde_lib.flows import straightness
from utils.checkpoint import CheckpointError
from utils.errors import ConfigError
from utils.workdir import couplings_path


def toy_flow(n_iters, snapshot_freq=None):
  """A 1-rectified flow on the ring (velocity MLP, flow matching), trained n_iters steps."""
  config = vp_toy2d()
  config.device = 'cpu'
  config.sde.name = 'rectified_flow'
  config.model.parameterization = 'velocity'
  config.model.update(hidden=64, num_layers=2)
  config.data.toy_size = 4096
  config.training.update(loss='flow_matching', n_iters=n_iters, log_freq=n_iters,
                         snapshot_freq=snapshot_freq or n_iters, snapshot_sampling=False,
                         bound_images=0)
  config.sampling.update(method='ddim', time_schedule='uniform', steps=4)
  return config


def student(teacher_dir, n_iters=2, loss='reflow'):
  config = toy_flow(n_iters)
  config.training.loss = loss
  config.distill.teacher = teacher_dir
  config.reflow.update(num_pairs=256, batch_size=128)
  config.reflow.sampling.update(method='ode', ode_method='dopri5', rtol=1e-6, atol=1e-6)
  return config


@pytest.fixture(scope='module')
def teacher(tmp_path_factory):
  """The teacher run: 400 steps, checkpoints at 200 and 400."""
  workdir = str(tmp_path_factory.mktemp('teacher'))
  train(toy_flow(400, snapshot_freq=200), workdir, progress=False)
  return workdir


def velocity_of(workdir, config, ckpt=''):
  model = restore_for_inference(config, workdir, ckpt, 'cpu')[0]
  sde = get_sde(config)
  return lambda x, t: model(x, sde.network_label(torch.full((len(x),), t))), sde


def euler_straightness(velocity, sde, z, steps=50):
  times = torch.linspace(sde.T, 0.0, steps + 1)
  points = [z]
  with torch.no_grad():
    for t, u in zip(times[:-1], times[1:]):
      points.append(points[-1] + float(u - t) * velocity(points[-1], float(t)))
  return straightness(torch.stack(points), times)


def one_step_off_ring(velocity, sde, z):
  """Mean distance to the ring (radius 4) of one Euler step from T to 0."""
  with torch.no_grad():
    x = z - sde.T * velocity(z, sde.T)
  return float((x.norm(dim=1) - 4).abs().mean())


def test_pairs_are_the_teachers_ode_reused_and_refused_when_stale(teacher, tmp_path):
  config = student(teacher)
  workdir = str(tmp_path / 'reflow')
  assert train(config, workdir, progress=False) == 2
  with np.load(couplings_path(workdir)) as f:
    z, x = torch.from_numpy(f['z']), torch.from_numpy(f['x'])
  assert z.shape == x.shape == (256, 2)
  # x = ODE[v](z): RK4 of the teacher's velocity from T to 0, 400 steps (z N(0, I), x on the ring)
  velocity, sde = velocity_of(teacher, config)
  times = torch.linspace(sde.T, 0.0, 401)
  y = z.clone()
  with torch.no_grad():
    for t, u in zip(times[:-1].tolist(), times[1:].tolist()):
      h = u - t
      k1 = velocity(y, t)
      k2 = velocity(y + h / 2 * k1, t + h / 2)
      k3 = velocity(y + h / 2 * k2, t + h / 2)
      k4 = velocity(y + h * k3, u)
      y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
  assert (y - x).abs().max() < 1e-2    # z <-> x would be ~4 off
  assert abs(x.norm(dim=1).mean() - 4) < 0.5 and abs(z.std() - 1) < 0.15

  stamp = os.stat(couplings_path(workdir)).st_mtime_ns
  config.training.n_iters = 4
  assert train(config, workdir, progress=False) == 4     # resumed on the same pairs
  assert os.stat(couplings_path(workdir)).st_mtime_ns == stamp

  for change, differs in ((lambda c: c.reflow.sampling.update(rtol=1e-4), 'sampling'),
                          (lambda c: c.distill.update(teacher_ckpt='200'), 'teacher_sha256')):
    stale = student(teacher, 6)
    change(stale)
    with pytest.raises(ConfigError, match=f'holds pairs drawn under another {differs}'):
      train(stale, workdir, progress=False)
  assert os.stat(couplings_path(workdir)).st_mtime_ns == stamp


def test_reflow_straightens_and_distillation_trains(teacher, tmp_path):
  """The 2-rectified flow, 300 steps on 1,024 pairs from the teacher's weights, has a lower
  straightness S than its teacher (Liu et al. 2023, Theorem 3.6), on the same z, and its one
  Euler step lands on the ring where the teacher's lands near the mean (the ring's centre); its
  one-step distillation trains on its own pairs."""
  config = student(teacher, 300)
  config.reflow.update(num_pairs=1024, batch_size=1024)
  config.reflow.sampling.update(rtol=1e-4, atol=1e-4)
  reflow_dir = str(tmp_path / 'reflow')
  train(config, reflow_dir, progress=False)
  z = torch.randn(512, 2, generator=torch.Generator().manual_seed(7))
  s1 = euler_straightness(*velocity_of(teacher, config), z)
  s2 = euler_straightness(*velocity_of(reflow_dir, config), z)
  assert s2 < 0.5 * s1, (s1, s2)
  off1 = one_step_off_ring(*velocity_of(teacher, config), z)
  off2 = one_step_off_ring(*velocity_of(reflow_dir, config), z)
  assert off2 < 0.5 < 2 < off1, (off1, off2)

  distill = student(reflow_dir, 3, loss='reflow_distill')
  assert train(distill, str(tmp_path / 'distill'), progress=False) == 3


def test_teachers_that_cannot_teach_are_refused(teacher, tmp_path):
  with pytest.raises(ConfigError, match='has no config.json'):
    train(student(str(tmp_path / 'nowhere')), str(tmp_path / 'a'), progress=False)
  untrained = str(tmp_path / 'untrained')
  os.makedirs(untrained)
  with open(os.path.join(teacher, 'config.json')) as f, \
      open(os.path.join(untrained, 'config.json'), 'w') as g:
    g.write(f.read())
  with pytest.raises(CheckpointError, match='no checkpoint'):
    train(student(untrained), str(tmp_path / 'b'), progress=False)
  ve = toy_flow(1)
  ve.sde.name, ve.model.parameterization, ve.training.loss = 'vesde', 'eps', 'dsm'
  ve_dir = str(tmp_path / 've')
  train(ve, ve_dir, progress=False)
  with pytest.raises(ConfigError, match=r'starts its ODE from N\(0, 50\^2 I\)'):
    train(student(ve_dir), str(tmp_path / 'c'), progress=False)
  noisy = student(teacher)
  noisy.reflow.sampling.method = 'pc'
  with pytest.raises(ConfigError, match="reflow.sampling.method='pc'"):
    train(noisy, str(tmp_path / 'd'), progress=False)
  vp_student = student(teacher)
  vp_student.sde.name = 'vpsde'
  with pytest.raises(ConfigError, match="trains a rectified flow"):
    train(vp_student, str(tmp_path / 'e'), progress=False)
