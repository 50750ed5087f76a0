"""--mode inpaint and --mode colorize: complete one image several times with the run's model
and any sampler (restoration/imputation.py), and save a grid: the input as the model sees it,
config.inpaint.num_completions completions, and the original.

config.inpaint.image is an index into the test split or an image file; config.inpaint.mask a
data.masks spec (inpainting); colorization keeps the grey (R + G + B) / 3 of a colour image.
With resample > 1, 'pc' and 'ancestral' resample RePaint's way (config.inpaint.jump_length).
"""
import hashlib
import json
import os

from PIL import Image
from torchvision.utils import save_image

from data import get_data_scaler, get_eval_dataset
from data.masks import parse_mask
from data.pil import pil_to_tensor
from models import restore_for_inference
from restoration.operators import Mask
from pipeline.sampling import data_sampler, samples_key
from utils.seeding import batch_generator
from restoration.imputation import Observation, colorization
from sde_lib import get_sde
from utils.atomic import atomic_write, save_npz_atomic
from utils.checkpoint import resolve_checkpoint
from utils.device import get_device
from utils.errors import ConfigError
from utils.pictures import rows_picture
from utils.workdir import samples_dir

KINDS = ('inpaint', 'colorize')


def source_image(config):
  """(C, H, W) image in [0, 1] named by config.inpaint.image: a test-split index or a file."""
  spec = str(config.inpaint.image).strip()
  if spec.isdigit():
    test = get_eval_dataset(config, 'test')
    if int(spec) >= len(test):
      raise ConfigError(f"inpaint.image={spec}: the test split has {len(test)} images")
    return test[int(spec)][0]
  if not os.path.isfile(spec):
    raise ConfigError(f"inpaint.image={spec!r} is neither a test-split index nor an image file")
  with Image.open(spec) as image:
    return pil_to_tensor(config.data.image_size, config.data.num_channels)(image)


def observation_and_input(config, kind, image):
  """(the Observation of `image` in model space through its operator (restoration/operators.py:
  Mask, Grey), the input's picture in [0, 1]): missing pixels shown grey for inpainting, the
  grey image for colorization."""
  scaler = get_data_scaler(config)
  if kind == 'inpaint':
    mask = parse_mask(config.inpaint.mask, image.shape[-2], image.shape[-1])
    return (Observation(scaler(image)[None], Mask(mask, image.shape)),
            image * mask + 0.5 * (1 - mask))
  if image.shape[0] != 3:
    raise ConfigError(f"colorization needs colour images (data.num_channels = 3), the run's "
                      f"have {image.shape[0]} channel(s)")
  grey = image.mean(0, keepdim=True)
  return colorization(scaler(grey)[None]), grey.expand(3, -1, -1)


def complete(config, workdir, kind):
  """Write <workdir>/samples/<kind>-<key>.png (the grid) and .npz (completions, input,
  original); returns the two paths."""
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
  device = get_device(config.device)
  checkpoint = resolve_checkpoint(workdir, config.eval.ckpt)
  model, _, _ = restore_for_inference(config, workdir, checkpoint, device)
  image = source_image(config)
  observation, shown = observation_and_input(config, kind, image)
  p = config.inpaint
  draw = data_sampler(config, get_sde(config), model, device, checkpoint=checkpoint,
                      workdir=workdir, resample=p.resample, jump_length=p.jump_length)
  observation = observation.to(device)
  x, _ = draw(p.num_completions, batch_generator(config.seed, 0, device), True, 0, observation)
  what = {'kind': kind, 'inpaint': p.to_dict(), 'image': image.flatten().tolist()}
  digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]
  key = samples_key(config, config.sampling, checkpoint, p.num_completions, device, workdir)
  base = os.path.join(samples_dir(workdir), f'{kind}-{key}-{digest}')
  save_npz_atomic(base + '.npz', completions=x.numpy(), input=shown.numpy(),
                  original=image.numpy())
  picture = rows_picture([[shown] + list(x) + [image]])
  atomic_write(base + '.png', lambda f: save_image(picture, f, format='png'))
  return base + '.png', base + '.npz'
