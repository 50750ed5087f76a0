"""Atomic file writes: a crash mid-write leaves the previous file (or none) in place."""
import os
import tempfile

import numpy as np


def atomic_write(path, write):
  """write(binary file) into a temporary sibling of `path`, fsync, then os.replace it into place."""
  directory = os.path.dirname(path) or '.'
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f'.{os.path.basename(path)}.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def save_npz_atomic(path, **arrays):
  """np.savez written atomically."""
  atomic_write(path, lambda f: np.savez(f, **arrays))
