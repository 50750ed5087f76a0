"""The U-Net of Ho et al. 2020 (appendix B; their diffusion_tf `unet.py`), an eps-predictor.

Per resolution level: `num_res_blocks` ResNet blocks (attention after each at the resolutions in
`attn_resolutions`), then a stride-2 downsample except at the last level; a middle of
ResNet-attention-ResNet; the up path mirrors it with `num_res_blocks + 1` blocks per level,
each taking the concatenation with one stored activation of the down path (every block and
downsample output, plus the input conv's), and a nearest upsample except at the first level.
With CIFAR-10's settings (nf 128, ch_mult (1, 2, 2, 2), 2 blocks, attention at 16) it has
35,746,307 parameters ("35.7M" in the paper).
"""
import torch
import torch.nn.functional as F
from torch import nn

from models.layers import (AttnBlock, Downsample, ResnetBlock, SinusoidalEmbedding, Upsample,
                           add_class_embedding, check_labels, class_embedding, conv3x3,
                           group_norm, linear)
from utils.errors import ConfigError


class DDPM(nn.Module):
  """eps_theta(x, labels): (B, C, H, W) x [B] floats -> (B, C_out, H, W); labels are t (N - 1)
  (continuous time) or the chain step. C_out = C, or 2C for a learned reverse variance (eps,
  then the variance channels v; Nichol & Dhariwal 2021). With num_classes = K > 0 it is
  eps_theta(x, labels, classes), classes in 0..K-1 or the null label K (None: K)."""

  def __init__(self,
               in_channels=3,            # C: image channels
               out_channels=None,        # output channels (None: C)
               nf=128,                   # channels of the first level
               ch_mult=(1, 2, 2, 2),     # level i has nf * ch_mult[i] channels
               num_res_blocks=2,         # ResNet blocks per level on the way down
               attn_resolutions=(16,),   # spatial sizes that get self-attention
               dropout=0.1,              # inside each ResNet block
               image_size=32,            # H = W of the input
               num_groups=32,            # GroupNorm groups (capped at the channel count)
               num_classes=0):           # K classes and a null label (0: unconditional)
    super().__init__()
    num_levels = len(ch_mult)
    if image_size % 2 ** (num_levels - 1):
      raise ConfigError(f"image_size {image_size} must be divisible by 2^{num_levels - 1} "
                       f"for {num_levels} resolution levels")
    temb_dim = 4 * nf
    self.image_size = image_size
    self.time_embed = nn.Sequential(SinusoidalEmbedding(nf), linear(nf, temb_dim), nn.SiLU(),
                                    linear(temb_dim, temb_dim))
    self.class_embed = class_embedding(num_classes, temb_dim)
    self.conv_in = conv3x3(in_channels, nf)

    def res_attn(in_ch, out_ch, resolution):
      block = ResnetBlock(in_ch, out_ch, temb_dim, dropout, num_groups)
      attn = AttnBlock(out_ch, num_groups) if resolution in attn_resolutions else nn.Identity()
      return block, attn

    skips = [nf]              # channels of each stored down-path activation
    ch, resolution = nf, image_size
    self.down = nn.ModuleList()
    for level, mult in enumerate(ch_mult):
      stage = _Stage()
      for _ in range(num_res_blocks):
        stage.add(*res_attn(ch, nf * mult, resolution))
        ch = nf * mult
        skips.append(ch)
      if level != num_levels - 1:
        stage.resample = Downsample(ch)
        resolution //= 2
        skips.append(ch)
      self.down.append(stage)

    self.mid = _Stage()     # attention here at every resolution
    self.mid.add(ResnetBlock(ch, ch, temb_dim, dropout, num_groups), AttnBlock(ch, num_groups))
    self.mid.add(ResnetBlock(ch, ch, temb_dim, dropout, num_groups), nn.Identity())

    self.up = nn.ModuleList()
    for level, mult in reversed(list(enumerate(ch_mult))):
      stage = _Stage()
      for _ in range(num_res_blocks + 1):
        stage.add(*res_attn(ch + skips.pop(), nf * mult, resolution))
        ch = nf * mult
      if level != 0:
        stage.resample = Upsample(ch)
        resolution *= 2
      self.up.append(stage)

    self.norm_out = group_norm(ch, num_groups)
    self.conv_out = conv3x3(ch, out_channels or in_channels, init_scale=0.0)

  def forward(self, x, labels, classes=None):
    check_labels(x, labels)
    temb = add_class_embedding(self.class_embed, self.time_embed(labels), classes)
    hs = [self.conv_in(x)]
    for stage in self.down:
      for block, attn in stage.layers():
        hs.append(attn(block(hs[-1], temb)))
      if stage.resample is not None:
        hs.append(stage.resample(hs[-1]))
    h = hs[-1]
    for block, attn in self.mid.layers():
      h = attn(block(h, temb))
    for stage in self.up:
      for block, attn in stage.layers():
        h = attn(block(torch.cat([h, hs.pop()], dim=1), temb))
      if stage.resample is not None:
        h = stage.resample(h)
    return self.conv_out(F.silu(self.norm_out(h)))


class _Stage(nn.Module):
  """One resolution level: (ResNet block, attention or identity) pairs, then an optional
  resample."""

  def __init__(self):
    super().__init__()
    self.blocks = nn.ModuleList()
    self.attns = nn.ModuleList()
    self.resample = None

  def add(self, block, attn):
    self.blocks.append(block)
    self.attns.append(attn)

  def layers(self):
    return zip(self.blocks, self.attns)
