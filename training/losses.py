"""Denoising score matching losses (Song et al. 2021 eq. 7; Ho et al. 2020 eq. 14; SMLD).

Every objective here is one mechanism: draw a time, perturb x_0 to x_t = m x_0 + s z, and
penalize  w * || s * score(x_t, t) + z ||^2,  i.e. lambda(t) ||score - grad log p_{0t}||^2
with lambda = s^2 (w = 1) or, with likelihood weighting, lambda = g(t)^2 (w = g^2 / s^2), or
w of training.loss_weighting: 'v' (||v_hat - v||^2, Salimans & Ho 2022) or 'min_snr' (Hang et
al. 2023). EDM's loss (training.loss 'edm', training/edm_loss.py) is the same with ln sigma ~
N(P_mean, P_std^2) and w = lambda(sigma) sigma^2 on ||eps_hat - eps||^2.
What differs is only where the time comes from:
  - continuous: t ~ U[eps, T], (m, s) = marginal_coeffs(t)           (Song et al. 2021)
  - likelihood-weighted with training.importance_sampling: t ~ p(t) proportional to g^2 / s^2 and
    w = Z / (T - eps), the same expectation at a far lower variance   (Song et al. 2021b, sec. 5)
  - a chain step i ~ U{0..N-1}, (m, s) = sde.chain_coeffs(i): on the VP-SDE the DDPM chain
    (sqrt(abar_i), sqrt(1 - abar_i)), where for an eps-network s * score = -eps_theta and the
    penalty is ||eps - eps_theta||^2 (L_simple); on the VE-SDE SMLD's (1, sigma_i) (Song & Ermon 2019)
A network that learns its reverse variance (model.learn_variance) is trained on the DDPM chain's
bound as well (`ChainBoundLoss`): L_hybrid = L_simple + lambda L_vlb, or L_vlb alone.
A class-conditional network (model.class_conditional) sees each sample's class, replaced by the
null label with probability model.label_dropout (Ho & Salimans 2021, Algorithm 1), so it learns
the conditional and the unconditional score at once.
"""
import math
from typing import NamedTuple

import torch

from data import data_range
from evaluation.vlb import chain_terms, model_variances
from models import get_eps_fn, get_score_fn, parameterization_of
from sde_lib import batch_broadcast
from sde_lib.likelihood_time import LikelihoodTime
from training.edm_loss import EDMLoss
from training.flow_matching_loss import flow_matching_per_sample, flow_matching_times
from utils.errors import ConfigError

HISTORY = 10            # L_vlb importance sampling: the last losses kept per step (N & D 2021)
UNIFORM_SHARE = 0.001   # ... and the probability mass spread uniformly over all steps


class BatchRows(NamedTuple):
  """A part of a step's global batch: the positions of its samples in it, and its size."""
  index: torch.Tensor   # long, [n]
  total: int


def drawn(rows, n, draw):
  """draw(m) (a tensor, or a tuple of tensors, with m rows) for the n samples of a batch: with
  `rows`, drawn for the whole global batch and cut to its rows, so that a sample's randomness
  depends on its position in the global batch alone, not on how the batch is split over
  processes and micro-batches; without, draw(n)."""
  if rows is None:
    return draw(n)
  whole = draw(rows.total)
  cut = lambda a: a[rows.index.to(a.device)]
  return tuple(map(cut, whole)) if isinstance(whole, tuple) else cut(whole)


def continuous_times(sde, n, eps, device, generator=None):
  """t ~ U[eps, T] and its marginal coefficients (m(t), s(t))."""
  t = eps + (sde.T - eps) * torch.rand(n, device=device, generator=generator)
  mean_coeff, std = sde.marginal_coeffs(t)
  return t, mean_coeff, std


def chain_step_times(sde, n, eps, device, generator=None):
  """A uniform chain step i in {0..N-1}, its time t_i = sde.chain_time(i) and the chain's
  (m_i, s_i): DDPM's (sqrt(abar_i), sqrt(1 - abar_i)) on the VP-SDE, SMLD's (1, sigma_i) on the VE."""
  index = torch.randint(sde.N, (n,), device=device, generator=generator)
  dtype = torch.get_default_dtype()
  mean_coeff, std = (c.to(dtype) for c in sde.chain_coeffs(index))
  return sde.chain_time(index).to(dtype), mean_coeff, std


def likelihood_times(sde, eps):
  """A times function like `continuous_times` drawing t ~ p(t) proportional to g^2 / s^2
  (LikelihoodTime), and the constant weight Z / (T - eps) that keeps the loss's expectation."""
  sampler = LikelihoodTime(sde, eps)

  def times(sde, n, eps, device, generator=None):
    t = sampler.sample(n, device, generator)
    return (t, *sde.marginal_coeffs(t))

  return times, sampler.weight


