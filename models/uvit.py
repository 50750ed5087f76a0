"""U-ViT, the ViT backbone of Bao et al. 2023 ("All are Worth Words", their baofff/U-ViT
`libs/uvit.py`).

Everything is a token: the time t (its sinusoidal features, optionally through an MLP), the class
(an embedding; its extra row is the null class of classifier-free guidance) and the image's
p x p patches, with a learned position embedding over all of them. depth // 2 "in" blocks, one
middle block and depth // 2 "out" blocks follow; each out block first merges a long skip from
the in block at the same distance from the middle, h <- Linear([h, skip]) (the U-Net's long
skips, their sec. 3.1). A LayerNorm and a linear map give each patch token its p * p * C_out
numbers; unpatchify puts them back as an image and a 3x3 convolution follows (their "final
convolution", which fixes patch artefacts).

The CIFAR-10 model (their configs/cifar10_uvit.py, U-ViT-S/2 of the paper's Table 1: 13 blocks
of width 512, 8 heads, MLP 2048, no q/k/v biases, the time token without an MLP) has 44,255,328
parameters (the paper's 44M); depth follows their code: depth 12 is 6 + 1 + 6 = 13 blocks.
"""
import torch
from torch import nn

from models.layers import check_labels, class_embedding
from models.transformer_layers import (Attention, Mlp, PatchEmbed, check_grid,
                                       timestep_embedding, unpatchify)
from utils.errors import ConfigError


class Block(nn.Module):
  """A pre-norm transformer block, x + Attn(LN(x)), then x + MLP(LN(x)); an out block first
  merges its long skip, x <- Linear([x, skip])."""

  def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, skip=False):
    super().__init__()
    self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
    self.norm1 = nn.LayerNorm(dim)
    self.attn = Attention(dim, num_heads, qkv_bias)
    self.norm2 = nn.LayerNorm(dim)
    self.mlp = Mlp(dim, int(dim * mlp_ratio))

  def forward(self, x, skip=None):
    if self.skip_linear is not None:
      x = self.skip_linear(torch.cat([x, skip], dim=-1))
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


class UViT(nn.Module):
  """eps_theta(x, labels[, classes]): (B, C, H, W) x [B] floats -> (B, C_out, H, W), H = W =
  image_size; labels are the SDE's time labels (t (N - 1) for the VP-SDE, as U-ViT's t * 999).
  With num_classes = K > 0 it takes classes in 0..K-1 or the null class K (None: K). C_out = C,
  or 2C with a learned variance (eps, then v)."""

  def __init__(self,
               image_size=32,          # H = W of the input
               patch_size=2,           # p: one token per p x p patch
               in_channels=3,          # C
               out_channels=None,      # C_out (None: C); 2C for a learned variance
               hidden_size=512,        # token width D (their embed_dim)
               depth=12,               # depth // 2 in blocks, a middle block, depth // 2 out
               num_heads=8,            # attention heads (D / num_heads channels each)
               mlp_ratio=4.0,          # MLP width / D
               qkv_bias=False,         # biases in the attention's q, k, v maps
               mlp_time_embed=False,   # the time token: its sinusoid through an MLP (or not)
               num_classes=0):         # K classes and a null class; 0: unconditional
    super().__init__()
    if depth % 2:
      raise ConfigError(f"U-ViT's depth counts its in and out blocks (depth // 2 each, plus a "
                        f"middle one): it must be even, got {depth}")
    grid = check_grid(image_size, patch_size)
    self.image_size, self.patch_size, self.hidden_size = image_size, patch_size, hidden_size
    self.out_channels = out_channels or in_channels
    self.patch_embed = PatchEmbed(in_channels, hidden_size, patch_size)
    self.time_embed = (nn.Sequential(nn.Linear(hidden_size, 4 * hidden_size), nn.SiLU(),
                                     nn.Linear(4 * hidden_size, hidden_size))
                       if mlp_time_embed else nn.Identity())
    self.label_emb = class_embedding(num_classes, hidden_size)
    self.extras = 1 + (self.label_emb is not None)        # the time token and the class token
    self.pos_embed = nn.Parameter(torch.zeros(1, self.extras + grid * grid, hidden_size))
    sizes = (hidden_size, num_heads, mlp_ratio, qkv_bias)
    self.in_blocks = nn.ModuleList(Block(*sizes) for _ in range(depth // 2))
    self.mid_block = Block(*sizes)
    self.out_blocks = nn.ModuleList(Block(*sizes, skip=True) for _ in range(depth // 2))
    self.norm = nn.LayerNorm(hidden_size)
    self.decoder_pred = nn.Linear(hidden_size, patch_size * patch_size * self.out_channels)
    self.final_layer = nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1)
    self._init_weights()

  def _init_weights(self):
    """Theirs: truncated N(0, 0.02^2) linear maps with zero biases and position embedding,
    LayerNorms at (1, 0); convolutions and the class rows keep PyTorch's defaults."""
    nn.init.trunc_normal_(self.pos_embed, std=0.02)
    for module in self.modules():
      if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
          nn.init.zeros_(module.bias)
      elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)

  def forward(self, x, labels, classes=None):
    check_labels(x, labels)
    if x.shape[-2:] != (self.image_size, self.image_size):
      raise ValueError(f"this U-ViT takes {self.image_size}x{self.image_size} inputs (its "
                       f"position embedding), got {tuple(x.shape[-2:])}")
    tokens = [self.time_embed(timestep_embedding(labels, self.hidden_size).to(x.dtype))]
    if self.label_emb is not None:
      tokens.insert(0, self.label_emb(classes, x.shape[0]).to(x.dtype))
    elif classes is not None:
      raise ValueError("this network is unconditional (num_classes=0): it takes no classes")
    h = torch.cat([t[:, None] for t in tokens] + [self.patch_embed(x)], dim=1) + self.pos_embed
    skips = []
    for block in self.in_blocks:
      h = block(h)
      skips.append(h)
    h = self.mid_block(h)
    for block in self.out_blocks:
      h = block(h, skips.pop())
    h = self.decoder_pred(self.norm(h))[:, self.extras:]
    return self.final_layer(unpatchify(h, self.patch_size, self.out_channels))
