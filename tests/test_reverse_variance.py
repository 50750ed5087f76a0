"""Reverse variances of the DDPM chain against closed forms on Gaussian data.

For x0 ~ N(mu, sigma^2 I) every pair (x_{i-1}, x_i) of the chain is jointly Gaussian, so the
true reverse conditional q(x_{i-1} | x_i) is Gaussian with the per-dimension variance
  Var[x_{i-1} | x_i] = V - a^2 V^2 / (a^2 V + b),   V = Var[x_{i-1}], x_i = a x_{i-1} + sqrt(b) z
(Gaussian conditioning, independent of Bao et al.'s formula). It is the optimal reverse
variance of the step: Analytic-DPM must find it from Gamma_n, a learned variance must move
towards it, and the VLB with it must be the tightest. Gamma_n itself has the closed form
s^2 / (m^2 sigma^2 + s^2) with the exact eps (its conditional mean is linear in x_n).
"""
import math
import os

import pytest
import torch
from torch import nn

import pipeline.sampling as draw_module
from configs.default import get_default_config
from evaluation.vlb import vlb
from models import get_model
from pipeline.sampling import data_sampler
from samplers.analytic_variance import GammaTable, estimate_gamma
from samplers.predictors import get_ancestral
from sde_lib import VPSDE, get_sde
from sde_lib.chain import DiscreteChain, respaced_chain
from sde_lib.reverse_variance import VarianceInputs, chain_step_variance
from sde_lib.time_schedules import respaced_steps
from test_vlb import MU, NUM_BINS, SIGMA, exact_nll_bits, gaussian_optimal_eps, quantize
from training.losses import StepImportance, get_loss_fn
from pipeline.train import train
from utils.checkpoint import load_checkpoint
from utils.errors import ConfigError

DIM = 4


def optimal_variances(chain, sigma=SIGMA):
  """Var[x_{i-1} | x_i] per chain step for x0 ~ N(., sigma^2) (the module docstring); step 0's
  x_{-1} is x0 itself."""
  v_prev = chain.alphas_cumprod_prev * sigma ** 2 + 1 - chain.alphas_cumprod_prev
  a2, b = chain.alphas, chain.betas
  return v_prev - a2 * v_prev ** 2 / (a2 * v_prev + b)


def gaussian_gamma(sde, steps=None):
  """(GammaTable of the exact eps on the chain of `sde` from 4000 Gaussian points, its closed
  form per step)."""
  data = MU + SIGMA * torch.randn(4000, DIM, generator=torch.Generator().manual_seed(0),
                                  dtype=torch.float64)
  table = estimate_gamma(gaussian_optimal_eps(sde), sde, data, batch_size=4000,
                         generator=torch.Generator().manual_seed(1), progress=False)
  abar = sde.alphas_cumprod
  return table, (1 - abar) / (abar * SIGMA ** 2 + 1 - abar)


def test_gamma_matches_its_closed_form_within_monte_carlo_error():
  # Gamma_n = E||eps_theta||^2 / d from 4000 points per step vs s^2 / (m^2 sigma^2 + s^2):
  # every step within 4.5 of its reported standard errors (1000 steps: a 4.5-sigma miss has
  # probability ~7e-3 over all of them), and the table at chain times is the table itself.
  sde = VPSDE(N=1000)
  table, exact = gaussian_gamma(sde)
  assert table.num_samples == 4000 and (table.stderr > 0).all()
  assert ((table.gamma - exact).abs() <= 4.5 * table.stderr).all()
  times = sde.chain_time(torch.arange(1000, dtype=torch.float64))
  assert torch.allclose(table(times), table.gamma, rtol=1e-12)
  middle = (times[10] + times[11]) / 2
  assert torch.allclose(table(middle[None]), (table.gamma[10] + table.gamma[11])[None] / 2)


