"""A time-dependent classifier p_phi(y | x_t, t) for classifier guidance: the DDPM U-Net's
downsampling half (ResNet blocks that receive the time embedding, downsampling between levels),
then GroupNorm, SiLU, global average pooling and a linear layer to K logits (Dhariwal & Nichol
2021, sec. 4 and app. A, with average instead of attention pooling)."""
import torch.nn.functional as F
from torch import nn

from models.layers import (Downsample, ResnetBlock, SinusoidalEmbedding, check_labels, conv3x3,
                           group_norm, linear)
from utils.errors import ConfigError


class NoisyClassifier(nn.Module):
  """logits(x_t, labels): (B, C, H, W) x [B] floats -> (B, K); labels as the score network's
  (sde.network_label(t))."""

  def __init__(self,
               in_channels=3,          # C: image channels
               num_classes=10,         # K
               nf=32,                  # channels of the first level
               ch_mult=(1, 2),         # level i has nf * ch_mult[i] channels
               num_res_blocks=1,       # ResNet blocks per level
               image_size=32,          # H = W of the input
               num_groups=8):          # GroupNorm groups (capped at the channel count)
    super().__init__()
    if image_size % 2 ** (len(ch_mult) - 1):
      raise ConfigError(f"classifier: image_size {image_size} must be divisible by "
                        f"2^{len(ch_mult) - 1} for {len(ch_mult)} levels")
    temb_dim = 4 * nf
    self.time_embed = nn.Sequential(SinusoidalEmbedding(nf), linear(nf, temb_dim), nn.SiLU(),
                                    linear(temb_dim, temb_dim))
    self.conv_in = conv3x3(in_channels, nf)
    self.blocks = nn.ModuleList()
    ch = nf
    for level, mult in enumerate(ch_mult):
      for _ in range(num_res_blocks):
        self.blocks.append(ResnetBlock(ch, nf * mult, temb_dim, num_groups=num_groups))
        ch = nf * mult
      if level != len(ch_mult) - 1:
        self.blocks.append(Downsample(ch))
    self.norm_out = group_norm(ch, num_groups)
    self.head = linear(ch, num_classes)

  def forward(self, x, labels):
    check_labels(x, labels)
    temb = self.time_embed(labels)
    h = self.conv_in(x)
    for block in self.blocks:
      h = block(h, temb) if isinstance(block, ResnetBlock) else block(h)
    return self.head(F.silu(self.norm_out(h)).mean((2, 3)))


def classifier_log_prob_fn(sde, classifier):
  """log_prob_fn(x, t) -> [B, K] log p_phi(y | x_t, t), the log-softmax of the logits; the
  classifier sees the score network's time label sde.network_label(t)."""
  return lambda x, t: F.log_softmax(classifier(x, sde.network_label(t)), dim=1)
