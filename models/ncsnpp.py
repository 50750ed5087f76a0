"""DDPM++ and NCSN++ (Song et al. 2021, Sec. 4.4 and Appendix H): one U-Net, configured.

DDPM++ (VP, sub-VP) = BigGAN-type blocks, skip_rescale, positional time embedding, no FIR, no
progressive growing. NCSN++ (VE) adds FIR resampling, a residual input pyramid, a Gaussian
Fourier embedding of log sigma, and `scale_by_sigma` (output divided by sigma: the score).

The layers are registered in one list, `all_modules`, in the order score_sde_pytorch creates
them, so a state dict of the reference implementation loads strictly with the same keys
(`sigmas`, `all_modules.<i>.<name>`). `self.plan` keeps the same layers by role for forward().
A class-conditional network (num_classes > 0) has one more key, `class_embed.weight`, outside
that list so the reference's indices stay.
"""
import math

import torch
from torch import nn

from models.layers import (SinusoidalEmbedding, add_class_embedding, check_labels,
                           class_embedding, linear)
from models.ncsnpp_layers import (AttnBlock, Combine, Downsample, GaussianFourierProjection,
                                  ResnetBlockBigGAN, ResnetBlockDDPM, Upsample, conv2d,
                                  group_norm, residual_sum)
from utils.errors import ConfigError

ACTIVATIONS = {'swish': nn.SiLU, 'relu': nn.ReLU, 'elu': nn.ELU,
               'lrelu': lambda: nn.LeakyReLU(0.2)}
CHOICES = {'resblock_type': ('ddpm', 'biggan'), 'embedding_type': ('positional', 'fourier'),
           'progressive': ('none', 'output_skip', 'residual'),
           'progressive_input': ('none', 'input_skip', 'residual'),
           'progressive_combine': ('sum', 'cat'), 'nonlinearity': tuple(ACTIVATIONS)}


