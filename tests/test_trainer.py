"""The training loop: it learns the ring of Gaussians, its loss falls, and a resumed run
continues exactly where an uninterrupted one would be."""
import json
import math
import os
import signal

import pytest
import torch

import sde_lib
from configs.vp_digits import get_config as digits_config
from configs.vp_toy2d import get_config as toy2d_config
from data import get_dataset
from evaluation.sample_metrics import sliced_wasserstein
from sde_lib.gaussian_mixture import ring_mixture
from models import restore_for_inference
from utils.checkpoint import list_checkpoints, load_checkpoint
from pipeline.sampling import data_sampler, draw_samples
from pipeline.train import Trainer, learning_rate, train
from utils.errors import ConfigError


def read_metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_vp_toy2d_learns_the_ring(tmp_path, one_thread):
  config = toy2d_config()
  config.device = 'cpu'
  config.training.n_iters = 1500
  config.training.snapshot_sampling = False
  config.sampling.steps = 100
  workdir = str(tmp_path)
  train(config, workdir, progress=False)

  metrics = read_metrics(workdir)
  losses = [r['loss'] for r in metrics]
  assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:2]) / 2  # measured: ~0.57 -> ~0.31
  # The held-out score-matching bound (bits/dim of the EMA weights on the first 64 test points)
  # falls as the ring is learned, and stays above those points' exact NLL under the ring (a
  # bound of the model's NLL, which is at least the data's); its Monte-Carlo error over 64
  # points x 4 draws is ~0.1 bit.
  c = config.data
  bounds = [r['bound_bpd'] for r in metrics]
  held_out = get_dataset(config, 'test').tensors[0][:config.training.bound_images]
  exact = -ring_mixture(n_modes=c.toy_modes, radius=c.toy_radius, std=c.toy_std).log_prob(
      held_out).mean().item() / (2 * math.log(2))
  assert bounds[-1] < bounds[0] - 1 and bounds[-1] > exact - 0.3, (bounds[0], bounds[-1], exact)
  assert all(r['loss_variance'] > 0 for r in metrics)

  model, step, _ = restore_for_inference(config, workdir, device='cpu')
  assert step == 1500
  n = 2000
  draw = data_sampler(config, sde_lib.get_sde(config), model, 'cpu')
  samples, _ = draw_samples(draw, n, n, seed=0, device='cpu', progress=False)
  mixture = ring_mixture(n_modes=c.toy_modes, radius=c.toy_radius, std=c.toy_std)
  # Every mode gets its share: a multinomial 1/8 of 2000 has std 0.0074; 0.04 is > 5 std.
  weights = torch.bincount(mixture.assign(samples), minlength=c.toy_modes).double() / n
  assert (weights - 1 / c.toy_modes).abs().max() < 0.04, weights
  # Samples sit on the modes: data fall 4 std from their mean with probability e^-8 = 3e-4.
  distance = (samples.double()[:, None] - mixture.means[None]).norm(dim=-1).min(1).values
  assert (distance > 4 * c.toy_std).double().mean() < 0.1
  # Two-sample distance to fresh data, against how far two fresh data sets of the same size
  # lie apart by chance (the largest of 4 such pairs); an untrained net is ~10x that.
  fresh = get_dataset(config, 'test').tensors[0]
  chance = max(sliced_wasserstein(fresh[i * n:(i + 1) * n], fresh[(i + 4) * n:(i + 5) * n])
               for i in range(4))
  assert sliced_wasserstein(samples, fresh[:n]) < 1.5 * chance


def tiny_config(n_iters):
  config = toy2d_config()
  config.device = 'cpu'
  config.model.hidden, config.model.num_layers = 16, 1
  config.data.toy_size = 512
  config.training.batch_size = 64                  # 8 batches per epoch: resume mid-epoch
  config.training.n_iters = n_iters
  config.training.log_freq = 5
  config.training.snapshot_freq = 10
  config.training.snapshot_samples = 16
  config.sampling.steps = 2
  return config


def assert_same_weights(a, b):
  """Two checkpoints' weights and EMA, bit for bit."""
  for ours, theirs in ((a['model'], b['model']), (a['ema']['shadow'], b['ema']['shadow'])):
    for key in ours:
      assert torch.equal(ours[key], theirs[key]), key


