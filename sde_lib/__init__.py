"""SDEs of score-based generative modelling: VP (with the DDPM chain), sub-VP and VE, and the
affine paths of flow matching (rectified flow, cosine); the time grids on them and the chain
respacings are sde_lib/time_schedules.py's."""
from sde_lib.base import SDE, ReverseSDE, batch_broadcast
from sde_lib.chain import DiscreteChain
from sde_lib.edm import EDMSDE
from sde_lib.flows import CosineFlow, RectifiedFlow
from sde_lib.subvp import SubVPSDE
from sde_lib.ve import VESDE
from sde_lib.vp import VPSDE
from utils.errors import ConfigError

__all__ = ['SDE', 'DiscreteChain', 'ReverseSDE', 'VPSDE', 'SubVPSDE', 'VESDE', 'RectifiedFlow', 'CosineFlow',
           'EDMSDE', 'batch_broadcast', 'get_sde']


def get_sde(config):
  """Build the SDE named by `config.sde.name` from the config's `sde` section."""
  c = config.sde
  builders = {
      'vpsde': lambda: VPSDE(c.beta_min, c.beta_max, c.num_scales, c.schedule),
      'subvpsde': lambda: SubVPSDE(c.beta_min, c.beta_max, c.num_scales, c.schedule),
      'vesde': lambda: VESDE(c.sigma_min, c.sigma_max, c.num_scales),
      'edm': lambda: EDMSDE(c.sigma_min, c.sigma_max, c.num_scales),
      'rectified_flow': lambda: RectifiedFlow(c.num_scales, c.flow_T),
      'cosine_flow': lambda: CosineFlow(c.num_scales, c.flow_T),
  }
  if c.name not in builders:
    raise ConfigError(f"unknown SDE {c.name!r}; choose one of {sorted(builders)}")
  return builders[c.name]()
