"""--mode restore end to end on a tiny digits run: the files it writes, what they hold, the
report's numbers recomputed from them, and one-line errors for inputs that do not fit."""
import json
import os

import numpy as np
import pytest
import torch

from configs.run_config import load_run_config
from pipeline.restore import restore_images
from test_run import ok, run, tiny_digits
from pipeline.train import train as train_here
from utils.errors import ConfigError


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('restore') / 'run')
  train_here(tiny_digits(n_iters=4), workdir, progress=False)
  return workdir


def restore(workdir, *overrides):
  return run('--workdir', workdir, '--mode', 'restore', '--config.restore.num_images=6',
             '--config.restore.batch_size=4', '--config.restore.steps=3', *overrides)


def written(result):
  paths = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith('/')
           or line.strip().startswith('runs') or line.strip().endswith(('.npz', '.png', '.json'))]
  return {os.path.splitext(p)[1]: p for p in paths}


@pytest.mark.slow
@pytest.mark.parametrize('method', ['ddnm', 'replacement'])
def test_restore_writes_measurement_restorations_picture_and_report(tiny_run, method):
  """sr2 of 6 test digits (noise 0 so that replacement may run): the .npz's arrays have the
  stated shapes and range, the measurement is the 2x2 average of the input (noise 0: float32
  rounding), and the report's PSNR is that of the stored arrays. (That the observed averages
  are kept is tests/test_restoration.py's: a 4-step network's restorations leave [0, 1], and
  the stored ones are clamped.)"""
  result = ok(restore(tiny_run, '--config.restore.operator=sr2', '--config.restore.noise=0',
                      f'--config.restore.method={method}'))
  files = written(result)
  assert set(files) == {'.npz', '.png', '.json'}
  with np.load(files['.npz']) as f:
    data = {k: torch.as_tensor(f[k]) for k in f}
  assert data['restored'].shape == data['input'].shape == (6, 1, 8, 8)
  assert data['measurement'].shape == (6, 1, 4, 4) and data['labels'].shape == (6,)
  assert 0 <= data['restored'].min() and data['restored'].max() <= 1
  pooled = torch.nn.functional.avg_pool2d(data['input'].double(), 2)
  assert torch.allclose(pooled, data['measurement'].double(), atol=1e-6)
  with open(files['.json']) as f:
    report = json.load(f)
  mse = ((data['restored'] - data['input']) ** 2).flatten(1).mean(1)
  assert abs(report['psnr']['restored'] - (-10 * torch.log10(mse)).mean().item()) < 1e-4
  assert set(report['classifier_agreement']) == {'restored', 'pseudo_inverse', 'input'}


@pytest.mark.slow
def test_restore_refuses_what_does_not_fit(tiny_run, tmp_path):
  """ConfigErrors (run.py prints them as one line; docs/bad_input.md's rows run it) before
  anything is written: colour operators on grey digits, a 3-channel .npz for a grey model,
  replacement with noise, an unknown method."""
  np.savez(tmp_path / 'rgb.npz', images=np.zeros((2, 3, 8, 8), np.float32))
  cases = [({'operator': 'gray'}, 'colour images'),
           ({'input': str(tmp_path / 'rgb.npz')},
            "shape (3, 8, 8) (C, H, W); the model's are (1, 8, 8)"),
           ({'method': 'replacement', 'noise': 0.05}, 'restore.noise = 0'),
           ({'method': 'dds'}, 'unknown restore.method')]
  before = sorted(os.listdir(tiny_run))
  for overrides, message in cases:
    config = load_run_config(tiny_run)[0]
    config.restore.update(num_images=2, steps=2, **overrides)
    with pytest.raises(ConfigError) as error:
      restore_images(config, tiny_run)
    assert message in str(error.value)
  assert sorted(os.listdir(tiny_run)) == before
