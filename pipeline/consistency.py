"""Consistency models from a config: training.loss 'cd' (distillation from the trained run in
config.distill.teacher), 'ict' (improved consistency training, no teacher) or 'ect' (consistency
tuning of the diffusion run in config.distill.teacher). get_loss_fn (training/losses.py) returns
one of the losses here, so the one trainer (checkpoints, EMA, TensorBoard, progress bar) runs
them; the algorithms themselves are training/consistency_loss.py.

Each loss carries its state: the training step k (curricula) and CD's target network theta-,
advanced by the trainer after every optimizer step (`after_step`) and checkpointed
(`state_dict`); `initialize` starts the student from the teacher's weights.
"""
import copy
import functools
import math

import torch

from configs.run_config import load_run_config
from data import data_shape
from models import get_score_fn, parameterization_of, restore_for_inference
from samplers.ddim import ddim
from samplers.dpm_solver import dpm_solver_pp_multistep
from samplers.ipndm import ipndm
from samplers.unipc import unipc
from sde_lib import get_sde
from training import consistency_loss as cm
from training.losses import drawn, training_classes
from training.lpips import BACKBONES, load_lpips, lpips_distance
from utils.checkpoint import CheckpointError, load_state_strict
from utils.errors import ConfigError

# distill.solver: the teacher's ODE step between adjacent levels, built from (sde, score_fn,
# budget): Heun (CM's) steps the whole batch at once; the other fast samplers of ours one level
# pair at a time
TEACHER_STEPS = {'heun': cm.heun_ode_step,
                 'ddim': functools.partial(cm.solver_ode_step, ddim),
                 'ipndm': functools.partial(cm.solver_ode_step, ipndm),
                 'dpm_solver': functools.partial(cm.solver_ode_step, dpm_solver_pp_multistep),
                 'unipc': functools.partial(cm.solver_ode_step, unipc)}


class Teacher:
  """A trained run read from its directory: its config, process, network and score_fn(x, t,
  classes), whatever its SDE and parameterization."""

  def __init__(self, config, device='cpu'):
    d = config.distill
    if not d.teacher:
      raise ConfigError(f"training.loss={config.training.loss!r} starts from a trained run: set "
                        f"config.distill.teacher to its run directory (it holds config.json)")
    self.config, _ = load_run_config(d.teacher)
    if self.config is None:
      raise ConfigError(f"config.distill.teacher={d.teacher!r} has no config.json: it must be "
                        f"the directory of a run trained here (run.py --mode train)")
    if data_shape(self.config) != data_shape(config) or self.config.data.dataset != config.data.dataset:
      raise ConfigError(f"the teacher {d.teacher} was trained on {self.config.data.dataset} "
                        f"{data_shape(self.config)}, the student on {config.data.dataset} "
                        f"{data_shape(config)}")
    self.model, _, _ = restore_for_inference(self.config, d.teacher, d.teacher_ckpt, device)
    self.model.requires_grad_(False)
    self.sde = get_sde(self.config)
    score_fn = get_score_fn(self.sde, self.model, self.config.training.continuous,
                            parameterization_of(self.config))
    conditional = self.config.model.class_conditional
    self.score_fn = lambda x, t, classes=None: score_fn(x, t, classes if conditional else None)


def distance_fn(config, dim):
  """The distance d of config.distill.distance for data of `dim` dimensions."""
  d = config.distill
  if d.distance == 'l2':
    return cm.l2
  if d.distance == 'l1':
    return cm.l1
  if d.distance == 'pseudo_huber':
    return functools.partial(cm.pseudo_huber, c=d.huber_c or cm.ict_huber_c(dim))
  if d.distance == 'lpips':
    return lpips_from_config(config)
  raise ConfigError(f"unknown distill.distance {d.distance!r}; choose 'l2', 'l1', "
                    f"'pseudo_huber' or 'lpips'")


