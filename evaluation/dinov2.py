"""DINOv2 ViT-L/14 (Oquab et al. 2023), the feature space of FD-DINOv2 (Stein et al. 2023,
"Exposing flaws of generative model evaluation metrics"; EDM2's headline metric).

The modules carry the names of facebookresearch/dinov2's DinoVisionTransformer as its hub
builds ViT-L/14 (patch 14, position embeddings for 518x518 = 37x37 patches, layer scale, no
registers, unchunked blocks), so that the released `dinov2_vitl14_pretrain.pth` loads strictly
with weights_only=True. An image's feature is the class token of the final layer norm's output
(what the hub model returns), 1024 numbers.
"""
import math
import os

import torch
import torch.nn.functional as F
from torch import nn

DINOV2_FILE = 'dinov2_vitl14_pretrain.pth'
DINOV2_URL = f'https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/{DINOV2_FILE}'
VITL14 = dict(embed_dim=1024, depth=24, num_heads=16)   # ViT-L/14
PATCH = 14
PRETRAIN_SIZE = 518            # the position embeddings' image size: 37x37 patches
POS_OFFSET = 0.1               # the official interpolation's scale-factor offset (see below)


class DINOv2Unavailable(RuntimeError):
  """The DINOv2 weights are not on disk or do not load; the message says what to place where."""


class Attention(nn.Module):
  """Multi-head self-attention, softmax(q k^T / sqrt(d_head)) v, one qkv projection."""

  def __init__(self, dim, num_heads):
    super().__init__()
    self.num_heads = num_heads
    self.qkv = nn.Linear(dim, 3 * dim)
    self.proj = nn.Linear(dim, dim)

  def forward(self, x):
    b, n, d = x.shape
    q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v)
    return self.proj(out.transpose(1, 2).reshape(b, n, d))


class LayerScale(nn.Module):
  """x * gamma, per channel (Touvron et al. 2021, CaiT)."""

  def __init__(self, dim):
    super().__init__()
    self.gamma = nn.Parameter(torch.ones(dim))

  def forward(self, x):
    return x * self.gamma


class Mlp(nn.Module):
  def __init__(self, dim, hidden):
    super().__init__()
    self.fc1 = nn.Linear(dim, hidden)
    self.fc2 = nn.Linear(hidden, dim)

  def forward(self, x):
    return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
  """Pre-norm transformer block: x + ls1(attn(norm1(x))), then + ls2(mlp(norm2(x)))."""

  def __init__(self, dim, num_heads, mlp_ratio=4):
    super().__init__()
    self.norm1 = nn.LayerNorm(dim, eps=1e-6)
    self.attn = Attention(dim, num_heads)
    self.ls1 = LayerScale(dim)
    self.norm2 = nn.LayerNorm(dim, eps=1e-6)
    self.mlp = Mlp(dim, mlp_ratio * dim)
    self.ls2 = LayerScale(dim)

  def forward(self, x):
    x = x + self.ls1(self.attn(self.norm1(x)))
    return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
  """Non-overlapping patch x patch squares -> one token each, row by row."""

  def __init__(self, dim, patch):
    super().__init__()
    self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

  def forward(self, x):
    return self.proj(x).flatten(2).transpose(1, 2)


def interpolate_pos_embed(pos_embed, rows, cols, offset=POS_OFFSET):
  """Position embeddings [1, 1 + M*M, D] for a rows x cols patch grid: the class token's kept,
  the M x M grid resized bicubically as the official code does, with the scale factors
  (rows + offset) / M, (cols + offset) / M rather than the target size (an offset DINO kept
  for float rounding; torch uses the factor itself to place the samples, so it moves them)."""
  grid = pos_embed.shape[1] - 1
  m = math.isqrt(grid)
  if rows * cols == grid and rows == cols:
    return pos_embed
  dim = pos_embed.shape[-1]
  patches = pos_embed[:, 1:].float().reshape(1, m, m, dim).permute(0, 3, 1, 2)
  patches = F.interpolate(patches, scale_factor=((rows + offset) / m, (cols + offset) / m),
                          mode='bicubic', antialias=False)
  assert patches.shape[-2:] == (rows, cols), patches.shape
  patches = patches.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)
  return torch.cat([pos_embed[:, :1], patches.to(pos_embed.dtype)], 1)


class DINOv2(nn.Module):
  """DINOv2's vision transformer: [B, 3, H, W] ImageNet-normalized images (H, W multiples of
  the patch) -> [B, D], the class token of the final layer norm."""

  def __init__(self, embed_dim, depth, num_heads, patch=PATCH, pretrain_size=PRETRAIN_SIZE):
    super().__init__()
    self.patch = patch
    grid = pretrain_size // patch
    self.patch_embed = PatchEmbed(embed_dim, patch)
    self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
    self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))
    self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))   # masked training only; in the file
    self.blocks = nn.ModuleList(Block(embed_dim, num_heads) for _ in range(depth))
    self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

  def forward(self, x):
    tokens = self.patch_embed(x)
    tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], 1)
    tokens = tokens + interpolate_pos_embed(self.pos_embed, x.shape[2] // self.patch,
                                            x.shape[3] // self.patch)
    for block in self.blocks:
      tokens = block(tokens)
    return self.norm(tokens)[:, 0]


def load_dinov2(weights_dir, device='cpu', architecture=None):
  """DINOv2 ViT-L/14 (or `architecture`, DINOv2 keyword arguments) with the official weights
  from `weights_dir`/DINOV2_FILE, in eval mode; DINOv2Unavailable saying what to place where
  when the file is missing or is not those weights."""
  path = os.path.join(weights_dir, DINOV2_FILE)
  place = (f"place {DINOV2_FILE} (the official DINOv2 ViT-L/14 weights, {DINOV2_URL}) in "
           f"{weights_dir}, or pass --config.eval.dinov2_weights_dir=/directory/holding/it")
  if not os.path.isfile(path):
    raise DINOv2Unavailable(f"FD-DINOv2 skipped: {path} not found; {place}.")
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:   # not a torch file, or one holding more than tensors and plain values
    raise DINOv2Unavailable(f"FD-DINOv2 skipped: {path} is not the DINOv2 ViT-L/14 state dict "
                            f"(torch.load with weights_only: {type(e).__name__}); {place}.") from None
  with torch.device('meta'):   # no memory or initialization for weights about to be replaced
    model = DINOv2(**(architecture or VITL14))
  try:
    model.load_state_dict(state, assign=True)
  except (RuntimeError, AttributeError, TypeError) as e:   # other keys or shapes
    detail = ' '.join(str(e).split())[:300]
    raise DINOv2Unavailable(f"FD-DINOv2 skipped: {path} is not the DINOv2 ViT-L/14 state dict "
                            f"({detail}); {place}.") from None
  return model.to(device).eval().requires_grad_(False)
