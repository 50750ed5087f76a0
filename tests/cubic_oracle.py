"""Cubic-convolution resampling written out as matrices (Keys 1981), the oracle for the two
bicubic resizes of FD-DINOv2: torch's (position embeddings) and PIL's (images)."""
import numpy as np


def keys(d, a):
  """Keys' cubic convolution kernel at distance d; torch uses a = -0.75, PIL a = -0.5."""
  d = abs(d)
  if d <= 1:
    return (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1
  return a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a if d < 2 else 0.0


def torch_bicubic(n_in, n_out, scale):
  """[n_out, n_in]: F.interpolate(mode='bicubic', align_corners=False, scale_factor=scale):
  output i read at input coordinate (i + 0.5) / scale - 0.5, indices past the border clamped."""
  weights = np.zeros((n_out, n_in))
  for i in range(n_out):
    x = (i + 0.5) / scale - 0.5
    left = int(np.floor(x))
    for j in range(left - 1, left + 3):
      weights[i, min(max(j, 0), n_in - 1)] += keys(x - j, -0.75)
  return weights


def pil_bicubic(n_in, n_out):
  """[n_out, n_in]: PIL's Image.BICUBIC when enlarging: output i centred on input coordinate
  (i + 0.5) n_in / n_out - 0.5; the taps past the border are dropped and the rest renormalized."""
  weights = np.zeros((n_out, n_in))
  for i in range(n_out):
    centre = (i + 0.5) * n_in / n_out
    taps = range(max(int(centre - 2 + 0.5), 0), min(int(centre + 2 + 0.5), n_in))
    row = np.array([keys(j + 0.5 - centre, -0.5) for j in taps])
    weights[i, taps.start:taps.stop] = row / row.sum()
  return weights