def test_resumed_run_equals_uninterrupted_run(tmp_path, one_thread):
  straight, split = str(tmp_path / 'straight'), str(tmp_path / 'split')
  train(tiny_config(20), straight, progress=False)
  train(tiny_config(10), split, progress=False)
  train(tiny_config(20), split, progress=False)
  resumed = load_checkpoint(os.path.join(split, 'checkpoints', 'ckpt_20.pt'))
  assert_same_weights(load_checkpoint(os.path.join(straight, 'checkpoints', 'ckpt_20.pt')), resumed)
  # 512 points in batches of 64: 8 per epoch, so after 20 steps the order is 4 into epoch 2.
  assert resumed['data_order'] == {'seed': 42, 'epoch': 2, 'next_batch': 4, 'batches_per_epoch': 8}
  assert [r['loss'] for r in read_metrics(straight)] == [r['loss'] for r in read_metrics(split)]
  assert sorted(os.listdir(os.path.join(straight, 'samples'))) == ['10.png', '20.png']


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGUSR1])
def test_preemption_signal_saves_the_step_and_resumes_exactly(tmp_path, one_thread, monkeypatch,
                                                              signum):
  """A scheduler's signal arriving during step 7 (between checkpoints at 0 and 10): training
  finishes that step, checkpoints it and returns 7; resuming reaches the same step-20 weights,
  EMA and Adam state as an uninterrupted run, bit for bit."""
  straight, stopped = str(tmp_path / 'straight'), str(tmp_path / 'stopped')
  train(tiny_config(20), straight, progress=False)
  real_update = Trainer.update

  def update_signalled_at_7(self, model, batch):
    if self.step + 1 == 7:
      os.kill(os.getpid(), signum)
    return real_update(self, model, batch)

  monkeypatch.setattr(Trainer, 'update', update_signalled_at_7)
  assert train(tiny_config(20), stopped, progress=False) == 7
  assert load_checkpoint(os.path.join(stopped, 'checkpoints', 'ckpt_7.pt'))['step'] == 7
  assert signal.getsignal(signum) is signal.SIG_DFL   # the handler is gone once training ends
  monkeypatch.setattr(Trainer, 'update', real_update)
  assert train(tiny_config(20), stopped, progress=False) == 20
  a = load_checkpoint(os.path.join(straight, 'checkpoints', 'ckpt_20.pt'))
  b = load_checkpoint(os.path.join(stopped, 'checkpoints', 'ckpt_20.pt'))
  for part in ('model', 'optimizer'):
    assert len(_tensors(a[part])) == len(_tensors(b[part])) > 0
    for x, y in zip(_tensors(a[part]), _tensors(b[part])):
      assert torch.equal(x, y), part
  for key in a['ema']['shadow']:
    assert torch.equal(a['ema']['shadow'][key], b['ema']['shadow'][key]), key


