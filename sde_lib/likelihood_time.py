"""Importance-sampled time for likelihood-weighted score matching (Song et al. 2021b, sec. 5).

With likelihood weighting the DSM loss at time t is g(t)^2 ||score - grad log p_0t||^2 =
w(t) ||s(t) score + z||^2 with w = g^2 / s^2, which diverges like 1/t on the VP-SDE, so t drawn
uniformly gives a loss estimate of huge variance. Drawing t from p(t) = w(t) / Z on [eps, T],
Z = F(T) - F(eps) (F an antiderivative of w, `SDE.likelihood_weight_integral`), by the inverse
CDF  t = F^-1(F(eps) + u Z), u ~ U[0, 1),  and weighting each term by the constant
w(t) / ((T - eps) p(t)) = Z / (T - eps)  leaves the loss's expectation that of t ~ U[eps, T].
"""
import torch


class LikelihoodTime:
  """t ~ p(t) proportional to g(t)^2 / s(t)^2 on [eps, T]; `weight` is Z / (T - eps)."""

  def __init__(self, sde, eps):
    self.sde, self.eps = sde, eps
    self.f_eps = float(sde.likelihood_weight_integral(torch.tensor(eps, dtype=torch.float64)))
    self.f_T = float(sde.likelihood_weight_integral(torch.tensor(sde.T, dtype=torch.float64)))
    self.normalizer = self.f_T - self.f_eps          # Z = int_eps^T w(t) dt
    self.weight = self.normalizer / (sde.T - eps)

  def cdf(self, t):
    """P(t' <= t) = (F(t) - F(eps)) / Z."""
    return (self.sde.likelihood_weight_integral(t) - self.f_eps) / self.normalizer

  def density(self, t):
    return self.sde.likelihood_weight(torch.as_tensor(t, dtype=torch.float64)) / self.normalizer

  def sample(self, n, device='cpu', generator=None, dtype=None):
    """n times by the inverse CDF, in `dtype` (default float32's torch default) on `device`."""
    u = torch.rand(n, dtype=torch.float64, device=device, generator=generator)
    t = self.sde.inverse_likelihood_weight_integral(self.f_eps + u * self.normalizer)
    return t.clamp(self.eps, self.sde.T).to(dtype or torch.get_default_dtype())