def lpips_from_config(config):
  """LPIPS (training/lpips.py) on distill.lpips_net from the user-placed files in the folder
  distill.lpips_weights, on the model's images (grey repeated to RGB, resized to 224 as CM)."""
  d = config.distill
  if d.lpips_net not in BACKBONES:
    raise ConfigError(f"unknown distill.lpips_net {d.lpips_net!r}; choose one of "
                      f"{sorted(BACKBONES)}")
  if not d.lpips_weights:
    b = BACKBONES[d.lpips_net]
    raise ConfigError(f"distill.distance='lpips' reads user-placed weights and nothing is "
                      f"downloaded: set config.distill.lpips_weights to a folder holding "
                      f"{b.file} and {b.lpips_file} (distill.lpips_net={d.lpips_net!r}; "
                      f"docs/consistency.md says where to get them)")
  if config.data.num_channels not in (1, 3):
    raise ConfigError(f"distill.distance='lpips' compares grey or RGB images, not "
                      f"{config.data.num_channels}-channel ones; use 'l2', 'l1' or 'pseudo_huber'")
  return lpips_distance(load_lpips(d.lpips_net, d.lpips_weights), config.data.centered)


def check_student(config):
  """The student is a consistency function: its parameterization 'consistency' on EDM's process."""
  if config.model.parameterization != 'consistency' or config.sde.name != 'edm':
    raise ConfigError(f"training.loss={config.training.loss!r} trains a consistency function "
                      f"f(x, sigma_min) = x: set model.parameterization='consistency' and "
                      f"sde.name='edm' (got {config.model.parameterization!r}, {config.sde.name!r})")
  if not config.training.continuous:
    raise ConfigError("consistency models take continuous noise levels: training.continuous=True")


class ConsistencyLoss:
  """What the three losses share: the student's f, the step k, the teacher run and its weights."""

  def __init__(self, config, sde):
    check_student(config)
    self.config, self.sde, self.teacher = config, sde, None
    self.parameterization = parameterization_of(config)
    self.sigma_min, self.sigma_max = config.sde.sigma_min, config.sde.sigma_max
    self.dim = math.prod(data_shape(config))
    self.k = 0   # optimizer steps taken

  def initialize(self, model):
    """Before step 1 (and on resuming): read the teacher run, on the student's device, and
    start from its weights (distill.init_from_teacher; CM and ECT do)."""
    self.teacher = Teacher(self.config, next(model.parameters()).device)
    if self.config.distill.init_from_teacher:
      try:
        load_state_strict(model, self.teacher.model.state_dict(), 'teacher')
      except ValueError as e:
        raise CheckpointError(f"distill.init_from_teacher: the teacher {self.config.distill.teacher}"
                              f" has another network than the student ({e}); set "
                              f"distill.init_from_teacher=False or the same model") from None

  def after_step(self, model, step):
    self.k = step

  def state_dict(self):
    return {'k': self.k}

  def load_state_dict(self, state):
    self.k = int(state.get('k', 0))

  def f(self, model):
    return cm.consistency_fn(self.sde, model, self.parameterization)


class ConsistencyDistillation(ConsistencyLoss):
  """CD (Song et al. 2023, Algorithm 2): N = distill.num_scales Karras levels, the teacher's ODE
  step by distill.solver on distill.solver_budget evaluations, target EMA mu = distill.target_ema."""

  def __init__(self, config, sde):
    super().__init__(config, sde)
    d = config.distill
    if d.solver not in TEACHER_STEPS:
      raise ConfigError(f"unknown distill.solver {d.solver!r}; choose one of {sorted(TEACHER_STEPS)}")
    if d.num_scales < 2 or not 0 <= d.target_ema < 1:
      raise ConfigError(f"distill.num_scales must be >= 2 and distill.target_ema in [0, 1), got "
                        f"{d.num_scales} and {d.target_ema}")
    self.sigmas = cm.karras_sigmas(d.num_scales, self.sigma_min, self.sigma_max)
    self.distance = distance_fn(config, self.dim)
    self.step, self.target = None, None

  def initialize(self, model):
    super().initialize(model)
    d = self.config.distill
    self.step = TEACHER_STEPS[d.solver](self.teacher.sde, self.teacher.score_fn, d.solver_budget)
    self.target = copy.deepcopy(model).requires_grad_(False)

  def after_step(self, model, step):
    super().after_step(model, step)
    cm.update_target(self.target, model, self.config.distill.target_ema)

  def state_dict(self):
    return {'k': self.k, 'target': self.target.state_dict()}

  def load_state_dict(self, state):
    super().load_state_dict(state)
    if 'target' in state:
      load_state_strict(self.target, state['target'], 'CD target network')

  def __call__(self, model, x0, generator=None, classes=None, rows=None):
    n = x0.shape[0]
    index = drawn(rows, n, lambda m: torch.randint(len(self.sigmas) - 1, (m,), device=x0.device,
                                                    generator=generator))
    z = drawn(rows, n, lambda m: torch.randn((m, *x0.shape[1:]), device=x0.device,
                                             generator=generator))
    classes = training_classes(self.config, classes, x0, generator, rows)
    return cm.cd_loss(self.f(model), self.f(self.target), self.step, x0, index, z, self.sigmas,
                      self.distance, classes)


