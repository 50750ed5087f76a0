"""models/dit.py (Peebles & Xie 2023) against the paper and a second implementation, diffusers'
DiTTransformer2DModel: the paper's parameter counts, adaLN-Zero's identity blocks, the patch
order, the sin-cos position embedding and timestep features, diffusers' weights computing the
same function (a small DiT and the full DiT-XL/2, saved and loaded), the refusals of folders
that do not fit, and the network through the model factory with every parameterization."""
import json
import os

import pytest
import torch
from diffusers import DiTTransformer2DModel
from diffusers.models.embeddings import Timesteps, get_2d_sincos_pos_embed
from safetensors.torch import load_file, save_file

import sde_lib
from configs.dit_digits import get_config
from models import get_eps_fn, get_model, parameterization_of
from models.convert import convert
from models.dit import DIT_CONFIGS, DIT_SIZES, DiT, dit
from models.import_diffusers_dit import load_diffusers_dit, to_dit_state
from models.parameterizations import PARAMETERIZATIONS
from models.restore import restore
from models.transformer_layers import (PatchEmbed, patchify, sincos_2d_position_embedding,
                                       timestep_embedding, unpatchify)
from training.losses import get_loss_fn
from utils.checkpoint import CheckpointError

# Table 1 of the paper: parameters (millions) per model size.
PAPER_MILLIONS = {'S': 33, 'B': 130, 'L': 458, 'XL': 675}
# Ours at the latent input (32 x 32 x 4, 1000 classes, learned variance), trainable parameters.
COUNTS = {'DiT-S/2': 32_865_056, 'DiT-B/2': 130_315_808, 'DiT-L/2': 457_840_672,
          'DiT-XL/2': 674_834_720}
# facebookresearch/DiT counts its frozen position embedding, an nn.Parameter there.
OFFICIAL_XL2 = 675_129_632


def diffusers_config(name, **overrides):
  """DiTTransformer2DModel's arguments for the paper's model `name` at the latent input."""
  size = DIT_CONFIGS[name]
  return dict(num_attention_heads=size['num_heads'],
              attention_head_dim=size['hidden_size'] // size['num_heads'], in_channels=4,
              out_channels=8, num_layers=size['depth'], sample_size=32,
              patch_size=size['patch_size'], num_embeds_ada_norm=1000, **overrides)


def embedder_parameters(model):
  """Parameters of one of diffusers' per-block copies of the time and class embedder."""
  return sum(p.numel() for p in model.transformer_blocks[0].norm1.emb.parameters())


def count(model):
  return sum(p.numel() for p in model.parameters())


# ---- sizes ------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', sorted(COUNTS))
def test_paper_configurations_have_the_papers_parameter_counts(name):
  with torch.device('meta'):
    ours = dit(name)
  assert count(ours) == COUNTS[name]
  assert round(COUNTS[name] / 1e6) == PAPER_MILLIONS[name.split('-')[1].split('/')[0]]
  if name == 'DiT-XL/2':
    assert COUNTS[name] + ours.pos_embed.numel() == OFFICIAL_XL2


@pytest.mark.parametrize('name', sorted(DIT_CONFIGS))
def test_every_named_configuration_counts_as_diffusers_without_its_embedder_copies(name):
  """diffusers holds one copy of the time and class embedder per block; ours has the one."""
  with torch.device('meta'):
    ours = dit(name)
    theirs = DiTTransformer2DModel(**diffusers_config(name))
  depth = DIT_CONFIGS[name]['depth']
  assert count(ours) == count(theirs) - (depth - 1) * embedder_parameters(theirs)
  assert {k: v.shape for k, v in ours.state_dict().items()} == {
      k: v.shape for k, v in load_shapes(theirs, ours).items()}


def load_shapes(diffusers_model, ours):
  """diffusers' state dict (meta tensors, which cannot be compared: block 0's embedder only)
  mapped onto ours by the importer's mapping."""
  state = {k: v for k, v in diffusers_model.state_dict().items()
           if '.norm1.emb.' not in k or k.startswith('transformer_blocks.0.')}
  return to_dit_state(state, ours, 'meta')


def test_sizes_are_the_papers_table():
  assert DIT_SIZES == {'S': dict(depth=12, hidden_size=384, num_heads=6),
                       'B': dict(depth=12, hidden_size=768, num_heads=12),
                       'L': dict(depth=24, hidden_size=1024, num_heads=16),
                       'XL': dict(depth=28, hidden_size=1152, num_heads=16)}
  assert sorted(DIT_CONFIGS) == sorted(f'DiT-{s}/{p}' for s in DIT_SIZES for p in (2, 4, 8))


