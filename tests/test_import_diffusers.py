"""models/import_diffusers.py against diffusers' own UNet2DModel: google/ddpm-cifar10-32's
configuration with random weights, saved as diffusers saves it, must become our DDPM computing
the same function; folders that do not fit, and pickles that would run code, are refused."""
import json
import os
import subprocess
import sys

import pytest
import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file, save_file
from torch import nn

from configs.ddpm_cifar10 import get_config
from models.ddpm import DDPM
from models.convert import convert
from models.import_diffusers import is_diffusers_folder, load_diffusers_ddpm, to_ddpm_state
from models.registry import get_model
from models.restore import restore
from utils.checkpoint import CheckpointError

# google/ddpm-cifar10-32's config.json: diffusers' conversion of Ho et al.'s CIFAR-10 model.
CIFAR10 = dict(
    sample_size=32, in_channels=3, out_channels=3, layers_per_block=2,
    block_out_channels=(128, 256, 256, 256),
    down_block_types=('DownBlock2D', 'AttnDownBlock2D', 'DownBlock2D', 'DownBlock2D'),
    up_block_types=('UpBlock2D', 'UpBlock2D', 'AttnUpBlock2D', 'UpBlock2D'),
    act_fn='silu', attention_head_dim=None, center_input_sample=False, downsample_padding=0,
    flip_sin_to_cos=False, freq_shift=1, mid_block_scale_factor=1, norm_eps=1e-6,
    norm_num_groups=32, time_embedding_type='positional')
# Two levels, one block each, attention at the last (8 x 8) level: a second shape of the mapping.
SMALL = {**CIFAR10, 'sample_size': 16, 'layers_per_block': 1, 'block_out_channels': (32, 64),
         'down_block_types': ('DownBlock2D', 'AttnDownBlock2D'),
         'up_block_types': ('AttnUpBlock2D', 'UpBlock2D')}
SMALL_DDPM = dict(nf=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), image_size=16)


def random_unet(config, seed=0):
  """UNet2DModel with generic weights: PyTorch's default init, and random GroupNorm scales and
  shifts too, so that a swapped norm shows."""
  torch.manual_seed(seed)
  unet = UNet2DModel(**config).eval()
  with torch.no_grad():
    for module in unet.modules():
      if isinstance(module, nn.GroupNorm):
        module.weight.normal_(1.0, 0.2)
        module.bias.normal_(0.0, 0.2)
  return unet


@pytest.fixture(scope='module')
def cifar10_unet():
  return random_unet(CIFAR10)


@pytest.fixture
def small_folder(tmp_path):
  random_unet(SMALL).save_pretrained(tmp_path)
  return tmp_path


def max_relative_error(model, unet, image_size, seed=1):
  """max |ours - diffusers| / max |diffusers| on a batch of 2 with integer timesteps."""
  g = torch.Generator().manual_seed(seed)
  x = torch.randn(2, 3, image_size, image_size, generator=g)
  t = torch.randint(0, 1000, (2,), generator=g)
  with torch.no_grad():
    reference = unet(x, t).sample
    ours = model(x, t.float())
  return ((ours - reference).abs().max() / reference.abs().max()).item()


# Both networks run the same float32 operations, differently ordered (the sinusoid's exponent,
# attention, convolution algorithms): ~1e-6 of the output's scale. A wrong key, layout or
# padding moves the output by O(1) of it (0.4 with symmetric stride-2 padding).
TOLERANCE = 1e-5


@pytest.mark.parametrize('safe_serialization', [True, False], ids=['safetensors', 'bin'])
def test_cifar10_import_computes_what_diffusers_computes(cifar10_unet, tmp_path,
                                                         safe_serialization):
  cifar10_unet.save_pretrained(tmp_path, safe_serialization=safe_serialization)
  weights = 'safetensors' if safe_serialization else 'bin'
  assert sorted(os.listdir(tmp_path)) == ['config.json', f'diffusion_pytorch_model.{weights}']
  assert is_diffusers_folder(tmp_path)
  model = get_model(get_config()).eval()
  model.load_state_dict(load_diffusers_ddpm(tmp_path, model), strict=True)
  assert max_relative_error(model, cifar10_unet, 32) <= TOLERANCE


