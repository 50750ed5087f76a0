"""Atomic file writes: a crash mid-write leaves the previous file (or none) in place.

A file is written to a temporary sibling created with mode 0o666, so the kernel applies the
umask as it does for open() (tempfile.mkstemp's 0600 would lock a collaborator out), and moved
into place with os.replace. A full disk ends the write with one line (DiskFull).
"""
import errno
import io
import json
import os
import shutil
import uuid

import numpy as np

from utils.errors import ConfigError


class DiskFull(ConfigError):
  """No space (or quota) left to write a file; the previous file is untouched. A ConfigError
  so that run.py ends with its one line rather than a traceback."""


def atomic_write(path, write):
  """write(binary file) into a temporary sibling of `path`, fsync, then os.replace it into place;
  DiskFull, with the temporary file removed, when the disk fills."""
  directory = os.path.dirname(path) or '.'
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, f'.{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp')
  fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
  try:
    with os.fdopen(fd, 'wb') as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
      raise DiskFull(f"no space left to write {path}: it needs {_amount(_size(write))}, "
                     f"{_amount(shutil.disk_usage(directory).free)} free ({os.strerror(e.errno)}); "
                     f"the partial file is removed, {os.path.basename(path)} left as it "
                     f"was") from None
    raise


class _Counter(io.RawIOBase):
  """A file that keeps nothing and counts the bytes written to it."""

  def __init__(self):
    super().__init__()
    self.bytes = 0

  def writable(self):
    return True

  def write(self, data):
    n = memoryview(data).nbytes
    self.bytes += n
    return n


def _size(write):
  """How many bytes write(file) writes (an unseekable file: a zip archive's may differ by a few
  bytes of data descriptors)."""
  counter = _Counter()
  write(counter)
  return counter.bytes


def _amount(n):
  """A number of bytes as people read it: '512 bytes', '3.4 KiB', '1.2 GiB'."""
  if n < 1024:
    return f'{n} bytes'
  for unit in ('KiB', 'MiB', 'GiB'):
    n /= 1024
    if n < 1024:
      return f'{n:.1f} {unit}'
  return f'{n / 1024:.1f} TiB'


def save_npz_atomic(path, **arrays):
  """np.savez written atomically."""
  atomic_write(path, lambda f: np.savez(f, **arrays))


def write_report(stem, report, markdown):
  """`report` (JSON-serialisable) as <stem>.json and the text `markdown` as <stem>.md, each
  written atomically: evaluation's reports and the benchmarks' results."""
  atomic_write(stem + '.json', lambda f: f.write(json.dumps(report, indent=2).encode()))
  atomic_write(stem + '.md', lambda f: f.write(markdown.encode()))
