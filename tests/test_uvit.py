"""models/uvit.py (Bao et al. 2023) against the paper: the CIFAR-10 model's parameter count
tallied from the paper's table, the network against a transcription of the paper's forward pass
in plain tensor operations (time and class as tokens, long skips pairing the shallow and deep
blocks, the final convolution), and the network through the model factory with every
parameterization and class conditions."""
import math

import pytest
import torch
import torch.nn.functional as F

import sde_lib
from configs.uvit_cifar10 import get_config as cifar10_config
from configs.uvit_digits import get_config as digits_config
from models import get_eps_fn, get_model, parameterization_of
from models.parameterizations import PARAMETERIZATIONS
from models.uvit import UViT
from training.losses import get_loss_fn
from pipeline.train import Trainer


def count(model):
  return sum(p.numel() for p in model.parameters())


def paper_count(blocks=13, D=512, mlp=2048, C=3, p=2, image=32):
  """U-ViT-S/2 on CIFAR-10 by the paper's Table 1 (13 blocks, width 512, MLP 2048) and the
  layers of its sec. 3: per block two LayerNorms, q/k/v maps without biases, the output map and
  the MLP; a skip merge Linear(2D, D) for each of the 6 out blocks; the patch embedding, the
  position embedding of the time token and 256 patch tokens, the final LayerNorm, the patch
  decoder and the 3x3 convolution."""
  block = 2 * 2 * D + 3 * D * D + (D * D + D) + (D * mlp + mlp) + (mlp * D + D)
  skips = (blocks // 2) * (2 * D * D + D)
  tokens = 1 + (image // p) ** 2
  ends = (C * p * p * D + D) + tokens * D + 2 * D + (D * p * p * C + p * p * C) + (C * C * 9 + C)
  return blocks * block + skips + ends


def test_cifar10_model_has_the_papers_parameter_count():
  with torch.device('meta'):
    model = get_model(cifar10_config())
  assert isinstance(model, UViT)
  assert count(model) == paper_count() == 44_255_328
  assert round(count(model) / 1e6) == 44                       # "U-ViT-S/2 ... 44M"
  assert len(model.in_blocks) == len(model.out_blocks) == 6    # and the middle block: 13


# ---- the paper's forward pass in plain operations ------------------------------------------------

def layer_norm(x, norm):
  mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
  return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def attention(x, attn, heads):
  """softmax(q k^T / sqrt(d)) v per head, the heads' outputs side by side, then the output map."""
  B, T, D = x.shape
  d = D // heads
  qkv = x @ attn.qkv.weight.T + (attn.qkv.bias if attn.qkv.bias is not None else 0)
  q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]
  outs = []
  for h in range(heads):
    s = slice(h * d, (h + 1) * d)
    weights = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(d), dim=-1)
    outs.append(weights @ v[..., s])
  return torch.cat(outs, -1) @ attn.proj.weight.T + attn.proj.bias


def block(x, b, heads, skip=None):
  if skip is not None:
    x = torch.cat([x, skip], -1) @ b.skip_linear.weight.T + b.skip_linear.bias
  x = x + attention(layer_norm(x, b.norm1), b.attn, heads)
  h = layer_norm(x, b.norm2) @ b.mlp.fc1.weight.T + b.mlp.fc1.bias
  h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))            # GELU
  return x + h @ b.mlp.fc2.weight.T + b.mlp.fc2.bias