class ImprovedConsistencyTraining(ConsistencyLoss):
  """iCT (Song & Dhariwal 2023): N(k) doubling from distill.s0 to s1 over training.n_iters,
  lognormal levels (distill.p_mean, p_std), pseudo-Huber, weight 1 / (sigma_{n+1} - sigma_n)."""

  def initialize(self, model):
    """No teacher: iCT starts from the network's own initialization."""

  def __call__(self, model, x0, generator=None, classes=None, rows=None):
    d, n = self.config.distill, x0.shape[0]
    N = cm.ict_num_scales(self.k, self.config.training.n_iters, d.s0, d.s1)
    sigmas = cm.karras_sigmas(N, self.sigma_min, self.sigma_max)
    p = cm.ict_index_probabilities(sigmas, d.p_mean, d.p_std)
    cpu_generator = generator if generator is not None and generator.device.type == 'cpu' else None
    index = drawn(rows, n, lambda m: torch.multinomial(p, m, replacement=True,
                                                       generator=cpu_generator)).to(x0.device)
    z = drawn(rows, n, lambda m: torch.randn((m, *x0.shape[1:]), device=x0.device,
                                             generator=generator))
    classes = training_classes(self.config, classes, x0, generator, rows)
    c = d.huber_c or cm.ict_huber_c(self.dim)
    return cm.ict_loss(self.f(model), x0, index, z, sigmas, c, classes)


class EasyConsistencyTuning(ConsistencyLoss):
  """ECT (Geng et al. 2024) from the diffusion run in distill.teacher: t ~ lognormal(distill.p_mean,
  p_std), r = t (1 - n(t) / q^(stage+1)) over distill.ect_stages stages, weight 1 / (t - r)."""

  def __init__(self, config, sde):
    super().__init__(config, sde)
    self.distance = distance_fn(config, self.dim)

  def __call__(self, model, x0, generator=None, classes=None, rows=None):
    d, n = self.config.distill, x0.shape[0]
    t = drawn(rows, n, lambda m: (torch.randn(m, device=x0.device, generator=generator) * d.p_std
                                  + d.p_mean).exp()).clamp(self.sigma_min, self.sigma_max)
    z = drawn(rows, n, lambda m: torch.randn((m, *x0.shape[1:]), device=x0.device,
                                             generator=generator))
    stage = cm.ect_stage(self.k, self.config.training.n_iters, d.ect_stages)
    r = cm.ect_r(t, stage, d.ect_q, d.ect_k, d.ect_b)
    classes = training_classes(self.config, classes, x0, generator, rows)
    return cm.ect_loss(self.f(model), x0, t, r, z, self.sigma_min, self.distance, classes)


LOSSES = {'cd': ConsistencyDistillation, 'ict': ImprovedConsistencyTraining,
          'ect': EasyConsistencyTuning}


def consistency_loss_fn(config, sde):
  """The loss object of training.loss 'cd' | 'ict' | 'ect'; the teacher run is read by its
  `initialize`, which the trainer calls before step 1."""
  return LOSSES[config.training.loss](config, sde)
