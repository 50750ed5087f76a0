"""Fixtures shared by the test files."""
import pytest
import torch


@pytest.fixture
def float64():
  """Run a test in float64 (comparisons to 1e-6 and below, solver orders), then restore."""
  previous = torch.get_default_dtype()
  torch.set_default_dtype(torch.float64)
  yield
  torch.set_default_dtype(previous)


@pytest.fixture
def float64_one_thread():
  """float64, and one intra-op thread: on tiny tensors on a busy 2-core machine the thread
  pool's hand-offs cost far more than the work (measured 23 ms against 0.1 ms a score call)."""
  previous, threads = torch.get_default_dtype(), torch.get_num_threads()
  torch.set_default_dtype(torch.float64)
  torch.set_num_threads(1)
  yield
  torch.set_default_dtype(previous)
  torch.set_num_threads(threads)
