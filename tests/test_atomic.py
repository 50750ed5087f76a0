"""Atomic writes: the file an ordinary open() would make (its mode from the umask), a full disk
as one line with the temporary file gone, and the one JSON + Markdown report writer."""
import errno
import json
import os
import stat

import pytest

from test_trainer import tiny_config
from pipeline.train import train
from utils.atomic import DiskFull, atomic_write, write_report


def mode(path):
  return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
  """os.umask, for the test to set the process's umask with; the previous one is put back after."""
  previous = os.umask(0o022)
  yield os.umask
  os.umask(previous)


@pytest.mark.parametrize('mask', [0o022, 0o002, 0o027, 0o077], ids=oct)
def test_an_atomic_write_has_the_mode_open_gives(tmp_path, umask, mask):
  umask(mask)
  with open(tmp_path / 'plain', 'w') as f:
    f.write('x')
  atomic_write(str(tmp_path / 'atomic'), lambda f: f.write(b'x'))
  assert mode(tmp_path / 'atomic') == mode(tmp_path / 'plain') == 0o666 & ~mask
  assert sorted(os.listdir(tmp_path)) == ['atomic', 'plain']


def test_the_files_of_a_training_run_take_the_umask(tmp_path, umask, one_thread):
  """umask 027 (a group that may read, others nothing): config.json, the checkpoints and the
  `latest` pointer are 0640, not tempfile.mkstemp's 0600."""
  workdir = str(tmp_path)
  umask(0o027)
  config = tiny_config(2)
  config.training.snapshot_sampling = False
  train(config, workdir, progress=False)
  for name in ('config.json', 'checkpoints/ckpt_2.pt', 'checkpoints/latest', 'metrics.jsonl'):
    assert mode(os.path.join(workdir, name)) == 0o640, name


def test_a_full_disk_is_one_line_and_leaves_the_old_file(tmp_path):
  path = str(tmp_path / 'table.json')
  atomic_write(path, lambda f: f.write(b'old'))
  writes = []

  def fills_the_disk(f):   # the first write hits a full disk; atomic_write's count of the size
    writes.append(f)       # it needed, the second, does not
    f.write(b'x' * 3000)
    if len(writes) == 1:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  with pytest.raises(DiskFull) as info:
    atomic_write(path, fills_the_disk)
  message = str(info.value)
  assert '\n' not in message and f'to write {path}: it needs 2.9 KiB' in message, message
  assert 'free (No space left on device)' in message and 'table.json left as it was' in message
  assert os.listdir(tmp_path) == ['table.json'] and open(path).read() == 'old'


def test_other_errors_keep_their_type_and_leave_no_temporary_file(tmp_path):
  def fails(f):
    f.write(b'half')
    raise OSError(errno.EIO, os.strerror(errno.EIO))
  with pytest.raises(OSError) as info:
    atomic_write(str(tmp_path / 'x'), fails)
  assert info.value.errno == errno.EIO and not isinstance(info.value, DiskFull)
  assert os.listdir(tmp_path) == []


def test_write_report_writes_the_json_and_the_markdown(tmp_path):
  report = {'fid': 3.25, 'rows': [1, 2]}
  write_report(str(tmp_path / 'sub' / 'report'), report, '| fid |\n|---|\n| 3.25 |\n')
  assert json.load(open(tmp_path / 'sub' / 'report.json')) == report
  assert open(tmp_path / 'sub' / 'report.json').read() == json.dumps(report, indent=2)
  assert open(tmp_path / 'sub' / 'report.md').read() == '| fid |\n|---|\n| 3.25 |\n'
