"""get_model(config): the one place where config fields become network arguments."""
from models.ddpm import DDPM
from models.mlp import MLP
from utils.errors import ConfigError


def _ddpm(config):
  m, d = config.model, config.data
  return DDPM(in_channels=d.num_channels, nf=m.nf, ch_mult=tuple(m.ch_mult),
              num_res_blocks=m.num_res_blocks, attn_resolutions=tuple(m.attn_resolutions),
              dropout=m.dropout, image_size=d.image_size, num_groups=m.num_groups)


def _mlp(config):
  return MLP(dim=2, hidden=config.model.hidden, num_layers=config.model.num_layers)


MODELS = {'ddpm': _ddpm, 'mlp': _mlp}


def get_model(config):
  """The network named by `config.model.name`, on the CPU (callers move it)."""
  name = config.model.name
  if name not in MODELS:
    raise ConfigError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
  return MODELS[name](config)