def test_a_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path, one_thread, capsys):
  """ckpt_20 cut to half its bytes (a crash mid-copy): resuming says so, starts from ckpt_10 and
  reaches the uninterrupted run's step-30 weights bit for bit; with every checkpoint unreadable
  the run stops with one error naming them."""
  straight, damaged = str(tmp_path / 'straight'), str(tmp_path / 'damaged')
  train(tiny_config(30), straight, progress=False)
  train(tiny_config(20), damaged, progress=False)
  newest = os.path.join(damaged, 'checkpoints', 'ckpt_20.pt')
  with open(newest, 'rb') as f:
    data = f.read()
  with open(newest, 'wb') as f:
    f.write(data[:len(data) // 2])
  capsys.readouterr()
  assert train(tiny_config(30), damaged, progress=False) == 30
  out = capsys.readouterr()
  assert 'ckpt_20.pt is unreadable, skipped' in out.out + out.err
  a = load_checkpoint(os.path.join(straight, 'checkpoints', 'ckpt_30.pt'))
  b = load_checkpoint(os.path.join(damaged, 'checkpoints', 'ckpt_30.pt'))
  for key in a['model']:
    assert torch.equal(a['model'][key], b['model'][key]), key
  for name in os.listdir(os.path.join(damaged, 'checkpoints')):
    if name.endswith('.pt'):
      with open(os.path.join(damaged, 'checkpoints', name), 'wb') as f:
        f.write(b'not a checkpoint')
  with pytest.raises(ConfigError, match='no readable checkpoint'):
    train(tiny_config(40), damaged, progress=False)


def test_wall_clock_checkpoints(tmp_path, one_thread, monkeypatch):
  """checkpoint_every_minutes: with a clock that moves 30 s per reading and a 1-minute
  interval, a checkpoint lands every few steps between the snapshots at 10 and 20; off (0),
  only the snapshots."""
  import pipeline.train as trainer_module
  clock = iter(range(0, 10 ** 6, 30))
  monkeypatch.setattr(trainer_module.time, 'monotonic', lambda: next(clock))
  steps = {}
  for minutes in (0.0, 1.0):
    config = tiny_config(20)
    config.training.update(checkpoint_every_minutes=minutes, keep_checkpoints=100,
                           snapshot_sampling=False)
    workdir = str(tmp_path / str(minutes))
    train(config, workdir, progress=False)
    steps[minutes] = [s for s, _ in list_checkpoints(workdir)]
  assert steps[0.0] == [10, 20]
  assert {10, 20} < set(steps[1.0]) and len(steps[1.0]) >= 6
  assert all(b - a <= 3 for a, b in zip([0] + steps[1.0], steps[1.0]))


def nan_at(monkeypatch, steps):
  """Make the loss nan at the given steps (1-based) of the next run."""
  import pipeline.train as trainer_module
  real = trainer_module.get_loss_fn
  calls = []

  def get_loss_fn(config, sde):
    loss_fn = real(config, sde)

    def loss(*args, **kwargs):
      calls.append(1)
      value = loss_fn(*args, **kwargs)
      return value * float('nan') if len(calls) in steps else value

    return loss

  monkeypatch.setattr(trainer_module, 'get_loss_fn', get_loss_fn)


def test_nonfinite_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(
    tmp_path, one_thread, monkeypatch):
  """A nan loss at step 14 stops the run naming the step; the newest checkpoint is still step
  10's, equal to an unaffected run's."""
  straight, broken = str(tmp_path / 'straight'), str(tmp_path / 'broken')
  train(tiny_config(10), straight, progress=False)
  nan_at(monkeypatch, {14})
  with pytest.raises(ConfigError, match='loss of step 14 is nan.*newest checkpoint is step 10'):
    train(tiny_config(20), broken, progress=False)
  assert sorted(os.listdir(os.path.join(broken, 'checkpoints'))) == ['ckpt_10.pt', 'latest']
  a = load_checkpoint(os.path.join(straight, 'checkpoints', 'ckpt_10.pt'))
  b = load_checkpoint(os.path.join(broken, 'checkpoints', 'ckpt_10.pt'))
  for key in a['model']:
    assert torch.equal(a['model'][key], b['model'][key]), key


def test_skip_nonfinite_skips_the_step_and_counts_it(tmp_path, one_thread, monkeypatch):
  """With training.skip_nonfinite, nan losses at steps 3 and 14 leave no trace: the weights,
  Adam's state and the EMA after step 3 equal those after step 2 (and step 4 moves on), all
  stay finite, and the skips are counted in metrics and the checkpoint."""
  workdir = str(tmp_path / 'run')
  nan_at(monkeypatch, {3, 14})
  config = tiny_config(20)
  config.training.skip_nonfinite = True
  config.training.log_freq = config.training.snapshot_freq = 1
  config.training.keep_checkpoints, config.training.snapshot_sampling = 30, False
  assert train(config, workdir, progress=False) == 20
  at = lambda step: load_checkpoint(os.path.join(workdir, 'checkpoints', f'ckpt_{step}.pt'))
  for part in ('model', 'optimizer'):
    assert all(torch.equal(x, y) for x, y in zip(_tensors(at(2)[part]), _tensors(at(3)[part])))
    assert not all(torch.equal(x, y) for x, y in zip(_tensors(at(3)[part]),
                                                     _tensors(at(4)[part])))
  assert all(torch.equal(at(2)['ema']['shadow'][k], at(3)['ema']['shadow'][k])
             for k in at(2)['ema']['shadow'])
  records = read_metrics(workdir)
  assert [r['skipped_steps'] for r in records if r['step'] in (2, 3, 13, 14, 20)] == [0, 1, 1, 2, 2]
  assert all(math.isfinite(r['loss']) for r in records if r['step'] not in (3, 14))
  final = load_checkpoint(os.path.join(workdir, 'checkpoints', 'ckpt_20.pt'))
  assert final['skipped_steps'] == 2
  assert all(torch.isfinite(v).all() for v in final['model'].values())


def _tensors(tree):
  """The tensors of a nested dict / list in a fixed order."""
  if isinstance(tree, torch.Tensor):
    return [tree]
  if isinstance(tree, dict):
    return [t for key in sorted(tree, key=str) for t in _tensors(tree[key])]
  if isinstance(tree, (list, tuple)):
    return [t for item in tree for t in _tensors(item)]
  return []


def test_interrupted_run_saves_its_last_step_and_resumes_exactly(tmp_path, one_thread, monkeypatch):
  """Ctrl-C during step 14 (between checkpoints at 10 and 20) saves step 13; resuming from it
  reaches the same step-20 weights as an uninterrupted run."""
  straight, interrupted = str(tmp_path / 'straight'), str(tmp_path / 'interrupted')
  train(tiny_config(20), straight, progress=False)
  real_update = Trainer.update

  def update_until_14(self, model, batch):
    if self.step + 1 == 14:
      raise KeyboardInterrupt
    return real_update(self, model, batch)

  monkeypatch.setattr(Trainer, 'update', update_until_14)
  with pytest.raises(KeyboardInterrupt):
    train(tiny_config(20), interrupted, progress=False)
  assert load_checkpoint(os.path.join(interrupted, 'checkpoints', 'ckpt_13.pt'))['step'] == 13
  monkeypatch.setattr(Trainer, 'update', real_update)
  train(tiny_config(20), interrupted, progress=False)
  a = load_checkpoint(os.path.join(straight, 'checkpoints', 'ckpt_20.pt'))
  b = load_checkpoint(os.path.join(interrupted, 'checkpoints', 'ckpt_20.pt'))
  for key in a['model']:
    assert torch.equal(a['model'][key], b['model'][key]), key


def test_learning_rate_warms_up_linearly():
  optim = tiny_config(1).optim
  optim.lr, optim.warmup = 1e-3, 100
  assert math.isclose(learning_rate(optim, 1), 1e-5)
  assert math.isclose(learning_rate(optim, 50), 5e-4)
  assert learning_rate(optim, 100) == learning_rate(optim, 5000) == 1e-3
  optim.warmup = 0
  assert learning_rate(optim, 1) == 1e-3


@pytest.mark.parametrize('field, value', [('method', 'bogus'), ('predictor', 'bogus'),
                                          ('corrector', 'bogus')])
def test_bad_sampling_settings_stop_training_before_step_1(tmp_path, field, value):
  # Snapshot sampling is off, so without the check at start these settings would first be
  # read by --mode sample or eval, after the whole run.
  config = tiny_config(20)
  config.training.snapshot_sampling = False
  config.sampling[field] = value
  with pytest.raises(ConfigError, match=value):
    train(config, str(tmp_path), progress=False)
  assert os.listdir(tmp_path) == []   # no config.json, checkpoint or metric: nothing ran


def test_resume_compares_with_config_json(tmp_path, capsys, one_thread):
  # A longer run and another learning rate resume, and say what changed; another SDE or
  # network width is refused with a one-line message naming the field (run.py prints a
  # ConfigError as it is), unless allowed.
  workdir = str(tmp_path)
  train(tiny_config(5), workdir, progress=False)
  for field, value in (('sde.beta_max', 10.0), ('model.hidden', 32)):
    config = tiny_config(10)
    section, name = field.split('.')
    config[section][name] = value
    with pytest.raises(ConfigError, match=rf'{field} .* -> {value}.*--allow_model_override') as info:
      train(config, workdir, progress=False)
    assert '\n' not in str(info.value)
  capsys.readouterr()
  config = tiny_config(10)
  config.optim.lr = 1e-3
  assert train(config, workdir, progress=False) == 10
  printed = capsys.readouterr().out
  assert 'optim.lr: 0.002 -> 0.001' in printed and 'training.n_iters: 5 -> 10' in printed
  config = tiny_config(15)
  config.sde.beta_max = 10.0
  assert train(config, workdir, progress=False, allow_model_override=True) == 15
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['sde']['beta_max'] == 10.0


# ---- how a step is computed: micro-batches, memory format, precision -----------------------------

def final_weights(config, workdir):
  train(config, workdir, progress=False)
  state = load_checkpoint(os.path.join(workdir, 'checkpoints', f'ckpt_{config.training.n_iters}.pt'))
  return state['model']


def weight_difference(a, b):
  """The largest difference of two state dicts' tensors, each relative to its own largest
  entry (or to 1e-4 where that is smaller: attention's key bias, whose gradient is 0, stays at
  its initial ~1e-13)."""
  return max(((b[k] - v).abs().max() / v.abs().max().clamp(min=1e-4)).item()
             for k, v in a.items() if v.is_floating_point())


def assert_close_weights(a, b, rtol):
  assert weight_difference(a, b) <= rtol


def test_micro_batches_train_what_the_whole_batch_trains(tmp_path, one_thread):
  """training.grad_accum=4 (4 micro-batches of 16) reaches the weights of batches of 64 in one
  piece after 10 steps, with the same logged loss and gradient norm (Adam would forgive a
  gradient off by a constant factor, the norm does not): the same samples and draws, the
  gradient summed in another order (measured relative difference ~1e-7; allowed 1e-5)."""
  whole = final_weights(tiny_config(10), str(tmp_path / 'whole'))
  config = tiny_config(10)
  config.training.grad_accum = 4
  assert_close_weights(whole, final_weights(config, str(tmp_path / 'micro')), 1e-5)
  for a, b in zip(read_metrics(tmp_path / 'whole'), read_metrics(tmp_path / 'micro')):
    for key in ('loss', 'grad_norm'):
      assert b[key] == pytest.approx(a[key], rel=1e-5), key


def tiny_digits(n_iters, **training):
  config = digits_config()
  config.device = 'cpu'
  config.model.update(nf=8, num_groups=4, ch_mult=(1, 2), attn_resolutions=(4,), dropout=0.0)
  config.training.update(batch_size=16, n_iters=n_iters, log_freq=1, snapshot_freq=n_iters,
                         snapshot_sampling=False, bound_images=0, **training)
  return config


def test_channels_last_trains_what_contiguous_memory_trains(tmp_path, one_thread):
  """The memory format changes the order of the convolutions' sums, not what they compute:
  5 steps of a small U-Net agree to 1e-4 of each tensor's scale (measured ~1e-6)."""
  contiguous = final_weights(tiny_digits(5), str(tmp_path / 'contiguous'))
  channels_last = final_weights(tiny_digits(5, channels_last=True), str(tmp_path / 'last'))
  assert_close_weights(contiguous, channels_last, 1e-4)


def test_bf16_autocast_follows_fp32(tmp_path, one_thread):
  """bf16 keeps 8 bits of mantissa (relative rounding 2^-9 = 0.2% per operation): the first
  step's loss (same weights, same draws) is within 2% of fp32's, the next four within 5%."""
  fp32, bf16 = str(tmp_path / 'fp32'), str(tmp_path / 'bf16')
  train(tiny_digits(5), fp32, progress=False)
  train(tiny_digits(5, precision='bf16'), bf16, progress=False)
  a, b = ([r['loss'] for r in read_metrics(w)] for w in (fp32, bf16))
  assert abs(b[0] - a[0]) < 0.02 * a[0], (a, b)
  assert all(abs(y - x) < 0.05 * x for x, y in zip(a, b)), (a, b)


@pytest.mark.parametrize('field, value, match', [('precision', 'fp16', "'fp16' is for CUDA"),
                                                 ('precision', 'fp8', 'must be one of'),
                                                 ('tf32', True, 'CUDA setting'),
                                                 ('grad_accum', 3, 'divide evenly')])
def test_bad_training_options_stop_before_anything_is_written(tmp_path, field, value, match):
  config = tiny_config(4)
  config.training[field] = value
  with pytest.raises(ConfigError, match=match):
    train(config, str(tmp_path / 'run'), progress=False)
  assert not os.path.exists(tmp_path / 'run')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='CUDA only')
@pytest.mark.parametrize('options', [dict(precision='bf16'), dict(precision='fp16'),
                                     dict(compile=True), dict(channels_last=True, tf32=True)])
def test_cuda_training_options_follow_fp32(tmp_path, options):
  """On CUDA each option trains what fp32 trains: the first step's loss within 2% (fp16: 10
  bits of mantissa; bf16: 8; TF32: 10 in matmuls), all five within 5%, a resumable checkpoint
  (with fp16 the gradient scaler's state in it)."""
  cuda = lambda **o: tiny_digits(5, **o).unlock()
  reference, run = str(tmp_path / 'fp32'), str(tmp_path / 'option')
  config = cuda()
  config.device = 'cuda'
  train(config, reference, progress=False)
  config = cuda(**options)
  config.device = 'cuda'
  train(config, run, progress=False)
  a, b = ([r['loss'] for r in read_metrics(w)] for w in (reference, run))
  assert abs(b[0] - a[0]) < 0.02 * a[0], (a, b)
  assert all(abs(y - x) < 0.05 * x for x, y in zip(a, b)), (a, b)
  state = load_checkpoint(os.path.join(run, 'checkpoints', 'ckpt_5.pt'))
  assert bool(state['grad_scaler']) == (options.get('precision') == 'fp16')
