"""DDPM++ / NCSN++ and its FIR resampling against independent truths: PyTorch's own
interpolation, the unfused composition of the fused ops, and the network's algebra
(scale_by_sigma, centered inputs). The reference implementation's outputs are checked in
tests/test_import_score_sde.py."""
import pytest
import torch
import torch.nn.functional as F

from models import fir
from models.ncsnpp import NCSNpp

KERNEL = (1, 3, 3, 1)


def images(*shape):
  return torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_box_kernel_resampling_is_nearest_and_mean_pooling():
  # k = (1, 1): upsampling repeats each pixel, downsampling averages 2x2 blocks (exactly).
  x = images(2, 3, 8, 8)
  assert torch.equal(fir.upsample_2d(x, (1, 1)), F.interpolate(x, scale_factor=2, mode='nearest'))
  assert torch.allclose(fir.downsample_2d(x, (1, 1)), F.avg_pool2d(x, 2), rtol=0, atol=1e-15)


def test_1331_kernel_is_bilinear_resampling_away_from_the_border():
  """[1,3,3,1]/8 is the half-pixel bilinear filter: FIR upsampling equals bilinear
  interpolation (align_corners=False), FIR downsampling equals antialiased bilinear halving.
  They differ only where the FIR pads with zeros (the outer ring); float64 round-off."""
  x = images(2, 3, 8, 8)
  up = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)
  down = F.interpolate(x, scale_factor=0.5, mode='bilinear', align_corners=False, antialias=True)
  inner = (..., slice(1, -1), slice(1, -1))
  assert torch.allclose(fir.upsample_2d(x, KERNEL)[inner], up[inner], rtol=0, atol=1e-12)
  assert torch.allclose(fir.downsample_2d(x, KERNEL)[inner], down[inner], rtol=0, atol=1e-12)


def test_fused_conv_resampling_equals_the_unfused_composition_inside():
  """upsample_conv_2d = conv(upsample(x)) and conv_downsample_2d = downsample(conv(x)), both
  linear and shift-equivariant, so they agree except within the filters' reach of the border."""
  x, w = images(2, 3, 8, 8), images(5, 3, 3, 3)
  up = F.conv2d(fir.upsample_2d(x, KERNEL), w, padding=1)
  down = fir.downsample_2d(F.conv2d(x, w, padding=1), KERNEL)
  assert torch.allclose(fir.upsample_conv_2d(x, w, KERNEL)[..., 3:-3, 3:-3], up[..., 3:-3, 3:-3],
                        rtol=0, atol=1e-12)
  assert torch.allclose(fir.conv_downsample_2d(x, w, KERNEL)[..., 1:-1, 1:-1],
                        down[..., 1:-1, 1:-1], rtol=0, atol=1e-12)


def tiny(**overrides):
  args = dict(in_channels=3, image_size=16, nf=16, ch_mult=(1, 2), num_res_blocks=1,
              attn_resolutions=(8,), dropout=0.0)
  args.update(overrides)
  torch.manual_seed(0)
  return NCSNpp(**args).double().eval()


# Every value of every architecture switch, each at least once (the full product is slow).
VARIANTS = [  # resblock_type, fir, progressive, progressive_input, progressive_combine
    ('biggan', True, 'none', 'residual', 'sum'),          # NCSN++ (VE)
    ('biggan', False, 'none', 'none', 'sum'),             # DDPM++ (VP)
    ('biggan', False, 'output_skip', 'input_skip', 'cat'),
    ('biggan', True, 'residual', 'input_skip', 'sum'),
    ('ddpm', True, 'output_skip', 'residual', 'sum'),
    ('ddpm', False, 'residual', 'input_skip', 'cat'),
]


@pytest.mark.parametrize('resblock_type,fir_on,progressive,progressive_input,combine', VARIANTS)
def test_every_architecture_variant_maps_images_to_images(resblock_type, fir_on, progressive,
                                                          progressive_input, combine):
  net = tiny(resblock_type=resblock_type, fir=fir_on, progressive=progressive,
             progressive_input=progressive_input, progressive_combine=combine,
             embedding_type='fourier' if fir_on else 'positional', init_scale=1.0)
  x = images(2, 3, 16, 16)
  out = net(x, torch.tensor([0.5, 20.0], dtype=torch.float64))
  assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().max() > 0
  out.sum().backward()   # every trainable layer takes part
  assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_scale_by_sigma_divides_the_output_by_the_noise_level():
  x, sigma = images(2, 3, 16, 16), torch.tensor([0.1, 7.0], dtype=torch.float64)
  plain = tiny(embedding_type='fourier', init_scale=1.0)
  scaled = tiny(embedding_type='fourier', init_scale=1.0, scale_by_sigma=True)
  assert torch.allclose(scaled(x, sigma), plain(x, sigma) / sigma[:, None, None, None], rtol=1e-12)


def test_positional_scale_by_sigma_looks_sigma_up_by_step_from_sigma_max_down():
  """score_sde's `sigmas` buffer is geometric from sigma_max (step 0) to sigma_min (step N-1)."""
  x, steps = images(2, 3, 16, 16), torch.tensor([0.0, 999.0], dtype=torch.float64)
  plain, scaled = tiny(init_scale=1.0), tiny(init_scale=1.0, scale_by_sigma=True)
  assert torch.allclose(scaled(x, steps), plain(x, steps) / torch.tensor([50.0, 0.01],
                        dtype=torch.float64)[:, None, None, None], rtol=1e-12)


def test_uncentered_network_sees_2x_minus_1():
  x, t = images(2, 3, 16, 16).uniform_(), torch.tensor([3.0, 500.0], dtype=torch.float64)
  centered, uncentered = tiny(init_scale=1.0), tiny(init_scale=1.0, centered=False)
  assert torch.allclose(uncentered(x, t), centered(2 * x - 1, t), rtol=1e-12)


@pytest.mark.parametrize('field,value', [('progressive', 'both'), ('resblock_type', 'vgg'),
                                         ('embedding_type', 'learned'), ('image_size', 15)])
def test_bad_arguments_are_one_clear_error(field, value):
  with pytest.raises(ValueError, match=field if field != 'image_size' else 'divisible'):
    tiny(**{field: value})
