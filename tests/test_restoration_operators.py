"""The operators of restoration/operators.py against independent constructions: scipy's
convolution, torch's average pooling, the channel mean, boolean indexing; their adjoint, SVD
and pseudo-inverse against the dense matrix of `forward` and numpy's linear algebra."""
import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from posterior_oracle import dense_matrix
from restoration.operators import (Blur, Downsample, Grey, Identity, Mask, gaussian_kernel,
                                   get_operator, measure, uniform_kernel)
from utils.errors import ConfigError

SHAPE = (3, 8, 6)
MASK = (torch.arange(48).reshape(8, 6) % 3 != 0).double()


def operators():
  return {'mask': Mask(MASK, SHAPE), 'blur_gaussian': Blur(SHAPE, gaussian_kernel(1.2, 5)),
          'blur_uniform': Blur(SHAPE, uniform_kernel(3)), 'sr2': Downsample(SHAPE, 2),
          'gray': Grey(SHAPE), 'identity': Identity(SHAPE)}


def images(n=4, seed=0):
  return torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_forward_matches_independent_constructions():
  """Rounding (1e-12): scipy.ndimage.convolve in 'reflect' mode (the symmetric reflection
  d c b a | a b c d), avg_pool2d, the channel mean, boolean indexing."""
  x = images()
  ops = operators()
  for name, kernel in (('blur_gaussian', gaussian_kernel(1.2, 5)),
                       ('blur_uniform', uniform_kernel(3))):
    k2 = np.outer(kernel.numpy(), kernel.numpy())[None, None]
    expected = scipy.ndimage.convolve(x.numpy(), k2, mode='reflect')
    assert np.allclose(ops[name].forward(x).numpy(), expected, atol=1e-12), name
  assert torch.allclose(ops['sr2'].forward(x), F.avg_pool2d(x, 2), atol=1e-12)
  assert torch.allclose(get_operator('sr4', (1, 8, 8)).forward(x[:, :1, :8, :4].repeat(1, 1, 1, 2)),
                        F.avg_pool2d(x[:, :1, :8, :4].repeat(1, 1, 1, 2), 4), atol=1e-12)
  assert torch.allclose(ops['gray'].forward(x), x.mean(1, keepdim=True), atol=1e-12)
  assert torch.equal(ops['mask'].forward(x), x[:, MASK.bool().expand(SHAPE)].reshape(4, -1))
  assert torch.equal(ops['identity'].forward(x), x)


@pytest.mark.parametrize('name', list(operators()))
def test_adjoint_svd_and_pseudo_inverse_match_the_dense_matrix(name):
  """A^T, the singular values, U S V^T = A, V orthogonal and A^+ against the dense matrix of
  `forward` and numpy's SVD and pinv: float64 rounding (1e-10)."""
  op = operators()[name]
  a = dense_matrix(op, SHAPE).numpy()
  x = images()
  y = measure(op, x, 0.3, torch.Generator().manual_seed(1))
  flat = y.reshape(4, -1).numpy()
  assert np.allclose(op.adjoint(y).reshape(4, -1).numpy(), flat @ a, atol=1e-10)
  s = np.sort(op.singulars.flatten().numpy())[::-1][:min(a.shape)]
  assert np.allclose(s, np.linalg.svd(a, compute_uv=False), atol=1e-10)
  assert torch.allclose(op.U(op.singulars * op.Vt(x)), op.forward(x), atol=1e-10)
  assert torch.allclose(op.V(op.Vt(x)), x, atol=1e-10)
  assert torch.allclose(op.Vt(x).flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), atol=1e-10)
  assert np.allclose(op.pinv(y).reshape(4, -1).numpy(), flat @ np.linalg.pinv(a).T, atol=1e-8)


def test_operators_preserve_constants():
  """Measurements of a constant image are that constant: what lets a measurement in [0, 1]
  be scaled like the images (exact up to rounding)."""
  x = torch.full((1, *SHAPE), 0.7, dtype=torch.float64)
  for name, op in operators().items():
    assert torch.allclose(op.forward(x), torch.full_like(op.forward(x), 0.7), atol=1e-12), name


def test_operators_that_do_not_fit_the_images_are_refused():
  with pytest.raises(ConfigError, match='divisible by 4'):
    get_operator('sr4', (1, 6, 6))
  with pytest.raises(ConfigError, match='colour images'):
    get_operator('gray', (1, 8, 8))
  with pytest.raises(ConfigError, match='odd size'):
    get_operator('blur', (1, 8, 8), kernel_size=4)
  with pytest.raises(ConfigError, match='unknown restore.operator'):
    get_operator('sr3', (1, 8, 8))
  with pytest.raises(ConfigError, match=r'built for images of shape \(1, 8, 8\)'):
    get_operator('sr2', (1, 8, 8)).check(torch.zeros(2, 1, 16, 16))
