"""--mode restore: degrade images by config.restore.operator with measurement noise
config.restore.noise (sigma_y, in the images' [0, 1] units), restore them with the run's model
as a prior (restoration/: DPS, PiGDM, DDRM, DDNM; replacement and RePaint through
restoration/imputation.py), and write

  <workdir>/samples/restore-<operator>-<method>-<key>.npz   measurement, pseudo_inverse,
                                                            restored, input (, labels)
                                                  .png      measurement / restorations / truth
                                                  .json     PSNR and classifier agreement

config.restore.input: '' (the run's test split), a .npz holding `images` (N, C, H, W) in [0, 1]
and optionally `labels`, or a folder of image files.
"""
import glob
import hashlib
import json
import os

import numpy as np
import torch
from PIL import Image
from torchvision.utils import save_image

from data import get_data_inverse_scaler, get_data_scaler, get_eval_dataset
from data.masks import parse_mask
from data.pil import pil_to_tensor
from evaluation.digits_classifier import load_or_train_digits_classifier
from models import restore_for_inference
from restoration import METHODS, get_operator, measure, restore
from pipeline.sampling import data_sampler, score_and_variance_fns
from utils.seeding import batch_generator
from restoration.imputation import Observation
from sde_lib import get_sde
from utils.atomic import atomic_write, save_npz_atomic
from utils.checkpoint import resolve_checkpoint
from utils.device import get_device
from utils.errors import ConfigError
from utils.pictures import rows_picture
from utils.workdir import samples_dir

IMAGE_FILES = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff', '.webp')
IMPUTATION = ('replacement', 'repaint')   # restoration/imputation.py on config.sampling
PICTURE_COLUMNS = 8


def load_input(config):
  """(images (N, C, H, W) in [0, 1], labels or None) named by config.restore.input, at most
  config.restore.num_images of them, checked against the model's image shape."""
  r, d = config.restore, config.data
  shape = (d.num_channels, d.image_size, d.image_size)
  spec = str(r.input).strip()
  labels = None
  if not spec:
    test = get_eval_dataset(config, 'test')
    n = min(r.num_images, len(test))
    images = torch.stack([test[i][0] for i in range(n)])
    labels = torch.tensor([int(test[i][1]) for i in range(n)])
  elif os.path.isdir(spec):
    files = sorted(f for f in glob.glob(os.path.join(spec, '*')) if f.lower().endswith(IMAGE_FILES))
    if not files:
      raise ConfigError(f"restore.input={spec!r}: the folder holds no image files {IMAGE_FILES}")
    to_tensor = pil_to_tensor(d.image_size, d.num_channels)
    images = []
    for path in files[:r.num_images]:
      with Image.open(path) as image:
        images.append(to_tensor(image))
    images = torch.stack(images)
  elif spec.endswith('.npz') and os.path.isfile(spec):
    with np.load(spec) as f:
      if 'images' not in f:
        raise ConfigError(f"restore.input={spec!r} has no array 'images' (N, C, H, W) in [0, 1]")
      images = torch.as_tensor(f['images'][:r.num_images]).float()
      labels = torch.as_tensor(f['labels'][:r.num_images]).long() if 'labels' in f else None
  else:
    raise ConfigError(f"restore.input={spec!r} is neither '' (the test split), a .npz file nor a "
                      f"folder of images")
  if tuple(images.shape[1:]) != shape:
    raise ConfigError(f"restore.input's images have shape {tuple(images.shape[1:])} (C, H, W); the "
                      f"model's are {shape}")
  if images.min() < 0 or images.max() > 1:
    raise ConfigError(f"restore.input's images must lie in [0, 1]; they span "
                      f"[{images.min():.3g}, {images.max():.3g}]")
  return images, labels


def operator_of(config):
  r, d = config.restore, config.data
  mask = parse_mask(r.mask, d.image_size, d.image_size) if r.operator == 'mask' else None
  return get_operator(r.operator, (d.num_channels, d.image_size, d.image_size), mask=mask,
                      kernel=r.kernel, kernel_size=r.kernel_size, kernel_std=r.kernel_std)


def psnr(x, truth):
  """Per-image 10 log10(1 / MSE) for images in [0, 1]."""
  mse = ((x - truth) ** 2).flatten(1).mean(1).clamp(min=1e-10)
  return -10 * torch.log10(mse)


def run_method(config, model, sde, device, operator, y, sigma_y, shape, generator):
  """Restorations (model space) of the measurements y (model space) by config.restore.method."""
  r = config.restore
  if r.method in IMPUTATION:
    resample = config.inpaint.resample if r.method == 'repaint' else 1
    draw = data_sampler(config, sde, model, device, resample=resample,
                        jump_length=config.inpaint.jump_length)
    x, _ = draw(shape[0], generator, False, 0, Observation(operator.pinv(y), operator))
    return get_data_scaler(config)(x.to(device))
  score_fn = score_and_variance_fns(config, sde, model)[0]
  x, _ = restore(r.method, score_fn, sde, operator, y, sigma_y, shape, steps=r.steps,
                 eps=config.sampling.eps, generator=generator, device=device)
  return x