def test_cifar10_network_has_ho_parameter_count_and_takes_every_diffusers_tensor(cifar10_unet):
  """35,746,307 parameters on both sides, and the mapping is one-to-one with equal shapes."""
  with torch.device('meta'):
    model = get_model(get_config())
  assert sum(p.numel() for p in model.parameters()) == 35_746_307
  assert sum(p.numel() for p in cifar10_unet.parameters()) == 35_746_307
  theirs = cifar10_unet.state_dict()
  state = to_ddpm_state(theirs, model, 'unet')
  assert state.keys() == model.state_dict().keys() and len(state) == len(theirs)
  assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in
                                                     model.state_dict().items()}
  assert torch.equal(state['up.2.attns.1.q.weight'],
                     theirs['up_blocks.2.attentions.1.to_q.weight'])


def test_legacy_attention_names_import_alike(cifar10_unet):
  """diffusers' conversion of Ho et al.'s checkpoints names the attention's linear maps
  query/key/value/proj_attn; diffusers itself still reads those names."""
  theirs = cifar10_unet.state_dict()
  legacy = {k.replace('to_q', 'query').replace('to_k', 'key').replace('to_v', 'value')
            .replace('to_out.0', 'proj_attn'): v for k, v in theirs.items()}
  assert 'mid_block.attentions.0.proj_attn.weight' in legacy
  with torch.device('meta'):
    model = get_model(get_config())
  new, old = to_ddpm_state(theirs, model, 'unet'), to_ddpm_state(legacy, model, 'unet')
  assert all(new[k] is old[k] for k in new)


def test_small_configuration_computes_what_diffusers_computes(tmp_path):
  unet = random_unet(SMALL, seed=2)
  unet.save_pretrained(tmp_path)
  model = DDPM(**SMALL_DDPM).eval()
  model.load_state_dict(load_diffusers_ddpm(tmp_path, model), strict=True)
  assert max_relative_error(model, unet, 16) <= TOLERANCE


def refusal(folder):
  """The one-line message load_diffusers_ddpm refuses `folder` with, for the SMALL network."""
  with pytest.raises(CheckpointError) as error:
    load_diffusers_ddpm(folder, DDPM(**SMALL_DDPM))
  message = str(error.value)
  assert '\n' not in message
  return message


def rewrite(folder, edit):
  """Apply `edit` to the folder's safetensors state dict."""
  path = os.path.join(folder, 'diffusion_pytorch_model.safetensors')
  state = load_file(path)
  edit(state)
  save_file(state, path)
  return path


def rewrite_config(folder, edit):
  """Apply `edit` to the folder's config.json dict."""
  path = os.path.join(folder, 'config.json')
  with open(path) as f:
    config = json.load(f)
  edit(config)
  with open(path, 'w') as f:
    json.dump(config, f)
  return path


def test_a_tensor_of_another_shape_is_named_with_both_shapes(small_folder):
  path = rewrite(small_folder, lambda s: s.update({
      'down_blocks.0.resnets.0.conv1.weight': torch.zeros(128, 32, 3, 3)}))
  message = refusal(small_folder)   # our name of diffusers' down_blocks.0.resnets.0.conv1.weight
  assert message.startswith(f"{path}: ") and message.endswith(
      "down.0.blocks.0.conv1.weight: checkpoint (128, 32, 3, 3) vs model (32, 32, 3, 3); "
      "1 keys differ (1 shapes, 0 missing, 0 unexpected)")


def test_a_missing_tensor_is_named(small_folder):
  rewrite(small_folder, lambda s: s.pop('mid_block.attentions.0.to_k.bias'))
  assert ('mid.attns.0.k.bias: checkpoint absent vs model (64,); 1 keys differ (0 shapes, '
          '1 missing, 0 unexpected)') in refusal(small_folder)   # diffusers' ...to_k.bias


def test_an_unexpected_tensor_is_named(small_folder):
  rewrite(small_folder, lambda s: s.update({'class_embedding.weight': torch.zeros(10, 128)}))
  assert ('class_embedding.weight: checkpoint (10, 128) vs model absent; 1 keys differ '
          '(0 shapes, 0 missing, 1 unexpected)') in refusal(small_folder)


