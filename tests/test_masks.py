"""Inpainting masks against masks written out by hand on a 4 x 6 image, and image files written
here pixel by pixel."""
import re

import numpy as np
import pytest
import torch
from PIL import Image

from data.masks import parse_mask
from utils.errors import ConfigError

H, W = 4, 6


def hand(rows):
  """A mask from rows of '1' (known) and '.' (missing)."""
  return torch.tensor([[1. if c == '1' else 0. for c in row] for row in rows])


@pytest.mark.parametrize('spec, rows', [
    ('box:1,0,3,2', ['1..111', '1..111', '111111', '111111']),
    ('box:0,0,6,4', ['......', '......', '......', '......']),
    ('box:5,3,6,4', ['111111', '111111', '111111', '11111.']),
    ('left', ['...111', '...111', '...111', '...111']),
    ('right', ['111...', '111...', '111...', '111...']),
    ('top', ['......', '......', '111111', '111111']),
    ('bottom', ['111111', '111111', '......', '......']),
    # Half of 4 x 6 is 2 x 3; the margins before it are (4 - 2) // 2 = 1 and (6 - 3) // 2 = 1.
    ('center', ['111111', '1...11', '1...11', '111111']),
    (' left ', ['...111', '...111', '...111', '...111']),
])
def test_named_specs_match_hand_written_masks(spec, rows):
  mask = parse_mask(spec, H, W)
  assert mask.dtype == torch.float32 and mask.shape == (H, W)
  assert torch.equal(mask, hand(rows))


def test_odd_sizes_take_the_floor_of_half():
  """On 3 x 5, left and right each miss 2 columns (mirror images), the centre 1 x 2."""
  assert torch.equal(parse_mask('left', 3, 5), hand(['..111'] * 3))
  assert torch.equal(parse_mask('right', 3, 5), hand(['111..'] * 3))
  assert torch.equal(parse_mask('center', 3, 5), hand(['11111', '1..11', '11111']))


def test_file_mask_white_is_missing(tmp_path):
  rows = ['1..111', '1..111', '111111', '11111.']
  pixels = np.where(hand(rows).numpy() == 0, 255, 0).astype(np.uint8)
  path = tmp_path / 'mask.png'
  Image.fromarray(pixels).save(path)
  assert torch.equal(parse_mask(str(path), H, W), hand(rows))


def test_file_mask_is_resized_by_nearest_neighbour(tmp_path):
  """An RGB file at twice the size, any nonzero channel missing: each 2 x 2 block is one pixel."""
  rows = ['111...', '1.1...', '111111', '..1111']
  big = np.kron(1 - hand(rows).numpy(), np.ones((2, 2))).astype(bool)
  pixels = np.zeros((2 * H, 2 * W, 3), dtype=np.uint8)
  pixels[big] = (0, 200, 0)
  path = tmp_path / 'mask.png'
  Image.fromarray(pixels).save(path)
  assert torch.equal(parse_mask(str(path), H, W), hand(rows))


@pytest.mark.parametrize('spec', [
    'middle', '', 'box:1,2,3', 'box:a,b,c,d', 'box:1.5,0,3,2', 'box:',
    'box:3,0,3,2',      # empty: x0 == x1
    'box:4,0,2,2',      # x1 < x0
    'box:0,0,7,2',      # past the right edge (x1 <= W = 6)
    'box:0,0,2,5',      # past the bottom (y1 <= H = 4)
    'box:-1,0,2,2',     # before the left edge
    'no/such/mask.png',
])
def test_bad_specs_raise_config_error_listing_the_accepted_forms(spec):
  with pytest.raises(ConfigError, match=re.escape(repr(spec.strip()))) as error:
    parse_mask(spec, H, W)
  for form in ('box:x0,y0,x1,y1', 'left', 'right', 'top', 'bottom', 'center', 'image file'):
    assert form in str(error.value)


def test_unreadable_file_raises_config_error(tmp_path):
  path = tmp_path / 'mask.png'
  path.write_text('not an image')
  with pytest.raises(ConfigError, match='cannot read it as an image'):
    parse_mask(str(path), H, W)