@pytest.mark.parametrize('steps', [1000, 50])
def test_analytic_variance_is_the_optimal_one(steps):
  # Analytic-DPM's sigma^2 from the estimated Gamma vs the Gaussian-conditioning optimum on the
  # chain and respaced to 50 steps (its own betas, Gamma at the kept steps), each step within
  # 4.5 standard errors propagated from Gamma's (d sigma^2 / d Gamma = -c^2 s^2 / m^2), a
  # tolerance that beta and beta-tilde miss by more than 20x at some step (so the test tells
  # them apart).
  sde = VPSDE(N=1000)
  table, _ = gaussian_gamma(sde)
  kept, chain = respaced_chain(sde, steps)
  kept = torch.tensor(kept)
  inputs = VarianceInputs(gamma=lambda i: table.gamma[kept[i]], data_half_range=1.0)
  index = torch.arange(steps)
  ours = chain_step_variance(chain, index, 'analytic', inputs)
  exact = optimal_variances(chain)
  abar = chain.alphas_cumprod
  slope = chain.posterior_mean_coef1 ** 2 * (1 - abar) / abar
  tolerance = 4.5 * slope * table.stderr[kept] + 1e-15
  assert ((ours - exact).abs() <= tolerance).all()
  for fixed in ('beta', 'beta_tilde'):
    assert ((chain_step_variance(chain, index, fixed) - exact).abs() / tolerance).max() > 20


def test_vlb_with_the_analytic_variance_is_the_tightest():
  # Quantized N(0.2, 0.3^2) data, 120 x 32 values, exact NLL known; the bound with beta,
  # beta-tilde and the analytic variance at N = 1000 and respaced to K = 50. Analytic must be
  # below both fixed choices (beyond 3 standard errors of the paired differences), not below
  # the exact NLL beyond 4 standard errors (the per-image bound is noisy: one x_t per term),
  # and within 0.05 bits/dim of it. Measured gaps +- standard error (bits/dim), N=1000: beta
  # 0.052 +- 0.030, beta-tilde 0.67, analytic -0.053 +- 0.022; K=50: beta 0.067, beta-tilde
  # 38.9, analytic -0.039 +- 0.026 (these draws of x_t land low for every variance; on 32,000
  # other values at N=1000: beta 0.126 +- 0.011, analytic 0.006 +- 0.008).
  x0 = quantize(MU + SIGMA * torch.randn(120, 32, generator=torch.Generator().manual_seed(11),
                                        dtype=torch.float64))
  exact = exact_nll_bits(x0)
  sde = VPSDE(N=1000)
  table, _ = gaussian_gamma(sde)
  inputs = VarianceInputs(gamma=table, data_half_range=1.0)
  for steps in (1000, 50):
    totals = {variance: vlb(gaussian_optimal_eps(sde), sde, x0, variance=variance,
                            num_bins=NUM_BINS, steps=steps, inputs=inputs, progress=False,
                            generator=torch.Generator().manual_seed(2)).total
              for variance in ('beta', 'beta_tilde', 'analytic')}
    gap = totals['analytic'] - exact
    assert gap.mean() > -4 * gap.std() / math.sqrt(len(gap))
    for fixed in ('beta', 'beta_tilde'):
      diff = totals[fixed] - totals['analytic']
      assert diff.mean() > 3 * diff.std() / math.sqrt(len(diff)), (steps, fixed)
    assert gap.mean() < 0.05


