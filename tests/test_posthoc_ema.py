"""Post-hoc EMA (EDM2): gamma against the paper, the tracked averages against their closed-form
weighting, and reconstructions from snapshots against averages computed directly."""
import os

import numpy as np
import pytest
import torch

from models.posthoc_ema import PowerFunctionEMA, sigma_rel_to_gamma
from pipeline.posthoc_ema import list_snapshots, reconstruct, write_posthoc_checkpoint
from utils.atomic import atomic_write
from utils.errors import ConfigError


def closed_form_weights(gamma, t):
  """Step tau's weight in the power EMA at time t: the profile (gamma + 1) x^gamma integrated
  over ((tau - 1) / t, tau / t], as the product of the betas telescopes (models/posthoc_ema.py)."""
  tau = np.arange(1, t + 1, dtype=np.float64)
  return (tau / t) ** (gamma + 1) - ((tau - 1) / t) ** (gamma + 1)


def test_gamma_of_sigma_rel_is_the_papers():
  # EDM2 sec. 3.1: sigma_rel 0.05 and 0.10 are gamma 16.97 and 6.94, given to two decimals
  assert sigma_rel_to_gamma(0.05) == pytest.approx(16.97, abs=0.005)
  assert sigma_rel_to_gamma(0.10) == pytest.approx(6.94, abs=0.005)
  assert sigma_rel_to_gamma(12 ** -0.5) == pytest.approx(0.0, abs=1e-9)   # the uniform average
  for bad in (0.0, -0.1, 0.3):
    with pytest.raises(ConfigError, match='sigma_rel'):
      sigma_rel_to_gamma(bad)


