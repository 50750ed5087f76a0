"""A time-conditioned residual MLP for low-dimensional (toy 2-D) data."""
import torch.nn.functional as F
from torch import nn

from models.layers import (SinusoidalEmbedding, add_class_embedding, check_labels,
                           class_embedding, linear)


class ResidualMLPBlock(nn.Module):
  """h + W2 SiLU(W1 SiLU(h) + V SiLU(temb)): the U-Net's ResNet block with linear layers."""

  def __init__(self, hidden):
    super().__init__()
    self.fc1 = linear(hidden, hidden)
    self.temb_proj = linear(hidden, hidden)
    self.fc2 = linear(hidden, hidden)

  def forward(self, h, temb):
    z = self.fc1(F.silu(h)) + self.temb_proj(F.silu(temb))
    return h + self.fc2(F.silu(z))


class MLP(nn.Module):
  """eps_theta(x, labels, classes): (B, dim) x [B] floats x [B] longs -> (B, out_dim); out_dim =
  dim, or 2 dim for a learned reverse variance (eps, then the variance output v). classes
  (num_classes > 0 only): 0..K-1, or K = the null label, which None stands for."""

  def __init__(self,
               dim=2,           # data dimension
               hidden=256,      # width of every layer and of the time embedding
               num_layers=4,    # residual blocks
               out_dim=None,    # output dimension (None: dim)
               num_classes=0):  # K: class-conditional with K classes and a null label; 0: not
    super().__init__()
    self.time_embed = nn.Sequential(SinusoidalEmbedding(hidden), linear(hidden, hidden), nn.SiLU(),
                                    linear(hidden, hidden))
    self.class_embed = class_embedding(num_classes, hidden)
    self.input = linear(dim, hidden)
    self.blocks = nn.ModuleList(ResidualMLPBlock(hidden) for _ in range(num_layers))
    self.output = linear(hidden, out_dim or dim)

  def forward(self, x, labels, classes=None):
    check_labels(x, labels)
    temb = add_class_embedding(self.class_embed, self.time_embed(labels), classes)
    h = self.input(x)
    for block in self.blocks:
      h = block(h, temb)
    return self.output(F.silu(h))
