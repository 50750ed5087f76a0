"""Reflow and one-step distillation from a trained run (Liu et al. 2023, sec. 2.3, Algorithm 1):
training.loss 'reflow' trains the (k+1)-rectified flow on pairs (z, x) that the ODE of the
k-rectified flow (the run in config.distill.teacher, read as consistency distillation reads its
teacher) draws, x = ODE[v_k](z); 'reflow_distill' fits one Euler step of the flow to such pairs.
Both start from the teacher's weights (distill.init_from_teacher), as Liu et al. do.

The pairs are drawn once, before step 1, by config.reflow.sampling (any deterministic sampler of
ours: 'ode' with a torchdiffeq method, or a fast sampler) in batches of config.reflow.batch_size,
and kept in <workdir>/couplings.npz with the key they were drawn under (the teacher checkpoint's
SHA-256, the resolved sampler settings, the number of pairs, the seed). A resumed run reuses
them; pairs of another key are refused, since the run's checkpoints were trained on them.
Each training row draws a pair uniformly (by the seed, the step and its place in the batch);
the data set's batch only gives the batch its size.
"""
import json
import math
import os

import numpy as np
import torch
from tqdm.auto import tqdm

from data import data_shape
from models import get_eps_fn, parameterization_of
from pipeline.consistency import Teacher
from pipeline.sampling import checkpoint_sha256
from samplers import get_sampler
from samplers.registry import resolved_sampling
from training.flow_matching_loss import (flow_matching_per_sample, flow_matching_times,
                                         one_step_distillation_per_sample)
from training.losses import drawn
from utils.atomic import save_npz_atomic
from utils.checkpoint import CheckpointError, load_state_strict, resolve_checkpoint
from utils.errors import ConfigError
from utils.seeding import batch_generator
from utils.workdir import couplings_path

COUPLINGS = 3   # the random stream of the pairs' x_T (utils.seeding.batch_generator)


def check_sampling(sampling):
  """The pairs are a deterministic map z -> x: refuse a sampler that adds noise on the way."""
  noisy = (sampling.method in ('pc', 'ancestral', 'sde', 'consistency')
           or (sampling.method == 'ddim' and sampling.eta > 0)
           or (sampling.method == 'heun' and sampling.s_churn > 0))
  if noisy:
    raise ConfigError(f"reflow.sampling.method={sampling.method!r} (eta {sampling.eta}, s_churn "
                      f"{sampling.s_churn}) adds noise: reflow's pairs are the teacher's ODE, "
                      f"z -> x; choose 'ode' or a deterministic fast sampler ('ipndm', 'ddim' "
                      f"with eta 0, 'heun' with s_churn 0, 'dpm_solver', 'unipc')")


def read_teacher(config, student_sde, device):
  """The run in distill.teacher and its checkpoint's path; ConfigError for one that cannot draw
  the student's pairs (Teacher checks the run and its data set)."""
  teacher = Teacher(config, device)
  d, t = config.distill, teacher.config
  if t.data.centered != config.data.centered:
    raise ConfigError(f"the teacher {d.teacher} scales the data to "
                      f"{'[-1, 1]' if t.data.centered else '[0, 1]'}, the student to "
                      f"{'[-1, 1]' if config.data.centered else '[0, 1]'} (data.centered)")
  if not math.isclose(teacher.sde.prior_std(), student_sde.prior_std(), rel_tol=1e-6):
    raise ConfigError(f"the teacher {d.teacher} ({t.sde.name}) starts its ODE from N(0, "
                      f"{teacher.sde.prior_std():g}^2 I), the student's z is N(0, "
                      f"{student_sde.prior_std():g}^2 I): reflow needs a teacher whose prior is "
                      f"the student's (a flow, VP or sub-VP run)")
  if t.model.class_conditional:
    raise ConfigError(f"the teacher {d.teacher} is class-conditional; reflow here draws "
                      f"unconditional pairs: teach with an unconditional run")
  return teacher, resolve_checkpoint(d.teacher, d.teacher_ckpt)


def couplings_key(config, checkpoint):
  """What the pairs are a function of: the teacher's weights, the sampler, how many, the seed
  (as JSON reads it back: tuples as lists)."""
  r = config.reflow
  return json.loads(json.dumps({'teacher_sha256': checkpoint_sha256(checkpoint),
                                'sampling': resolved_sampling(r.sampling),
                                'num_pairs': r.num_pairs, 'seed': config.seed}))


def draw_pairs(teacher, sampling, shape, num_pairs, batch_size, seed, device, progress=True):
  """(z, x): x_T = z ~ the teacher's prior and x its sampler's end, in batches with a bar.
  The sampler draws x_T first from the generator it is given (samplers/driver.py), so z is
  drawn from an identical generator."""
  z_all, x_all = [], []
  with tqdm(total=num_pairs, desc='couplings', unit='pair', disable=not progress,
            dynamic_ncols=True) as bar:
    for index, start in enumerate(range(0, num_pairs, batch_size)):
      n = min(batch_size, num_pairs - start)
      sampler = get_sampler(sampling, teacher.sde, (n, *shape), device,
                            continuous=teacher.config.training.continuous)
      z = sampler.sde.prior_sampling((n, *shape), batch_generator(seed, index, device, COUPLINGS),
                                     device=device)
      x, _ = sampler(teacher.score_fn, batch_generator(seed, index, device, COUPLINGS), False)
      z_all.append(z)
      x_all.append(x)
      bar.update(n)
  return torch.cat(z_all), torch.cat(x_all)