def dsm_per_sample(score_fn, x0, t, mean_coeff, std, z, weight, reduce_mean):
  """weight * ||std * score(x_t, t) + z||^2 per sample, x_t = mean_coeff x0 + std z.

  The sum (or mean, `reduce_mean`) runs over all non-batch dimensions.
  """
  x_t = batch_broadcast(mean_coeff, x0) * x0 + batch_broadcast(std, x0) * z
  residual = batch_broadcast(std, x0) * score_fn(x_t, t) + z
  sq = residual.square().flatten(1)
  per_sample = sq.mean(1) if reduce_mean else sq.sum(1)
  return weight * per_sample


def v_weight(mean_coeff, std, gamma=None):
  """(SNR + 1) / SNR = 1 + s^2 / m^2, SNR = m^2 / s^2: ||eps_hat - eps||^2 times it is
  ||v_hat - v||^2 (Salimans & Ho 2022; models.parameterizations.VPrediction)."""
  return 1 + (std / mean_coeff) ** 2


def min_snr_weight(mean_coeff, std, gamma):
  """min(SNR, gamma) / SNR, SNR = m^2 / s^2: min-SNR-gamma (Hang et al. 2023, sec. 3.4), the
  weight min(SNR, gamma) of ||x0_hat - x_0||^2 written for ||eps_hat - eps||^2."""
  snr = (mean_coeff / std) ** 2
  return snr.clamp(max=gamma) / snr


# training.loss_weighting -> the weight of ||eps_hat - eps||^2 from (m, s, training.min_snr_gamma)
NOISE_WEIGHTINGS = {'none': lambda mean_coeff, std, gamma: torch.ones_like(std),
                    'v': v_weight, 'min_snr': min_snr_weight}


def drop_labels(classes, p, null, generator=None, rows=None):
  """classes ([n]) with each entry replaced by the `null` label with probability p."""
  u = drawn(rows, len(classes), lambda m: torch.rand(m, device=classes.device, generator=generator))
  return classes.masked_fill(u < p, null)


def training_classes(config, classes, x0, generator=None, rows=None):
  """The classes a class-conditional model is trained on: the batch's, through drop_labels with
  model.label_dropout and the null label data.num_classes. None for an unconditional model,
  which ignores `classes` (and draws nothing, so its random stream is as before)."""
  if not config.model.class_conditional:
    return None
  if classes is None:
    raise ValueError("a class-conditional model (model.class_conditional) is trained on the "
                     "batch's classes: pass them to the loss")
  return drop_labels(classes.to(x0.device), config.model.label_dropout, config.data.num_classes,
                     generator, rows)


def _time_sampler(config):
  """(times function, continuous flag) for config.training.loss."""
  train = config.training
  if train.loss == 'dsm':
    return (continuous_times, True) if train.continuous else (chain_step_times, False)
  if train.loss in ('ddpm', 'vlb'):
    if config.sde.name != 'vpsde' or train.continuous:
      raise ConfigError(f"training.loss={train.loss!r} walks the VP-SDE's DDPM chain: "
                       "set sde.name='vpsde' and training.continuous=False")
    return chain_step_times, False
  raise ConfigError(f"unknown training.loss {train.loss!r}; choose 'dsm', 'ddpm', 'vlb', "
                    "'flow_matching', 'edm', a consistency model's 'cd', 'ict', 'ect' or "
                    "reflow's 'reflow', 'reflow_distill'")


