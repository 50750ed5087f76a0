"""DiT weights in the diffusers format (facebook/DiT-XL-2-256's transformer/): a folder with a
DiTTransformer2DModel `config.json` and `diffusion_pytorch_model.safetensors` or `.bin`, read as
models/import_diffusers.py reads a UNet2DModel (safetensors, or torch.load(weights_only=True);
one line naming the first misfit, from utils.checkpoint.check_state).

DiTTransformer2DModel is Peebles & Xie's network with diffusers' names, with two differences of
layout: q, k and v are three linear maps (ours one, their rows stacked q, k, v), and every block
holds its own copy of the time and class embedder (diffusers' conversion of the paper's
checkpoints writes the one embedder into each block; the last layer uses block 0's). A folder
whose copies differ is refused: it is not a DiT. What it computes from the weights differs from
the paper's code in two constants (models/dit.py CONVENTIONS); a DiT built with
convention='diffusers' computes exactly what diffusers does, one with 'paper' what
facebookresearch/DiT computes from the same weights.
"""
import os

import torch

from models.import_diffusers import (CONFIG, WEIGHTS, is_diffusers_folder, read_config,
                                     read_weights, weights_path)
from utils.checkpoint import CheckpointError, check_state

CLASS_NAME = 'DiTTransformer2DModel'
# Settings under which DiTTransformer2DModel is our DiT, as (required, diffusers' default).
_DIT_SETTINGS = {
    'activation_fn': ('gelu-approximate', 'gelu-approximate'),   # GELU, tanh approximation
    'norm_type': ('ada_norm_zero', 'ada_norm_zero'),
    'norm_elementwise_affine': (False, False),
    'dropout': (0.0, 0.0),
}
_DEFAULTS = {'num_attention_heads': 16, 'attention_head_dim': 72, 'in_channels': 4,
             'out_channels': None, 'num_layers': 28, 'sample_size': 32, 'patch_size': 2,
             'attention_bias': True, 'num_embeds_ada_norm': 1000, 'norm_eps': 1e-5}
# The time and class embedder of block 0, which is ours; every other block's copy must equal it.
_EMBEDDER = 'transformer_blocks.{}.norm1.emb.'
# Our module names -> DiTTransformer2DModel's (`diffusers_dit_key`): whole-network modules, then
# those of block i (blocks.i.* -> transformer_blocks.i.*); 'to_qkv' stands for the stacked
# to_q, to_k, to_v.
_TOP = {'x_embedder.proj': 'pos_embed.proj',
        't_embedder.mlp.0': _EMBEDDER.format(0) + 'timestep_embedder.linear_1',
        't_embedder.mlp.2': _EMBEDDER.format(0) + 'timestep_embedder.linear_2',
        'y_embedder': _EMBEDDER.format(0) + 'class_embedder.embedding_table',
        'final_layer.adaLN_modulation.1': 'proj_out_1', 'final_layer.linear': 'proj_out_2'}
_BLOCK = {'adaLN_modulation.1': 'norm1.linear', 'attn.qkv': 'attn1.to_qkv',
          'attn.proj': 'attn1.to_out.0', 'mlp.fc1': 'ff.net.0.proj', 'mlp.fc2': 'ff.net.2'}


def load_diffusers_dit(folder, model):
  """The folder's weights as a state dict of `model` (a models.dit.DiT), after checking its
  config.json against the model; CheckpointError names the first field or key that does not fit."""
  if not is_diffusers_folder(folder):
    raise CheckpointError(f"{folder} is not a diffusers {CLASS_NAME} folder ({CONFIG} and "
                          f"{' or '.join(WEIGHTS)}; for a pipeline folder, pass its transformer/)")
  check_dit_config(read_config(folder), model, os.path.join(folder, CONFIG))
  path = weights_path(folder)
  return to_dit_state(read_weights(path), model, path)


def check_dit_config(config, model, path):
  """Refuse a config.json that is not a DiT or not `model`'s sizes."""
  if config.get('_class_name') != CLASS_NAME:
    raise CheckpointError(f"{path}: _class_name {config.get('_class_name')!r}, but a DiT comes "
                          f"as a {CLASS_NAME!r}")
  for field, (required, default) in _DIT_SETTINGS.items():
    if config.get(field, default) != required:
      raise CheckpointError(f"{path}: {field} {config.get(field, default)!r}, but our DiT "
                            f"(models.dit.DiT) has {required!r}")
  values = {field: config.get(field, default) for field, default in _DEFAULTS.items()}
  values['out_channels'] = values['out_channels'] or values['in_channels']
  for field, ours in _model_fields(model).items():
    if values[field] != ours:
      raise CheckpointError(f"{path}: {field} {values[field]!r} vs model {ours!r}")


def _model_fields(model):
  """The DiTTransformer2DModel config fields that `model`'s structure fixes."""
  block = model.blocks[0]
  hidden = block.attn.proj.in_features
  fields = {'num_attention_heads': model.num_heads, 'attention_head_dim': hidden // model.num_heads,
            'in_channels': model.in_channels, 'out_channels': model.out_channels,
            'num_layers': len(model.blocks), 'sample_size': model.input_size,
            'patch_size': model.patch_size, 'attention_bias': block.attn.qkv.bias is not None,
            'num_embeds_ada_norm': model.num_classes}
  if model.convention == 'diffusers':   # the MLP's LayerNorm eps is then diffusers' norm_eps
    fields['norm_eps'] = block.norm2.eps
  return fields


def diffusers_dit_key(key):
  """Our state-dict key -> DiTTransformer2DModel's, e.g. blocks.3.mlp.fc1.weight ->
  transformer_blocks.3.ff.net.0.proj.weight."""
  module, tensor = key.rsplit('.', 1)
  if module in _TOP:
    return f'{_TOP[module]}.{tensor}'
  _, i, inner = module.split('.', 2)                 # blocks.i.inner
  return f'transformer_blocks.{i}.{_BLOCK[inner]}.{tensor}'


def to_dit_state(state, model, source):
  """A DiTTransformer2DModel state dict -> `model`'s: one embedder (the copies checked equal),
  q, k, v stacked, renamed by `diffusers_dit_key` and checked by check_state; keys it cannot
  place keep their diffusers names."""
  state = dict(state)
  first = {k[len(_EMBEDDER.format(0)):]: v for k, v in state.items()
           if k.startswith(_EMBEDDER.format(0))}
  for i in range(1, len(model.blocks)):
    for name, value in first.items():
      copy = state.pop(_EMBEDDER.format(i) + name, None)
      if copy is not None and not torch.equal(copy, value):
        raise CheckpointError(
            f"{source}: {_EMBEDDER.format(i)}{name} differs from block 0's; a DiT has one time "
            f"and class embedder, which diffusers copies into every block")
  for i in range(len(model.blocks)):
    names = [f'transformer_blocks.{i}.attn1.to_{x}.' for x in 'qkv']
    for kind in ('weight', 'bias'):
      if all(n + kind in state for n in names):
        state[f'transformer_blocks.{i}.attn1.to_qkv.{kind}'] = torch.cat(
            [state.pop(n + kind) for n in names])
  ours = {diffusers_dit_key(key): key for key in model.state_dict()}
  renamed = {ours.get(key, key): value for key, value in state.items()}
  try:
    check_state(model, renamed, what=f'diffusers {CLASS_NAME}')
  except CheckpointError as e:
    raise CheckpointError(f"{source}: {e}") from None
  return renamed
