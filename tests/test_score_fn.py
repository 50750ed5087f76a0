"""Networks become score functions: s = -eps / s(t) (Ho et al. 2020; Song et al. 2021)."""
import pytest
import torch

from models.score_fn import get_score_fn
from sde_lib import SubVPSDE, VESDE, VPSDE
from network_labels import time_of_label

SIGMA0 = 0.7   # data x_0 ~ N(0, SIGMA0^2 I): p_t = N(0, (m^2 SIGMA0^2 + s^2) I)


class OracleEps(torch.nn.Module):
  """The optimal eps-network for Gaussian data, E[eps | x_t] = s x_t / (m^2 SIGMA0^2 + s^2),
  reading the time back from the label it is given (continuous) or the chain step's std
  (discrete). output: 'eps', 'std_score' (s score = -eps), 'score' (-eps / s) or 'x0' (the
  posterior mean (x - s eps) / m)."""

  def __init__(self, sde, continuous, output='eps'):
    super().__init__()
    self.sde, self.continuous, self.output = sde, continuous, output
    self.labels = None

  def forward(self, x, labels):
    self.labels = labels
    if self.continuous:
      m, s = self.sde.marginal_coeffs(time_of_label(self.sde, labels))
    else:
      s = self.sde.chain_std(labels.long())
      m = (1 - s ** 2).sqrt()           # VP chain: m^2 + s^2 = 1
    var = (m ** 2 * SIGMA0 ** 2 + s ** 2)[:, None]
    eps = s[:, None] * x / var
    eps = eps.to(x.dtype)
    x0 = (x - s[:, None] * eps) / m[:, None]
    return {'eps': eps, 'std_score': -eps, 'score': -eps / s[:, None], 'x0': x0}[self.output]


@pytest.mark.parametrize('sde', [VPSDE(), SubVPSDE(), VESDE()], ids=['vp', 'subvp', 've'])
@pytest.mark.parametrize('parameterization', ['eps', 'std_score', 'score', 'x0'])
def test_continuous_score_of_oracle_network_is_the_exact_score(sde, parameterization):
  model = OracleEps(sde, continuous=True, output=parameterization)
  score_fn = get_score_fn(sde, model, continuous=True, parameterization=parameterization)
  t = torch.tensor([0.01, 0.3, 0.9], dtype=torch.float64)
  x = torch.randn(3, 4, dtype=torch.float64)
  m, s = sde.marginal_coeffs(t)
  exact = -x / (m ** 2 * SIGMA0 ** 2 + s ** 2)[:, None]
  assert torch.allclose(score_fn(x, t), exact, rtol=1e-10)
  label = sde.sigma(t) if isinstance(sde, VESDE) else t * 999   # score_sde's time inputs
  assert torch.allclose(model.labels, label)


def test_discrete_score_uses_ddpm_integer_steps_and_chain_std():
  """Chain step i sits at t_i = (i + 1) / N: DDPM's t = i + 1 of 1..1000, whose alphabar is
  Ho et al.'s cumprod(1 - linspace(1e-4, 0.02, 1000))[i] (computed here, float64)."""
  sde = VPSDE()
  model = OracleEps(sde, continuous=False)
  score_fn = get_score_fn(sde, model, continuous=False)
  t = torch.tensor([1e-3, 2e-3, 0.5, 0.9995, 1.0, 1e-5])
  x = torch.randn(6, 4)
  out = score_fn(x, t)
  assert model.labels.tolist() == [0.0, 1.0, 499.0, 999.0, 999.0, 0.0]   # round(t N) - 1, clamped
  ho_abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
  abar = ho_abar[model.labels.long()].float()
  exact = -x / (abar * SIGMA0 ** 2 + 1 - abar)[:, None]
  assert torch.allclose(out, exact, rtol=1e-5)


def test_x0_prediction_is_the_posterior_mean():
  """x0_hat = (x_t - s eps)/m = E[x_0 | x_t] = m SIGMA0^2 x_t / (m^2 SIGMA0^2 + s^2)."""
  sde = VPSDE()
  score_fn = get_score_fn(sde, OracleEps(sde, continuous=True), continuous=True)
  t = torch.tensor([0.05, 0.5], dtype=torch.float64)
  x = torch.randn(2, 3, dtype=torch.float64)
  m, s = sde.marginal_coeffs(t)
  expected = (m * SIGMA0 ** 2 / (m ** 2 * SIGMA0 ** 2 + s ** 2))[:, None] * x
  assert torch.allclose(sde.tweedie_x0(x, t, score_fn(x, t)), expected, rtol=1e-10)


def test_unknown_parameterization_is_rejected():
  with pytest.raises(ValueError, match='noise_prediction'):
    get_score_fn(VPSDE(), torch.nn.Identity(), parameterization='noise_prediction')