@pytest.mark.parametrize('schedule', ['linear', 'cosine'])
def test_sampler_step_and_bound_share_the_variance(schedule):
  # The ancestral step computes sigma^2 from the step's (t, s) on a DiscreteChain; the bound
  # from the respaced chain's arrays. Both paths, for 'analytic' (with a Gamma table) and
  # 'learned' (with an output v), must give the same std on every step of a 7-step respacing
  # of a 20-step chain (float64: 1e-10); the analytic std of the steps into the two lowest
  # times is clipped to 2 bin_width sqrt(pi / 2) when a bin width is given. For the linear
  # and the cosine (Nichol & Dhariwal) schedules' chains.
  sde = VPSDE(N=20, schedule=schedule)
  chain_sde = DiscreteChain(sde)
  kept, chain = respaced_chain(sde, 7)
  gamma = torch.linspace(0.3, 0.99, 20, dtype=torch.float64)
  times = sde.chain_time(torch.arange(20, dtype=torch.float64))
  table = GammaTable(times, gamma, torch.zeros(20, dtype=torch.float64), 10)
  v_value = 0.3
  inputs = VarianceInputs(output_fn=lambda x, t: torch.full_like(x, v_value), gamma=table)
  grid = chain_sde.time_grid(7).double()
  x = torch.zeros(1, 3, dtype=torch.float64)
  score_fn = lambda x, t: torch.zeros_like(x)
  for variance in ('analytic', 'learned'):
    step = get_ancestral(variance, inputs)
    for k in range(1, 7):   # the step from kept step k to k - 1
      t, s = grid[6 - k].expand(1), grid[7 - k].expand(1)
      got = step(chain_sde, score_fn, x, t, s, torch.ones_like(x))
      std = (got[0] - got[1])[0, 0]
      index = torch.tensor([k])
      v = torch.full((1, 3), v_value, dtype=torch.float64)
      chain_var = chain_step_variance(chain, index, variance,
                                      VarianceInputs(gamma=lambda i: gamma[torch.tensor(kept)[i]]),
                                      v=v if variance == 'learned' else None)
      assert torch.allclose(std ** 2, chain_var.flatten()[0], rtol=1e-10), (variance, k)
  clipped = get_ancestral('analytic', VarianceInputs(gamma=table, bin_width=0.01),
                          clip_below=float(grid[-2]))
  t, s = grid[5].expand(1), grid[6].expand(1)
  x_s, mean = clipped(chain_sde, score_fn, x, t, s, torch.ones_like(x))
  assert torch.allclose((x_s - mean)[0, 0], torch.tensor(0.02 * math.sqrt(math.pi / 2),
                                                          dtype=torch.float64))


class ExactEpsLearnedVariance(nn.Module):
  """The Gaussian data's exact eps at chain step `labels`, and a trainable variance output v
  per step: a model whose only free part is its reverse variance."""

  def __init__(self, sde):
    super().__init__()
    self.eps_fn = gaussian_optimal_eps(sde)
    self.v = nn.Parameter(torch.zeros(sde.N, dtype=torch.float64))

  def forward(self, x, labels):
    index = labels.long()
    eps = self.eps_fn(x, index)[0]
    return torch.cat([eps, self.v[index][:, None].expand_as(x)], 1)


def hybrid_config(num_steps, loss='ddpm'):
  config = get_default_config()
  config.sde.num_scales = num_steps
  config.training.loss, config.training.continuous = loss, False
  config.training.reduce_mean = True
  config.model.learn_variance = True
  config.data.num_bins = NUM_BINS
  return config


def learned_log_variances(model, chain):
  index = torch.arange(len(chain.betas))
  return chain_step_variance(chain, index, 'learned', v=model.v.detach()[:, None]).flatten().log()


def test_hybrid_loss_moves_the_learned_variance_towards_the_optimum(float64):
  # L_hybrid on a 20-step chain with the exact eps, only v trainable (Adam, 400 steps of 256
  # points): the error |log sigma^2 - log sigma*^2| over steps 1..19 (the decoder's optimum is
  # the discretized one, not this) falls by more than 3x. Measured: 0.038 -> 0.0049.
  torch.manual_seed(0)
  sde = VPSDE(N=20)
  config = hybrid_config(20)
  loss_fn = get_loss_fn(config, sde)
  model = ExactEpsLearnedVariance(sde)
  exact = optimal_variances(sde.chain_arrays).log()
  error = lambda: (learned_log_variances(model, sde.chain_arrays) - exact)[1:].abs().mean()
  before = error()
  optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
  generator = torch.Generator().manual_seed(1)
  for _ in range(400):
    x0 = quantize(MU + SIGMA * torch.randn(256, DIM, generator=generator))
    loss = loss_fn(model, x0, generator).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
  after = error()
  assert before > 0.02 and after < before / 3, (before, after)


