"""Linear measurement operators y = A x + sigma_y n on images x (B, C, H, W), with their SVD.

Each operator offers `forward` (A), `adjoint` (A^T) and its singular value decomposition
A = U S V^T in the form DDRM's code uses (Kawar et al. 2022, app. on H functions): `Vt` and `V`
map an image to its spectral coordinates and back (V orthogonal, coordinates shaped like the
image), `singulars` are S as an image-shaped tensor, zero on the null space of A, and `Ut`
takes a measurement to the spectral coordinates of the range (zero elsewhere), `U` back.
So A x = U(S Vt(x)), A^T y = V(S Ut(y)) and the pseudo-inverse A^+ y = V(S^+ Ut(y)).

  Mask       inpainting: the observed pixels                     (V = I, S = the mask)
  Separable  A_c (x) A_h (x) A_w acting on channels, rows and columns; its SVD is the
             Kronecker product of three small SVDs. Blur (Gaussian or uniform kernel, reflected
             at the border), Downsample (average pooling by f) and Identity are separable.
  Grey       colorization: (R + G + B) / 3 at every pixel; V^T is Song et al.'s COLOR_BASIS.

Every operator here maps constant images to constant measurements of the same value (the
kernels and pools average), so it commutes with the data scaler x -> 2x - 1: an image's
measurement in [0, 1] is, scaled, the measurement of the scaled image.
"""
import math

import torch

from utils.errors import ConfigError

# Song et al. 2021, app. I.2: the orthogonal map that decouples a pixel's colour channels. Row c
# gives coordinate c of (R, G, B): grey (1, 1, 1)/sqrt3 (sqrt3 times the mean (R + G + B) / 3),
# then (-2, 1, 1)/sqrt6 and (0, 1, -1)/sqrt2. score_sde's code applies it to row vectors,
# rgb @ M with M = COLOR_BASIS.T (entries 0.5774, -0.8165, 0.4082, 0.7071).
COLOR_BASIS = (torch.tensor([[1., 1., 1.], [-2., 1., 1.], [0., 1., -1.]], dtype=torch.float64)
               / torch.tensor([[3.], [6.], [2.]], dtype=torch.float64).sqrt())


RTOL = 1e-10   # singular values below RTOL times the largest are zero


class Operator:
  """A = U S V^T on images of `shape` (C, H, W); subclasses give forward, Vt, V, Ut, U and
  `singulars` (float64, shape (C, H, W))."""

  shape = None
  singulars = None

  def adjoint(self, y):
    """A^T y = V S U^T y."""
    return self.V(self.singulars.to(y) * self.Ut(y))

  def pinv(self, y):
    """A^+ y = V S^+ U^T y."""
    s = self.singulars.to(y)
    return self.V(torch.where(s > 0, self.Ut(y) / torch.where(s > 0, s, 1), 0))

  def check(self, x):
    """ConfigError unless x (B, C, H, W) has the images' shape the operator was built for."""
    if tuple(x.shape[1:]) != tuple(self.shape):
      raise ConfigError(f"{type(self).__name__} was built for images of shape {tuple(self.shape)} "
                        f"(C, H, W); got {tuple(x.shape[1:])}")


class Mask(Operator):
  """Inpainting: y = the pixels where `mask` (broadcastable to `shape`) is 1, as a vector."""

  def __init__(self, mask, shape=None):
    mask = torch.as_tensor(mask)
    self.shape = tuple(shape or mask.shape)
    self.mask = mask.to(torch.float64).expand(self.shape) if shape else mask.to(torch.float64)
    self.singulars = self.mask

  def forward(self, x):
    return x.flatten(1)[:, self.mask.expand(x.shape[1:]).flatten().to(x.device).bool()]

  def Vt(self, x):
    return x

  def V(self, c):
    return c

  def Ut(self, y):
    out = torch.zeros(y.shape[0], *self.shape, dtype=y.dtype, device=y.device)
    out.flatten(1)[:, self.mask.flatten().to(y.device).bool()] = y
    return out

  def U(self, c):
    return self.forward(c)


class Separable(Operator):
  """y = A_c (x) A_h (x) A_w x: y[b, i, j, k] = sum A_c[i, c] A_h[j, h] A_w[k, w] x[b, c, h, w].
  A = (U_c (x) U_h (x) U_w) (S_c (x) S_h (x) S_w) (V_c (x) V_h (x) V_w)^T from the factors' SVDs."""

  def __init__(self, channels, rows, cols):
    self.factors = [a.to(torch.float64) for a in (channels, rows, cols)]
    self.shape = tuple(a.shape[1] for a in self.factors)
    self.measurement_shape = tuple(a.shape[0] for a in self.factors)
    svds = [torch.linalg.svd(a) for a in self.factors]
    self.u = [u for u, _, _ in svds]
    self.v = [vh.T for _, _, vh in svds]
    # Singular values at rounding level (a uniform kernel's zeros of its frequency response)
    # are zeros of A, as numpy's pinv treats them.
    padded = [torch.cat([torch.where(s > RTOL * s.max(), s, 0), s.new_zeros(n - len(s))])
              for (_, s, _), n in zip(svds, self.shape)]
    self.singulars = torch.einsum('i,j,k->ijk', *padded)

  @staticmethod
  def _apply(mats, x):
    a, b, c = (m.to(x) for m in mats)
    return torch.einsum('ic,jh,kw,bchw->bijk', a, b, c, x)

  def forward(self, x):
    return self._apply(self.factors, x)

  def Vt(self, x):
    return self._apply([v.T for v in self.v], x)

  def V(self, c):
    return self._apply(self.v, c)

  def Ut(self, y):
    c = self._apply([u.T for u in self.u], y)
    (c0, h0, w0), (c1, h1, w1) = self.shape, c.shape[1:]
    return torch.nn.functional.pad(c, [0, w0 - w1, 0, h0 - h1, 0, c0 - c1])

  def U(self, c):
    m = self.measurement_shape
    return self._apply(self.u, c[:, :m[0], :m[1], :m[2]])


