"""Our training-free samplers at the smallest budget (issue 26, item 7): one evaluation is
Tweedie's x0_hat(x_T, T) = E[x_0 | x_T] for every fast sampler, not a refusal."""
import pytest
import torch

from configs.default import get_default_config
from samplers import get_sampler
from sde_lib import VPSDE
from sde_lib.edm import EDMSDE


@pytest.mark.parametrize('method', ['ddim', 'heun', 'ipndm', 'dpm_solver', 'unipc',
                                    'dpm_solver_v3'])
@pytest.mark.parametrize('sde', [VPSDE(), EDMSDE()], ids=['vp', 'edm'])
def test_one_evaluation_is_the_posterior_mean_at_T(method, sde, float64):
  """Data N(mu, S^2 I): x_T = m x_0 + s z has E[x_0 | x_T] = mu + m S^2 (x_T - m mu) / (m^2 S^2 +
  s^2) in closed form; the one-evaluation sample equals it to 1e-10, in one evaluation."""
  mu, S = 0.3, 0.7
  m, s = (float(c) for c in sde.marginal_coeffs(torch.tensor([float(sde.T)])))
  score_fn = lambda x, t: -(x - m * mu) / (m ** 2 * S ** 2 + s ** 2)   # exact at t = T only
  config = get_default_config().sampling
  config.update(method=method, steps=1, eps=0.002 if isinstance(sde, EDMSDE) else 1e-3)
  x, nfe = get_sampler(config, sde, (256, 2))(score_fn, torch.Generator().manual_seed(0), False)
  x_T = sde.prior_sampling((256, 2), torch.Generator().manual_seed(0)).double()
  assert nfe == 1
  assert torch.allclose(x, mu + m * S ** 2 * (x_T - m * mu) / (m ** 2 * S ** 2 + s ** 2), atol=1e-10)