@pytest.mark.parametrize('field, value, named', [
    ('_class_name', 'UNet2DConditionModel', "_class_name 'UNet2DConditionModel'"),
    ('down_block_types', ['DownBlock2D', 'CrossAttnDownBlock2D'], "'CrossAttnDownBlock2D'"),
    ('freq_shift', 0, 'freq_shift 0'),
    ('flip_sin_to_cos', True, 'flip_sin_to_cos True'),
    ('downsample_padding', 1, 'downsample_padding 1'),
    ('attention_head_dim', 8, 'attention_head_dim 8'),
    ('block_out_channels', [64, 128], 'block_out_channels [64, 128] vs model [32, 64]'),
    ('layers_per_block', 2, 'layers_per_block 2 vs model 1'),
    ('sample_size', 32, 'sample_size 32 vs model 16'),
    ('up_block_types', ['UpBlock2D', 'AttnUpBlock2D'], 'up_block_types'),
])
def test_a_config_that_is_not_ours_is_refused_by_field(small_folder, field, value, named):
  path = rewrite_config(small_folder, lambda c: c.update({field: value}))
  message = refusal(small_folder)
  assert message.startswith(f"{path}: ") and named in message


def test_an_absent_field_takes_diffusers_default(small_folder):
  """diffusers reads a missing freq_shift as 0, which is not Ho et al.'s 1."""
  rewrite_config(small_folder, lambda c: c.pop('freq_shift'))
  assert 'freq_shift 0' in refusal(small_folder)


def test_a_folder_without_config_or_weights_is_refused(tmp_path):
  assert not is_diffusers_folder(tmp_path)
  assert 'is not a diffusers UNet2DModel folder' in refusal(tmp_path)


def test_unreadable_weights_are_refused(small_folder):
  path = os.path.join(small_folder, 'diffusion_pytorch_model.safetensors')
  with open(path, 'wb') as f:
    f.write(b'not a safetensors file')
  assert refusal(small_folder).startswith(f"cannot read {path}: ")
  os.remove(path)
  torch.save([torch.zeros(3)], os.path.join(small_folder, 'diffusion_pytorch_model.bin'))
  assert refusal(small_folder).endswith('diffusion_pytorch_model.bin is not a state dict of tensors')


class WritesMarker:
  """Unpickling this calls open(marker, 'w'): the file appears iff the pickle ran code."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return open, (self.marker, 'w')


def test_a_pickle_that_would_run_code_is_refused_without_running_it(small_folder, tmp_path_factory):
  os.remove(os.path.join(small_folder, 'diffusion_pytorch_model.safetensors'))
  marker = tmp_path_factory.mktemp('marker') / 'ran'
  weights = os.path.join(small_folder, 'diffusion_pytorch_model.bin')
  torch.save({'conv_in.weight': WritesMarker(str(marker))}, weights)
  assert f"cannot load {weights} as a weights-only checkpoint" in refusal(small_folder)
  assert not marker.exists()
  torch.load(weights, weights_only=False)['conv_in.weight'].close()   # a plain unpickle runs it
  assert marker.exists()


def small_config():
  config = get_config()
  config.update_from_flattened_dict({f'model.{k}': v for k, v in SMALL_DDPM.items()
                                     if k != 'image_size'})
  config.data.image_size = SMALL_DDPM['image_size']
  return config


def test_a_folder_restores_as_its_own_average_and_converts_into_a_run(small_folder, tmp_path):
  """The published weights are the EMA's (Ho et al. release averaged weights): raw and EMA
  networks both compute UNet2DModel's function, and the converted run loads the same."""
  unet = UNet2DModel.from_pretrained(small_folder).eval()
  model, ema, state = restore(small_config(), str(small_folder))
  model.eval()   # ddpm_cifar10 has dropout 0.1
  assert state['step'] == 0 and max_relative_error(model, unet, 16) < TOLERANCE
  ema.copy_to(model)
  assert max_relative_error(model, unet, 16) < TOLERANCE
  path = convert(small_config(), str(small_folder), str(tmp_path / 'run'))
  converted = restore(small_config(), path)[0].eval()
  assert max_relative_error(converted, unet, 16) < TOLERANCE


def test_run_py_samples_from_a_diffusers_folder(small_folder, tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  overrides = [f'--config.model.{k}={v}' for k, v in SMALL_DDPM.items() if k != 'image_size']
  result = subprocess.run(
      [sys.executable, 'run.py', '--mode', 'sample', '--config', 'ddpm_cifar10',
       '--workdir', str(tmp_path / 'run'), *overrides, '--config.data.image_size=16',
       f'--config.eval.ckpt={small_folder}', '--config.device=cpu',
       '--config.sampling.method=ode', '--config.sampling.rtol=0.1', '--config.sampling.atol=0.1',
       '--config.sampling.num_samples=2', '--config.sampling.batch_size=2'],
      cwd=root, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'2 samples from {small_folder.name} (step 0)' in result.stdout
