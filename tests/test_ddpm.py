"""Ho et al.'s U-Net: the published parameter counts, the timestep embedding's closed form, and
behaviour (labels matter, samples are independent, every parameter is trained)."""
import pytest
import torch
from torch import nn

from configs.default import get_default_config
from models import get_model
from models.ddpm import DDPM
from models.layers import Downsample, SinusoidalEmbedding

DIGITS = dict(in_channels=1, nf=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
              image_size=8, dropout=0.0)


def num_params(model):
  return sum(p.numel() for p in model.parameters())


def randomize(model, seed=0):
  """Generic weights: Ho's init makes the residual branches and the output conv ~1e-10 scale,
  under which outputs barely depend on anything."""
  torch.manual_seed(seed)
  for module in model.modules():
    if isinstance(module, (nn.Conv2d, nn.Linear)):
      nn.init.xavier_uniform_(module.weight)
      nn.init.normal_(module.bias, std=0.1)
  return model


def test_cifar10_unet_has_ho_et_al_parameter_count():
  """Ho et al. (appendix B): "Our CIFAR10 model has 35.7 million parameters"; their released
  CIFAR-10 checkpoint holds exactly 35,746,307."""
  model = get_model(get_default_config())          # the default config is Ho's CIFAR-10 one
  assert isinstance(model, DDPM)
  assert num_params(model) == 35_746_307
  with torch.no_grad():
    assert model(torch.randn(1, 3, 32, 32), torch.tensor([10.0])).shape == (1, 3, 32, 32)


def on_meta(**kwargs):
  """A DDPM built on the meta device: parameters with shapes but no memory and no init."""
  with torch.device('meta'):
    return DDPM(**kwargs)


def test_published_checkpoints_parameter_counts():
  """Ho et al. (appendix B): "our LSUN and CelebA-HQ models have 114 million parameters" (six
  levels (1, 1, 2, 2, 4, 4) at 256 x 256, attention at 16); their released LSUN checkpoint
  holds exactly 113,673,219. Song et al.'s DDIM CelebA 64 x 64 checkpoint, the same U-Net with
  levels (1, 2, 2, 2, 4) and attention at 16, holds exactly 78,700,803."""
  lsun = on_meta(in_channels=3, nf=128, ch_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2,
                 attn_resolutions=(16,), image_size=256)
  assert num_params(lsun) == 113_673_219
  assert round(num_params(lsun) / 1e6) == 114
  celeba = on_meta(in_channels=3, nf=128, ch_mult=(1, 2, 2, 2, 4), num_res_blocks=2,
                   attn_resolutions=(16,), image_size=64)
  assert num_params(celeba) == 78_700_803


def test_image_channels_enter_only_the_first_and_last_conv():
  """Per image channel the U-Net has one 3x3 input filter bank (9 nf weights) and one 3x3
  output filter (9 nf weights + 1 bias), so RGB has 2 (18 nf + 1) more parameters than grey."""
  assert num_params(on_meta(in_channels=3)) - num_params(on_meta(in_channels=1)) == 2 * (18 * 128 + 1)


def test_timestep_embedding_closed_form():
  t = torch.tensor([0.0, 1.0, 37.5, 999.0])
  emb = SinusoidalEmbedding(8)(t)
  freqs = torch.tensor([10_000.0 ** (-i / 3) for i in range(4)])   # w_i = 10000^(-i/(d/2-1))
  expected = torch.cat([torch.sin(t[:, None] * freqs), torch.cos(t[:, None] * freqs)], dim=1)
  assert torch.allclose(emb, expected, atol=1e-4)   # fp32 sin/cos of arguments up to 999
  assert torch.equal(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))


def test_downsample_pads_as_tensorflow_same():
  """Ho et al.'s stride-2 conv (TF 'SAME' on an even size): output (i, j) sums rows 2i..2i+2
  and columns 2j..2j+2, the zero padding lying only after the last row and column."""
  down = Downsample(1)
  with torch.no_grad():
    down.conv.weight.fill_(1.0)
    out = down(torch.ones(1, 1, 4, 4))[0, 0]
  assert torch.equal(out, torch.tensor([[9.0, 6.0], [6.0, 4.0]]))


def test_output_starts_near_zero_as_in_ho_init():
  model = DDPM(**DIGITS)
  with torch.no_grad():
    out = model(torch.randn(4, 1, 8, 8), torch.full((4,), 500.0))
  # conv_out weights are Xavier-uniform at scale 1e-10, |w| <= sqrt(6e-10 / (9 * 33)) = 1.4e-6,
  # so |out| <= 9 * 32 * 1.4e-6 * max|SiLU(GN(h))| ~ 1e-3 for O(1) activations.
  assert out.abs().max() < 1e-2


def test_output_depends_on_labels_and_not_on_other_samples():
  model = randomize(DDPM(**DIGITS)).eval()
  x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
  labels = torch.linspace(0, 999, 6)
  with torch.no_grad():
    out = model(x, labels)
    shifted = model(x, labels + 100.0)
    one_by_one = torch.cat([model(x[i:i + 1], labels[i:i + 1]) for i in range(6)])
  # Time enters every block: a shift of 100 steps moves the output by O(1), far above fp32 noise.
  assert ((out - shifted).flatten(1).norm(dim=1) > 1e-2 * out.flatten(1).norm(dim=1)).all()
  # GroupNorm acts per sample, so a batch is the concatenation of single forwards.
  assert torch.allclose(out, one_by_one, atol=1e-5)   # fp32 with different reduction orders


def digits_config():
  config = get_default_config()
  config.data.update(dataset='digits', image_size=8, num_channels=1)
  config.model.update(nf=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,))
  return config


def test_digits_model_trains_every_parameter():
  model = randomize(get_model(digits_config())).train()
  out = model(torch.rand(8, 1, 8, 8), torch.randint(0, 1000, (8,)).float())
  assert out.shape == (8, 1, 8, 8)
  out.square().mean().backward()
  dead = [name for name, p in model.named_parameters()
          if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().max() == 0]
  assert not dead


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_runs_on_cuda():
  model = DDPM(**DIGITS).cuda()
  out = model(torch.randn(2, 1, 8, 8, device='cuda'), torch.tensor([1.0, 2.0], device='cuda'))
  assert out.is_cuda and out.shape == (2, 1, 8, 8)


def test_bad_arguments_raise_clear_errors():
  with pytest.raises(ValueError, match='divisible by 2\\^3'):
    DDPM(image_size=12)
  with pytest.raises(ValueError, match='GroupNorm'):
    DDPM(**{**DIGITS, 'nf': 48})       # 48 channels, 32 groups
  with pytest.raises(ValueError, match='labels must have shape'):
    DDPM(**DIGITS)(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1))
  config = get_default_config()
  config.model.name = 'unet3d'
  with pytest.raises(ValueError, match="ddpm.*mlp"):
    get_model(config)
