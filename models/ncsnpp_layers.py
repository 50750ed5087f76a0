"""Building blocks of DDPM++ / NCSN++ (Song et al. 2021, Appendix H), with score_sde's
parameter names (GroupNorm_0, Conv_0, Dense_0, NIN_0, ...) so its state dicts load as they are.

Every residual sum is (x + h) / sqrt(2) with `skip_rescale`, else x + h. GroupNorm uses
min(C / 4, 32) groups and eps 1e-6; layers start from Ho et al.'s variance-scaling init, the
last layer of each residual branch at scale `init_scale` (0 -> 1e-10).
"""
import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from models import fir
from models.layers import default_init_, linear, variance_scaling_


def conv2d(in_ch, out_ch, kernel_size, stride=1, padding=None, init_scale=1.0):
  return default_init_(nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride,
                                 padding=kernel_size // 2 if padding is None else padding),
                       init_scale)


def group_norm(channels):
  return nn.GroupNorm(min(channels // 4, 32), channels, eps=1e-6)


def residual_sum(x, h, skip_rescale):
  return (x + h) / math.sqrt(2.0) if skip_rescale else x + h


class GaussianFourierProjection(nn.Module):
  """[sin(2 pi W s), cos(2 pi W s)] with fixed W ~ N(0, scale^2) (Tancik et al. 2020); s is
  log sigma for NCSN++."""

  def __init__(self, embedding_size, scale=1.0):
    super().__init__()
    self.W = nn.Parameter(torch.randn(embedding_size) * scale, requires_grad=False)

  def forward(self, s):
    angles = s[:, None] * self.W[None, :] * 2 * math.pi
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class NIN(nn.Module):
  """A per-pixel linear map of the channels: y = x W + b, W of shape [in, out]."""

  def __init__(self, in_dim, out_dim, init_scale=0.1):
    super().__init__()
    self.W = nn.Parameter(variance_scaling_(torch.empty(in_dim, out_dim), init_scale))
    self.b = nn.Parameter(torch.zeros(out_dim))

  def forward(self, x):
    return torch.einsum('bchw,co->bohw', x, self.W) + self.b[:, None, None]


class AttnBlock(nn.Module):
  """x + NIN_3(softmax(q^T k / sqrt(C)) v), q, k, v = NIN_0..2(GN(x)), one head over H*W."""

  def __init__(self, channels, skip_rescale=False, init_scale=0.0):
    super().__init__()
    self.GroupNorm_0 = group_norm(channels)
    self.NIN_0 = NIN(channels, channels)
    self.NIN_1 = NIN(channels, channels)
    self.NIN_2 = NIN(channels, channels)
    self.NIN_3 = NIN(channels, channels, init_scale=init_scale)
    self.skip_rescale = skip_rescale

  def forward(self, x):
    B, C, H, W = x.shape
    h = self.GroupNorm_0(x)
    q, k, v = (nin(h).reshape(B, C, H * W) for nin in (self.NIN_0, self.NIN_1, self.NIN_2))
    weights = torch.softmax(torch.einsum('bci,bcj->bij', q, k) * C ** -0.5, dim=-1)
    h = torch.einsum('bij,bcj->bci', weights, v).reshape(B, C, H, W)
    return residual_sum(x, self.NIN_3(h), self.skip_rescale)


class Combine(nn.Module):
  """Merge the input pyramid into the features: 1x1 conv of x, then sum or concatenate."""

  def __init__(self, dim1, dim2, method='cat'):
    super().__init__()
    self.Conv = conv2d(dim1, dim2, 1)
    self.method = method

  def forward(self, x, y):
    h = self.Conv(x)
    return torch.cat([h, y], dim=1) if self.method == 'cat' else h + y


class FIRConv2d(nn.Module):
  """A 3x3 convolution fused with FIR up- or downsampling (StyleGAN2)."""

  def __init__(self, in_ch, out_ch, kernel, direction):
    super().__init__()
    self.weight = nn.Parameter(variance_scaling_(torch.empty(out_ch, in_ch, 3, 3)))
    self.bias = nn.Parameter(torch.zeros(out_ch))
    self.kernel, self.direction = tuple(kernel), direction

  def forward(self, x):
    resample = fir.upsample_conv_2d if self.direction == 'up' else fir.conv_downsample_2d
    return resample(x, self.weight, self.kernel) + self.bias[:, None, None]


class Upsample(nn.Module):
  """Double H and W: nearest + optional 3x3 conv, or FIR (+ optional fused conv)."""

  def __init__(self, in_ch, out_ch=None, with_conv=False, fir_kernel=None):
    super().__init__()
    out_ch = out_ch or in_ch
    self.fir_kernel, self.with_conv = fir_kernel, with_conv
    if with_conv and fir_kernel:
      self.Conv2d_0 = FIRConv2d(in_ch, out_ch, fir_kernel, 'up')
    elif with_conv:
      self.Conv_0 = conv2d(in_ch, out_ch, 3)

  def forward(self, x):
    if self.fir_kernel:
      return self.Conv2d_0(x) if self.with_conv else fir.upsample_2d(x, self.fir_kernel)
    h = fir.naive_upsample_2d(x)
    return self.Conv_0(h) if self.with_conv else h


class Downsample(nn.Module):
  """Halve H and W: stride-2 3x3 conv (padded right/bottom) or 2x2 mean, or FIR (+ fused conv)."""

  def __init__(self, in_ch, out_ch=None, with_conv=False, fir_kernel=None):
    super().__init__()
    out_ch = out_ch or in_ch
    self.fir_kernel, self.with_conv = fir_kernel, with_conv
    if with_conv and fir_kernel:
      self.Conv2d_0 = FIRConv2d(in_ch, out_ch, fir_kernel, 'down')
    elif with_conv:
      self.Conv_0 = conv2d(in_ch, out_ch, 3, stride=2, padding=0)

  def forward(self, x):
    if self.fir_kernel:
      return self.Conv2d_0(x) if self.with_conv else fir.downsample_2d(x, self.fir_kernel)
    if self.with_conv:
      return self.Conv_0(F.pad(x, (0, 1, 0, 1)))
    return fir.naive_downsample_2d(x)


class ResnetBlockDDPM(nn.Module):
  """DDPM++'s block: residual_sum(skip(x), Conv_1(drop(act(GN(Conv_0(act(GN(x))) + Dense(act(temb))))))),
  skip a NIN (1x1) when the channel count changes."""

  def __init__(self, act, in_ch, out_ch=None, temb_dim=None, dropout=0.1, skip_rescale=False,
               init_scale=0.0):
    super().__init__()
    out_ch = out_ch or in_ch
    self.GroupNorm_0 = group_norm(in_ch)
    self.Conv_0 = conv2d(in_ch, out_ch, 3)
    if temb_dim is not None:
      self.Dense_0 = linear(temb_dim, out_ch)
    self.GroupNorm_1 = group_norm(out_ch)
    self.Dropout_0 = nn.Dropout(dropout)
    self.Conv_1 = conv2d(out_ch, out_ch, 3, init_scale=init_scale)
    if in_ch != out_ch:
      self.NIN_0 = NIN(in_ch, out_ch)
    self.act, self.skip_rescale = act, skip_rescale

  def forward(self, x, temb=None):
    h = self.Conv_0(self.act(self.GroupNorm_0(x)))
    if temb is not None:
      h = h + self.Dense_0(self.act(temb))[:, :, None, None]
    h = self.Conv_1(self.Dropout_0(self.act(self.GroupNorm_1(h))))
    skip = self.NIN_0(x) if hasattr(self, 'NIN_0') else x
    return residual_sum(skip, h, self.skip_rescale)


class ResnetBlockBigGAN(nn.Module):
  """BigGAN-type block (Brock et al. 2019): the same residual branch, resampling (FIR or
  naive) both branches after the first activation when up or down; skip a 1x1 conv when the
  channel count or the resolution changes."""

  def __init__(self, act, in_ch, out_ch=None, temb_dim=None, up=False, down=False, dropout=0.1,
               fir_kernel=None, skip_rescale=True, init_scale=0.0):
    super().__init__()
    out_ch = out_ch or in_ch
    self.GroupNorm_0 = group_norm(in_ch)
    self.Conv_0 = conv2d(in_ch, out_ch, 3)
    if temb_dim is not None:
      self.Dense_0 = linear(temb_dim, out_ch)
    self.GroupNorm_1 = group_norm(out_ch)
    self.Dropout_0 = nn.Dropout(dropout)
    self.Conv_1 = conv2d(out_ch, out_ch, 3, init_scale=init_scale)
    if in_ch != out_ch or up or down:
      self.Conv_2 = conv2d(in_ch, out_ch, 1)
    self.act, self.skip_rescale = act, skip_rescale
    self.resample = None
    if up:
      self.resample = (partial(fir.upsample_2d, kernel=fir_kernel) if fir_kernel
                       else fir.naive_upsample_2d)
    elif down:
      self.resample = (partial(fir.downsample_2d, kernel=fir_kernel) if fir_kernel
                       else fir.naive_downsample_2d)

  def forward(self, x, temb=None):
    h = self.act(self.GroupNorm_0(x))
    if self.resample is not None:
      h, x = self.resample(h), self.resample(x)
    h = self.Conv_0(h)
    if temb is not None:
      h = h + self.Dense_0(self.act(temb))[:, :, None, None]
    h = self.Conv_1(self.Dropout_0(self.act(self.GroupNorm_1(h))))
    skip = self.Conv_2(x) if hasattr(self, 'Conv_2') else x
    return residual_sum(skip, h, self.skip_rescale)