def test_importance_sampled_vlb_is_unbiased_and_has_lower_variance(float64):
  # L_vlb alone on a 20-step chain with a fixed model (exact eps, v = 0): once every step has
  # 10 losses in its history, the importance-sampled estimate L_i / (N p_i) has the same mean
  # as the uniform one (within 4 combined standard errors of 400 batches each) and a smaller
  # per-sample variance. Measured: means 0.369 and 0.365, variance ratio 0.003.
  torch.manual_seed(0)
  sde = VPSDE(N=20)
  model = ExactEpsLearnedVariance(sde)
  generator = torch.Generator().manual_seed(3)
  batch = lambda: quantize(MU + SIGMA * torch.randn(64, DIM, generator=generator))
  uniform_config = hybrid_config(20, loss='vlb')
  uniform_config.training.vlb_importance = False
  estimates = {}
  for name, config in (('uniform', uniform_config), ('importance', hybrid_config(20, 'vlb'))):
    loss_fn = get_loss_fn(config, sde)
    with torch.no_grad():
      for _ in range(30):   # fills the history: 30 x 64 draws cover every step 10 times
        loss_fn(model, batch(), generator)
      if name == 'importance':
        assert (loss_fn.importance.count == 10).all()
        probs = loss_fn.importance.probabilities()
        assert probs.max() > 3 * probs.min()
      estimates[name] = torch.stack([loss_fn(model, batch(), generator).mean()
                                     for _ in range(400)])
  mean_u, mean_i = estimates['uniform'].mean(), estimates['importance'].mean()
  stderr = math.sqrt(estimates['uniform'].var() / 400 + estimates['importance'].var() / 400)
  assert abs(mean_u - mean_i) < 4 * stderr
  assert estimates['importance'].var() < 0.7 * estimates['uniform'].var()
  # Both estimate (1 / N) sum_i E[L_i], which the bound itself gives term by term (its 20
  # terms with v = 0, i.e. sigma^2 = sqrt(beta beta-tilde), over 6400 points).
  eps_v0 = lambda x, i: (model.eps_fn(x, i)[0], torch.zeros_like(x))
  x0 = quantize(MU + SIGMA * torch.randn(6400, DIM, generator=generator))
  terms = vlb(eps_v0, sde, x0, variance='learned', num_bins=NUM_BINS, generator=generator,
              progress=False).terms.mean(1)
  stderr = math.sqrt(estimates['importance'].var() / 400 + terms.var() / len(terms))
  assert abs(mean_i - terms.mean()) < 4 * stderr


def test_importance_probabilities_follow_the_root_mean_square_of_the_history():
  # Nichol & Dhariwal sec. 3.3: p_t proportional to sqrt(E[L_t^2]) over the last 10 losses of
  # each step (mixed with 0.001 of the uniform), uniform until every step has 10.
  importance = StepImportance(3)
  losses = {0: [1.0] * 10, 1: [0.0, 2.0] * 5, 2: [3.0] * 10}
  for step, values in losses.items():
    if step < 2:
      importance.update(torch.full((10,), step), torch.tensor(values))
  assert torch.allclose(importance.probabilities(), torch.full((3,), 1 / 3, dtype=torch.float64))
  importance.update(torch.full((12,), 2), torch.tensor([9.0, 9.0] + losses[2]))   # 10 kept
  rms = torch.tensor([1.0, math.sqrt(2.0), 3.0], dtype=torch.float64)
  want = 0.999 * rms / rms.sum() + 0.001 / 3
  assert torch.allclose(importance.probabilities(), want, rtol=1e-12)


def test_respaced_steps_hold_for_analytic_and_learned_in_the_bound():
  # K = N: the respaced bound with every variance equals the full one draw for draw (the same
  # generator), to 1e-12.
  sde = VPSDE(N=20)
  x0 = quantize(MU + SIGMA * torch.randn(8, DIM, generator=torch.Generator().manual_seed(0),
                                        dtype=torch.float64))
  table, _ = gaussian_gamma(sde)
  inputs = VarianceInputs(gamma=table)
  assert respaced_steps(20, 20) == list(range(20))
  learned_eps = lambda x, i: (gaussian_optimal_eps(sde)(x, i)[0], torch.full_like(x, 0.4))
  for variance, eps_fn in (('analytic', gaussian_optimal_eps(sde)), ('learned', learned_eps)):
    full, respaced = (vlb(eps_fn, sde, x0, variance=variance, num_bins=NUM_BINS, steps=steps,
                          inputs=inputs, generator=torch.Generator().manual_seed(5),
                          progress=False).total for steps in (None, 20))
    assert torch.allclose(full, respaced, rtol=1e-12)


