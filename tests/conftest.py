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