class NCSNpp(nn.Module):
  """model(x, label, classes=None) with label = the time input of score_sde: sigma(t) for a
  Fourier embedding (it embeds log sigma), else the number fed to the sinusoidal embedding;
  classes (num_classes = K > 0 only) in 0..K-1, or the null label K, which None stands for."""

  def __init__(self,
               in_channels=3,
               out_channels=None,          # None: in_channels; 2x for a learned variance
               image_size=32,
               nf=128,                     # base channel count
               ch_mult=(1, 2, 2, 2),       # channels per resolution, times nf
               num_res_blocks=4,           # residual blocks per resolution (down path)
               attn_resolutions=(16,),     # resolutions with self-attention
               dropout=0.1,
               resblock_type='biggan',     # 'biggan' | 'ddpm'
               skip_rescale=True,          # residual sums divided by sqrt(2)
               embedding_type='positional',  # 'positional' | 'fourier' (of log sigma)
               fourier_scale=16.0,         # std of the Fourier frequencies W
               fir=False,                  # FIR resampling with fir_kernel (StyleGAN2)
               fir_kernel=(1, 3, 3, 1),
               progressive='none',         # output pyramid: 'none' | 'output_skip' | 'residual'
               progressive_input='none',   # input pyramid: 'none' | 'input_skip' | 'residual'
               progressive_combine='sum',  # input_skip merge: 'sum' | 'cat'
               resamp_with_conv=True,      # 'ddpm' blocks: resample with a conv
               init_scale=0.0,             # init scale of each branch's last layer
               conditional=True,           # time-conditioned
               scale_by_sigma=False,       # divide the output by sigma (VE: output = score)
               centered=True,              # inputs in [-1, 1]; False: [0, 1], mapped to 2x - 1
               nonlinearity='swish',
               sigma_min=0.01, sigma_max=50.0, num_scales=1000,  # the `sigmas` buffer
               num_classes=0):             # K classes and a null label (0: unconditional)
    super().__init__()
    given = dict(resblock_type=resblock_type, embedding_type=embedding_type,
                 progressive=progressive, progressive_input=progressive_input,
                 progressive_combine=progressive_combine, nonlinearity=nonlinearity)
    for name, value in given.items():
      if value not in CHOICES[name]:
        raise ConfigError(f"ncsnpp: {name}={value!r}; choose one of {CHOICES[name]}")
    if num_classes and not conditional:
      raise ConfigError("ncsnpp: a class embedding is added to the time embedding, which "
                        "conditional=False leaves out; set conditional=True or num_classes=0")
    num_levels = len(ch_mult)
    if image_size % 2 ** (num_levels - 1):
      raise ConfigError(f"ncsnpp: image_size {image_size} is not divisible by "
                        f"2^{num_levels - 1} (len(ch_mult) = {num_levels})")
    self.embedding_type, self.conditional = embedding_type, conditional
    self.centered, self.scale_by_sigma, self.skip_rescale = centered, scale_by_sigma, skip_rescale
    self.progressive, self.progressive_input = progressive, progressive_input
    self.act = act = ACTIVATIONS[nonlinearity]()
    # sigma_i, i = 0..N-1, from sigma_max down to sigma_min (geometric), as score_sde stores it.
    self.register_buffer('sigmas', torch.exp(torch.linspace(
        math.log(sigma_max), math.log(sigma_min), num_scales, dtype=torch.float64)))
    fir_kernel = tuple(fir_kernel) if fir else None
    out_channels = out_channels or in_channels
    temb_dim = 4 * nf

    if resblock_type == 'biggan':
      def resblock(in_ch, out_ch=None, up=False, down=False):
        return ResnetBlockBigGAN(act, in_ch, out_ch, temb_dim, up=up, down=down, dropout=dropout,
                                 fir_kernel=fir_kernel, skip_rescale=skip_rescale,
                                 init_scale=init_scale)
    else:
      def resblock(in_ch, out_ch=None):
        return ResnetBlockDDPM(act, in_ch, out_ch, temb_dim, dropout=dropout,
                               skip_rescale=skip_rescale, init_scale=init_scale)

    def attention(ch):
      return AttnBlock(ch, skip_rescale=skip_rescale, init_scale=init_scale)

    modules = []

    def add(module):
      modules.append(module)
      return module

    plan = {}
    if embedding_type == 'fourier':
      plan['fourier'] = add(GaussianFourierProjection(nf, fourier_scale))
      embed_dim = 2 * nf
    else:
      self.positional = SinusoidalEmbedding(nf)
      embed_dim = nf
    if conditional:
      plan['temb'] = (add(linear(embed_dim, temb_dim)), add(linear(temb_dim, temb_dim)))

    plan['conv_in'] = add(conv2d(in_channels, nf, 3))
    skip_channels, in_ch, pyramid_ch = [nf], nf, in_channels
    plan['down'] = []
    for level in range(num_levels):
      resolution = image_size // 2 ** level
      stage = {'blocks': [], 'down': None, 'pyramid': None, 'combine': None}
      for _ in range(num_res_blocks):
        out_ch = nf * ch_mult[level]
        block = add(resblock(in_ch, out_ch))
        attn = add(attention(out_ch)) if resolution in attn_resolutions else None
        stage['blocks'].append((block, attn))
        in_ch = out_ch
        skip_channels.append(in_ch)
      if level != num_levels - 1:
        stage['down'] = add(Downsample(in_ch, with_conv=resamp_with_conv, fir_kernel=fir_kernel)
                            if resblock_type == 'ddpm' else resblock(in_ch, down=True))
        if progressive_input == 'input_skip':
          stage['pyramid'] = add(Downsample(pyramid_ch, with_conv=False, fir_kernel=fir_kernel))
          stage['combine'] = add(Combine(pyramid_ch, in_ch, method=progressive_combine))
          in_ch *= 2 if progressive_combine == 'cat' else 1
        elif progressive_input == 'residual':
          stage['pyramid'] = add(Downsample(pyramid_ch, in_ch, with_conv=True, fir_kernel=fir_kernel))
          pyramid_ch = in_ch
        skip_channels.append(in_ch)
      plan['down'].append(stage)

    in_ch = skip_channels[-1]
    plan['mid'] = (add(resblock(in_ch)), add(attention(in_ch)), add(resblock(in_ch)))

    plan['up'] = []
    pyramid_ch = 0
    for level in reversed(range(num_levels)):
      resolution = image_size // 2 ** level
      stage = {'blocks': [], 'attn': None, 'pyramid': (), 'up': None}
      for _ in range(num_res_blocks + 1):
        out_ch = nf * ch_mult[level]
        stage['blocks'].append(add(resblock(in_ch + skip_channels.pop(), out_ch)))
        in_ch = out_ch
      if resolution in attn_resolutions:
        stage['attn'] = add(attention(in_ch))
      if progressive != 'none':
        stage['pyramid'] = self._output_pyramid(add, level == num_levels - 1, in_ch, pyramid_ch,
                                                out_channels, init_scale, fir_kernel)
        pyramid_ch = out_channels if progressive == 'output_skip' else in_ch
      if level != 0:
        stage['up'] = add(Upsample(in_ch, with_conv=resamp_with_conv, fir_kernel=fir_kernel)
                          if resblock_type == 'ddpm' else resblock(in_ch, up=True))
      plan['up'].append(stage)

    if progressive != 'output_skip':
      plan['out'] = (add(group_norm(in_ch)),
                     add(conv2d(in_ch, out_channels, 3, init_scale=init_scale)))
    self.all_modules = nn.ModuleList(modules)
    self.class_embed = class_embedding(num_classes, temb_dim)
    self.plan = plan   # the same modules by role; a plain dict, so no second set of keys

  def _output_pyramid(self, add, lowest, in_ch, pyramid_ch, channels, init_scale, fir_kernel):
    """The layers that grow the output pyramid at one level of the up path, in score_sde's order:
    lowest level: (GN, conv) start it; above: 'output_skip' upsamples it and adds
    conv(act(GN(h))) (3 channels); 'residual' upsamples it (with a conv) into the features."""
    if lowest:
      out_ch = channels if self.progressive == 'output_skip' else in_ch
      scale = init_scale if self.progressive == 'output_skip' else 1.0
      return add(group_norm(in_ch)), add(conv2d(in_ch, out_ch, 3, init_scale=scale))
    if self.progressive == 'output_skip':
      return (add(Upsample(pyramid_ch, with_conv=False, fir_kernel=fir_kernel)),
              add(group_norm(in_ch)), add(conv2d(in_ch, channels, 3, init_scale=init_scale)))
    return (add(Upsample(pyramid_ch, in_ch, with_conv=True, fir_kernel=fir_kernel)),)

  def forward(self, x, labels, classes=None):
    check_labels(x, labels)
    plan, act = self.plan, self.act
    if self.embedding_type == 'fourier':
      sigma = labels
      temb = plan['fourier'](torch.log(labels))
    else:
      sigma = self.sigmas[labels.int()] if self.scale_by_sigma else None
      temb = self.positional(labels).to(x.dtype)
    if self.conditional:
      first, second = plan['temb']
      temb = second(act(first(temb)))
    else:
      temb = None
    temb = add_class_embedding(self.class_embed, temb, classes)
    if not self.centered:
      x = 2 * x - 1

    pyramid = x if self.progressive_input != 'none' else None
    h = plan['conv_in'](x)
    skips = [h]
    for stage in plan['down']:
      for block, attn in stage['blocks']:
        h = block(h, temb)
        h = attn(h) if attn is not None else h
        skips.append(h)
      if stage['down'] is not None:
        h = stage['down'](h) if isinstance(stage['down'], Downsample) else stage['down'](h, temb)
        if self.progressive_input == 'input_skip':
          pyramid = stage['pyramid'](pyramid)
          h = stage['combine'](pyramid, h)
        elif self.progressive_input == 'residual':
          pyramid = residual_sum(stage['pyramid'](pyramid), h, self.skip_rescale)
          h = pyramid
        skips.append(h)

    first, attn, second = plan['mid']
    h = second(attn(first(h, temb)), temb)

    pyramid = None
    for stage in plan['up']:
      for block in stage['blocks']:
        h = block(torch.cat([h, skips.pop()], dim=1), temb)
      if stage['attn'] is not None:
        h = stage['attn'](h)
      h, pyramid = self._grow_pyramid(stage['pyramid'], h, pyramid)
      if stage['up'] is not None:
        h = stage['up'](h) if isinstance(stage['up'], Upsample) else stage['up'](h, temb)

    if self.progressive == 'output_skip':
      h = pyramid
    else:
      norm, conv = plan['out']
      h = conv(act(norm(h)))
    if self.scale_by_sigma:
      h = h / sigma.to(h.dtype).reshape(-1, *[1] * (h.ndim - 1))
    return h

  def _grow_pyramid(self, layers, h, pyramid):
    """One level of the output pyramid (see _output_pyramid); returns (h, pyramid)."""
    if not layers:
      return h, pyramid
    if pyramid is None:                              # the lowest level: start it
      norm, conv = layers
      return h, conv(self.act(norm(h)))
    if self.progressive == 'output_skip':
      upsample, norm, conv = layers
      return h, upsample(pyramid) + conv(self.act(norm(h)))
    pyramid = residual_sum(layers[0](pyramid), h, self.skip_rescale)
    return pyramid, pyramid
