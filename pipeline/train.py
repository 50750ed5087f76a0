"""The training loop: Adam (or AdamW) with linear warm-up and gradient clipping, EMA, checkpoints,
snapshot samples, TensorBoard, metrics.jsonl; one process or torch.distributed (torchrun),
with gradient accumulation, mixed precision, torch.compile and channels-last on request.

Reproducible: model init is seeded by config.seed, the data order by (seed, epoch) through
DistributedSampler, a sample's randomness (flip, dequantization, t, noise) by (seed, step, its
position in the global batch) and the rest (dropout) by (seed, step, rank) (training/batches.py),
so a run resumed from a checkpoint continues exactly as if it had never stopped, and the same
global batch split over more processes or micro-batches computes the same step.
"""
import contextlib
import json
import math
import os
import time

import torch
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import save_image
from tqdm.auto import tqdm

import sde_lib
from configs.run_config import resume_changes, write_run_config
from configs.validate import validate
from data import (DatasetUnavailable, fit_to_data, get_data_scaler, get_dataset,
                  get_eval_dataset)
from models import ExponentialMovingAverage, get_model
from models.posthoc_ema import PowerFunctionEMA
from evaluation.score_bound import bound_bpd
from pipeline.consistency import LOSSES as CONSISTENCY_LOSSES, consistency_loss_fn
from pipeline.reflow import LOSSES as REFLOW_LOSSES
from pipeline.sampling import (class_labels, data_sampler, draw_samples, sample_classes,
                           score_and_variance_fns)
from training.batches import LOSS, PROCESS, StepBatches, step_loader, step_seed
from training.losses import BatchRows, get_loss_fn
from training.preemption import StopRequest
from utils import checkpoint, workdir as layout
from utils.atomic import atomic_write
from utils.distributed import Distributed
from utils.errors import ConfigError
from utils.pictures import class_picture, sample_picture
from utils.run_lock import RunLock


# config.optim.optimizer -> the optimizer: Adam adds weight_decay * theta to the gradient (an L2
# term), AdamW decays the weights apart from it (Loshchilov & Hutter 2019; U-ViT's choice).
OPTIMIZERS = {'adam': torch.optim.Adam, 'adamw': torch.optim.AdamW}


def learning_rate(optim, step):
  """lr * min(1, step / warmup): linear warm-up over the first `warmup` steps (Song et al. 2021)."""
  return optim.lr * min(1.0, step / optim.warmup) if optim.warmup > 0 else optim.lr


