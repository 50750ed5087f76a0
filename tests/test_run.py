"""run.py end to end: train, resume, sample and eval from the run's own config.json, the
workdir layout, refused model changes, bad input as one line and bugs with their traceback."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from configs.vp_digits import get_config as digits_config
from configs.vp_toy2d import get_config as toy2d_config
from pipeline.evaluate import evaluate
from pipeline.train import train as train_here
from test_trainer import assert_same_weights
from utils.checkpoint import load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--config', 'vp_digits', '--config.device=cpu', '--config.model.nf=8',
        '--config.model.num_groups=4', '--config.training.batch_size=16',
        '--config.training.log_freq=2', '--config.training.snapshot_freq=4',
        '--config.training.snapshot_samples=4', '--config.sampling.steps=3',
        '--config.sampling.num_samples=6', '--config.sampling.batch_size=4']


def run(*args):
  # One intra-op thread: on a shared 2-core machine two per process oversubscribe the cores.
  env = dict(os.environ, OMP_NUM_THREADS='1')
  return subprocess.run([sys.executable, 'run.py', *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300)


def ok(result):
  assert result.returncode == 0, result.stderr[-2000:]
  return result


def tiny_digits(**training):
  """The config TINY stands for, for runs in this process."""
  config = digits_config()
  config.device = 'cpu'
  config.model.update(nf=8, num_groups=4)
  config.training.update({'batch_size': 16, 'log_freq': 2, 'snapshot_freq': 4,
                          'snapshot_samples': 4, **training})
  config.sampling.update(steps=3, num_samples=6, batch_size=4)
  return config


def steps_logged(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [int(line.split('"step": ')[1].split(',')[0]) for line in f]


@pytest.mark.slow
def test_train_resume_and_layout(tmp_path, one_thread):
  resumed, straight = str(tmp_path / 'resumed'), str(tmp_path / 'straight')
  ok(run(*TINY, '--workdir', resumed, '--config.training.n_iters=4'))
  first = load_checkpoint(os.path.join(resumed, 'checkpoints', 'ckpt_4.pt'))
  ok(run(*TINY, '--workdir', resumed, '--config.training.n_iters=8'))
  train_here(tiny_digits(n_iters=8), straight, progress=False)   # the same run in this process

  assert steps_logged(resumed) == [2, 4, 6, 8]          # the step counter continues
  after = load_checkpoint(os.path.join(resumed, 'checkpoints', 'ckpt_8.pt'))
  assert after['step'] == 8 and after['ema']['num_updates'] == 8
  assert all(s['step'] == 8 for s in after['optimizer']['state'].values())  # Adam's t continued
  assert any(not torch.equal(first['ema']['shadow'][k], after['ema']['shadow'][k])
             for k in first['ema']['shadow'])
  # Restored model, EMA and Adam moments: the resumed run equals an uninterrupted one exactly.
  reference = load_checkpoint(os.path.join(straight, 'checkpoints', 'ckpt_8.pt'))
  for key, value in reference['model'].items():
    assert torch.equal(value, after['model'][key]), key
  for key, value in reference['ema']['shadow'].items():
    assert torch.equal(value, after['ema']['shadow'][key]), key
  for index, state in reference['optimizer']['state'].items():
    assert torch.equal(state['exp_avg_sq'], after['optimizer']['state'][index]['exp_avg_sq'])

  for path in ('config.json', 'metrics.jsonl', 'checkpoints/latest', 'checkpoints/ckpt_8.pt',
               'samples/4.png', 'samples/8.png'):
    assert os.path.isfile(os.path.join(resumed, path)), path
  assert any(name.startswith('events.out.tfevents') for name in os.listdir(os.path.join(resumed, 'tb')))


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_with_the_same_global_batch(tmp_path, one_thread):
  """torchrun with 2 CPU processes (gloo), 2 micro-batches each (training.grad_accum=2), trains
  what one process does with the same global batch of 256 in one piece: the same data order and
  per-sample randomness (training/batches.py), so the weights, EMA and Adam moments after 40 steps
  agree to float tolerance (the gradient is summed in another order: all-reduce of means vs one
  mean; measured differences ~1e-6, allowed 1e-4 of each tensor's scale). Rank 0 alone writes
  the workdir (one line printed, one set of checkpoints), the loss it logs (averaged over ranks)
  falls, and a single process resumes from the distributed run's checkpoint."""
  workdir, single = str(tmp_path / 'ddp'), str(tmp_path / 'single')
  args = ['--config', 'vp_toy2d', '--config.device=cpu', '--config.training.n_iters=40',
          '--config.training.snapshot_freq=20', '--config.training.log_freq=10',
          '--config.training.snapshot_sampling=False']
  env = dict(os.environ, OMP_NUM_THREADS='1')
  result = subprocess.run(
      [os.path.join(os.path.dirname(sys.executable), 'torchrun'), '--standalone', '--nproc_per_node=2',
       'run.py', *args, '--workdir', workdir, '--config.training.grad_accum=2'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  ok(result)
  assert result.stdout.count('trained to step 40') == 1
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['ckpt_20.pt', 'ckpt_40.pt', 'latest']
  assert sorted(os.listdir(workdir)) == ['checkpoints', 'config.json', 'metrics.jsonl', 'samples', 'tb']
  losses = [json.loads(line)['loss'] for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert len(losses) == 4 and losses[-1] < losses[0]
  config = toy2d_config()
  config.device = 'cpu'
  config.training.update(n_iters=40, snapshot_freq=20, log_freq=10, snapshot_sampling=False)
  train_here(config, single, progress=False)
  a = load_checkpoint(os.path.join(workdir, 'checkpoints', 'ckpt_40.pt'))
  b = load_checkpoint(os.path.join(single, 'checkpoints', 'ckpt_40.pt'))
  pairs = [(a['model'], b['model']), (a['ema']['shadow'], b['ema']['shadow'])] + [
      (a['optimizer']['state'][i], b['optimizer']['state'][i]) for i in b['optimizer']['state']]
  for ours, theirs in pairs:
    for key, value in theirs.items():
      if value.is_floating_point() and value.dim():
        scale = value.abs().max().item() + 1e-12
        assert (ours[key] - value).abs().max().item() <= 1e-4 * scale, key
  config.training.n_iters = 45
  train_here(config, workdir, progress=False)
  assert load_checkpoint(os.path.join(workdir, 'checkpoints', 'ckpt_45.pt'))['step'] == 45


# run.py with its train() replaced by one that raises the given exception.
RAISING = """
import sys
import run

def train(*args, **kwargs):
  raise {error}

run.train = train
sys.argv = ['run.py'] + sys.argv[1:]
run.run()
"""


@pytest.mark.slow
def test_a_bug_keeps_its_traceback(tmp_path):
  """A plain ValueError (which run.py used to print as one line, like a ConfigError) is a bug:
  it keeps its traceback. (ConfigErrors as one line: the tests above and below.)"""
  env = dict(os.environ, OMP_NUM_THREADS='1')
  result = subprocess.run([sys.executable, '-c', RAISING.format(error="ValueError('an internal bug')"),
                           '--config', 'vp_toy2d', '--workdir', str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  assert 'Traceback (most recent call last)' in result.stderr and 'an internal bug' in result.stderr


def error_line(result):
  """The one line a ConfigError leaves on stderr (exit 1, no traceback)."""
  assert result.returncode == 1, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
  return lines[0]


@pytest.mark.slow
def test_sample_and_eval_start_from_the_runs_config(tmp_path):
  """A toy2d run trained with a non-default width (hidden 48, one block) is sampled and
  evaluated with no overrides at all: config.json supplies the architecture and the settings.
  Changing the architecture at eval time is refused with one line naming the field (the same
  check on resume: tests/test_trainer.py). Both modes name a set of samples by one key and draw it the same way: with
  the same batch size, eval's 8 samples are the first 8 of --mode sample's 10, in one format."""
  workdir = str(tmp_path / 'run')
  train_args = ['--config', 'vp_toy2d', '--workdir', workdir, '--config.device=cpu',
                '--config.model.hidden=48', '--config.model.num_layers=1',
                '--config.data.toy_size=512', '--config.training.batch_size=64',
                '--config.training.n_iters=4', '--config.training.snapshot_freq=4',
                '--config.training.snapshot_sampling=False', '--config.sampling.steps=3',
                '--config.sampling.num_samples=10', '--config.sampling.batch_size=8',
                '--config.eval.num_samples=8', '--config.eval.batch_size=8',
                '--config.eval.enable_bpd=False']
  ok(run(*train_args))

  result = ok(run('--workdir', workdir, '--mode', 'sample'))
  # vp_toy2d samples with PC, no corrector, here 3 steps: 3 score evaluations per sample.
  assert '3 score evaluations per sample' in result.stdout
  [npz] = [name for name in os.listdir(os.path.join(workdir, 'samples')) if name.endswith('.npz')]
  assert re.fullmatch(r'ckpt_4-pc_corrector-none_steps-3-[0-9a-f]{10}\.npz', npz), npz
  with np.load(os.path.join(workdir, 'samples', npz)) as stored:
    sampled = stored['samples']
    assert sampled.shape == (10, 2) and sampled.dtype == np.float32
    assert stored['nfe'] == 3 and stored['step'] == 4
  assert os.path.isfile(os.path.join(workdir, 'samples', npz[:-4] + '.png'))

  ok(run('--workdir', workdir, '--mode', 'eval'))
  assert os.listdir(os.path.join(workdir, 'eval')) == [npz[:-4]]
  with open(os.path.join(workdir, 'eval', npz[:-4], 'report.json')) as f:
    report = json.load(f)
  assert report['key'] == npz[:-4] and report['num_samples'] == 8 and report['nfe_per_sample'] == 3
  with np.load(os.path.join(workdir, 'eval', npz[:-4], 'samples.npz')) as stored:
    assert np.array_equal(stored['samples'], sampled[:8])

  line = error_line(run('--workdir', workdir, '--mode', 'eval', '--config.model.hidden=32'))
  assert 'model.hidden 48 -> 32' in line and '--allow_model_override' in line


@pytest.mark.slow
def test_conditional_modes_from_the_command_line(tmp_path):
  """A tiny vp_digits_cond run: --mode sample with guidance stores one label per sample
  (i mod 10) and lays its grid out one row per class; --mode train_classifier writes the
  classifier and its accuracy; classifier-guided sampling uses it; --mode inpaint writes its
  grid (bad class requests: test_conditional_generation.py)."""
  workdir = str(tmp_path / 'cond')
  cond = [a.replace('vp_digits', 'vp_digits_cond') for a in TINY]
  ok(run(*cond, '--workdir', workdir, '--config.training.n_iters=2',
         '--config.sampling.num_samples=20', '--config.sampling.batch_size=20'))
  ok(run('--workdir', workdir, '--mode', 'sample', '--config.sampling.guidance_scale=2'))
  [npz] = [n for n in os.listdir(os.path.join(workdir, 'samples')) if n.endswith('.npz')]
  with np.load(os.path.join(workdir, 'samples', npz)) as stored:
    assert list(stored['labels']) == [i % 10 for i in range(20)]
  from PIL import Image
  # 10 rows of 2 images of 64 pixels with 2-pixel padding (utils/pictures.py class_picture).
  assert Image.open(os.path.join(workdir, 'samples', npz[:-4] + '.png')).size == (134, 662)
  result = ok(run('--workdir', workdir, '--mode', 'train_classifier',
                  '--config.classifier.n_iters=3', '--config.classifier.batch_size=16'))
  assert 't = 1.00' in result.stdout
  assert os.path.isfile(os.path.join(workdir, 'classifier', 'accuracy.json'))
  ok(run('--workdir', workdir, '--mode', 'sample', '--config.sampling.classifier_scale=1',
         '--config.sampling.class_label=3'))
  result = ok(run('--workdir', workdir, '--mode', 'inpaint', '--config.inpaint.mask=left',
                  '--config.inpaint.num_completions=2'))
  assert any(n.startswith('inpaint-') and n.endswith('.png')
             for n in os.listdir(os.path.join(workdir, 'samples')))


@pytest.mark.slow
def test_sigterm_saves_the_last_step_and_exits_0(tmp_path):
  """kill -TERM on a training run: exit 0, a line naming the step, and its checkpoint."""
  workdir = str(tmp_path / 'run')
  process = subprocess.Popen(
      [sys.executable, 'run.py', *TINY, '--workdir', workdir, '--config.training.n_iters=100000',
       '--config.training.snapshot_freq=100000'], cwd=ROOT,
      env=dict(os.environ, OMP_NUM_THREADS='1'), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)
  metrics = os.path.join(workdir, 'metrics.jsonl')
  for _ in range(600):                       # training has begun once a step is logged
    if os.path.exists(metrics) or process.poll() is not None:
      break
    time.sleep(0.2)
  process.send_signal(signal.SIGTERM)
  out, err = process.communicate(timeout=120)
  assert process.returncode == 0, err[-2000:]
  step = int(re.search(r'stopped at step (\d+) of 100000', out).group(1))
  assert step >= 2
  assert load_checkpoint(os.path.join(workdir, 'checkpoints', f'ckpt_{step}.pt'))['step'] == step


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_resumes_bit_for_bit(tmp_path, one_thread):
  """Training killed with SIGKILL three times at random moments (a checkpoint every step, so
  some kills land inside a write) and resumed each time ends with the uninterrupted run's
  weights and EMA bit for bit; after every kill each checkpoint in the workdir loads and
  `latest` names one."""
  args = [*TINY, '--config.training.n_iters=30', '--config.training.snapshot_freq=1',
          '--config.training.snapshot_sampling=False', '--config.training.keep_checkpoints=2']
  straight, killed = str(tmp_path / 'straight'), str(tmp_path / 'killed')
  train_here(tiny_digits(n_iters=30, snapshot_freq=1, snapshot_sampling=False,
                         keep_checkpoints=2), straight, progress=False)
  rng = np.random.default_rng(0)
  env = dict(os.environ, OMP_NUM_THREADS='1')
  for _ in range(3):
    process = subprocess.Popen([sys.executable, 'run.py', *args, '--workdir', killed], cwd=ROOT,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = os.path.join(killed, 'metrics.jsonl')
    start = os.path.getsize(metrics) if os.path.exists(metrics) else 0
    for _ in range(600):                     # until this run has logged a step
      if os.path.exists(metrics) and os.path.getsize(metrics) > start or process.poll() is not None:
        break
      time.sleep(0.05)
    time.sleep(rng.uniform(0, 0.3))
    process.send_signal(signal.SIGKILL)
    process.wait()
    folder = os.path.join(killed, 'checkpoints')
    for name in os.listdir(folder):
      if name.startswith('ckpt_') and name.endswith('.pt'):
        load_checkpoint(os.path.join(folder, name))
    with open(os.path.join(folder, 'latest')) as f:
      load_checkpoint(os.path.join(folder, f.read().strip()))
  ok(run(*args, '--workdir', killed))
  assert_same_weights(load_checkpoint(os.path.join(straight, 'checkpoints', 'ckpt_30.pt')),
                      load_checkpoint(os.path.join(killed, 'checkpoints', 'ckpt_30.pt')))


@pytest.mark.slow
def test_torchrun_evaluation_equals_one_process_also_when_resumed(tmp_path, one_thread):
  """--mode eval under torchrun (2 CPU processes): the shards of the samples and the batches of
  the likelihoods are split over the processes and gathered, so the stored set of 10 samples
  (shards of 4, 4, 2) and the ODE bits/dim, VLB and score-matching bound equal one process's
  exactly (the same operations on the same numbers, one thread each). Two shards lost (an
  interrupted generation) are drawn again by the other world size: the same set, no more."""
  single, ddp = str(tmp_path / 'single'), str(tmp_path / 'ddp')
  config = tiny_digits(n_iters=4)
  train_here(config, single, progress=False)
  shutil.copytree(single, ddp)
  args = ['--mode', 'eval', '--config.eval.enable_fid=False', '--config.eval.num_samples=10',
          '--config.eval.batch_size=4', '--config.eval.bpd_num_images=8',
          '--config.eval.vlb_num_images=8', '--config.eval.vlb_steps=20',
          '--config.eval.score_bound_times=2', '--config.eval.bpd_rtol=1e-3',
          '--config.eval.bpd_atol=1e-3']
  torchrun = [os.path.join(os.path.dirname(sys.executable), 'torchrun'), '--standalone',
              '--nproc_per_node=2', 'run.py']
  env = dict(os.environ, OMP_NUM_THREADS='1')
  result = subprocess.run([*torchrun, '--workdir', ddp, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  ok(result)
  assert result.stdout.count('reports in') == 1
  config.eval.update(enable_fid=False, num_samples=10, batch_size=4, bpd_num_images=8,
                     vlb_num_images=8, vlb_steps=20, score_bound_times=2, bpd_rtol=1e-3,
                     bpd_atol=1e-3)
  evaluate(config, single)

  def stored(workdir):
    (key,) = os.listdir(os.path.join(workdir, 'eval'))
    folder = os.path.join(workdir, 'eval', key)
    with open(os.path.join(folder, 'report.json')) as f, \
        np.load(os.path.join(folder, 'samples.npz')) as samples:
      return folder, json.load(f), samples['samples']

  folder, report, samples = stored(ddp)
  _, reference, reference_samples = stored(single)
  assert report['processes'] == 2 and reference['processes'] == 1
  assert samples.shape == (10, 8, 8, 1) and np.array_equal(samples, reference_samples)
  for number in ('bpd', 'vlb', 'score_bound'):
    assert report[number]['num_images'] == 8 and report[number] == reference[number], number
  assert sorted(os.listdir(os.path.join(folder, 'shards'))) == [f'shard_{i}.npz' for i in range(3)]
  for i in (1, 2):
    os.remove(os.path.join(folder, 'shards', f'shard_{i}.npz'))
  config.eval.update(enable_bpd=False, enable_vlb=False, enable_score_bound=False)
  evaluate(config, ddp)
  assert np.array_equal(stored(ddp)[2], reference_samples)
