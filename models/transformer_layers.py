"""What DiT (models/dit.py) and U-ViT (models/uvit.py) share: images as sequences of patch
tokens and back, the 2-D sin-cos position embedding, the sinusoidal timestep features, and the
pre-norm ViT's attention and MLP (Dosovitskiy et al. 2021, as timm builds them).

Token order: token k = i * (W / p) + j holds the patch in row i, column j (row-major, as
Conv2d(p, stride p) followed by flatten(2) lays them out); inside a token the p * p * C numbers
are ordered (row in the patch, column in the patch, channel), as Peebles & Xie's and Bao et
al.'s `unpatchify` ('nhwpqc -> nchpwq') reads them.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import ConfigError


def patchify(x, patch_size):
  """(B, C, H, W) -> (B, (H/p)(W/p), p * p * C): the tokens the network's output is read from."""
  B, C, H, W = x.shape
  p = patch_size
  x = x.reshape(B, C, H // p, p, W // p, p)
  return torch.einsum('nchpwq->nhwpqc', x).reshape(B, (H // p) * (W // p), p * p * C)


def unpatchify(tokens, patch_size, channels):
  """(B, h * w, p * p * C) -> (B, C, h p, w p) for a square grid h = w: patchify's inverse."""
  B, T, _ = tokens.shape
  p, h = patch_size, math.isqrt(tokens.shape[1])
  if h * h != T or tokens.shape[2] != p * p * channels:
    raise ValueError(f"unpatchify: {T} tokens of {tokens.shape[2]} numbers are not a square "
                     f"grid of {p}x{p}x{channels} patches")
  x = tokens.reshape(B, h, h, p, p, channels)
  return torch.einsum('nhwpqc->nchpwq', x).reshape(B, channels, h * p, h * p)


class PatchEmbed(nn.Module):
  """(B, C, H, W) -> (B, T, D): a linear map of each p x p patch (a stride-p convolution),
  tokens in row-major order (timm's and diffusers' PatchEmbed)."""

  def __init__(self, in_channels, hidden_size, patch_size):
    super().__init__()
    self.patch_size = patch_size
    self.proj = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)

  def forward(self, x):
    return self.proj(x).flatten(2).transpose(1, 2)


def check_grid(image_size, patch_size):
  if patch_size < 1 or image_size % patch_size:
    raise ConfigError(f"patch_size {patch_size} must divide the image size {image_size}")
  return image_size // patch_size


def sincos_1d(dim, positions):
  """[sin(pos w_i), cos(pos w_i)] for i < dim/2, w_i = 10000^(-i / (dim/2)) (Vaswani et al.
  2017; MAE's get_1d_sincos_pos_embed_from_grid), in float64: (M, dim)."""
  omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
  angles = positions.double().reshape(-1)[:, None] * omega[None]
  return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d_position_embedding(dim, grid_size):
  """The fixed 2-D position embedding of DiT (and MAE): (grid_size^2, dim) in float32, token
  k = (row i, column j) as above; its first dim/2 features are sincos_1d of the column j, the
  last dim/2 of the row i (MAE's meshgrid puts w first)."""
  if dim % 4:
    raise ConfigError(f"the 2-D sin-cos position embedding needs hidden_size divisible by 4, "
                      f"got {dim}")
  rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing='ij')
  return torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1).float()


def timestep_embedding(labels, dim, max_period=10_000.0, freq_shift=0):
  """[cos(t w_i), sin(t w_i)] for i < dim/2, w_i = max_period^(-i / (dim/2 - freq_shift)):
  GLIDE's timestep features, which DiT and U-ViT use (freq_shift 0); diffusers' DiT port
  computes them with freq_shift 1."""
  half = dim // 2
  # In GLIDE's (and diffusers') order of float32 operations, so that t = 999 gets their angles.
  steps = torch.arange(half, dtype=torch.float32, device=labels.device)
  freqs = torch.exp(-math.log(max_period) * steps / (half - freq_shift))
  angles = labels.float()[:, None] * freqs[None]
  return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class Attention(nn.Module):
  """Multi-head self-attention over the tokens: one linear map to q, k, v (rows in that order,
  heads contiguous inside each), softmax(q k^T / sqrt(head_dim)) v, an output projection."""

  def __init__(self, dim, num_heads, qkv_bias=True):
    super().__init__()
    if dim % num_heads:
      raise ConfigError(f"num_heads {num_heads} must divide hidden_size {dim}")
    self.num_heads = num_heads
    self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
    self.proj = nn.Linear(dim, dim)

  def forward(self, x):
    B, T, D = x.shape
    q, k, v = self.qkv(x).reshape(B, T, 3, self.num_heads, D // self.num_heads).permute(
        2, 0, 3, 1, 4)                                              # 3 x [B, heads, T, head_dim]
    h = F.scaled_dot_product_attention(q, k, v)
    return self.proj(h.transpose(1, 2).reshape(B, T, D))


class Mlp(nn.Module):
  """fc2(GELU(fc1(x))): the transformer's feed-forward layer (tanh-approximated GELU in DiT)."""

  def __init__(self, dim, hidden, approximate='none'):
    super().__init__()
    self.fc1 = nn.Linear(dim, hidden)
    self.act = nn.GELU(approximate=approximate)
    self.fc2 = nn.Linear(hidden, dim)

  def forward(self, x):
    return self.fc2(self.act(self.fc1(x)))
