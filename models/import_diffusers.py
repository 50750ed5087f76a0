"""Ho et al.'s U-Net weights in the diffusers format (google/ddpm-cifar10-32): a folder with a
UNet2DModel `config.json` and `diffusion_pytorch_model.safetensors` or `.bin`.

With DownBlock2D / AttnDownBlock2D levels, one attention head, [sin, cos] timestep features with
w_i = 10000^(-i / (d/2 - 1)) and TF-'SAME' downsampling, UNet2DModel is models.ddpm.DDPM module
for module, so importing is renaming: down_blocks.i.resnets.j -> down.i.blocks.j,
attentions.j.to_q -> attns.j.q, and so on (`diffusers_key`). Nothing is unpickled: safetensors,
or a .bin read with torch.load(weights_only=True).
"""
import json
import os

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from models.layers import AttnBlock
from utils.checkpoint import CheckpointError, check_state, load_checkpoint

CONFIG = 'config.json'
WEIGHTS = ('diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.bin')  # preferred first

# UNet2DModel settings under which it computes Ho et al.'s network, as (required, diffusers'
# default): a field config.json omits takes the default.
_HO_SETTINGS = {
    'act_fn': ('silu', 'silu'),
    'add_attention': (True, True),
    'attention_head_dim': (None, 8),              # None: one head over all channels
    'attn_norm_num_groups': (None, None),
    'center_input_sample': (False, False),
    'class_embed_type': (None, None),
    'downsample_padding': (0, 1),                 # 0: one zero row and column after, as TF 'SAME'
    'downsample_type': ('conv', 'conv'),
    'flip_sin_to_cos': (False, True),             # [sin, cos], as SinusoidalEmbedding
    'freq_shift': (1, 0),                         # w_i = 10000^(-i / (d/2 - freq_shift))
    'mid_block_scale_factor': (1, 1),
    'mid_block_type': ('UNetMidBlock2D', 'UNetMidBlock2D'),
    'norm_eps': (1e-6, 1e-5),
    'num_class_embeds': (None, None),
    'resnet_time_scale_shift': ('default', 'default'),
    'time_embedding_dim': (None, None),           # None: 4 nf
    'time_embedding_type': ('positional', 'positional'),
    'upsample_type': ('conv', 'conv'),
}
_BLOCK_TYPES = {'down_block_types': ('DownBlock2D', 'AttnDownBlock2D'),
                'up_block_types': ('UpBlock2D', 'AttnUpBlock2D')}

# Our module names -> UNet2DModel's, one dotted segment at a time (`diffusers_key`).
_RENAME = {'down': 'down_blocks', 'mid': 'mid_block', 'up': 'up_blocks', 'blocks': 'resnets',
           'attns': 'attentions', 'temb_proj': 'time_emb_proj', 'shortcut': 'conv_shortcut',
           'norm': 'group_norm', 'q': 'to_q', 'k': 'to_k', 'v': 'to_v', 'proj_out': 'to_out.0',
           'norm_out': 'conv_norm_out'}
# Older attention names, as diffusers' script that converted Ho et al.'s checkpoints writes them.
_LEGACY = {'query': 'to_q', 'key': 'to_k', 'value': 'to_v', 'proj_attn': 'to_out.0'}


def is_diffusers_folder(path):
  """Whether `path` is a diffusers model folder: a config.json and its weights (a UNet2DModel's
  here, a DiTTransformer2DModel's for models/import_diffusers_dit.py)."""
  return os.path.isfile(os.path.join(path, CONFIG)) and weights_path(path) is not None


def weights_path(folder):
  """The folder's safetensors file, else its .bin, else None."""
  paths = (os.path.join(folder, name) for name in WEIGHTS)
  return next((path for path in paths if os.path.isfile(path)), None)


def load_diffusers_ddpm(folder, model):
  """The folder's weights as a state dict of `model` (a models.ddpm.DDPM), after checking its
  config.json against the model and every key and shape; CheckpointError names the first
  field or key that does not fit."""
  if not is_diffusers_folder(folder):
    raise CheckpointError(f"{folder} is not a diffusers UNet2DModel folder ({CONFIG} and "
                          f"{' or '.join(WEIGHTS)}; for a pipeline folder, pass its unet/)")
  check_config(read_config(folder), model, os.path.join(folder, CONFIG))
  path = weights_path(folder)
  return to_ddpm_state(read_weights(path), model, path)