def get_loss_fn(config, sde):
  """loss_fn(model, x0, generator=None, classes=None, rows=None) -> the configured DSM loss of
  each sample ([batch]; the training loss is their mean, their variance that of the estimate).

  x0 is a batch in model space (already scaled); classes its labels ([batch] longs), used by a
  class-conditional model only (training_classes); rows (BatchRows) the part of a global batch
  it is, whose randomness is drawn for the whole batch (see `drawn`).
  """
  if config.training.loss == 'flow_matching':
    return flow_matching_loss_fn(config, sde)
  parameterization_of(config)   # an unknown or unusable parameterization stops here, not at step 1
  if config.training.loss == 'edm':
    return edm_loss_fn(config, sde)
  if config.training.loss_weighting not in NOISE_WEIGHTINGS:
    raise ConfigError(f"unknown training.loss_weighting {config.training.loss_weighting!r}; "
                      f"choose one of {sorted(NOISE_WEIGHTINGS)}")
  if config.training.loss_weighting != 'none' and config.training.likelihood_weighting:
    raise ConfigError("training.loss_weighting and training.likelihood_weighting are two weightings "
                      "of the same loss: set one of them")
  times, continuous = _time_sampler(config)
  train = config.training
  if not 0 <= config.model.label_dropout <= 1:
    raise ConfigError(f"model.label_dropout is a probability, got {config.model.label_dropout}")
  if config.model.learn_variance or train.loss == 'vlb':
    return ChainBoundLoss(config, sde)
  if train.likelihood_weighting and not continuous:
    raise ConfigError("likelihood_weighting weights by g(t)^2 and needs training.continuous=True")
  if train.importance_sampling and not train.likelihood_weighting:
    raise ConfigError("training.importance_sampling draws t by the likelihood weighting g^2 / s^2:"
                      " set training.likelihood_weighting=True")
  if train.importance_sampling:
    times, importance_weight = likelihood_times(sde, train.eps)

  def loss_fn(model, x0, generator=None, classes=None, rows=None):
    score_fn = get_score_fn(sde, model, continuous, parameterization_of(config))
    n, shape = x0.shape[0], x0.shape[1:]
    t, mean_coeff, std = drawn(rows, n, lambda m: times(sde, m, train.eps, x0.device, generator))
    z = drawn(rows, n, lambda m: torch.randn((m, *shape), device=x0.device, generator=generator))
    classes = training_classes(config, classes, x0, generator, rows)
    if train.importance_sampling:
      weight = torch.full_like(std, importance_weight)
    elif train.likelihood_weighting:
      weight = sde.likelihood_weight(t)
    else:
      weight = NOISE_WEIGHTINGS[train.loss_weighting](mean_coeff, std, train.min_snr_gamma)
    return dsm_per_sample(lambda x, t: score_fn(x, t, classes), x0, t, mean_coeff, std, z,
                          weight, train.reduce_mean)

  return loss_fn


def edm_loss_fn(config, sde):
  """loss_fn as get_loss_fn's for training.loss 'edm': EDM's lambda(sigma) ||D - y||^2 with
  ln sigma ~ N(training.p_mean, training.p_std^2) and model.sigma_data (training/edm_loss.py)."""
  train = config.training
  if not train.continuous or config.model.learn_variance or train.likelihood_weighting:
    raise ConfigError("training.loss='edm' draws continuous noise levels and weights them itself: "
                      "set training.continuous=True, model.learn_variance=False and "
                      "training.likelihood_weighting=False")
  if train.loss_weighting != 'none':
    raise ConfigError("training.loss='edm' has its own weighting lambda(sigma): set "
                      "training.loss_weighting='none'")
  edm = EDMLoss(sde, parameterization_of(config), train.p_mean, train.p_std,
                config.model.sigma_data, train.reduce_mean)

  def loss_fn(model, x0, generator=None, classes=None, rows=None):
    n, shape = x0.shape[0], x0.shape[1:]
    sigma = drawn(rows, n, lambda m: edm.sample_sigma(m, x0.device, generator))
    z = drawn(rows, n, lambda m: torch.randn((m, *shape), device=x0.device, generator=generator))
    return edm(model, x0, sigma, z, training_classes(config, classes, x0, generator, rows))

  return loss_fn


def flow_matching_loss_fn(config, sde):
  """loss_fn as get_loss_fn's for training.loss 'flow_matching': velocity regression at t ~
  U[training.eps, T] (training/flow_matching_loss.py), for continuous-time networks."""
  train = config.training
  if not train.continuous or config.model.learn_variance:
    raise ConfigError("training.loss='flow_matching' regresses the velocity at continuous t: set "
                      "training.continuous=True and model.learn_variance=False")

  def loss_fn(model, x0, generator=None, classes=None, rows=None):
    eps_fn = get_eps_fn(sde, model, True, parameterization_of(config))
    n, shape = x0.shape[0], x0.shape[1:]
    t = drawn(rows, n, lambda m: flow_matching_times(sde, m, train.eps, x0.device, generator))
    z = drawn(rows, n, lambda m: torch.randn((m, *shape), device=x0.device, generator=generator))
    classes = training_classes(config, classes, x0, generator, rows)
    return flow_matching_per_sample(lambda x, t: eps_fn(x, t, classes)[0], sde, x0, z, t,
                                    train.reduce_mean)

  return loss_fn


