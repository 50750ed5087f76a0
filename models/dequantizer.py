"""A conditional flow q(u | x) on the unit cube for variational dequantization (Ho et al. 2019,
Flow++, sec. 3.1; used by Song et al. 2021b): a quantized image x gets the continuous point
(k + u) / num_bins of its bins, with u drawn from q instead of U[0, 1)^D, and

    -log P(x) <= E_q[-log p(y) + log q(u | x)],   y = scaler((k + u) / num_bins),

which is tighter than uniform dequantization (log q = 0) the closer q is to p's shape inside
the bins. Here e, standard logistic per dimension, passes through an x-conditioned affine layer
and `num_layers` affine couplings with alternating checkerboard masks (Dinh et al. 2017), then
u = sigmoid(h):

    log q(u | x) = sum log sigmoid'(e) - sum log|dh/de| - sum log sigmoid'(h),

(the logistic density is sigmoid'). The layers start as the identity, where u = sigmoid(e) is
uniform and log q = 0: training starts from uniform dequantization.
"""
import torch
from torch import nn


def log_sigmoid_derivative(h):
  """sum over dimensions of log sigmoid'(h) = log sigmoid(h) + log sigmoid(-h), per image."""
  return (nn.functional.logsigmoid(h) + nn.functional.logsigmoid(-h)).flatten(1).sum(1)


def checkerboard(height, width, parity):
  """1 on the pixels with (i + j + parity) even, shape [1, 1, H, W]."""
  i, j = torch.meshgrid(torch.arange(height), torch.arange(width), indexing='ij')
  return ((i + j + parity) % 2 == 0).float()[None, None]


class Conditioner(nn.Module):
  """(log-scale, shift) of C channels from the masked flow state, the image and the mask."""

  def __init__(self, channels, hidden):
    super().__init__()
    self.net = nn.Sequential(
        nn.Conv2d(2 * channels + 1, hidden, 3, padding=1), nn.SiLU(),
        nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU(),
        nn.Conv2d(hidden, 2 * channels, 3, padding=1))
    nn.init.zeros_(self.net[-1].weight)   # each layer starts as the identity
    nn.init.zeros_(self.net[-1].bias)

  def forward(self, h, x, mask):
    log_scale, shift = self.net(torch.cat([h, x, mask.expand(len(x), 1, *x.shape[2:])], 1)).chunk(2, 1)
    return torch.tanh(log_scale), shift    # tanh bounds each layer's log-scale by 1


class DequantizationFlow(nn.Module):
  """q(u | x) for images x of shape [C, H, W] (x in the model's space)."""

  def __init__(self, channels, hidden=32, num_layers=4):
    super().__init__()
    self.first = Conditioner(channels, hidden)
    self.couplings = nn.ModuleList(Conditioner(channels, hidden) for _ in range(num_layers))

  def transform(self, e, x):
    """h(e; x) before the sigmoid and log|det dh/de| per image."""
    log_scale, shift = self.first(torch.zeros_like(x), x, torch.ones_like(x[:1, :1]))
    h, log_det = e * log_scale.exp() + shift, log_scale.flatten(1).sum(1)
    for k, coupling in enumerate(self.couplings):
      mask = checkerboard(*x.shape[2:], k % 2).to(x)
      log_scale, shift = coupling(h * mask, x, mask)
      log_scale, shift = log_scale * (1 - mask), shift * (1 - mask)
      h, log_det = h * log_scale.exp() + shift, log_det + log_scale.flatten(1).sum(1)
    return h, log_det

  def forward(self, x, generator=None):
    """(u in (0, 1)^D, log q(u | x) per image) for each image of x."""
    v = torch.rand(x.shape, device=x.device, dtype=x.dtype, generator=generator)
    e = torch.logit(v, eps=1e-6)   # clamped to +-13.8: the density misses ~1e-6 per dimension
    h, log_det = self.transform(e, x)
    return torch.sigmoid(h), log_sigmoid_derivative(e) - log_det - log_sigmoid_derivative(h)
