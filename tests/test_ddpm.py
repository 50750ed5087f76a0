"""Ho et al.'s U-Net: the published parameter count, a count from the architecture's description,
the timestep embedding's closed form, and behaviour (labels matter, samples are independent,
every parameter is trained)."""
import pytest
import torch
from torch import nn

from configs.default import get_default_config
from models import get_model
from models.ddpm import DDPM
from models.layers import SinusoidalEmbedding

DIGITS = dict(in_channels=1, nf=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
              image_size=8, dropout=0.0)


def conv(i, o, k):
  return i * o * k * k + o


def dense(i, o):
  return i * o + o


def hand_count(C, nf, ch_mult, num_res_blocks, attn_resolutions, image_size):
  """Parameters of Ho et al.'s U-Net from its description: GroupNorm 2c, ResNet block
  GN-conv3-temb dense-GN-conv3 (+1x1 when channels change), attention GN + q, k, v, proj; the
  up path's blocks see their input plus one skip activation, popped in reverse order."""
  temb = 4 * nf

  def res(i, o):
    shortcut = conv(i, o, 1) if i != o else 0
    return 2 * i + conv(i, o, 3) + dense(temb, o) + 2 * o + conv(o, o, 3) + shortcut

  def attn(c):
    return 2 * c + 4 * dense(c, c)

  total = dense(nf, temb) + dense(temb, temb) + conv(C, nf, 3)
  skips, ch, size = [nf], nf, image_size
  for level, mult in enumerate(ch_mult):
    for _ in range(num_res_blocks):
      total += res(ch, nf * mult) + (attn(nf * mult) if size in attn_resolutions else 0)
      ch = nf * mult
      skips.append(ch)
    if level < len(ch_mult) - 1:
      total += conv(ch, ch, 3)
      skips.append(ch)
      size //= 2
  total += 2 * res(ch, ch) + attn(ch)
  for level in reversed(range(len(ch_mult))):
    for _ in range(num_res_blocks + 1):
      out = nf * ch_mult[level]
      total += res(ch + skips.pop(), out) + (attn(out) if size in attn_resolutions else 0)
      ch = out
    if level > 0:
      total += conv(ch, ch, 3)
      size *= 2
  assert not skips
  return total + 2 * ch + conv(ch, C, 3)


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
  model = get_model(get_default_config())          # the default config is Ho's CIFAR-10 one
  assert isinstance(model, DDPM)
  assert num_params(model) == 35_746_307           # diffusers UNet2DModel with Ho's settings
  assert hand_count(3, 128, (1, 2, 2, 2), 2, (16,), 32) == 35_746_307
  with torch.no_grad():
    assert model(torch.randn(1, 3, 32, 32), torch.tensor([10.0])).shape == (1, 3, 32, 32)


@pytest.mark.parametrize('kwargs', [
    DIGITS,
    dict(in_channels=3, nf=32, ch_mult=(1, 2, 3), num_res_blocks=2, attn_resolutions=(8, 4),
         image_size=16),
    dict(in_channels=1, nf=16, ch_mult=(1,), num_res_blocks=3, attn_resolutions=(), image_size=4),
])
def test_parameter_count_matches_the_description(kwargs):
  model = DDPM(**kwargs)
  expected = hand_count(kwargs['in_channels'], kwargs['nf'], kwargs['ch_mult'],
                        kwargs['num_res_blocks'], kwargs['attn_resolutions'], kwargs['image_size'])
  assert num_params(model) == expected


def test_timestep_embedding_closed_form():
  t = torch.tensor([0.0, 1.0, 37.5, 999.0])
  emb = SinusoidalEmbedding(8)(t)
  freqs = torch.tensor([10_000.0 ** (-i / 3) for i in range(4)])   # w_i = 10000^(-i/(d/2-1))
  expected = torch.cat([torch.sin(t[:, None] * freqs), torch.cos(t[:, None] * freqs)], dim=1)
  assert torch.allclose(emb, expected, atol=1e-4)   # fp32 sin/cos of arguments up to 999
  assert torch.equal(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))


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
  assert num_params(model) == hand_count(1, 32, (1, 2), 1, (4,), 8)
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
