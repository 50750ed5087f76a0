"""score_sde_pytorch's checkpoints and networks, against what the reference implementation
wrote (tests/fixtures/score_sde): tiny random-weight checkpoints with the reference's own
output on a stored batch, and the full-size CIFAR-10 networks' state-dict manifests."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from configs import subvp_cifar10, ve_cifar10, vp_cifar10, vp_cifar10_deep
from models.convert import convert
from models.registry import get_model
from models.restore import restore
from pipeline.train import train
from utils.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INTEROP = os.path.join(ROOT, 'tests', 'fixtures', 'score_sde')
FIXTURES = {'tiny_vp_ddpmpp_continuous': vp_cifar10, 'tiny_ve_ncsnpp_continuous': ve_cifar10}
MANIFESTS = {'score_sde_vp_cifar10_ddpmpp_continuous': vp_cifar10,
             'score_sde_subvp_cifar10_ddpmpp_continuous': subvp_cifar10,
             'score_sde_vp_cifar10_ddpmpp_deep_continuous': vp_cifar10_deep,
             'score_sde_ve_cifar10_ncsnpp_continuous': ve_cifar10}
# The sizes the fixtures were written at (their json's "source"): our configs, shrunk.
TINY = {'model.nf': 16, 'model.ch_mult': (1, 2), 'model.num_res_blocks': 1,
        'model.attn_resolutions': (8,), 'model.dropout': 0.0, 'data.image_size': 16}


def fixture(name, suffix):
  return os.path.join(INTEROP, name + suffix)


def tiny_config(module):
  config = module.get_config()
  config.update_from_flattened_dict(TINY)
  return config


@pytest.mark.parametrize('name', sorted(FIXTURES))
def test_tiny_checkpoint_reproduces_the_reference_output(name):
  """The checkpoint's raw weights (its 'model') loaded strictly into the network our config
  builds give the reference's output on the stored batch. Tolerance 1e-5 relative: the same
  float32 operations in another order (einsum vs matmul, grouped vs per-channel FIR) differ
  by ~1e-6 over ~20 layers."""
  io = torch.load(fixture(name, '_io.pt'), weights_only=True)
  model, _, state = restore(tiny_config(FIXTURES[name]), fixture(name, '.pth'))
  with torch.no_grad():
    out = model.eval()(io['x'], io['time_input'])
  error = (out - io['output']).abs().max() / io['output'].abs().max()
  assert error < 1e-5, f"max relative error {error:.2e}"
  assert state['step'] == load_checkpoint(fixture(name, '.pth'))['step']


@pytest.mark.parametrize('name', sorted(FIXTURES))
def test_tiny_checkpoint_ema_weights_follow_the_reference_parameter_order(name):
  """score_sde stores the EMA as a list in model.parameters() order (trainable only). The
  reference's order is the order of its own state-dict keys, read from the file: each of our
  parameters must get the average at that position, and the network must run on them."""
  reference = load_checkpoint(fixture(name, '.pth'))
  config = tiny_config(FIXTURES[name])
  trainable = {n for n, p in get_model(config).named_parameters() if p.requires_grad}
  keys = [k[len('module.'):] for k in reference['model']]
  ordered = [k for k in keys if k in trainable]
  averages = dict(zip(ordered, reference['ema']['shadow_params'], strict=True))
  model, ema, _ = restore(config, fixture(name, '.pth'))
  ema.copy_to(model)
  for key, value in model.named_parameters():
    expected = averages[key] if key in trainable else reference['model']['module.' + key]
    assert torch.equal(value.detach(), expected), key
  io = torch.load(fixture(name, '_io.pt'), weights_only=True)
  with torch.no_grad():
    out = model.eval()(io['x'], io['time_input'])
  assert torch.isfinite(out).all() and not torch.allclose(out, io['output'])   # other weights


@pytest.mark.parametrize('name', sorted(MANIFESTS))
def test_full_size_network_has_the_reference_state_dict(name):
  """Our config's network (built on the meta device: no memory, no init) has exactly the
  reference's keys in order, shapes, dtypes, parameter count and EMA length."""
  with open(os.path.join(INTEROP, name + '.json')) as f:
    manifest = json.load(f)
  with torch.device('meta'):
    model = get_model(MANIFESTS[name].get_config())
  ours = [[k, list(v.shape), str(v.dtype).replace('torch.', '')] for k, v in model.state_dict().items()]
  assert ours == manifest['state_dict']
  assert sum(p.numel() for p in model.parameters()) == manifest['num_parameters']
  assert [k for k, _ in model.named_parameters()] == manifest['parameter_order']
  assert sum(p.requires_grad for p in model.parameters()) == manifest['num_ema_shadow_params']


def test_parameter_counts_quoted_by_the_papers():
  counts = {'score_sde_vp_cifar10_ddpmpp_continuous': 61_804_419,
            'score_sde_ve_cifar10_ncsnpp_continuous': 62_758_915,
            'score_sde_vp_cifar10_ddpmpp_deep_continuous': 106_632_579}
  for name, count in counts.items():
    with torch.device('meta'):
      model = get_model(MANIFESTS[name].get_config())
    assert sum(p.numel() for p in model.parameters()) == count


