"""FIR-filtered resampling of images (Karras et al. 2020, StyleGAN2), in plain PyTorch.

upfirdn2d(x, k, up, down, pad) inserts up - 1 zeros between pixels, pads by pad = (p0, p1)
on each side, convolves every channel with the 2-D filter k and keeps every down-th pixel.
A 1-D kernel [k_i] stands for the separable filter k_i k_j / (sum k)^2, which keeps a constant
image constant; upsampling multiplies it by factor^2 to make up for the inserted zeros. The
pads below are those of StyleGAN2 and score_sde, so every output stays on the same pixel grid.
"""
import torch
import torch.nn.functional as F


def fir_filter(kernel, gain=1.0, device=None, dtype=torch.float32):
  """The normalized 2-D filter gain * outer(k, k) / sum(k)^2 (or k / sum(k) if already 2-D)."""
  k = torch.as_tensor(kernel, dtype=torch.float32)
  if k.ndim == 1:
    k = torch.outer(k, k)
  k = k / k.sum() * gain
  return k.to(device=device, dtype=dtype)


def upfirdn2d(x, k, up=1, down=1, pad=(0, 0)):
  """Zero-insertion upsampling by `up`, padding, depthwise convolution with k, striding by `down`."""
  n, c, h, w = x.shape
  if up > 1:
    upsampled = x.new_zeros(n, c, h * up, w * up)
    upsampled[..., ::up, ::up] = x
    x = upsampled
  x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
  weight = torch.flip(k, [0, 1]).expand(c, 1, *k.shape)   # a convolution, not a correlation
  return F.conv2d(x, weight, stride=down, groups=c)


def upsample_2d(x, kernel, factor=2):
  """FIR upsampling: [N, C, H, W] -> [N, C, factor H, factor W]."""
  k = fir_filter(kernel, factor ** 2, x.device, x.dtype)
  p = k.shape[0] - factor
  return upfirdn2d(x, k, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x, kernel, factor=2):
  """FIR downsampling: [N, C, H, W] -> [N, C, H / factor, W / factor]."""
  k = fir_filter(kernel, 1.0, x.device, x.dtype)
  p = k.shape[0] - factor
  return upfirdn2d(x, k, down=factor, pad=((p + 1) // 2, p // 2))


def upsample_conv_2d(x, weight, kernel, factor=2):
  """FIR upsampling followed by a convolution with `weight` [out, in, r, r], fused as
  StyleGAN2 does: a stride-`factor` transposed convolution, then the filter."""
  r = weight.shape[-1]
  k = fir_filter(kernel, factor ** 2, x.device, x.dtype)
  p = (k.shape[0] - factor) - (r - 1)
  x = F.conv_transpose2d(x, torch.flip(weight, [2, 3]).transpose(0, 1), stride=factor)
  return upfirdn2d(x, k, pad=((p + 1) // 2 + factor - 1, p // 2 + 1))


def conv_downsample_2d(x, weight, kernel, factor=2):
  """A convolution with `weight` [out, in, r, r] followed by FIR downsampling, fused: filter
  once with the combined padding, then a stride-`factor` convolution."""
  r = weight.shape[-1]
  k = fir_filter(kernel, 1.0, x.device, x.dtype)
  p = (k.shape[0] - factor) + (r - 1)
  return F.conv2d(upfirdn2d(x, k, pad=((p + 1) // 2, p // 2)), weight, stride=factor)


def naive_upsample_2d(x, factor=2):
  """Nearest-neighbour upsampling (each pixel repeated factor x factor times)."""
  return F.interpolate(x, scale_factor=factor, mode='nearest')


def naive_downsample_2d(x, factor=2):
  """Mean over factor x factor blocks."""
  return F.avg_pool2d(x, factor)
