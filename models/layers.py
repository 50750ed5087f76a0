"""Building blocks of Ho et al.'s (2020) U-Net, following their diffusion_tf `nn.py`/`unet.py`:
the sinusoidal timestep embedding, ResNet blocks with a time projection, single-head
self-attention, and strided-conv / nearest-neighbour resampling."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import ConfigError


def variance_scaling_(tensor, scale=1.0):
  """Ho et al.'s init: variance scaling (fan_avg, uniform), i.e. Xavier-uniform with gain
  sqrt(scale). A scale of 0 means 1e-10 (a near-zero residual branch)."""
  return nn.init.xavier_uniform_(tensor, gain=math.sqrt(scale or 1e-10))


def default_init_(layer, scale=1.0):
  """variance_scaling_ of the weight, zero bias."""
  variance_scaling_(layer.weight, scale)
  nn.init.zeros_(layer.bias)
  return layer


def conv3x3(in_ch, out_ch, init_scale=1.0):
  return default_init_(nn.Conv2d(in_ch, out_ch, 3, padding=1), init_scale)


def linear(in_features, out_features, init_scale=1.0):
  return default_init_(nn.Linear(in_features, out_features), init_scale)


def group_norm(channels, num_groups=32):
  """GroupNorm with min(num_groups, channels) groups, which must divide `channels`."""
  groups = min(num_groups, channels)
  if channels % groups:
    raise ConfigError(f"GroupNorm: {groups} groups do not divide {channels} channels; "
                     f"choose num_groups dividing every channel count of the network")
  return nn.GroupNorm(groups, channels, eps=1e-6)


def check_labels(x, labels):
  """Networks take one label (time or chain step) per sample."""
  if labels.shape != (x.shape[0],):
    raise ValueError(f"labels must have shape [batch] = [{x.shape[0]}], "
                     f"got {tuple(labels.shape)}")


class ClassEmbedding(nn.Embedding):
  """e(y) for a class y in 0..K-1 or the null label y = K, added to the time embedding that
  every ResNet block receives (Ho & Salimans 2021; Dhariwal & Nichol 2021). The null label is
  the unconditional model of classifier-free guidance."""

  def __init__(self, num_classes, dim):
    super().__init__(num_classes + 1, dim)
    self.num_classes = num_classes
    # N(0, 1) rows (nn.Embedding's own init, as guided-diffusion's label embedding): of the
    # time embedding's scale from the start. Zero rows learned too slowly to be used: after
    # 3,000 digits steps they had norm 0.25 and changed the output by 0.07%.

  def forward(self, classes, batch):
    """e(classes) of shape [batch, dim]; classes None means the null label for every sample."""
    if classes is None:
      classes = torch.full((batch,), self.num_classes, dtype=torch.long,
                           device=self.weight.device)
    if classes.shape != (batch,) or classes.dtype != torch.long:
      raise ValueError(f"classes must be a LongTensor of shape [batch] = [{batch}], got "
                       f"{classes.dtype} of shape {tuple(classes.shape)}")
    if len(classes) and (classes.min() < 0 or classes.max() > self.num_classes):
      raise ValueError(f"classes must lie in 0..{self.num_classes} ({self.num_classes}: the "
                       f"null label), got {classes.min().item()}..{classes.max().item()}")
    return super().forward(classes)


def class_embedding(num_classes, dim):
  """A ClassEmbedding for num_classes = K > 0; None for an unconditional network (no
  parameters, so its state dict is the same as before class conditioning existed)."""
  if num_classes < 0:
    raise ConfigError(f"num_classes must be 0 (unconditional) or a class count, got {num_classes}")
  return ClassEmbedding(num_classes, dim) if num_classes else None


def add_class_embedding(embedding, temb, classes):
  """temb + e(classes); an unconditional network (embedding None) takes no classes."""
  if embedding is None:
    if classes is not None:
      raise ValueError("this network is unconditional (num_classes=0): it takes no classes")
    return temb
  return temb + embedding(classes, temb.shape[0]).to(temb.dtype)


class SinusoidalEmbedding(nn.Module):
  """emb(t)_i = sin(t w_i) for i < d/2 and cos(t w_{i - d/2}) after, with
  w_i = 10000^(-i / (d/2 - 1)) (Vaswani et al. 2017; Ho et al. 2020's timestep embedding)."""

  def __init__(self, dim, max_period=10_000.0):
    super().__init__()
    if dim % 2 or dim < 4:
      raise ConfigError(f"the sinusoidal embedding needs an even dim >= 4, got {dim}")
    self.dim = dim
    self.max_period = max_period

  def forward(self, labels):
    half = self.dim // 2
    freqs = torch.exp(-math.log(self.max_period) / (half - 1) *
                      torch.arange(half, dtype=torch.float32, device=labels.device))
    angles = labels.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class ResnetBlock(nn.Module):
  """x + conv(drop(SiLU(GN(conv(SiLU(GN(x))) + W temb)))), with a 1x1 conv on x when the
  channel count changes. The last conv starts near zero, so the block starts near identity."""

  def __init__(self, in_ch, out_ch, temb_dim, dropout=0.0, num_groups=32):
    super().__init__()
    self.norm1 = group_norm(in_ch, num_groups)
    self.conv1 = conv3x3(in_ch, out_ch)
    self.temb_proj = linear(temb_dim, out_ch)
    self.norm2 = group_norm(out_ch, num_groups)
    self.dropout = nn.Dropout(dropout)
    self.conv2 = conv3x3(out_ch, out_ch, init_scale=0.0)
    self.shortcut = (default_init_(nn.Conv2d(in_ch, out_ch, 1)) if in_ch != out_ch
                     else nn.Identity())

  def forward(self, x, temb):
    h = self.conv1(F.silu(self.norm1(x)))
    h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
    h = self.conv2(self.dropout(F.silu(self.norm2(h))))
    return self.shortcut(x) + h


class AttnBlock(nn.Module):
  """x + proj(softmax(q k^T / sqrt(C)) v) over the H*W positions; one head, q, k, v = linear
  maps of GN(x) per position."""

  def __init__(self, channels, num_groups=32):
    super().__init__()
    self.norm = group_norm(channels, num_groups)
    self.q, self.k, self.v = (linear(channels, channels) for _ in range(3))
    self.proj_out = linear(channels, channels, init_scale=0.0)

  def forward(self, x):
    B, C, H, W = x.shape
    h = self.norm(x).reshape(B, C, H * W).transpose(1, 2)                 # [B, HW, C]
    h = F.scaled_dot_product_attention(self.q(h), self.k(h), self.v(h))   # scale 1/sqrt(C)
    return x + self.proj_out(h).transpose(1, 2).reshape(B, C, H, W)


class Downsample(nn.Module):
  """Halve H and W with a stride-2 3x3 conv, padded as TensorFlow's 'SAME' pads an even size
  (Ho et al.'s diffusion_tf): one zero row and column after the input, none before."""

  def __init__(self, channels):
    super().__init__()
    self.conv = default_init_(nn.Conv2d(channels, channels, 3, stride=2))

  def forward(self, x):
    return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
  """Double H and W by nearest-neighbour repetition, then a 3x3 conv."""

  def __init__(self, channels):
    super().__init__()
    self.conv = conv3x3(channels, channels)

  def forward(self, x):
    return self.conv(F.interpolate(x, scale_factor=2.0, mode='nearest'))
