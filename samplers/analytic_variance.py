"""Gamma_n of Analytic-DPM (Bao, Li, Zhu & Zhang 2022): the network's mean squared noise
prediction at each chain step, from which the optimal reverse variance follows
(sde_lib/reverse_variance.py):

  Gamma_n = E_{x_n ~ q_n} ||eps_theta(x_n, n)||^2 / d,   x_n = m_n x_0 + s_n z,  x_0 ~ data,

estimated once per network by Monte Carlo (their eq. 8) at every step of the chain, with its
standard error. Between chain steps (a continuous-time model sampled at other times) it is
interpolated linearly in t.
"""
import dataclasses

import torch
from tqdm.auto import tqdm

from sde_lib import batch_broadcast
from utils.errors import ConfigError

GAMMA_VERSION = 1     # bump when the estimator changes: cached tables then no longer count


@dataclasses.dataclass
class GammaTable:
  times: torch.Tensor     # [N] chain times t_0 < ... < t_{N-1} (float64)
  gamma: torch.Tensor     # [N] Gamma at each chain step
  stderr: torch.Tensor    # [N] its Monte-Carlo standard error
  num_samples: int        # training points per step

  def __call__(self, t):
    """Gamma at times t, linear between chain times (constant outside them)."""
    times, gamma = self.times.to(t.device), self.gamma.to(t.device)
    t = t.to(times.dtype).clamp(times[0], times[-1])
    upper = torch.searchsorted(times, t).clamp(1, len(times) - 1)
    w = (t - times[upper - 1]) / (times[upper] - times[upper - 1])
    return torch.lerp(gamma[upper - 1], gamma[upper], w)

  def state_dict(self):
    """Tensors and plain values (what pipeline/statistics.py stores)."""
    return {'times': self.times, 'gamma': self.gamma, 'stderr': self.stderr,
            'num_samples': self.num_samples}

  @classmethod
  def from_state(cls, state):
    return cls(state['times'], state['gamma'], state['stderr'], state['num_samples'])


def estimate_gamma(eps_fn, sde, data, batch_size=500, generator=None, progress=True):
  """The GammaTable of eps_fn(x, index) (evaluation.vlb.chain_eps_fn's: eps at chain steps)
  on every step of the chain of `sde`, from the points `data` (model space; one fresh noise
  draw per point and step)."""
  n, dim = data.shape[0], data[0].numel()
  if n < 2:
    raise ConfigError(f"Gamma needs at least 2 training points per step, got {n}")
  gamma = torch.empty(sde.N, dtype=torch.float64)
  stderr = torch.empty(sde.N, dtype=torch.float64)
  for step in tqdm(range(sde.N), desc='Analytic-DPM Gamma', disable=not progress, leave=False):
    values = []
    for x0 in data.split(batch_size):
      index = torch.full((x0.shape[0],), step, device=x0.device, dtype=torch.long)
      mean_coeff, std = sde.chain_coeffs(index)
      z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
      x = batch_broadcast(mean_coeff, x0) * x0 + batch_broadcast(std, x0) * z
      with torch.no_grad():
        eps = eps_fn(x, index)[0]
      values.append(eps.double().square().flatten(1).sum(1) / dim)
    values = torch.cat(values).cpu()
    gamma[step], stderr[step] = values.mean(), values.std() / n ** 0.5
  times = sde.chain_time(torch.arange(sde.N, dtype=torch.float64))
  return GammaTable(times, gamma, stderr, n)
