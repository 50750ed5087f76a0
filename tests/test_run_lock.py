"""One writer per run directory (utils/run_lock.py): a second training of a workdir another
live process trains is refused with one line naming that process, a killed run's lock blocks
nothing, and under torchrun every rank stops when rank 0 is refused."""
import json
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from configs.vp_toy2d import get_config as toy2d_config
from pipeline.evaluate import evaluate
from pipeline.sampling import samples_key
from test_trainer import read_metrics, tiny_config
from pipeline.train import train
from utils.checkpoint import latest_checkpoint
from utils.distributed import Distributed
from utils.run_lock import LOCK, RunDirectoryInUse, RunLock
from utils.workdir import eval_run_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = ['--config', 'vp_toy2d', '--config.device=cpu', '--config.training.snapshot_freq=10',
       '--config.training.log_freq=10', '--config.training.snapshot_sampling=False']
# run.py, imported, waiting for the file `go` before it runs (so that how long it takes to
# import does not count in how soon it is refused)
WAITING = """
import os, sys, time
import run
open({ready!r}, 'w').close()
while not os.path.exists({go!r}):
  time.sleep(0.05)
sys.argv = ['run.py'] + sys.argv[1:]
run.run()
"""


def start(*argv):
  env = dict(os.environ, OMP_NUM_THREADS='1')
  return subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition, what, timeout=120):
  deadline = time.monotonic() + timeout
  while not condition():
    assert time.monotonic() < deadline, f"no {what} after {timeout} s"
    time.sleep(0.05)


def holder(directory):
  """The lock file's record of its holder, or None (no file, or not written yet)."""
  try:
    with open(os.path.join(directory, LOCK)) as f:
      return json.loads(f.read())
  except (FileNotFoundError, ValueError):
    return None


@pytest.mark.slow
def test_a_second_training_is_refused_with_one_line_and_the_first_finishes(tmp_path):
  """The first run is stopped (SIGSTOP) while it holds the lock, so the second meets it however
  fast the first would train; the second, already imported, exits 1 within seconds with one
  line naming the first (pid, host, mode, start time); the first then finishes normally, the
  only writer of its metrics, and leaves no lock file."""
  workdir, ready, go = str(tmp_path / 'run'), str(tmp_path / 'ready'), str(tmp_path / 'go')
  second = start('-c', WAITING.format(ready=ready, go=go), *TOY, '--workdir', workdir,
                 '--config.training.n_iters=20')
  first = start('run.py', *TOY, '--workdir', workdir, '--config.training.n_iters=20')
  try:
    wait_for(lambda: (holder(workdir) or {}).get('pid') == first.pid, "lock held by the first run")
    os.kill(first.pid, signal.SIGSTOP)
    wait_for(lambda: os.path.exists(ready), "second run imported")
    asked = time.monotonic()
    open(go, 'w').close()
    out, err = second.communicate(timeout=60)
    took = time.monotonic() - asked
  finally:
    os.kill(first.pid, signal.SIGCONT)
  lines = err.strip().splitlines()
  assert second.returncode == 1 and len(lines) == 1, err
  assert re.fullmatch(
      rf"error: {re.escape(workdir)} is being written by another process: pid {first.pid} on "
      rf"{re.escape(socket.gethostname())}, --mode train, started \d{{4}}-\d\d-\d\d "
      rf"\d\d:\d\d:\d\d.*; wait for it to end or stop it \(its lock goes with it\)", lines[0])
  assert took < 15, took   # measured ~2 s on a loaded 2-core machine
  out, err = first.communicate(timeout=120)
  assert first.returncode == 0 and 'trained to step 20' in out, err[-2000:]
  assert [r['step'] for r in read_metrics(workdir)] == [10, 20]
  assert not os.path.exists(os.path.join(workdir, LOCK))