# ---- the pieces ---------------------------------------------------------------------------------

def small_dit(**kwargs):
  torch.manual_seed(0)
  args = dict(input_size=8, patch_size=2, in_channels=3, hidden_size=32, depth=3, num_heads=4,
              num_classes=5)
  return DiT(**{**args, **kwargs}).eval()


def test_adaln_zero_blocks_are_the_identity_at_initialization():
  model = small_dit()
  g = torch.Generator().manual_seed(1)
  x, c = torch.randn(4, 16, 32, generator=g), torch.randn(4, 32, generator=g)
  for block in model.blocks:
    assert torch.equal(block(x, c), x)
  assert torch.equal(model.final_layer(x, c), torch.zeros(4, 16, 2 * 2 * 3))
  labels, classes = 999 * torch.rand(4, generator=g), torch.tensor([0, 4, 5, 2])
  assert torch.equal(model(torch.randn(4, 3, 8, 8, generator=g), labels, classes),
                     torch.zeros(4, 3, 8, 8))
  # Not vacuous: with the regressor's weights no longer zero the block changes x.
  torch.nn.init.normal_(model.blocks[0].adaLN_modulation[1].weight)
  assert not torch.allclose(model.blocks[0](x, c), x)


def test_initialization_is_the_papers():
  """Xavier-uniform linear maps (bound sqrt(6 / (fan_in + fan_out))), N(0, 0.02^2) time MLP and
  class rows, zero biases."""
  torch.manual_seed(0)
  model = DiT(input_size=8, patch_size=2, in_channels=1, hidden_size=64, depth=2, num_heads=4,
              num_classes=1000)
  fc1 = model.blocks[0].mlp.fc1.weight
  assert abs(fc1.abs().max().item() - (6 / (64 + 256)) ** 0.5) < 1e-3
  assert fc1.abs().max() <= (6 / (64 + 256)) ** 0.5
  for weight in (model.t_embedder.mlp[0].weight, model.y_embedder.weight):
    assert abs(weight.std().item() - 0.02) < 1e-3
  assert all(not m.bias.any() for m in model.modules() if isinstance(m, torch.nn.Linear))


