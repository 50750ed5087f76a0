"""Fixtures shared by the test files."""
import os

import pytest
import torch

if os.environ.get('PYTEST_XDIST_WORKER'):
  # `make test` runs two pytest-xdist workers: one intra-op thread each keeps them to a core
  # apiece instead of four threads on two cores.
  torch.set_num_threads(1)


@pytest.fixture
def float64():
  """Run a test in float64 (comparisons to 1e-6 and below, solver orders), then restore."""
  previous = torch.get_default_dtype()
  torch.set_default_dtype(torch.float64)
  yield
  torch.set_default_dtype(previous)


@pytest.fixture
def one_thread():
  """One intra-op thread for the duration of a test, then put back: on a shared 2-core machine
  two threads per process oversubscribe the cores, and on tiny tensors the thread pool's
  hand-offs cost far more than the work (measured 23 ms against 0.1 ms a score call)."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


@pytest.fixture
def float64_one_thread(float64, one_thread):
  """Both of the above."""