def restore_images(config, workdir):
  """Write the .npz, .png and .json of --mode restore; returns their paths."""
  r = config.restore
  if r.method not in tuple(METHODS) + IMPUTATION:
    raise ConfigError(f"unknown restore.method {r.method!r}; choose one of "
                      f"{sorted(METHODS) + list(IMPUTATION)}")
  if r.method in IMPUTATION and r.noise > 0:
    raise ConfigError(f"restore.method={r.method!r} imposes y exactly: it needs "
                      f"restore.noise = 0 (got {r.noise}); ddrm, ddnm, pigdm and dps take noise")
  if r.method == 'repaint' and config.inpaint.resample < 2:
    raise ConfigError("restore.method='repaint' resamples each segment config.inpaint.resample "
                      "> 1 times (and config.inpaint.jump_length steps)")
  operator = operator_of(config)
  images, labels = load_input(config)
  device = get_device(config.device)
  checkpoint = resolve_checkpoint(workdir, config.eval.ckpt)
  model, step, _ = restore_for_inference(config, workdir, checkpoint, device)
  sde = get_sde(config)
  scaler, inverse = get_data_scaler(config), get_data_inverse_scaler(config)
  scale = float(scaler(torch.ones(1)) - scaler(torch.zeros(1)))   # model units per data unit
  # The measurement of the [0, 1] images, one seeded noise draw; the operators average, so
  # the scaled measurement is the measurement of the scaled images (restoration/operators.py).
  noise = torch.Generator().manual_seed(config.seed)
  y = measure(operator, images.double(), r.noise, noise).float()
  restored, pinv = [], []
  for start in range(0, len(images), r.batch_size):
    batch = scaler(y[start:start + r.batch_size]).to(device)
    shape = (len(batch),) + tuple(images.shape[1:])
    x = run_method(config, model, sde, device, operator, batch, scale * r.noise, shape,
                   batch_generator(config.seed, start // r.batch_size, device))
    restored.append(inverse(x).clamp(0, 1).cpu())
    pinv.append(inverse(operator.pinv(batch)).clamp(0, 1).cpu())
  restored, pinv = torch.cat(restored), torch.cat(pinv)

  report = {'operator': r.operator, 'method': r.method, 'noise': r.noise, 'steps': r.steps,
            'checkpoint_step': step, 'num_images': len(images),
            'psnr': {'restored': psnr(restored, images).mean().item(),
                     'pseudo_inverse': psnr(pinv, images).mean().item()}}
  if labels is not None and config.data.dataset == 'digits':
    classifier, _ = load_or_train_digits_classifier(config.data.root)
    with torch.no_grad():
      agree = lambda x: (classifier(x).argmax(1) == labels).float().mean().item()
      report['classifier_agreement'] = {'restored': agree(restored), 'pseudo_inverse': agree(pinv),
                                        'input': agree(images)}
  settings = {'restore': r.to_dict(), 'sampling': config.sampling.to_dict(), 'seed': config.seed,
              'checkpoint': os.path.basename(checkpoint or ''), 'n': len(images)}
  key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
  base = os.path.join(samples_dir(workdir), f'restore-{r.operator}-{r.method}-{key}')
  os.makedirs(samples_dir(workdir), exist_ok=True)
  arrays = {'measurement': y.numpy(), 'pseudo_inverse': pinv.numpy(),
            'restored': restored.numpy(), 'input': images.numpy()}
  if labels is not None:
    arrays['labels'] = labels.numpy()
  save_npz_atomic(base + '.npz', **arrays)
  k = min(PICTURE_COLUMNS, len(images))
  picture = rows_picture([list(pinv[:k]), list(restored[:k]), list(images[:k])])
  atomic_write(base + '.png', lambda f: save_image(picture, f, format='png'))
  atomic_write(base + '.json', lambda f: f.write(json.dumps(report, indent=2).encode()))
  return base, report


def summary(report):
  """One line per number of the report."""
  lines = [f"{report['method']} on {report['operator']} (sigma_y = {report['noise']}), "
           f"{report['num_images']} images:",
           f"  PSNR restored {report['psnr']['restored']:.2f} dB, "
           f"pseudo-inverse {report['psnr']['pseudo_inverse']:.2f} dB"]
  agreement = report.get('classifier_agreement')
  if agreement:
    lines.append(f"  classifier agrees with the label: restored {agreement['restored']:.2f}, "
                 f"pseudo-inverse {agreement['pseudo_inverse']:.2f}, "
                 f"input {agreement['input']:.2f}")
  return '\n'.join(lines)

