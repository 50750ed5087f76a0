"""docs/getting_started.md's recipe, run as written on a generated folder (32 random 16x16 RGB
PNGs in two class subfolders), with overrides appended that shrink the network and the work."""
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, 'docs', 'getting_started.md')
SMALL = {
    'train': ['--config.device=cpu', '--config.model.nf=8', '--config.model.num_groups=4',
              '--config.training.n_iters=2', '--config.training.snapshot_sampling=False',
              '--config.training.bound_images=2'],
    'sample': ['--config.sampling.steps=3', '--config.sampling.num_samples=4',
               '--config.sampling.batch_size=4'],
    'eval': ['--config.sampling.steps=3', '--config.eval.num_samples=4',
             '--config.eval.batch_size=4', '--config.eval.bpd_num_images=4',
             '--config.eval.bpd_rtol=1e-2', '--config.eval.bpd_atol=1e-2',
             '--config.eval.enable_fid=False', '--config.eval.enable_fd_dinov2=False',
             '--config.eval.enable_vlb=False', '--config.eval.enable_score_bound=False'],
    'colorize': ['--config.sampling.steps=3', '--config.inpaint.num_completions=2'],
}


def recipe_commands():
  """The argument lists of the run.py commands of the recipe's bash block."""
  text = open(DOC).read().split('## The recipe')[1]
  block = re.search(r'```bash\n(.*?)```', text, flags=re.S).group(1).replace('\\\n', ' ')
  return [shlex.split(line)[2:] for line in block.splitlines() if line.strip()]


@pytest.mark.slow
def test_the_own_images_recipe_runs_on_a_generated_folder(tmp_path):
  rng = np.random.default_rng(0)
  images = tmp_path / 'my_images'
  for name in ('blue', 'red'):
    os.makedirs(images / name)
    for i in range(16):
      Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
          images / name / f'{i:02d}.png')
  workdir = str(tmp_path / 'run')
  env = dict(os.environ, OMP_NUM_THREADS='1')
  commands = recipe_commands()
  assert [args[args.index('--mode') + 1] for args in commands] == list(SMALL)
  outputs = {}
  for args in commands:
    args = [a.replace('runs/my_images', workdir).replace('my_images', str(images)) for a in args]
    mode = args[args.index('--mode') + 1]
    result = subprocess.run([sys.executable, 'run.py', *args, *SMALL[mode]], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (mode, result.stderr[-2000:])
    outputs[mode] = result.stdout
  # what the doc promises the user reads
  assert 'note: data.num_bins 17 -> 256' in outputs['train']
  assert 'note: data.num_classes 10 -> 2' in outputs['train']
  assert 'the test split (eval, the held-out bound) is the training images' in outputs['train']
  assert 'bpd' in outputs['eval'] or 'bits/dim' in outputs['eval']
  assert 'input (test image 0)' in outputs['colorize']