def loader_workers(setting, ddp):
  """training.num_workers, where -1 (auto) is 0 on the CPU (the main process keeps up with a
  CPU network) and min(4, cores per process) on CUDA."""
  if setting >= 0:
    return setting
  if ddp.device.type != 'cuda':
    return 0
  return max(1, min(4, (os.cpu_count() or 1) // int(os.environ.get('LOCAL_WORLD_SIZE', '1'))))


class Precision:
  """training.precision: 'fp32', or autocast to 'bf16' or 'fp16' (with a gradient scaler) for
  the forward pass and the loss; training.tf32 lets CUDA matmuls and convolutions use TF32."""
  DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}

  def __init__(self, train, device):
    if train.precision not in self.DTYPES:
      raise ConfigError(f"training.precision must be one of {sorted(self.DTYPES)}, got "
                        f"{train.precision!r}")
    if train.precision == 'fp16' and device.type != 'cuda':
      raise ConfigError("training.precision='fp16' is for CUDA (its gradient scaler guards fp16 "
                        "gradients); use 'bf16' or 'fp32' on the CPU")
    if train.tf32 and device.type != 'cuda':
      raise ConfigError("training.tf32 is a CUDA setting; turn it off on the CPU")
    self.dtype, self.device_type = self.DTYPES[train.precision], device.type
    if train.tf32:
      torch.backends.cuda.matmul.allow_tf32 = True
      torch.backends.cudnn.allow_tf32 = True

  def autocast(self):
    if self.dtype is None:
      return contextlib.nullcontext()
    return torch.autocast(self.device_type, dtype=self.dtype)


class NonFiniteLoss(ConfigError):
  """A step's loss was nan or inf (and training.skip_nonfinite is off)."""


def _finite_mean(values):
  """The mean of the finite values (skipped steps log nan), nan if there are none."""
  finite = [v for v in values if math.isfinite(v)]
  return sum(finite) / len(finite) if finite else float('nan')


def _consistency(config, sde, workdir):
  return consistency_loss_fn(config, sde)   # it reads its teacher run, writes nothing


# training.loss -> builder(config, sde, workdir) of the losses that read a teacher run or keep
# data in the run directory: a consistency model's (pipeline/consistency.py) and reflow's
# (pipeline/reflow.py). A script adds its own here before training (benchmarks/flow_digits.py:
# the peer libraries' flow-matching objectives); the others are the library's.
LOSSES = {**{name: _consistency for name in CONSISTENCY_LOSSES}, **REFLOW_LOSSES}


def training_loss_fn(config, sde, workdir=None):
  """The loss config.training.loss names for a run in `workdir`: one of LOSSES, else the
  library's (training.losses.get_loss_fn)."""
  if config.training.loss in LOSSES:
    return LOSSES[config.training.loss](config, sde, workdir)
  return get_loss_fn(config, sde)


class Trainer:
  """Owns the model, EMA, optimizer and the workdir; `run()` trains to config.training.n_iters.

  A config that cannot run stops here, before step 1: a change to what defines the model of
  the run in `workdir` (configs/run_config.py; unless allow_model_override), a bad data or
  training setting, or sampling settings the snapshot sampler (and later sample/eval) cannot run;
  a snapshot sampler that needs a statistic of the network (dpm_solver_v3's EMS, the 'analytic'
  reverse variance's Gamma table) is built from the weights of each snapshot, and checked at the
  first one (pipeline/sampling.data_sampler).
  """

  def __init__(self, config, workdir, progress=True, allow_model_override=False):
    validate(config)
    self.config, self.workdir, self.progress = config, workdir, progress
    self.changes = resume_changes(config, workdir, allow_model_override)
    self.ddp = Distributed(config.device)
    train = config.training
    parts = self.ddp.world_size * train.grad_accum
    if train.batch_size % parts:
      raise ConfigError(f"training.batch_size {train.batch_size} must divide evenly over "
                        f"{self.ddp.world_size} processes x training.grad_accum "
                        f"{train.grad_accum} micro-batches")
    self.precision = Precision(train, self.ddp.device)
    torch.manual_seed(config.seed)
    self.sde = sde_lib.get_sde(config)
    self.loss_fn = training_loss_fn(config, self.sde, workdir)
    self.scaler = get_data_scaler(config)
    self.dataset = get_dataset(config, 'train')
    self.batches = StepBatches(self.dataset, train.batch_size, self.ddp.world_size,
                               self.ddp.rank, config.seed)
    self.model = get_model(config).to(self.ddp.device)
    if train.channels_last:
      self.model.to(memory_format=torch.channels_last)
    if hasattr(self.loss_fn, 'initialize'):   # a loss that starts from a teacher (CD, ECT, reflow)
      self.loss_fn.initialize(self.model)
    self.held_out = None     # test images the score-matching bound is logged on
    if train.bound_images and self.ddp.is_main:
      try:
        test = get_eval_dataset(config, 'test')
        self.held_out = torch.stack([test[i][0] for i in range(min(train.bound_images, len(test)))])
      except DatasetUnavailable as err:
        tqdm.write(f"note: no held-out bound in the metrics, the test split is missing: {err}")
    self.snapshot_sampling = config.sampling.copy_and_resolve_references()
    if self.snapshot_sampling.classifier_scale > 0:   # the classifier is trained after the model
      self.snapshot_sampling.update(classifier_scale=0.0, class_label='all')
    self.draw = data_sampler(config, self.sde, self.model, self.ddp.device, self.snapshot_sampling)
    self.ema = ExponentialMovingAverage(self.model, config.model.ema_rate, warmup=config.model.ema_warmup)
    sigma_rels = config.model.posthoc_ema_sigma_rels   # EDM2's tracked averages, or none
    self.posthoc_ema = PowerFunctionEMA(self.model, sigma_rels) if sigma_rels else None
    o = config.optim
    self.optimizer = OPTIMIZERS[o.optimizer](self.model.parameters(), lr=o.lr,
                                             betas=(o.beta1, 0.999), eps=o.eps,
                                             weight_decay=o.weight_decay)
    self.grad_scaler = torch.amp.GradScaler(self.ddp.device.type,
                                            enabled=train.precision == 'fp16')
    self.step = 0
    self.skipped_steps = 0           # steps whose loss was not finite (training.skip_nonfinite)
    self.resumed_from = self._restore()
    self.saved_step = self.step      # the step of the newest checkpoint on disk
    self.saved_at = time.monotonic()  # ... and when it was written (or this run started)
    self.writer = None

  def _restore(self):
    """Load the workdir's newest readable checkpoint, if any (an unreadable newer one, e.g.
    truncated by a crash, is skipped with a note); returns its path or None."""
    path, state, notes = checkpoint.load_newest_readable(self.workdir, self.ddp.device)
    for note in notes:
      tqdm.write(f"note: {note}")
    if path is None:
      return None
    checkpoint.load_state_strict(self.model, state['model'])
    try:
      self.ema.load_state_dict(state['ema'])
      if self.posthoc_ema is not None:
        if 'posthoc_ema' not in state:   # a power profile cannot start in the middle of a run
          raise ValueError("it holds no post-hoc EMA: model.posthoc_ema_sigma_rels must be set "
                           "from a run's first step")
        self.posthoc_ema.load_state_dict(state['posthoc_ema'])
      if 'optimizer' in state:   # imported published weights may come without one
        self.optimizer.load_state_dict(state['optimizer'])
      if state.get('grad_scaler'):
        self.grad_scaler.load_state_dict(state['grad_scaler'])
    except ValueError as e:
      raise checkpoint.CheckpointError(f"{path}: {e}") from None
    if hasattr(self.loss_fn, 'load_state_dict'):   # a loss with state (L_vlb's step history)
      self.loss_fn.load_state_dict(state.get('loss', {}))
    self.step = int(state['step'])
    self.skipped_steps = int(state.get('skipped_steps', 0))
    return path

  def state(self):
    epoch, batch = self.batches.position(self.step)
    state = {'model': self.model.state_dict(), 'ema': self.ema.state_dict(),
             'optimizer': self.optimizer.state_dict(), 'step': self.step,
             'grad_scaler': self.grad_scaler.state_dict(), 'skipped_steps': self.skipped_steps,
             # where the data order (a function of seed, epoch and step) stands, for the reader
             'data_order': {'seed': self.config.seed, 'epoch': epoch, 'next_batch': batch,
                            'batches_per_epoch': self.batches.per_epoch}}
    if hasattr(self.loss_fn, 'state_dict'):
      state['loss'] = self.loss_fn.state_dict()
    if self.posthoc_ema is not None:
      state['posthoc_ema'] = self.posthoc_ema.state_dict()
    return state

  def run(self):
    """Train from self.step to n_iters; returns the last step reached."""
    config, train = self.config, self.config.training
    if self.ddp.is_main:
      os.makedirs(layout.samples_dir(self.workdir), exist_ok=True)
      write_run_config(config, self.workdir)
      self.writer = SummaryWriter(layout.tensorboard_dir(self.workdir))
      if self.resumed_from:
        tqdm.write(f"resuming from {self.resumed_from} (step {self.step})")
      if self.changes:
        tqdm.write(f"changed since {layout.config_path(self.workdir)}: {'; '.join(self.changes)}")
    self.wrapped = self.ddp.wrap(self.model)
    model = torch.compile(self.wrapped) if train.compile else self.wrapped
    model.train()
    workers = loader_workers(train.num_workers, self.ddp)
    batches = iter(step_loader(self.batches, self.step, train.n_iters, workers,
                               pin_memory=self.ddp.device.type == 'cuda'))
    bar = tqdm(total=train.n_iters, initial=self.step, desc='training', dynamic_ncols=True,
               disable=not (self.progress and self.ddp.is_main))
    stop = StopRequest()
    try:
      with stop:
        self._loop(model, batches, bar, stop)
    except KeyboardInterrupt:
      # Ctrl-C loses nothing: the last completed step is checkpointed before stopping.
      if self._save_last_step():
        tqdm.write(f"interrupted: saved step {self.step} in {self.workdir}/checkpoints")
      raise
    finally:
      bar.close()   # an error's line then starts below the bar, not at its end
    if stop.signal is not None and self.ddp.is_main:
      tqdm.write(f"{stop.name}: stopped after step {self.step}, saved in "
                 f"{layout.checkpoint_dir(self.workdir)}; the same command resumes")
    if self.writer is not None:
      self.writer.close()
    self.ddp.close()
    return self.step

  def _save_last_step(self):
    """Checkpoint the last completed step unless it is on disk already; True if saved."""
    if self.ddp.is_main and self.saved_step != self.step:
      checkpoint.save_checkpoint(self.workdir, self.step, self.state(),
                                 self.config.training.keep_checkpoints)
      self.saved_step = self.step
      self.saved_at = time.monotonic()
      return True
    return False

  def _checkpoint_due(self):
    """training.checkpoint_every_minutes (0: off) have passed since the last checkpoint: rank 0's
    clock decides, and the others learn it from the same all-reduce (only it contributes)."""
    minutes = self.config.training.checkpoint_every_minutes
    if minutes <= 0:
      return False
    due = self.ddp.is_main and time.monotonic() - self.saved_at >= 60 * minutes
    return self.ddp.mean(float(due)) > 0

  def _loop(self, model, batches, bar, stop):
    """Steps until training.n_iters, or until a stop request (checked at every step boundary,
    by all processes together, so they stop after the same step)."""
    config, train = self.config, self.config.training
    losses, variances, started = [], [], time.time()
    while self.step < train.n_iters:
      batch = next(batches)
      torch.manual_seed(step_seed(config.seed, self.step + 1, PROCESS, self.ddp.rank))
      lr, loss, variance, grad_norm = self.update(model, batch)
      self.step += 1   # only once the update (and its EMA) is complete
      losses.append(loss)
      variances.append(variance)
      bar.update(1)
      if self.step % train.log_freq == 0 or self.step == train.n_iters:
        mean_loss = self.ddp.mean(_finite_mean(losses))
        record = {'step': self.step, 'loss': mean_loss,
                  'loss_variance': self.ddp.mean(_finite_mean(variances)),
                  'lr': lr, 'grad_norm': grad_norm, 'seconds': round(time.time() - started, 3),
                  'skipped_steps': self.skipped_steps}
        if self.held_out is not None:
          record['bound_bpd'] = self.held_out_bound()
        self._log(record)
        bar.set_postfix(loss=f'{mean_loss:.4g}', refresh=False)
        losses, variances = [], []
      if self.step == train.n_iters:
        bar.close()   # drawn once more, now: its times are training's, not the last snapshot's
      # before any checkpoint of this step: a run resumed from it never skips a snapshot
      if self.posthoc_ema is not None and (self.step % train.posthoc_snapshot_freq == 0
                                           or self.step == train.n_iters):
        self._posthoc_snapshot()
      if self.step % train.snapshot_freq == 0 or self.step == train.n_iters:
        self._snapshot()
      elif self._checkpoint_due():
        self._save_last_step()
        self.ddp.barrier()
      if self.ddp.mean(float(stop.signal is not None)) > 0:
        self._save_last_step()
        self.ddp.barrier()
        return

  def update(self, model, batch):
    """Step self.step + 1 on this process's share (images, labels, positions) of the global
    batch, in training.grad_accum micro-batches: Adam at the warm-up learning rate, gradient
    clipping, EMA update. Returns lr, the loss of the share, the variance of its per-sample
    terms and the gradient norm."""
    config, device = self.config, self.ddp.device
    lr = learning_rate(config.optim, self.step + 1)
    for group in self.optimizer.param_groups:
      group['lr'] = lr
    self.optimizer.zero_grad(set_to_none=True)
    accum, terms = config.training.grad_accum, []
    for i, (x, labels, positions) in enumerate(zip(*(part.chunk(accum) for part in batch))):
      # every micro-batch draws the global batch's randomness afresh and keeps its own rows
      generator = torch.Generator(device).manual_seed(step_seed(config.seed, self.step + 1, LOSS))
      classes = labels.to(device) if config.model.class_conditional else None
      rows = BatchRows(positions, config.training.batch_size)
      with self._sync_gradients(i == accum - 1):
        with self.precision.autocast():
          per_sample = self.loss_fn(model, self._to_model(x), generator, classes, rows).float()
        loss = per_sample.mean()
        if self.ddp.mean(float(not torch.isfinite(loss))) > 0:   # before backward: all agree
          self.optimizer.zero_grad(set_to_none=True)
          return self._nonfinite(lr, loss)
        self.grad_scaler.scale(loss / accum).backward()
      terms.append(per_sample.detach())
    self.grad_scaler.unscale_(self.optimizer)
    clip = config.optim.grad_clip
    grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip if clip > 0 else float('inf'))
    self.grad_scaler.step(self.optimizer)
    self.grad_scaler.update()
    self.ema.update(self.model)
    if hasattr(self.loss_fn, 'after_step'):   # a loss with per-step state (CD's target, curricula)
      self.loss_fn.after_step(self.model, self.step + 1)
    if self.posthoc_ema is not None:
      self.posthoc_ema.update(self.model)
    terms = torch.cat(terms)
    return (lr, terms.mean().item(), terms.var().item() if len(terms) > 1 else 0.0,
            grad_norm.item())

  def _to_model(self, x):
    """A batch of images in [0, 1] on the CPU -> model space on the device (channels-last
    when training.channels_last)."""
    x = self.scaler(x.to(self.ddp.device, non_blocking=True))
    if self.config.training.channels_last and x.dim() == 4:
      x = x.contiguous(memory_format=torch.channels_last)
    return x

  def _sync_gradients(self, last):
    """DDP's all-reduce of the gradients happens in the backward of the last micro-batch only."""
    if self.ddp.world_size == 1 or last:
      return contextlib.nullcontext()
    return self.wrapped.no_sync()

  def _nonfinite(self, lr, loss):
    """A step whose loss is not finite: skipped (no update, weights and EMA unchanged, counted
    in metrics as skipped_steps) with training.skip_nonfinite, else the run stops with one line;
    the weights never saw it, so the checkpoints on disk stay the last good ones."""
    if not self.config.training.skip_nonfinite:
      raise NonFiniteLoss(
          f"the loss of step {self.step + 1} is {loss.item()}; nothing of that step was applied "
          f"and the newest checkpoint is step {self.saved_step}. Lower optim.lr or set "
          f"optim.grad_clip, or set training.skip_nonfinite=True to skip such steps")
    self.skipped_steps += 1
    return lr, float('nan'), float('nan'), float('nan')

  def _log(self, record):
    if not self.ddp.is_main:
      return
    with open(layout.metrics_path(self.workdir), 'a') as f:
      f.write(json.dumps(record) + '\n')
    for key in ('loss', 'loss_variance', 'lr', 'grad_norm', 'bound_bpd', 'skipped_steps'):
      if key in record:
        self.writer.add_scalar(f'train/{key}', record[key], record['step'])

  def held_out_bound(self):
    """Mean bits/dim of the score-matching bound (evaluation/score_bound.py) of the EMA weights
    on the first training.bound_images test images, training.bound_times draws each, the same
    draws every time (so the curve moves only with the weights), at t >= training.eps."""
    config = self.config
    generator = torch.Generator(self.ddp.device).manual_seed(config.seed)
    with self.ema_weights(), torch.no_grad():
      score_fn = score_and_variance_fns(config, self.sde, self.model)[0]
      bpd = bound_bpd(score_fn, self.sde, self.held_out.to(self.ddp.device), config.data.num_bins,
                      self.scaler, config.training.eps, config.training.bound_times, generator)
    return bpd.mean().item()

  @contextlib.contextmanager
  def ema_weights(self):
    """The model in eval mode with the EMA weights inside the block, its own weights after."""
    self.ema.store(self.model)
    self.ema.copy_to(self.model)
    self.model.eval()
    try:
      yield
    finally:
      self.model.train()
      self.ema.restore(self.model)

  def _snapshot(self):
    """Checkpoint, then a picture of EMA samples at <workdir>/samples/<step>.png (rank 0 only)."""
    if self.ddp.is_main:
      self._save_last_step()
      if self.config.training.snapshot_sampling:
        self._save_samples()
    self.ddp.barrier()

  def _posthoc_snapshot(self):
    """The tracked power-function EMAs at <workdir>/posthoc_ema/snapshot_<step>.pt (rank 0)."""
    if self.ddp.is_main:
      state = {'step': self.step, **self.posthoc_ema.state_dict()}
      atomic_write(layout.posthoc_snapshot_path(self.workdir, self.step),
                   lambda f: torch.save(state, f))

  def _save_samples(self):
    config = self.config
    with self.ema_weights():
      samples, _ = draw_samples(self.draw, config.training.snapshot_samples,
                                config.sampling.batch_size, config.seed, self.ddp.device,
                                progress=False)
    reference = bound = None
    labels = class_labels(config, self.snapshot_sampling)
    if samples.dim() == 2:
      reference = torch.stack([self.dataset[i][0] for i in range(min(2000, len(self.dataset)))])
      bound = 1.2 * reference.abs().max().item()
    if labels is not None and samples.dim() == 4:
      picture = class_picture(samples, sample_classes(labels, 0, len(samples)))
    else:
      picture = sample_picture(samples, reference, bound)
    save_image(picture, layout.snapshot_path(self.workdir, self.step))
    self.writer.add_image('samples', picture, self.step)


def train(config, workdir, progress=True, allow_model_override=False, given=()):
  """Train (or resume) in `workdir`, which no other process may write meanwhile
  (utils/run_lock.py); returns the final step. `given`: the config fields the command line
  set (data.fit_to_data refuses rather than corrects those)."""
  for note in fit_to_data(config, given):   # before the lock creates the workdir
    tqdm.write(f"note: {note}")
  with RunLock(workdir, 'train', Distributed(config.device)):
    return Trainer(config, workdir, progress, allow_model_override).run()