@pytest.mark.slow
def test_a_killed_runs_lock_does_not_block_the_next(tmp_path, one_thread):
  """SIGKILL leaves the lock file behind, naming the dead run; it locks nothing: the next
  training starts, trains and removes it."""
  workdir = str(tmp_path)
  killed = start('run.py', *TOY, '--workdir', workdir, '--config.training.n_iters=100000')
  try:
    wait_for(lambda: (holder(workdir) or {}).get('pid') == killed.pid, "lock held by the run")
  finally:
    killed.kill()
    killed.communicate()
  assert holder(workdir)['pid'] == killed.pid
  config = toy2d_config()   # TOY's (the killed run may have written its config.json)
  config.device = 'cpu'
  config.training.update(n_iters=2, snapshot_freq=10, log_freq=10, snapshot_sampling=False)
  assert train(config, workdir, progress=False) == 2
  assert not os.path.exists(os.path.join(workdir, LOCK))


def test_in_one_process_the_lock_is_refused_until_released(tmp_path):
  """flock locks an open file, not a process: a second RunLock here is refused too."""
  directory = str(tmp_path / 'eval' / 'key')
  with RunLock(directory, 'eval'):
    with pytest.raises(RunDirectoryInUse, match=rf"pid {os.getpid()} on .*, --mode eval, "):
      RunLock(directory, 'eval').acquire()
  assert os.listdir(tmp_path) == []   # the lock file and the folders made for it are gone
  with RunLock(directory, 'eval'):   # released: taken again
    assert holder(directory)['mode'] == 'eval'
    open(os.path.join(directory, 'report.json'), 'w').close()
  assert os.listdir(directory) == ['report.json']   # a folder written to stays


def test_an_evaluation_writing_the_same_folder_is_refused(tmp_path, one_thread):
  """eval/<key>/ is locked (here by this process, as another evaluation would hold it): an
  evaluation of the same samples stops before it computes anything."""
  workdir = str(tmp_path)
  config = tiny_config(2)
  config.training.snapshot_sampling = False
  train(config, workdir, progress=False)
  key = samples_key(config, config.sampling, latest_checkpoint(workdir), config.eval.batch_size,
                    'cpu', workdir)
  folder = eval_run_dir(workdir, key)
  with RunLock(folder, 'eval'):
    with pytest.raises(RunDirectoryInUse, match=rf"^{re.escape(folder)} is being written by "
                                                rf"another process: pid {os.getpid()} on "):
      evaluate(config, workdir)
    assert os.listdir(folder) == [LOCK]


def _rank(rank, directory, port, answers):
  """One of two torch.distributed (gloo) processes asking for the lock of `directory`."""
  os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE='2',
                    MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
  try:
    RunLock(directory, 'train', Distributed('cpu')).acquire()
    answers.put((rank, 'acquired'))
  except RunDirectoryInUse as e:
    answers.put((rank, str(e)))


def test_under_torchrun_every_rank_is_refused_when_rank_0_is(tmp_path):
  """This process holds the lock; two gloo ranks ask for it: rank 0 is refused with the holder's
  name, rank 1 learns it from the same all-reduce and stops too, neither waits."""
  directory = str(tmp_path)
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  context = multiprocessing.get_context('fork')
  answers = context.Queue()
  with RunLock(directory, 'train'):
    ranks = [context.Process(target=_rank, args=(r, directory, port, answers)) for r in (0, 1)]
    for p in ranks:
      p.start()
    for p in ranks:
      p.join(timeout=60)
    alive = [p.is_alive() for p in ranks]
    for p in ranks:
      p.kill()
  assert alive == [False, False]
  said = dict(answers.get(timeout=5) for _ in ranks)
  assert f"pid {os.getpid()} on" in said[0], said
  assert said[1] == f"{directory} is in use by another process (rank 0 names it)", said


def test_the_rows_of_docs_bad_input_name_tests_that_exist():
  import test_checkpoint
  text = open(os.path.join(ROOT, 'docs', 'bad_input.md')).read()
  section = text.split('Refusals that need a second process')[1].split('Not errors, but')[0]
  names = re.findall(r'`(test_\w+)`', section)
  assert len(names) == 3 and all(name in globals() or hasattr(test_checkpoint, name)
                                 for name in names), names
