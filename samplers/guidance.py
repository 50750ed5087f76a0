"""Guided scores: a class-conditional score turned into a plain score_fn(x, t), so every
sampler runs guidance without knowing about it.

`class_score_fn(x, t, classes)` is a conditional score; `classes` holds labels 0..K-1 or the null
label K (the unconditional score of a network trained with label dropout).

Classifier-free guidance (Ho & Salimans 2021, eq. 6, in the score):
    s_w(x, t, y) = (1 + w) s(x, t, y) - w s(x, t, null),
w = config.sampling.guidance_scale >= 0; w = 0 is the conditional score. The other common
convention (Dhariwal & Nichol; diffusers' `guidance_scale`) writes s = s_null + w' (s_y - s_null),
i.e. w' = 1 + w. Bayes' rule reads the guided score as that of p(x_t | y) p(y | x_t)^w, which is
not a diffused distribution for w > 0: samplers then solve the guided dynamics, not a density.

Classifier guidance (Dhariwal & Nichol 2021, sec. 4; Song et al. 2021, app. I.1):
    s(x, t) + c grad_x log p_phi(y | x_t, t),
c = config.sampling.classifier_scale; with c = 1 and the exact classifier it is the score of
p_t(x | y).
"""
import torch

from utils.errors import ConfigError


def check_scale(name, scale):
  """A guidance scale must be a finite number >= 0."""
  if not (scale >= 0 and scale != float('inf')):
    raise ConfigError(f"sampling.{name} must be a finite number >= 0, got {scale!r}")


def _per_row(t, n):
  return t.expand(n) if t.dim() == 0 else t


def classifier_free(class_score_fn, classes, null_class, scale):
  """score_fn(x, t) = (1 + w) s(x, t, y) - w s(x, t, null): for w > 0 both branches in one call
  of the network on a batch of 2B (so a sampler's count of evaluations stays that of the
  batch), for w = 0 the conditional branch alone."""
  check_scale('guidance_scale', scale)
  if scale == 0:
    return lambda x, t: class_score_fn(x, t, classes)
  null = torch.full_like(classes, null_class)

  def score_fn(x, t):
    t = _per_row(t, x.shape[0])
    both = class_score_fn(torch.cat([x, x]), torch.cat([t, t]), torch.cat([classes, null]))
    conditional, unconditional = both.chunk(2)
    return (1 + scale) * conditional - scale * unconditional

  return score_fn


def classifier_guided(score_fn, log_prob_fn, classes, scale):
  """score_fn(x, t) + c grad_x log p(y | x_t, t); log_prob_fn(x, t) -> [B, K] log-probabilities
  of every class (a time-dependent classifier's log-softmax). The gradient is taken by
  autograd, with gradients on inside (samplers run under torch.no_grad)."""
  check_scale('classifier_scale', scale)
  if scale == 0:
    return score_fn

  def guided(x, t):
    with torch.enable_grad():
      x_in = x.detach().requires_grad_(True)
      log_p = log_prob_fn(x_in, _per_row(t, x.shape[0]))
      chosen = log_p.gather(1, classes[:, None].to(log_p.device)).sum()
      grad, = torch.autograd.grad(chosen, x_in)
    return score_fn(x, t) + scale * grad.to(x.dtype)

  return guided