def test_patchify_and_unpatchify_round_trip_exactly():
  g = torch.Generator().manual_seed(2)
  for p, shape in ((2, (3, 5, 8, 8)), (4, (2, 2, 16, 16)), (8, (1, 4, 32, 32))):
    x = torch.randn(shape, generator=g)
    tokens = patchify(x, p)
    assert tokens.shape == (shape[0], (shape[2] // p) ** 2, p * p * shape[1])
    assert torch.equal(unpatchify(tokens, p, shape[1]), x)
    assert torch.equal(patchify(unpatchify(tokens, p, shape[1]), p), tokens)


def test_token_k_is_the_patch_in_row_major_order_with_channels_last_inside():
  """Token i * (W / p) + j holds rows i p .. i p + p - 1, columns j p .. j p + p - 1, each
  number at (row in patch, column in patch, channel) = r p C + q C + c (DiT's unpatchify)."""
  p, C, H, W = 2, 3, 4, 6
  x = torch.arange(C * H * W, dtype=torch.float32).reshape(1, C, H, W)
  tokens = patchify(x, p)
  for i in range(H // p):
    for j in range(W // p):
      for r in range(p):
        for q in range(p):
          for c in range(C):
            token, number = i * (W // p) + j, r * p * C + q * C + c
            assert tokens[0, token, number] == x[0, c, i * p + r, j * p + q]
  square = torch.arange(2 * 36, dtype=torch.float32).reshape(1, 2, 6, 6)
  assert torch.equal(unpatchify(patchify(square, 3), 3, 2), square)


def test_the_patch_embedding_is_a_linear_map_of_patchify():
  torch.manual_seed(3)
  embed = PatchEmbed(3, 16, 4)
  x = torch.randn(2, 3, 16, 16)
  kernel = embed.proj.weight.permute(0, 2, 3, 1).reshape(16, -1)   # (D, p, p, C) as patchify
  expected = patchify(x, 4) @ kernel.T + embed.proj.bias
  assert torch.allclose(embed(x), expected, atol=1e-5)


def test_position_embedding_is_maes_2d_sincos():
  """Against diffusers' get_2d_sincos_pos_embed (MAE's), and entries by the formula: the first
  half of the features encodes the column j, the second the row i, each [sin(pos w), cos(pos w)]
  with w_k = 10000^(-k / (D/4))."""
  for dim, grid in ((32, 4), (384, 16), (1152, 16)):
    ours = sincos_2d_position_embedding(dim, grid)
    theirs = get_2d_sincos_pos_embed(dim, grid, base_size=grid, output_type='pt')
    assert ours.shape == (grid * grid, dim)
    assert torch.allclose(ours, theirs.float(), atol=1e-6)
  dim, grid, quarter = 32, 4, 8
  emb = sincos_2d_position_embedding(dim, grid).double()
  i, j = 2, 3
  k = i * grid + j
  for f in range(quarter):
    w = 10000 ** (-f / quarter)
    expected = torch.tensor([j * w, i * w], dtype=torch.float64)
    assert torch.allclose(emb[k, [f, 2 * quarter + f]], torch.sin(expected), atol=1e-6)
    assert torch.allclose(emb[k, [quarter + f, 3 * quarter + f]], torch.cos(expected), atol=1e-6)


def test_timestep_features_are_glides_and_diffusers_shift_theirs():
  t = torch.tensor([0.0, 1.0, 17.0, 999.0])
  half = 128
  freqs = torch.exp(-torch.log(torch.tensor(10000.0)) * torch.arange(half) / half)
  glide = torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], dim=1)
  assert torch.allclose(timestep_embedding(t, 256), glide, atol=1e-5)
  diffusers = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=1)(t)
  assert torch.allclose(timestep_embedding(t, 256, freq_shift=1), diffusers, atol=1e-5)


def test_classes_none_is_the_null_class_and_an_unconditional_dit_takes_none():
  model = small_dit()
  for layer in (model.final_layer.linear, model.final_layer.adaLN_modulation[1]):
    torch.nn.init.normal_(layer.weight)                      # an output that depends on c
  x, labels = torch.randn(2, 3, 8, 8), torch.tensor([10.0, 500.0])
  with torch.no_grad():
    assert torch.equal(model(x, labels), model(x, labels, torch.tensor([5, 5])))
    assert not torch.equal(model(x, labels), model(x, labels, torch.tensor([0, 1])))
  with pytest.raises(ValueError, match='unconditional'):
    small_dit(num_classes=0)(x, labels, torch.tensor([0, 1]))


# ---- diffusers' DiTTransformer2DModel -------------------------------------------------------

def random_diffusers_dit(config, seed=0):
  """DiTTransformer2DModel with PyTorch's default init, its per-block embedder copies made one
  (as diffusers' conversion of the paper's checkpoints writes them)."""
  torch.manual_seed(seed)
  model = DiTTransformer2DModel(**config).eval()
  shared = model.transformer_blocks[0].norm1.emb.state_dict()
  for block in model.transformer_blocks[1:]:
    block.norm1.emb.load_state_dict(shared)
  return model


def reference_and_inputs(theirs, seed=1):
  """(diffusers' output, x, time steps, classes) for a batch of 2, one of them the null class."""
  c = theirs.config
  g = torch.Generator().manual_seed(seed)
  x = torch.randn(2, c.in_channels, c.sample_size, c.sample_size, generator=g)
  t = torch.randint(0, 1000, (2,), generator=g)
  classes = torch.tensor([3, c.num_embeds_ada_norm])
  with torch.no_grad():
    return theirs(x, t, classes).sample, x, t, classes


def relative_error(ours, reference, x, t, classes):
  with torch.no_grad():
    out = ours(x, t.float(), classes)
  return ((out - reference).abs().max() / reference.abs().max()).item()


# Both run the same float32 operations, differently grouped (q, k, v in one map or three):
# ~1e-6 of the output's scale (measured 4e-7 small, 1e-6 XL/2). 'paper' is 4% off.
TOLERANCE = 1e-5
SMALL = dict(num_attention_heads=4, attention_head_dim=8, in_channels=3, out_channels=6,
             num_layers=3, sample_size=16, patch_size=4, num_embeds_ada_norm=10)
SMALL_DIT = dict(input_size=16, patch_size=4, in_channels=3, out_channels=6, hidden_size=32,
                 depth=3, num_heads=4, num_classes=10)


@pytest.fixture
def small_folder(tmp_path):
  random_diffusers_dit(SMALL).save_pretrained(tmp_path)
  return tmp_path


@pytest.mark.parametrize('safe_serialization', [True, False], ids=['safetensors', 'bin'])
def test_small_dit_computes_what_diffusers_computes(tmp_path, safe_serialization):
  theirs = random_diffusers_dit(SMALL)
  theirs.save_pretrained(tmp_path, safe_serialization=safe_serialization)
  weights = 'safetensors' if safe_serialization else 'bin'
  assert sorted(os.listdir(tmp_path)) == ['config.json', f'diffusion_pytorch_model.{weights}']
  reference, *inputs = reference_and_inputs(theirs)
  ours = DiT(**SMALL_DIT, convention='diffusers').eval()
  ours.load_state_dict(load_diffusers_dit(tmp_path, ours), strict=True)
  assert relative_error(ours, reference, *inputs) <= TOLERANCE
  paper = DiT(**SMALL_DIT).eval()      # the same weights under the paper's two constants
  paper.load_state_dict(load_diffusers_dit(tmp_path, paper), strict=True)
  assert relative_error(paper, reference, *inputs) > 100 * TOLERANCE


@pytest.mark.slow
def test_dit_xl2_computes_what_diffusers_computes(tmp_path):
  """The full DiT-XL/2 (675M parameters, 3 GB of safetensors), random weights."""
  theirs = random_diffusers_dit(diffusers_config('DiT-XL/2'))
  reference, *inputs = reference_and_inputs(theirs)
  theirs.save_pretrained(tmp_path)
  del theirs
  ours = dit('DiT-XL/2', convention='diffusers').eval()
  ours.load_state_dict(load_diffusers_dit(tmp_path, ours), strict=True)
  assert relative_error(ours, reference, *inputs) <= TOLERANCE


def refusal(folder, **kwargs):
  """The one-line message load_diffusers_dit refuses `folder` with, for the SMALL network."""
  with pytest.raises(CheckpointError) as error:
    load_diffusers_dit(folder, DiT(**{**SMALL_DIT, **kwargs}))
  message = str(error.value)
  assert '\n' not in message
  return message


def rewrite(folder, edit, name='config.json'):
  """Apply `edit` to the folder's config.json dict or safetensors state dict."""
  path = os.path.join(folder, name)
  if name == 'config.json':
    with open(path) as f:
      content = json.load(f)
    edit(content)
    with open(path, 'w') as f:
      json.dump(content, f)
  else:
    content = load_file(path)
    edit(content)
    save_file(content, path)
  return path


WEIGHTS = 'diffusion_pytorch_model.safetensors'


def test_embedder_copies_that_differ_are_refused(small_folder):
  key = 'transformer_blocks.2.norm1.emb.timestep_embedder.linear_1.bias'
  path = rewrite(small_folder, lambda s: s[key].add_(1.0), WEIGHTS)
  assert refusal(small_folder).startswith(f"{path}: {key} differs from block 0's")


def test_a_tensor_of_another_shape_is_named_in_our_names_with_both_shapes(small_folder):
  path = rewrite(small_folder, lambda s: s.update({
      'transformer_blocks.1.ff.net.0.proj.weight': torch.zeros(64, 32)}), WEIGHTS)
  assert refusal(small_folder) == (
      f"{path}: the checkpoint's diffusers DiTTransformer2DModel does not match the configured "
      "architecture (was it trained with another config?): blocks.1.mlp.fc1.weight: checkpoint "
      "(64, 32) vs model (128, 32); 1 keys differ (1 shapes, 0 missing, 0 unexpected)")


def test_a_missing_attention_map_is_named(small_folder):
  rewrite(small_folder, lambda s: s.pop('transformer_blocks.0.attn1.to_k.weight'), WEIGHTS)
  assert 'blocks.0.attn.qkv.weight: checkpoint absent vs model (96, 32)' in refusal(small_folder)


@pytest.mark.parametrize('field, value, named', [
    ('_class_name', 'PixArtTransformer2DModel', "_class_name 'PixArtTransformer2DModel'"),
    ('activation_fn', 'geglu', "activation_fn 'geglu'"),
    ('norm_type', 'ada_norm', "norm_type 'ada_norm'"),
    ('num_layers', 4, 'num_layers 4 vs model 3'),
    ('patch_size', 2, 'patch_size 2 vs model 4'),
    ('attention_head_dim', 16, 'attention_head_dim 16 vs model 8'),
    ('num_embeds_ada_norm', 1000, 'num_embeds_ada_norm 1000 vs model 10'),
    ('attention_bias', False, 'attention_bias False vs model True'),
    ('out_channels', None, 'out_channels 3 vs model 6'),
])
def test_a_config_that_is_not_ours_is_refused_by_field(small_folder, field, value, named):
  path = rewrite(small_folder, lambda c: c.update({field: value}))
  message = refusal(small_folder)
  assert message.startswith(f"{path}: ") and named in message


def test_norm_eps_is_checked_under_the_diffusers_convention_only(small_folder):
  rewrite(small_folder, lambda c: c.update(norm_eps=1e-6))
  assert 'norm_eps 1e-06 vs model 1e-05' in refusal(small_folder, convention='diffusers')
  model = DiT(**SMALL_DIT)
  model.load_state_dict(load_diffusers_dit(small_folder, model))   # 'paper' has its own eps


def test_a_pickle_is_read_weights_only(small_folder):
  os.remove(os.path.join(small_folder, WEIGHTS))
  weights = os.path.join(small_folder, 'diffusion_pytorch_model.bin')
  torch.save({'proj_out_2.weight': torch.nn.Linear(2, 2)}, weights)   # a module: not weights
  assert f"cannot load {weights} as a weights-only checkpoint" in refusal(small_folder)


def test_a_folder_of_another_kind_is_refused(tmp_path):
  assert 'is not a diffusers DiTTransformer2DModel folder' in refusal(tmp_path)


# ---- through the model factory --------------------------------------------------------------

DIGITS_DIFFUSERS = dict(num_attention_heads=4, attention_head_dim=24, in_channels=1,
                        out_channels=1, num_layers=4, sample_size=8, patch_size=2,
                        num_embeds_ada_norm=10)


def digits_config(**model):
  config = get_config()
  config.model.update(model)
  return config


def test_dit_digits_is_built_from_the_config_fields():
  model = get_model(get_config())
  assert isinstance(model, DiT) and len(model.blocks) == 4 and model.patch_size == 2
  assert model.pos_embed.shape == (1, 16, 96) and model.y_embedder is None
  assert count(model) == 722_788
  conditional = get_model(digits_config(class_conditional=True))
  assert conditional.y_embedder.weight.shape == (11, 96)     # 10 digits and the null class


def test_a_diffusers_folder_restores_and_converts_into_a_run(tmp_path):
  """restore and models.convert take a DiT folder for a DiT config as they take a DDPM folder."""
  theirs = random_diffusers_dit(DIGITS_DIFFUSERS)
  theirs.save_pretrained(tmp_path / 'folder')
  reference, *inputs = reference_and_inputs(theirs)
  config = digits_config(class_conditional=True, dit_convention='diffusers')
  model, ema, state = restore(config, str(tmp_path / 'folder'))
  assert state['step'] == 0 and relative_error(model.eval(), reference, *inputs) <= TOLERANCE
  path = convert(config, str(tmp_path / 'folder'), str(tmp_path / 'run'))
  converted = restore(config, path)[0].eval()
  assert relative_error(converted, reference, *inputs) <= TOLERANCE


@pytest.mark.parametrize('parameterization', sorted(PARAMETERIZATIONS))
def test_every_parameterization_trains_through_the_factory(parameterization):
  """The network is the parameterization's F: the loss is finite and reaches the weights."""
  config = digits_config(parameterization=parameterization, class_conditional=True)
  sde = sde_lib.get_sde(config)
  model = get_model(config)
  torch.manual_seed(0)
  x0 = torch.rand(8, 1, 8, 8) * 2 - 1
  classes = torch.randint(0, 10, (8,))
  loss = get_loss_fn(config, sde)(model, x0, classes=classes).mean()
  loss.backward()
  assert torch.isfinite(loss)
  assert model.final_layer.linear.weight.grad.abs().sum() > 0   # the first step's one path
  eps_fn = get_eps_fn(sde, model, True, parameterization_of(config))
  eps, _, _ = eps_fn(x0, torch.full((8,), 0.5), classes)
  assert eps.shape == x0.shape and torch.isfinite(eps).all()


def test_learned_variance_is_dits_learn_sigma_on_the_chain():
  """model.learn_variance doubles the output channels (eps, then v) and trains with L_hybrid
  on the DDPM chain, as DiT does."""
  config = digits_config(learn_variance=True)
  config.training.loss, config.training.continuous = 'ddpm', False
  model = get_model(config)
  assert model.out_channels == 2 and model.final_layer.linear.out_features == 2 * 2 * 2
  sde = sde_lib.get_sde(config)
  loss = get_loss_fn(config, sde)(model, torch.rand(4, 1, 8, 8) * 2 - 1).mean()
  loss.backward()
  assert torch.isfinite(loss)
