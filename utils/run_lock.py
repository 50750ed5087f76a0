"""One writer per run directory: training holds an exclusive lock on <workdir>/lock, an
evaluation on <workdir>/eval/<key>/lock, for as long as it writes there.

The lock is fcntl.flock's, which the kernel drops when the process holding it ends, however it
ends (a crash, SIGKILL), so a lock never outlives its run: the file a killed run leaves behind
locks nothing, and the next run takes it over. It names its holder (pid, host, start time,
mode), so a second process is refused with one line saying who is writing; a run that ends
normally removes it. Under torchrun rank 0 alone takes the lock and every rank learns the
outcome from one all-reduce: all of them stop, none waits.
"""
import fcntl
import json
import os
import socket
import time

from utils.errors import ConfigError

LOCK = 'lock'


class RunDirectoryInUse(ConfigError):
  """Another live process writes the directory; the message names it."""


class RunLock:
  """`with RunLock(directory, mode, ddp):` the block runs holding `directory`'s lock, else
  RunDirectoryInUse before it starts (or acquire() ... release()); `ddp`
  (utils.distributed.Distributed, or None for a single process) makes rank 0 take it for all
  ranks."""

  def __init__(self, directory, mode, ddp=None):
    self.directory, self.mode, self.ddp = directory, mode, ddp
    self.path = os.path.join(directory, LOCK)
    self.file = None
    self.made = []   # the folders the lock created, innermost first

  def acquire(self):
    """Take the lock (rank 0, for all ranks) or raise RunDirectoryInUse; returns self."""
    refusal = self._acquire() if self.ddp is None or self.ddp.is_main else None
    refused = refusal is not None
    if self.ddp is not None:   # rank 0's outcome, on every rank (the others contribute 0)
      refused = self.ddp.mean(float(refused)) > 0
    if refused:
      raise RunDirectoryInUse(refusal or f"{self.directory} is in use by another process "
                                         f"(rank 0 names it)")
    return self

  def release(self):
    """Remove the lock file, then unlock, and remove the folders the lock created if nothing
    else went into them: a run that ends, or fails before writing, leaves nothing behind."""
    if self.file is not None:
      if _same_file(self.file, self.path):
        os.remove(self.path)
      fcntl.flock(self.file, fcntl.LOCK_UN)
      self.file.close()
      self.file = None
      for folder in self.made:
        try:
          os.rmdir(folder)   # only an empty one
        except OSError:
          break

  __enter__ = acquire

  def __exit__(self, *exc):
    self.release()

  def _acquire(self):
    """Take the lock and write who holds it; None, or the refusal if another process holds it."""
    folder = os.path.abspath(self.directory)
    while not os.path.isdir(folder):
      self.made.append(folder)
      folder = os.path.dirname(folder)
    os.makedirs(self.directory, exist_ok=True)
    while True:
      f = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666), 'r+')
      try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = _holder(f, self.path)
        f.close()
        return (f"{self.directory} is being written by another process: {holder}; wait for it "
                f"to end or stop it (its lock goes with it)")
      if _same_file(f, self.path):
        break
      f.close()   # its holder removed it between our open and flock: take the new one
    f.truncate(0)
    f.write(json.dumps({'pid': os.getpid(), 'host': socket.gethostname(), 'mode': self.mode,
                        'started': time.strftime('%Y-%m-%d %H:%M:%S %Z')}) + '\n')
    f.flush()
    self.file = f
    return None


def _same_file(f, path):
  """Whether `path` still names the open file `f`."""
  try:
    here = os.stat(path)
  except FileNotFoundError:
    return False
  there = os.fstat(f.fileno())
  return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _holder(f, path, wait=2.0):
  """'pid 4242 on node7, --mode train, started 2026-12-07 16:55:03 UTC' from a locked lock
  file, waiting up to `wait` seconds for a holder that has just taken it to write itself in."""
  deadline = time.monotonic() + wait
  while True:
    f.seek(0)
    text = f.read()
    if text.endswith('\n') or time.monotonic() > deadline:
      break
    time.sleep(0.05)
  try:
    h = json.loads(text)
    return f"pid {h['pid']} on {h['host']}, --mode {h['mode']}, started {h['started']}"
  except (ValueError, KeyError, TypeError):
    return f"one that has not said who it is in {path}"
