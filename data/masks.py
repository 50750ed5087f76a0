"""Inpainting masks from a short spec: which pixels of an H x W image are known (1) or missing."""
import os

import numpy as np
import PIL.Image
import torch

from utils.errors import ConfigError

ACCEPTED = ("box:x0,y0,x1,y1 (the missing box: columns x0 <= x < x1, rows y0 <= y < y1), "
            "left, right, top, bottom (that half missing), center (the central half-size "
            "rectangle missing) or an image file (nonzero = missing)")


def _bad(spec, reason):
  return ConfigError(f"mask {spec!r}: {reason}; accepted: {ACCEPTED}")


def _box(spec, height, width):
  """(y0, y1, x0, x1) of 'box:x0,y0,x1,y1', checked to be a nonempty box inside the image."""
  try:
    x0, y0, x1, y1 = (int(v) for v in spec[len('box:'):].split(','))
  except ValueError:
    raise _bad(spec, "a box is four integers x0,y0,x1,y1") from None
  if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
    raise _bad(spec, f"the box must be nonempty and inside the {height}x{width} image")
  return y0, y1, x0, x1


def _halves(height, width):
  """The missing (y0, y1, x0, x1) of each named region. A half is the floor of half the size,
  so left and right (top and bottom) mirror each other; the centre's margins are
  (size - half) // 2 before it."""
  h, w = height // 2, width // 2
  top, left = (height - h) // 2, (width - w) // 2
  return {'left': (0, height, 0, w), 'right': (0, height, width - w, width),
          'top': (0, h, 0, width), 'bottom': (height - h, height, 0, width),
          'center': (top, top + h, left, left + w)}


def _from_file(spec, height, width):
  """1 where the image, in greyscale resized to height x width by nearest neighbour, is 0."""
  if not os.path.isfile(spec):
    raise _bad(spec, "not a named mask, a box, or an existing file")
  try:
    with PIL.Image.open(spec) as image:
      grey = image.convert('L').resize((width, height), PIL.Image.NEAREST)
  except (OSError, ValueError) as error:
    raise _bad(spec, f"cannot read it as an image ({error})") from None
  return torch.from_numpy((np.asarray(grey) == 0).astype(np.float32))


def parse_mask(spec, height, width):
  """The (height, width) float mask of `spec` (see ACCEPTED): 1 = known pixel, 0 = missing.
  Raises ConfigError naming the spec and the accepted forms."""
  spec = spec.strip()
  regions = _halves(height, width)
  if spec.startswith('box:'):
    y0, y1, x0, x1 = _box(spec, height, width)
  elif spec in regions:
    y0, y1, x0, x1 = regions[spec]
  else:
    return _from_file(spec, height, width)
  mask = torch.ones(height, width)
  mask[y0:y1, x0:x1] = 0
  return mask