class StepImportance:
  """Chain steps drawn with p_t proportional to sqrt(E[L_t^2]) over the last HISTORY losses of
  each step, mixed with UNIFORM_SHARE of the uniform, and uniform until every step has them
  (Nichol & Dhariwal 2021, sec. 3.3). Its history is part of the training state."""

  def __init__(self, num_steps):
    self.history = torch.zeros(num_steps, HISTORY, dtype=torch.float64)
    self.count = torch.zeros(num_steps, dtype=torch.long)

  def probabilities(self):
    n = len(self.count)
    if (self.count < HISTORY).any():
      return torch.full((n,), 1.0 / n, dtype=torch.float64)
    weights = self.history.square().mean(1).sqrt()
    return (1 - UNIFORM_SHARE) * weights / weights.sum() + UNIFORM_SHARE / n

  def update(self, index, losses):
    for i, loss in zip(index.tolist(), losses.detach().double().cpu().tolist()):
      self.history[i] = torch.cat([self.history[i, 1:], torch.tensor([loss], dtype=torch.float64)])
      self.count[i] = min(self.count[i] + 1, HISTORY)

  def state_dict(self):
    return {'history': self.history.clone(), 'count': self.count.clone()}

  def load_state_dict(self, state):
    self.history, self.count = state['history'].double(), state['count'].long()


class ChainBoundLoss:
  """L_hybrid = L_simple + lambda N L_i (training.loss 'ddpm', lambda = training.vlb_weight;
  N L_i estimates L_vlb for a uniform step i; the mean's gradient is stopped inside L_i so the
  bound trains only the variance) or L_vlb alone ('vlb': L_i / (N p_i), steps by importance when
  training.vlb_importance), on the VP-SDE's DDPM chain (Nichol & Dhariwal 2021, sec. 3.1-3.3).
  L_i is the bound's term at step i (evaluation.vlb.chain_terms: the decoder at i = 0) with the
  network's learned variance, in bits, reduced over dimensions like L_simple
  (training.reduce_mean)."""

  def __init__(self, config, sde):
    _time_sampler(config)   # validates the chain
    train, m = config.training, config.model
    if not m.learn_variance:
      raise ConfigError("training.loss='vlb' trains a learned reverse variance: set "
                        "model.learn_variance=True")
    if config.data.dataset == 'toy2d':
      raise ConfigError("a learned reverse variance is trained on the DDPM bound, whose "
                        "discretized decoder needs quantized image data (not toy2d)")
    self.config = config
    self.sde, self.reduce_mean, self.hybrid = sde, train.reduce_mean, train.loss == 'ddpm'
    self.weight = train.vlb_weight * sde.N
    self.num_bins = config.data.num_bins
    self.data_range = data_range(config)
    self.importance = (StepImportance(sde.N) if train.loss == 'vlb' and train.vlb_importance
                       else None)

  def state_dict(self):
    return {} if self.importance is None else self.importance.state_dict()

  def load_state_dict(self, state):
    if self.importance is not None and state:
      self.importance.load_state_dict(state)

  def __call__(self, model, x0, generator=None, classes=None, rows=None):
    sde, n, shape = self.sde, x0.shape[0], x0.shape[1:]
    probs = (self.importance.probabilities() if self.importance is not None
             else torch.full((sde.N,), 1.0 / sde.N, dtype=torch.float64))
    cpu_generator = generator if generator is not None and generator.device.type == 'cpu' else None
    index = drawn(rows, n, lambda m: torch.multinomial(probs, m, replacement=True,
                                                       generator=cpu_generator)).to(x0.device)
    mean_coeff, std = (c.to(x0.dtype) for c in sde.chain_coeffs(index))
    z = drawn(rows, n, lambda m: torch.randn((m, *shape), device=x0.device, generator=generator))
    classes = training_classes(self.config, classes, x0, generator, rows)
    x_t = batch_broadcast(mean_coeff, x0) * x0 + batch_broadcast(std, x0) * z
    eps, v, _ = get_eps_fn(sde, model, continuous=False)(x_t, sde.chain_time(index).to(x0.dtype),
                                                         classes)
    reduce = lambda a: a.flatten(1).mean(1) if self.reduce_mean else a.flatten(1).sum(1)
    chain = sde.chain_arrays
    model_var = model_variances(chain, index, 'learned', x0, v=v)
    terms = chain_terms(chain, index, x0, x_t, eps.detach() if self.hybrid else eps, model_var,
                        self.num_bins, self.data_range)
    bits = reduce(terms) / math.log(2)
    if self.hybrid:
      return reduce((z - eps).square()) + self.weight * bits
    if self.importance is not None:
      self.importance.update(index, bits)
    return bits / (sde.N * batch_broadcast(probs.to(x0.device)[index], bits))