def couplings(config, workdir, teacher, checkpoint, device, progress=True):
  """The run's pairs (z, x) on `device`: <workdir>/couplings.npz if drawn under this config's key,
  else drawn now and written there; ConfigError if the file holds pairs of another key."""
  r, path = config.reflow, couplings_path(workdir)
  key = couplings_key(config, checkpoint)
  if os.path.exists(path):
    with np.load(path) as stored:
      stored_key, z, x = json.loads(str(stored['key'])), stored['z'], stored['x']
    if stored_key != key:
      differ = sorted(k for k in key if stored_key.get(k) != key[k])
      raise ConfigError(f"{path} holds pairs drawn under another {', '.join(differ)} than this "
                        f"run asks for (teacher {config.distill.teacher}); this run was trained "
                        f"on them: start a new run directory, or delete the file to redraw")
    return torch.from_numpy(z).to(device), torch.from_numpy(x).to(device)
  with torch.no_grad():
    z, x = draw_pairs(teacher, r.sampling, data_shape(config), r.num_pairs, r.batch_size,
                      config.seed, device, progress)
  save_npz_atomic(path, z=z.cpu().numpy(), x=x.cpu().numpy(), key=json.dumps(key))
  return z, x


class Reflow:
  """training.loss 'reflow': the flow-matching loss (Lipman et al. eq. 23 on the coupled pairs,
  Liu et al. eq. 1 with (X_0, X_1) = (x, z)) at t ~ U[training.eps, T]."""

  def __init__(self, config, sde, workdir=None):
    if config.sde.name != 'rectified_flow' or not config.training.continuous:
      raise ConfigError(f"training.loss={config.training.loss!r} trains a rectified flow: set "
                        f"sde.name='rectified_flow' and training.continuous=True (got "
                        f"{config.sde.name!r}, continuous={config.training.continuous})")
    if config.model.class_conditional or config.model.learn_variance:
      raise ConfigError(f"training.loss={config.training.loss!r} trains an unconditional flow: "
                        f"set model.class_conditional=False and model.learn_variance=False")
    if config.reflow.num_pairs < 1 or config.reflow.batch_size < 1:
      raise ConfigError(f"reflow.num_pairs and reflow.batch_size must be >= 1, got "
                        f"{config.reflow.num_pairs} and {config.reflow.batch_size}")
    check_sampling(config.reflow.sampling)
    self.config, self.sde, self.workdir = config, sde, workdir
    self.parameterization = parameterization_of(config)
    self.z = self.x = None

  def initialize(self, model, progress=True):
    """Before step 1 (and on resuming): the pairs, and the teacher's weights to start from."""
    if self.workdir is None:
      raise ConfigError(f"training.loss={self.config.training.loss!r} keeps its pairs in the run "
                        f"directory: build it with the run's workdir")
    device = next(model.parameters()).device
    teacher, checkpoint = read_teacher(self.config, self.sde, device)
    self.z, self.x = couplings(self.config, self.workdir, teacher, checkpoint, device, progress)
    if self.config.distill.init_from_teacher:
      try:
        load_state_strict(model, teacher.model.state_dict(), 'teacher')
      except ValueError as e:
        raise CheckpointError(f"distill.init_from_teacher: the teacher "
                              f"{self.config.distill.teacher} has another network than the "
                              f"student ({e}); set distill.init_from_teacher=False or the same "
                              f"model") from None

  def pairs(self, n, device, generator, rows):
    """n pairs (z, x), each drawn uniformly from the run's couplings."""
    index = drawn(rows, n, lambda m: torch.randint(len(self.z), (m,), device=device,
                                                   generator=generator))
    return self.z[index], self.x[index]

  def eps_fn(self, model):
    eps_fn = get_eps_fn(self.sde, model, True, self.parameterization)
    return lambda x, t: eps_fn(x, t)[0]

  def __call__(self, model, x0, generator=None, classes=None, rows=None):
    n = x0.shape[0]
    z, x = self.pairs(n, x0.device, generator, rows)
    t = drawn(rows, n, lambda m: flow_matching_times(self.sde, m, self.config.training.eps,
                                                     x0.device, generator))
    return flow_matching_per_sample(self.eps_fn(model), self.sde, x, z, t,
                                    self.config.training.reduce_mean)


class ReflowDistillation(Reflow):
  """training.loss 'reflow_distill': ||z - T v(z, T) - x||^2, one Euler step of the flow from T
  to 0 fitted to the pairs (Liu et al. 2023, sec. 2.3, k = 1); sampled with one evaluation
  (sampling.method 'ddim', steps 1: x0_hat at T, which on this path is that Euler step)."""

  def __call__(self, model, x0, generator=None, classes=None, rows=None):
    z, x = self.pairs(x0.shape[0], x0.device, generator, rows)
    return one_step_distillation_per_sample(self.eps_fn(model), self.sde, z, x,
                                            self.config.training.reduce_mean)


LOSSES = {'reflow': Reflow, 'reflow_distill': ReflowDistillation}
