"""score_sde_pytorch checkpoints (Song et al. 2021's published weights) in our checkpoint layout.

Theirs: torch.save({'model': state dict of the DataParallel-wrapped network (keys 'module.*'),
'ema': {'decay', 'num_updates', 'shadow_params': [averages in model.parameters() order,
trainable parameters only]}, 'optimizer': Adam state dict, 'step'}). Ours (pipeline/train.py):
the same, with unprefixed keys and the EMA's averages named by parameter (models/ema.py).
Our `ncsnpp` registers its layers in the reference's order, so names and order carry over.
"""
from utils.checkpoint import CheckpointError, check_state

PREFIX = 'module.'


def is_score_sde_checkpoint(state):
  """Whether a loaded checkpoint has score_sde's layout (an EMA stored as a list)."""
  return (isinstance(state, dict) and isinstance(state.get('ema'), dict)
          and 'shadow_params' in state['ema'] and 'model' in state)


def from_score_sde(state, model):
  """Our checkpoint dict from score_sde's `state`, the EMA's list named after `model`'s
  trainable parameters (model must be the network the checkpoint was trained as)."""
  weights = {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in state['model'].items()}
  check_state(model, weights)
  trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
  averages = state['ema']['shadow_params']
  if len(averages) != len(trainable):
    raise CheckpointError(f"the checkpoint's EMA holds {len(averages)} tensors but the configured "
                          f"network has {len(trainable)} trainable parameters")
  for (name, p), average in zip(trainable, averages):
    if average.shape != p.shape:
      raise CheckpointError(f"the checkpoint's EMA does not match the configured architecture: "
                            f"{name}: checkpoint {tuple(average.shape)} vs model {tuple(p.shape)}")
  shadow = {name: weights.get(name, p).detach().clone() for name, p in model.named_parameters()}
  shadow.update((name, average) for (name, _), average in zip(trainable, averages))
  ema = {'decay': float(state['ema']['decay']), 'warmup': True,   # score_sde's use_num_updates
         'num_updates': int(state['ema']['num_updates']), 'shadow': shadow}
  converted = {'model': weights, 'ema': ema, 'step': int(state.get('step', 0))}
  if 'optimizer' in state:
    converted['optimizer'] = state['optimizer']
  return converted