def check_config(config, model, path):
  """Refuse a config.json that is not Ho et al.'s U-Net or not `model`'s sizes."""
  if config.get('_class_name') != 'UNet2DModel':
    raise CheckpointError(f"{path}: _class_name {config.get('_class_name')!r}, but Ho et al.'s "
                          f"U-Net comes as a 'UNet2DModel'")
  for field, allowed in _BLOCK_TYPES.items():
    other = [t for t in config.get(field, ()) if t not in allowed]
    if other:
      raise CheckpointError(f"{path}: {field} has {other[0]!r}; Ho et al.'s U-Net is built of "
                            f"{' and '.join(allowed)} only")
  for field, (required, default) in _HO_SETTINGS.items():
    if config.get(field, default) != required:
      raise CheckpointError(f"{path}: {field} {config.get(field, default)!r}, but Ho et al.'s "
                            f"U-Net (models.ddpm.DDPM) has {required!r}")
  for field, value in _model_fields(model).items():
    if config.get(field) != value:
      raise CheckpointError(f"{path}: {field} {config.get(field)!r} vs model {value!r}")


def _model_fields(model):
  """The UNet2DModel config fields that `model`'s structure fixes."""
  attn = [isinstance(stage.attns[0], AttnBlock) for stage in model.down]
  groups = sorted({m.num_groups for m in model.modules() if isinstance(m, nn.GroupNorm)})
  return {
      'in_channels': model.conv_in.in_channels,
      'out_channels': model.conv_out.out_channels,
      'sample_size': model.image_size,
      'block_out_channels': [stage.blocks[0].conv1.out_channels for stage in model.down],
      'layers_per_block': len(model.down[0].blocks),
      'norm_num_groups': groups[0] if len(groups) == 1 else groups,   # diffusers has one
      'down_block_types': ['AttnDownBlock2D' if a else 'DownBlock2D' for a in attn],
      'up_block_types': ['AttnUpBlock2D' if a else 'UpBlock2D' for a in reversed(attn)],
  }


def diffusers_key(key):
  """Our state-dict key -> UNet2DModel's, e.g. up.2.attns.0.q.weight ->
  up_blocks.2.attentions.0.to_q.weight; time_embed is Sequential(sinusoid, Linear, SiLU, Linear)."""
  parts = key.split('.')
  if parts[0] == 'time_embed':
    parts[:2] = ['time_embedding', {'1': 'linear_1', '3': 'linear_2'}[parts[1]]]
  resample = f"{parts[0]}samplers.0"          # down.i.resample -> down_blocks.i.downsamplers.0
  return '.'.join(resample if p == 'resample' else _RENAME.get(p, p) for p in parts)


def to_ddpm_state(state, model, source):
  """A UNet2DModel state dict -> `model`'s, renamed by `diffusers_key` and checked by
  utils.checkpoint.check_state (one line naming the first misfit key, in our names, with both
  shapes); keys it cannot place keep their diffusers names."""
  state = {'.'.join(_LEGACY.get(p, p) for p in k.split('.')): v for k, v in state.items()}
  ours = {diffusers_key(key): key for key in model.state_dict()}
  renamed = {ours.get(key, key): value for key, value in state.items()}
  try:
    check_state(model, renamed, what='diffusers UNet2DModel')
  except CheckpointError as e:
    raise CheckpointError(f"{source}: {e}") from None
  return renamed


def read_config(folder):
  path = os.path.join(folder, CONFIG)
  try:
    with open(path) as f:
      config = json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f"cannot read {path}: {e}") from None
  if not isinstance(config, dict):
    raise CheckpointError(f"{path} is not a JSON object")
  return config


def read_weights(path):
  """{name: tensor} from a .safetensors file or a weights-only .bin."""
  if path.endswith('.safetensors'):
    try:
      return safetensors.torch.load_file(path, device='cpu')
    except (SafetensorError, OSError) as e:
      raise CheckpointError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
  state = load_checkpoint(path)
  if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
    raise CheckpointError(f"{path} is not a state dict of tensors")
  return state