@pytest.mark.parametrize('name', ['ddpm', 'ncsnpp'])
def test_learned_variance_networks_output_eps_and_v(name):
  # 2C output channels (eps, then v); a setting the variance is not defined for is refused.
  config = get_default_config()
  config.model.name, config.model.nf, config.model.ch_mult = name, 8, (1, 2)
  config.model.num_res_blocks, config.model.attn_resolutions = 1, ()
  config.model.num_groups = 4
  config.data.image_size, config.data.num_channels = 8, 1
  config.training.continuous, config.model.learn_variance = False, True
  out = get_model(config)(torch.zeros(2, 1, 8, 8), torch.tensor([3.0, 7.0]))
  assert out.shape == (2, 2, 8, 8)
  config.training.continuous = True
  with pytest.raises(ConfigError, match='learn_variance'):
    get_model(config)


def digits_config(workdir_steps):
  """A tiny discrete-time digits run with a learned variance trained on L_vlb alone."""
  config = get_default_config()
  config.device = 'cpu'
  config.data.dataset, config.data.image_size, config.data.num_channels = 'digits', 8, 1
  config.data.random_flip, config.data.num_bins = False, 17
  config.model.nf, config.model.ch_mult, config.model.num_res_blocks = 8, (1, 2), 1
  config.model.attn_resolutions, config.model.num_groups, config.model.dropout = (), 4, 0.0
  config.model.learn_variance = True
  config.sde.num_scales = 4
  config.training.loss, config.training.continuous = 'vlb', False
  config.training.batch_size, config.training.n_iters = 16, workdir_steps
  config.training.snapshot_freq, config.training.log_freq = 5, 5
  config.training.snapshot_sampling = False
  config.sampling.method, config.sampling.variance = 'ancestral', 'learned'
  config.sampling.steps = 4
  return config


def test_vlb_training_resumes_with_its_step_history(tmp_path, one_thread):
  # Importance sampling draws steps from the history of losses, so a run resumed at step 5
  # reaches the step-10 weights of an uninterrupted run only if the history was checkpointed
  # (on a 4-step chain the history is full after 3 batches of 16).
  straight, split = str(tmp_path / 'straight'), str(tmp_path / 'split')
  train(digits_config(10), straight, progress=False)
  train(digits_config(5), split, progress=False)
  assert load_checkpoint(os.path.join(split, 'checkpoints', 'ckpt_5.pt'))['loss']['count'].sum() > 0
  train(digits_config(10), split, progress=False)
  a = load_checkpoint(os.path.join(straight, 'checkpoints', 'ckpt_10.pt'))
  b = load_checkpoint(os.path.join(split, 'checkpoints', 'ckpt_10.pt'))
  for key in a['model']:
    assert torch.equal(a['model'][key], b['model'][key]), key


def test_gamma_is_computed_once_per_checkpoint_and_samples_draw(tmp_path, monkeypatch,
                                                                one_thread):
  # data_sampler with the analytic variance estimates Gamma from sampling.analytic_samples
  # training points once, caches it beside the checkpoint, and a second sampler loads it; the
  # learned variance samples too; 'learned' on a network without it is refused before drawing.
  calls = []
  real = draw_module.estimate_gamma
  monkeypatch.setattr(draw_module, 'estimate_gamma',
                      lambda *a, **k: calls.append(1) or real(*a, **k))
  config = digits_config(1)
  config.sampling.analytic_samples = 8
  model = get_model(config).eval()
  checkpoint = tmp_path / 'checkpoints' / 'ckpt_1.pt'
  checkpoint.parent.mkdir()
  torch.save(model.state_dict(), checkpoint)
  sde = get_sde(config)
  for variance in ('analytic', 'learned'):
    config.sampling.variance = variance
    draw = data_sampler(config, sde, model, 'cpu', checkpoint=str(checkpoint))
    x, nfe = draw(3, torch.Generator().manual_seed(0), progress=False)
    assert x.shape == (3, 1, 8, 8) and torch.isfinite(x).all() and nfe == 4
  config.sampling.variance = 'analytic'
  data_sampler(config, sde, model, 'cpu', checkpoint=str(checkpoint))
  assert len(calls) == 1
  cached = [f for f in os.listdir(checkpoint.parent) if f.startswith('ckpt_1.gamma-')]
  assert len(cached) == 1
  stored = torch.load(checkpoint.parent / cached[0], weights_only=True)
  table = GammaTable.from_state(stored['state'])
  assert table.num_samples == 8 and table.gamma.shape == (4,)
  config.model.learn_variance, config.sampling.variance = False, 'learned'
  with pytest.raises(ConfigError, match='learn_variance'):
    data_sampler(config, sde, get_model(config), 'cpu', checkpoint=str(checkpoint))