def test_tracked_average_is_the_closed_form_weighting():
  """A one-hot sequence (step tau sets coordinate tau) makes the tracked average the weights."""
  T = 400
  ema = PowerFunctionEMA([torch.zeros(T, dtype=torch.float64)], [0.05, 0.10])
  for tau in range(1, T + 1):
    theta = torch.zeros(T, dtype=torch.float64)
    theta[tau - 1] = 1.0
    ema.update([theta])
    if tau in (1, 7, 150, T):
      for gamma, average in zip(ema.gammas, ema.averages):
        expected = np.zeros(T)
        expected[:tau] = closed_form_weights(gamma, tau)
        # float64 recursion of up to 400 steps: rounding ~1e-16 per step
        np.testing.assert_allclose(average['0'].numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize('sigma_rel', [0.05, 0.10, 0.2])
def test_the_tracked_weights_have_relative_std_sigma_rel(sigma_rel):
  """sigma_rel is the std of the averaging profile over tau / t (EDM2 sec. 3.1): measured on the
  weights at t = 5000, where the unit steps change the std by O((sigma_rel t)^-2) < 1e-4."""
  t = 5000
  w = closed_form_weights(sigma_rel_to_gamma(sigma_rel), t)
  x = (np.arange(1, t + 1) - 0.5) / t
  mean = (w * x).sum()
  assert np.sqrt((w * (x - mean) ** 2).sum()) == pytest.approx(sigma_rel, rel=1e-4)


def synthetic_run(T, snapshot_every, sigma_rels, folder):
  """Tracks sigma_rels over a smooth trend plus an oscillation plus noise, in float32 as a model
  is, writing snapshot files as the trainer does; returns the trajectory [T, 3] (float64)."""
  generator = torch.Generator().manual_seed(0)
  tau = torch.arange(1, T + 1, dtype=torch.float64)[:, None]
  trajectory = (torch.cat([torch.exp(-tau / 300), torch.sin(tau / 90), 0.2 * tau / T], 1)
                + 0.05 * torch.randn(T, 3, generator=generator, dtype=torch.float64))
  params = [torch.zeros(3)]
  ema = PowerFunctionEMA(params, sigma_rels)
  for step in range(1, T + 1):
    params[0].copy_(trajectory[step - 1])
    ema.update(params)
    if step % snapshot_every == 0:
      state = {'step': step, **ema.state_dict()}
      atomic_write(os.path.join(folder, 'posthoc_ema', f'snapshot_{step}.pt'),
                   lambda f: torch.save(state, f))
  return trajectory


def test_a_tracked_sigma_rel_is_reconstructed_as_the_tracked_average(tmp_path):
  """The target is then one of the snapshots' own profiles: least squares must pick it alone."""
  synthetic_run(1000, 50, [0.05, 0.10], tmp_path)
  snapshots = list_snapshots(tmp_path)
  assert [s for s, _ in snapshots] == list(range(50, 1001, 50))
  last = torch.load(snapshots[-1][1], weights_only=True)
  for k, sigma_rel in enumerate([0.05, 0.10]):
    average, step, t = reconstruct([p for _, p in snapshots], sigma_rel)
    assert (step, t) == (1000, 1000)
    # float32 averages combined in float64 with coefficients exact to ~1e-9 (the solve's
    # conditioning): differences at float32 rounding of values ~1
    torch.testing.assert_close(average['0'], last['averages'][k]['0'], rtol=0, atol=1e-6)


@pytest.mark.parametrize('sigma_rel', [0.03, 0.07, 0.15])
def test_an_untracked_sigma_rel_matches_the_power_ema_computed_directly(tmp_path, sigma_rel):
  """Reconstructed from 20 snapshots of 0.05 and 0.10 vs the closed-form power EMA of the same
  trajectory (values of order 1). The error is the profile fit's: EDM2 fig. 5 shows the fits
  close but not exact: the tolerance is 0.2% of the trajectory's range (measured: < 0.05%)."""
  trajectory = synthetic_run(1000, 50, [0.05, 0.10], tmp_path)
  average, _, t = reconstruct([p for _, p in list_snapshots(tmp_path)], sigma_rel)
  direct = closed_form_weights(sigma_rel_to_gamma(sigma_rel), t) @ trajectory.numpy()
  spread = (trajectory.max(0).values - trajectory.min(0).values).numpy()
  np.testing.assert_array_less(np.abs(average["0"].double().numpy() - direct), 0.002 * spread)


@pytest.mark.slow
def test_training_writes_snapshots_and_the_mode_writes_a_loadable_checkpoint(tmp_path):
  """A tiny digits run tracking (0.05, 0.1), a snapshot every 2 of its 8 steps, resumed half way;
  the checkpoint of a tracked sigma_rel holds the tracked average, sample/eval's loader takes it."""
  from configs.vp_digits import get_config
  from models import restore_for_inference
  from pipeline.train import train

  config = get_config()
  config.model.nf, config.model.num_groups = 8, 4
  config.training.update(n_iters=4, batch_size=16, snapshot_freq=4, snapshot_sampling=False,
                         bound_images=0, posthoc_snapshot_freq=2)
  config.model.posthoc_ema_sigma_rels = (0.05, 0.1)
  config.device = 'cpu'
  train(config, str(tmp_path / 'resumed'), progress=False)
  config.training.n_iters = 8
  train(config, str(tmp_path / 'resumed'), progress=False)
  train(config, str(tmp_path / 'straight'), progress=False)
  snapshots = list_snapshots(tmp_path / 'resumed')
  assert [s for s, _ in snapshots] == [2, 4, 6, 8]
  last = torch.load(snapshots[-1][1], weights_only=True)
  straight = torch.load(list_snapshots(tmp_path / 'straight')[-1][1], weights_only=True)
  for resumed_average, straight_average in zip(last['averages'], straight['averages']):
    for name in resumed_average:   # the trainer's resume is exact (pipeline/train.py)
      torch.testing.assert_close(resumed_average[name], straight_average[name], rtol=0, atol=0)

  path, step = write_posthoc_checkpoint(str(tmp_path / 'resumed'), 0.1)
  assert os.path.basename(path) == 'sigma_rel_0.1.pt' and step == 8
  model, step, name = restore_for_inference(config, str(tmp_path / 'resumed'), path, 'cpu')
  assert (step, name) == (8, 'sigma_rel_0.1')
  for p_name, p in model.named_parameters():
    torch.testing.assert_close(p.detach(), last['averages'][1][p_name], rtol=0, atol=1e-6)
  with pytest.raises(ConfigError, match='posthoc_sigma_rel'):
    write_posthoc_checkpoint(str(tmp_path / 'resumed'), 0.0)

  # a profile cannot start in the middle of a run: resuming an untracked run with tracking on
  config.model.posthoc_ema_sigma_rels, config.training.n_iters = (), 2
  train(config, str(tmp_path / 'untracked'), progress=False)
  config.model.posthoc_ema_sigma_rels, config.training.n_iters = (0.05, 0.1), 4
  with pytest.raises(ConfigError, match='holds no post-hoc EMA'):
    train(config, str(tmp_path / 'untracked'), progress=False, allow_model_override=True)
