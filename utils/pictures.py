"""Pictures of samples: an image grid (torchvision make_grid) or, for 2-D points, a scatter
plot drawn straight into an image tensor (no plotting library needed)."""
import math

import torch
from torchvision.utils import make_grid

MIN_SIDE = 64   # pixels per image side in a grid at least (8x8 digits: 8 screen pixels each)


def scatter_image(points, bound, reference=None, size=256):
  """(3, size, size) picture of 2-D points in [-bound, bound]^2: samples dark blue over an
  optional light-grey reference set (e.g. training data), on white, y pointing up."""
  image = torch.ones(3, size, size)
  layers = [(reference, torch.tensor([0.75, 0.75, 0.75]))] if reference is not None else []
  for pts, colour in layers + [(points, torch.tensor([0.05, 0.15, 0.6]))]:
    pts = pts.detach().float().cpu()
    pixel = ((pts / bound + 1) / 2 * (size - 1)).round().long()
    inside = ((pixel >= 0) & (pixel < size)).all(1)
    col, row = pixel[inside, 0], size - 1 - pixel[inside, 1]
    image[:, row, col] = colour[:, None]
  return image


def sample_picture(samples, reference=None, bound=None, nrow=None):
  """Image tensor (3, H, W) in [0, 1] for samples in data space: a grid of images
  ([B, C, H, W]; nrow per row, default a square) or a scatter plot of points ([B, 2])."""
  if samples.dim() == 2:
    return scatter_image(samples, bound, reference)
  images = samples.detach().clamp(0, 1).cpu()
  scale = max(1, MIN_SIDE // images.shape[-1])   # blow small images (8x8 digits) up, nearest
  images = images.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
  return make_grid(images, nrow=nrow or math.ceil(images.shape[0] ** 0.5), padding=2)


def rows_picture(rows):
  """A grid with one row per list of images [C, H, W] (shorter rows padded with white)."""
  width = max(len(row) for row in rows)
  blank = torch.ones_like(rows[0][0])
  cells = [image for row in rows for image in list(row) + [blank] * (width - len(row))]
  return sample_picture(torch.stack(cells), nrow=width)


def class_picture(images, labels, columns=10):
  """One row per label (in order of first appearance) of up to `columns` of its images."""
  labels = [int(label) for label in labels]
  order = list(dict.fromkeys(labels))
  return rows_picture([[images[i] for i, y in enumerate(labels) if y == label][:columns]
                       for label in order])