def test_learned_variance_interpolates_between_the_papers_endpoints():
  # Nichol & Dhariwal eq. 15 with v mapped to [0, 1] by (v + 1) / 2: v = -1 gives beta-tilde
  # (clipped at the decoder to beta-tilde_1), v = 1 gives beta, v = 0 their geometric mean.
  chain = VPSDE(N=20).chain_arrays
  index = torch.arange(20)
  ones = torch.ones(20, 1, dtype=torch.float64)
  at = lambda v: chain_step_variance(chain, index, 'learned', v=v * ones).flatten()
  beta, clipped = chain.betas, chain.posterior_variance[index.clamp(min=1)]
  assert torch.allclose(at(-1.0), clipped, rtol=1e-12)
  assert torch.allclose(at(1.0), beta, rtol=1e-12)
  assert torch.allclose(at(0.0), (beta * clipped).sqrt(), rtol=1e-12)


def test_sampling_the_learned_variance_in_float32_keeps_its_endpoints_at_the_decoder():
  # The chain's last step (to the data) has beta-tilde = 0: v = 1 must still give beta there
  # (eq. 15's f = 1), v = -1 no noise, in float32 as in float64 (0 * log 0 was NaN).
  chain_sde = DiscreteChain(VPSDE(N=20))
  grid = chain_sde.time_grid(20)
  t, s = grid[-2].expand(2), grid[-1].expand(2)
  beta = float(chain_sde.base.discrete_betas[0])
  score_fn = lambda x, t: torch.zeros_like(x)
  for dtype in (torch.float32, torch.float64):
    x = torch.zeros(2, 3, dtype=dtype)
    for v, var in ((1.0, beta), (-1.0, 0.0)):
      inputs = VarianceInputs(output_fn=lambda x, t, v=v: torch.full_like(x, v))
      x_s, mean = get_ancestral('learned', inputs)(chain_sde, score_fn, x, t.to(dtype),
                                                   s.to(dtype), torch.ones_like(x))
      assert torch.allclose((x_s - mean) ** 2, torch.full_like(x, var), rtol=1e-5, atol=1e-30)


def test_a_learned_variance_network_has_the_other_variances_too():
  # Its variance output is ignored by beta, beta-tilde and analytic: on image-shaped data the
  # bound equals that of the same eps without v, draw for draw (1e-12).
  sde = VPSDE(N=20)
  x0 = quantize(MU + SIGMA * torch.randn(8, 1, 2, 2, generator=torch.Generator().manual_seed(0),
                                        dtype=torch.float64))
  inputs = VarianceInputs(gamma=gaussian_gamma(sde)[0])
  plain = gaussian_optimal_eps(sde)
  with_v = lambda x, i: (plain(x, i)[0], torch.full_like(x, 0.4))
  for variance in ('beta', 'beta_tilde', 'analytic'):
    a, b = (vlb(eps_fn, sde, x0, variance=variance, num_bins=NUM_BINS, inputs=inputs,
                generator=torch.Generator().manual_seed(5), progress=False).total
            for eps_fn in (plain, with_v))
    assert torch.allclose(a, b, rtol=1e-12), variance