def test_a_checkpoint_of_another_architecture_names_the_first_misfit():
  with pytest.raises(CheckpointError) as error:
    restore(tiny_config(vp_cifar10), fixture('tiny_ve_ncsnpp_continuous', '.pth'))
  message = str(error.value)
  assert '\n' not in message
  assert 'all_modules.1.weight: checkpoint (64, 32) vs model (64, 64)' in message


def test_converted_checkpoint_is_a_run_that_resumes(tmp_path):
  """convert writes our layout: the same weights and EMA come back through our own loader,
  and the reference's step and EMA counters carry over."""
  name = 'tiny_ve_ncsnpp_continuous'
  config = tiny_config(ve_cifar10)
  config.data.dataset, config.data.root = 'folder', image_folder(tmp_path / 'images')
  path = convert(config, fixture(name, '.pth'), str(tmp_path))
  assert path == latest_checkpoint(str(tmp_path)) and os.path.exists(tmp_path / 'config.json')
  ours = load_checkpoint(path)
  theirs = load_checkpoint(fixture(name, '.pth'))
  assert ours['step'] == theirs['step'] and ours['ema']['num_updates'] == theirs['ema']['num_updates']
  model, ema, _ = restore(config, path)
  reference, reference_ema, _ = restore(config, fixture(name, '.pth'))
  for a, b in zip(model.state_dict().values(), reference.state_dict().values()):
    assert torch.equal(a, b)
  assert all(torch.equal(ema.shadow[k], reference_ema.shadow[k]) for k in ema.shadow)
  with pytest.raises(ValueError, match='already holds checkpoints'):
    convert(config, fixture(name, '.pth'), str(tmp_path))
  config.training.n_iters, config.training.batch_size = ours['step'] + 1, 2
  config.training.snapshot_sampling = False
  assert train(config, str(tmp_path), progress=False) == ours['step'] + 1   # resumed, one step on


# --- run.py end to end on the fixtures -------------------------------------------------------

def run(*args):
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=600)


def image_folder(path, count=4):
  os.makedirs(path)
  rng = np.random.default_rng(0)
  for i in range(count):
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(f'{path}/{i}.png')
  return str(path)


def flags(module, workdir, images, ckpt):
  tiny = [f'--config.{k}={v}' for k, v in TINY.items()]
  return ['--config', module.__name__.split('.')[-1], '--workdir', str(workdir), *tiny,
          f'--config.eval.ckpt={ckpt}', '--config.data.dataset=folder', f'--config.data.root={images}',
          '--config.device=cpu']


SAMPLERS = ('method=pc,predictor=euler_maruyama,corrector=none,steps=3',
            'method=pc,predictor=reverse_diffusion,corrector=langevin,steps=3',
            'method=pc,predictor=ancestral,corrector=ald,steps=3',
            'method=ancestral,steps=3', 'method=ode,rtol=0.01,atol=0.01', 'method=sde,steps=3')


@pytest.mark.parametrize('name', sorted(FIXTURES))
def test_run_py_samples_and_evaluates_a_published_checkpoint(tmp_path, name):
  args = flags(FIXTURES[name], tmp_path / 'run', image_folder(tmp_path / 'images'),
               fixture(name, '.pth'))
  sampled = run('run.py', '--mode', 'sample', *args, '--config.sampling.steps=3',
                '--config.sampling.num_samples=2', '--config.sampling.batch_size=2')
  assert sampled.returncode == 0, sampled.stderr[-3000:]
  assert '2 samples from ' + name in sampled.stdout
  # Likelihoods at loose tolerance and no VLB (its 1000 network calls take a minute here):
  # this checks that every part runs on the imported network, not the numbers.
  evaluated = run('run.py', '--mode', 'eval', *args, f'--config.eval.samplers={SAMPLERS!r}',
                  '--config.eval.num_samples=2', '--config.eval.batch_size=2',
                  '--config.eval.bpd_num_images=2', '--config.eval.enable_vlb=False',
                  '--config.eval.bpd_rtol=0.1', '--config.eval.bpd_atol=0.1')
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  reports = [json.load(open(os.path.join(root, 'report.json')))
             for root, _, files in os.walk(tmp_path / 'run' / 'eval') if 'report.json' in files]
  assert len(reports) == len(SAMPLERS)
  assert all(r['checkpoint'] == name and r['step'] == 1234 and np.isfinite(r['bpd']['mean']) for r in reports)


def test_run_py_refuses_a_mismatched_checkpoint_in_one_line(tmp_path):
  args = flags(vp_cifar10, tmp_path / 'run', image_folder(tmp_path / 'images'),
               fixture('tiny_ve_ncsnpp_continuous', '.pth'))
  result = run('run.py', '--mode', 'sample', *args)
  assert result.returncode == 1
  assert result.stderr.count('\n') == 1 and 'all_modules.1.weight' in result.stderr, result.stderr


class Payload:
  """Unpickling this runs os.mkdir(marker): the code a crafted checkpoint could carry."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.mkdir, (self.marker,)


def test_run_py_never_unpickles_code_from_a_checkpoint(tmp_path):
  marker, evil = tmp_path / 'ran', tmp_path / 'evil.pth'
  torch.save({'model': {}, 'ema': {'shadow_params': []}, 'step': Payload(str(marker))}, evil)
  args = flags(vp_cifar10, tmp_path / 'run', image_folder(tmp_path / 'images'), evil)
  result = run('run.py', '--mode', 'sample', *args)
  assert result.returncode == 1 and 'weights-only' in result.stderr, result.stderr
  assert not marker.exists()