def transcription(model, x, labels, classes, heads):
  """Bao et al.'s U-ViT: the class token, the time token (sinusoid [cos, sin] at frequencies
  10000^(-i / (D/2)), through the MLP if there is one) and one token per patch (row-major,
  each a linear map of its C x p x p pixels) plus the position embedding; in blocks keeping
  their outputs, the middle block, out blocks each merging the output of the in block mirrored
  about the middle; LayerNorm, the patch decoder, the patch tokens' numbers (p x p x C each)
  put back, a 3x3 convolution."""
  B, C, H, W = x.shape
  D, p = model.hidden_size, model.patch_size
  i = torch.arange(D // 2, dtype=torch.float32)                  # in float32, as theirs
  angles = labels.float()[:, None] * torch.exp(-math.log(10000) * i / (D // 2))[None]
  time = torch.cat([torch.cos(angles), torch.sin(angles)], 1).to(x.dtype)
  if isinstance(model.time_embed, torch.nn.Sequential):          # the time MLP (ImageNet's)
    first, _, second = model.time_embed
    time = F.silu(time @ first.weight.T + first.bias) @ second.weight.T + second.bias
  tokens = [time]
  if model.label_emb is not None:
    tokens.insert(0, model.label_emb.weight[classes])
  kernel = model.patch_embed.proj.weight.reshape(D, -1)            # (D, C p p)
  for r in range(H // p):
    for c in range(W // p):
      patch = x[:, :, r * p:(r + 1) * p, c * p:(c + 1) * p].reshape(B, -1)
      tokens.append(patch @ kernel.T + model.patch_embed.proj.bias)
  h = torch.stack(tokens, 1) + model.pos_embed
  kept = []
  for b in model.in_blocks:
    h = block(h, b, heads)
    kept.append(h)
  h = block(h, model.mid_block, heads)
  for j, b in enumerate(model.out_blocks):
    h = block(h, b, heads, skip=kept[len(kept) - 1 - j])
  h = layer_norm(h, model.norm) @ model.decoder_pred.weight.T + model.decoder_pred.bias
  h = h[:, model.extras:]
  out_c = model.out_channels
  image = torch.zeros(B, out_c, H, W)
  for k in range(h.shape[1]):
    r, c = divmod(k, W // p)
    image[:, :, r * p:(r + 1) * p, c * p:(c + 1) * p] = h[:, k].reshape(B, p, p, out_c).permute(
        0, 3, 1, 2)
  return F.conv2d(image, model.final_layer.weight, model.final_layer.bias, padding=1)


@pytest.mark.parametrize('num_classes, mlp_time_embed', [(0, False), (10, False), (10, True)])
def test_the_network_is_the_papers_forward_pass(num_classes, mlp_time_embed, float64):
  torch.manual_seed(0)
  model = UViT(image_size=8, patch_size=2, in_channels=3, out_channels=6, hidden_size=32,
               depth=4, num_heads=4, qkv_bias=True, num_classes=num_classes,
               mlp_time_embed=mlp_time_embed).eval()
  for p in model.parameters():          # generic weights: no zero bias hides a swapped term
    torch.nn.init.normal_(p, std=0.2)
  g = torch.Generator().manual_seed(1)
  x, labels = torch.randn(3, 3, 8, 8, generator=g), 999 * torch.rand(3, generator=g)
  classes = torch.tensor([0, 4, 10]) if num_classes else None
  with torch.no_grad():
    ours = model(x, labels, classes)
    reference = transcription(model, x, labels, classes, heads=4)
  assert ours.shape == (3, 6, 8, 8)
  assert torch.allclose(ours, reference, rtol=1e-9, atol=1e-9)


def test_classes_none_is_the_null_class_and_the_class_is_a_token():
  torch.manual_seed(0)
  model = UViT(image_size=8, patch_size=2, in_channels=1, hidden_size=32, depth=2,
               num_heads=4, num_classes=3).eval()
  assert model.pos_embed.shape == (1, 2 + 16, 32) and model.extras == 2
  x, labels = torch.randn(2, 1, 8, 8), torch.tensor([10.0, 500.0])
  with torch.no_grad():
    assert torch.equal(model(x, labels), model(x, labels, torch.tensor([3, 3])))
    assert not torch.equal(model(x, labels), model(x, labels, torch.tensor([0, 1])))
  unconditional = UViT(image_size=8, patch_size=2, in_channels=1, hidden_size=32, depth=2,
                       num_heads=4)
  assert unconditional.pos_embed.shape == (1, 1 + 16, 32)
  with pytest.raises(ValueError, match='unconditional'):
    unconditional(x, labels, torch.tensor([0, 1]))


def test_an_odd_depth_or_a_patch_that_does_not_divide_is_refused():
  with pytest.raises(ValueError, match='must be even'):
    UViT(depth=5)
  with pytest.raises(ValueError, match='patch_size 3 must divide the image size 32'):
    UViT(patch_size=3)


# ---- through the model factory --------------------------------------------------------------

def digits(**model):
  config = digits_config()
  config.model.update(model)
  return config


def test_uvit_digits_is_built_from_the_config_fields():
  model = get_model(digits_config())
  assert isinstance(model, UViT) and len(model.in_blocks) == 3 and model.label_emb is None
  assert model.pos_embed.shape == (1, 1 + 16, 88) and count(model) == 705_862
  conditional = get_model(digits(class_conditional=True))
  assert conditional.label_emb.weight.shape == (11, 88)


@pytest.mark.parametrize('parameterization', sorted(PARAMETERIZATIONS))
def test_every_parameterization_trains_through_the_factory(parameterization):
  config = digits(parameterization=parameterization, class_conditional=True)
  sde = sde_lib.get_sde(config)
  model = get_model(config)
  torch.manual_seed(0)
  x0 = torch.rand(8, 1, 8, 8) * 2 - 1
  classes = torch.randint(0, 10, (8,))
  loss = get_loss_fn(config, sde)(model, x0, classes=classes).mean()
  loss.backward()
  assert torch.isfinite(loss) and model.patch_embed.proj.weight.grad.abs().sum() > 0
  eps, _, _ = get_eps_fn(sde, model, True, parameterization_of(config))(
      x0, torch.full((8,), 0.5), classes)
  assert eps.shape == x0.shape and torch.isfinite(eps).all()


def test_adamw_decays_the_weights_apart_from_the_gradient(tmp_path):
  """U-ViT's optimizer: with a zero gradient Adam's L2 term moves a weight by lr (its first
  step is lr * sign), AdamW's decoupled decay by lr * weight_decay * theta (Loshchilov &
  Hutter 2019, Algorithm 2)."""
  config = digits(hidden_size=16, depth=2, num_heads=2)
  config.device = 'cpu'
  config.training.update(snapshot_sampling=False, bound_images=0)
  config.optim.update(optimizer='adamw', weight_decay=0.03, lr=2e-4)
  trainer = Trainer(config, str(tmp_path / 'run'), progress=False)
  assert isinstance(trainer.optimizer, torch.optim.AdamW)
  weight = trainer.model.mid_block.mlp.fc1.weight
  before = weight.detach().clone()
  weight.grad = torch.zeros_like(weight)
  trainer.optimizer.step()
  trainer.ddp.close()
  assert torch.allclose(weight.detach(), before * (1 - 2e-4 * 0.03), rtol=0, atol=1e-9)


def test_learned_variance_doubles_the_output_channels():
  config = digits(learn_variance=True)
  config.training.loss, config.training.continuous = 'ddpm', False
  model = get_model(config)
  assert model.out_channels == 2 and model.final_layer.out_channels == 2
  loss = get_loss_fn(config, sde_lib.get_sde(config))(model, torch.rand(4, 1, 8, 8) * 2 - 1)
  assert torch.isfinite(loss.mean())