def conv_matrix(kernel, n):
  """The n x n matrix of 'same' 1-D convolution with an odd, symmetric `kernel`, the image
  reflected at its border (..., x1, x0 | x0, x1, ...), so each row sums to the kernel's sum."""
  r = len(kernel) // 2
  a = torch.zeros(n, n, dtype=torch.float64)
  for i in range(n):
    for j, w in enumerate(kernel):
      k = i + j - r
      k = -k - 1 if k < 0 else (2 * n - k - 1 if k >= n else k)
      a[i, min(max(k, 0), n - 1)] += w
  return a


def pool_matrix(n, factor):
  """The n/f x n matrix of average pooling by f."""
  return torch.kron(torch.eye(n // factor, dtype=torch.float64),
                    torch.full((1, factor), 1 / factor, dtype=torch.float64))


def gaussian_kernel(std, size):
  k = torch.exp(-0.5 * (torch.arange(size, dtype=torch.float64) - size // 2) ** 2 / std ** 2)
  return k / k.sum()


def uniform_kernel(size):
  return torch.full((size,), 1 / size, dtype=torch.float64)


def Identity(shape):
  """Denoising: A = I."""
  c, h, w = shape
  eye = lambda n: torch.eye(n, dtype=torch.float64)
  return Separable(eye(c), eye(h), eye(w))


def Blur(shape, kernel):
  """Deblurring: the separable 2-D kernel outer(kernel, kernel) on every channel."""
  c, h, w = shape
  if len(kernel) % 2 == 0 or len(kernel) > 2 * min(h, w) - 1:
    raise ConfigError(f"a blur kernel needs an odd size up to {2 * min(h, w) - 1} on "
                      f"{h}x{w} images, got {len(kernel)}")
  return Separable(torch.eye(c, dtype=torch.float64), conv_matrix(kernel, h),
                   conv_matrix(kernel, w))


def Downsample(shape, factor):
  """Super-resolution by `factor`: average pooling of f x f blocks."""
  c, h, w = shape
  if h % factor or w % factor:
    raise ConfigError(f"x{factor} super-resolution needs image sides divisible by {factor}; the "
                      f"images are {h}x{w}")
  return Separable(torch.eye(c, dtype=torch.float64), pool_matrix(h, factor),
                   pool_matrix(w, factor))


class Grey(Operator):
  """Colorization: y = (R + G + B) / 3 per pixel = <x, (1, 1, 1)/sqrt3> / sqrt3, so V^T is
  COLOR_BASIS at every pixel, S = 1/sqrt3 on its grey coordinate, U = 1."""

  def __init__(self, shape):
    if shape[0] != 3:
      raise ConfigError(f"colorization (operator 'gray') needs colour images (3 channels); the "
                        f"images have {shape[0]}")
    self.shape = tuple(shape)
    self.singulars = torch.zeros(self.shape, dtype=torch.float64)
    self.singulars[0] = 1 / math.sqrt(3)

  def forward(self, x):
    return x.mean(1, keepdim=True)

  def Vt(self, x):
    return torch.einsum('ij,bj...->bi...', COLOR_BASIS.to(x), x)

  def V(self, c):
    return torch.einsum('ji,bj...->bi...', COLOR_BASIS.to(c), c)

  def Ut(self, y):
    return torch.cat([y, y.new_zeros(y.shape[0], 2, *y.shape[2:])], 1)

  def U(self, c):
    return c[:, :1]


OPERATORS = ('mask', 'blur', 'sr2', 'sr4', 'gray', 'identity')


def get_operator(name, shape, mask=None, kernel='gaussian', kernel_size=5, kernel_std=1.0):
  """The operator `name` (one of OPERATORS) for images of `shape` (C, H, W); `mask` (H, W) for
  'mask', the blur's kernel ('gaussian' of std kernel_std or 'uniform', kernel_size taps)."""
  if name == 'mask':
    return Mask(mask, tuple(shape))
  if name == 'blur':
    kernels = {'gaussian': lambda: gaussian_kernel(kernel_std, kernel_size),
               'uniform': lambda: uniform_kernel(kernel_size)}
    if kernel not in kernels:
      raise ConfigError(f"unknown blur kernel {kernel!r}; choose one of {sorted(kernels)}")
    return Blur(shape, kernels[kernel]())
  if name in ('sr2', 'sr4'):
    return Downsample(shape, int(name[2]))
  if name == 'gray':
    return Grey(shape)
  if name == 'identity':
    return Identity(shape)
  raise ConfigError(f"unknown restore.operator {name!r}; choose one of {OPERATORS}")


def measure(operator, x, sigma_y, generator=None):
  """y = A x + sigma_y n, n ~ N(0, I) (one seeded draw)."""
  y = operator.forward(x)
  n = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
  return y + sigma_y * n
