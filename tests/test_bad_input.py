"""Every row of docs/bad_input.md: run.py with the row's arguments (in process) ends with exit
status 1, one line on stderr that starts `error: ` and contains the row's message, no
traceback, and nothing new in the workdir."""
import os
import re
import shlex
import sys
import traceback

import numpy as np
import pytest
import torch
from absl import flags
from PIL import Image

from configs.run_config import write_run_config
from configs.vp_digits import get_config as digits_config
from pipeline.train import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = os.path.join(ROOT, 'docs', 'bad_input.md')


def table_rows():
  """(id, arguments, message) of the first table of docs/bad_input.md."""
  rows, text = [], open(TABLE).read().split('\n\n')
  table = next(block for block in text if block.startswith('| id |'))
  for line in table.splitlines()[2:]:
    cells = [cell.strip().strip('`') for cell in line.strip('|').split('|')]
    rows.append((cells[0], cells[2], cells[3]))
  return rows


class Unpickled:
  """Unpickling this object would create the folder `marker`: a crafted checkpoint."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.mkdir, (self.marker,)


def tiny_trained(workdir):
  config = digits_config()
  config.device = 'cpu'
  config.model.update(nf=8, num_groups=4)
  config.training.update(batch_size=16, n_iters=1, snapshot_sampling=False, bound_images=0)
  train(config, workdir, progress=False)


DATA_ROWS = ('missing-cifar10', 'missing-folder', 'unreadable-folder', 'not-an-image',
             'folder-num-bins', 'folder-num-classes')


def two_class_folder(folder, note=False):
  """16x16 RGB PNGs in folder/red and folder/blue, and with `note` a text file among them."""
  rng = np.random.default_rng(0)
  for name in ('red', 'blue'):
    os.makedirs(os.path.join(folder, name))
    for i in range(2):
      Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
          os.path.join(folder, name, f'{i}.png'))
  if note:
    with open(os.path.join(folder, 'red', 'zz_notes.png'), 'w') as f:
      f.write('notes, not an image')


SETUP = {
    'not-an-image': lambda w, d: two_class_folder(d, note=True),
    'folder-num-bins': lambda w, d: two_class_folder(d),
    'folder-num-classes': lambda w, d: two_class_folder(d),
    'unreadable-folder': lambda w, d: (os.makedirs(os.path.join(d, 'train')),
                                       open(os.path.join(d, 'train', 'x.png'), 'w').write('no')),
    'crafted-pickle': lambda w, d: (os.makedirs(os.path.join(w, 'checkpoints')), torch.save(
        {'step': 5, 'model': Unpickled(os.path.join(d, 'executed'))},
        os.path.join(w, 'checkpoints', 'ckpt_5.pt'))),
    'other-config': lambda w, d: tiny_trained(w),
    'model-change': lambda w, d: tiny_trained(w),
    'no-checkpoint': lambda w, d: write_run_config(digits_config(), w),
}


def run_forked(argv, err_path):
  """(exit status, stderr) of run.py with `argv`, run in a fork of this process (torch already
  imported), where run.py is imported afresh: absl's flags are global and defined, with the
  overrides of the argv, once per process (and other entry points define some of them too)."""
  pid = os.fork()
  if pid == 0:
    code = 3
    try:
      sys.stderr, sys.stdout = open(err_path, 'w'), open(os.devnull, 'w')
      sys.argv = ['run.py', *argv]
      for name in list(flags.FLAGS):
        if not flags.FLAGS.find_module_defining_flag(name, 'absl').startswith('absl'):
          delattr(flags.FLAGS, name)
      sys.modules.pop('run', None)
      import run
      run.run()
      code = 0
    except SystemExit as stop:
      code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    except BaseException:   # noqa: B036 - reported to the parent as a traceback on stderr
      traceback.print_exc()
    finally:
      sys.stderr.flush()
      os._exit(code)
  _, status = os.waitpid(pid, 0)
  with open(err_path) as f:
    return os.waitstatus_to_exitcode(status), f.read()


def listing(folder):
  return sorted(os.path.relpath(os.path.join(d, name), folder)
                for d, _, names in os.walk(folder) for name in names)


@pytest.mark.parametrize('row', table_rows(), ids=lambda row: row[0])
def test_bad_input_is_one_line_and_writes_nothing(row, tmp_path, one_thread):
  name, arguments, message = row
  workdir, scratch = str(tmp_path / 'run'), str(tmp_path / 'scratch')
  os.makedirs(scratch)
  if name in SETUP:
    SETUP[name](workdir, scratch)
  before, existed = listing(workdir), os.path.exists(workdir)
  replace = lambda text: text.replace('D/', scratch + '/').replace('=D', '=' + scratch).replace(
      'W/', workdir + '/').replace(' W', ' ' + workdir)
  status, err = run_forked(shlex.split(replace(' ' + arguments)), str(tmp_path / 'stderr'))
  lines = err.strip().splitlines()
  assert status == 1 and len(lines) == 1 and lines[0].startswith('error: '), err
  pattern = '.*'.join(re.escape(part) for part in replace(message).split('...'))
  assert re.search(pattern, lines[0]), (lines[0], message)
  assert listing(workdir) == before
  if name in DATA_ROWS:   # the data are checked before the workdir is even created
    assert os.path.exists(workdir) == existed
  assert not os.path.exists(os.path.join(scratch, 'executed'))


def test_the_other_rows_name_tests_that_exist():
  import test_trainer
  text = open(TABLE).read().split('Not errors, but the same care')[1]
  names = re.findall(r'`(test_\w+)`', text)
  assert len(names) >= 4 and all(hasattr(test_trainer, name) for name in names)
