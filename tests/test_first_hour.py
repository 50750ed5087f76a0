"""Issue 31, a researcher's first hour with their own data: a folder of RGB PNGs in class
subfolders trained with the digits config, and the library's likelihood default. The bad-input
rows it added (not-an-image, folder-num-bins, folder-num-classes, attention,
typo-workdir-only) run in tests/test_bad_input.py."""
import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from configs.validate import validate
from configs.vp_digits import get_config as digits_config
from data import UnreadableImage, fit_to_data
from data.folder import ImageFolder
from sde_lib.gaussian_mixture import exact_score_fn, random_mixture
from pipeline.sampling import sampler_name
from samplers.likelihood import likelihood
from sde_lib import VPSDE
from pipeline.train import Trainer, train
from utils.errors import ConfigError
from utils.pictures import sample_picture

GIVEN = {'data.dataset', 'data.root', 'data.image_size', 'data.num_channels',
         'model.attn_resolutions'}


def rgb_folder(root, per_class=4, classes=('blue', 'red'), size=16):
  """per_class random 8-bit RGB PNGs of size x size in each class subfolder."""
  rng = np.random.default_rng(0)
  for name in classes:
    os.makedirs(root / name)
    for i in range(per_class):
      Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
          root / name / f'{i:03d}.png')
  return str(root)


def folder_config(root):
  """The issue's command: vp_digits with --config.data.dataset=folder and the folder's shape."""
  config = digits_config()
  config.device = 'cpu'
  config.data.update(dataset='folder', root=root, image_size=16, num_channels=3)
  config.model.update(nf=8, num_groups=4, attn_resolutions=(8,))
  config.training.update(batch_size=8, bound_images=4)
  return config


def test_a_folder_run_takes_grey_levels_and_classes_from_the_data_and_says_so(tmp_path, capsys,
                                                                               one_thread):
  # 8-bit PNGs have 256 grey levels; the folder has 2 class subfolders and no test/ split.
  config = folder_config(rgb_folder(tmp_path / 'images'))
  assert (config.data.num_bins, config.data.num_classes) == (17, 10)   # the digits config's
  config.training.update(n_iters=1, snapshot_sampling=False)
  train(config, str(tmp_path / 'run'), progress=False, given=GIVEN)
  with open(tmp_path / 'run' / 'config.json') as f:
    saved = json.load(f)['data']
  # the config the held-out bound was computed with, and that eval will use
  assert (saved['num_bins'], saved['num_classes']) == (256, 2)
  out = capsys.readouterr().out
  assert 'note: data.num_bins 17 -> 256' in out and 'note: data.num_classes 10 -> 2' in out
  assert 'the test split (eval, the held-out bound) is the training images' in out
  assert 'the test split is missing' not in out


def test_a_wrong_value_given_on_the_command_line_is_refused(tmp_path):
  root = rgb_folder(tmp_path / 'images')
  for field, value, fact in (('num_bins', 17, '256 grey levels'), ('num_classes', 3, '2 classes')):
    config = folder_config(root)
    config.data[field] = value
    with pytest.raises(ConfigError, match=f'config.data.{field} = {value}, but .* has {fact}'):
      fit_to_data(config, GIVEN | {f'data.{field}'})


def test_folder_notes_its_images_size_and_colours_when_they_differ(tmp_path):
  config = folder_config(rgb_folder(tmp_path / 'images', size=12))
  os.makedirs(tmp_path / 'images' / 'test')
  config.data.update(image_size=8, num_channels=1)
  notes = fit_to_data(config, GIVEN)
  assert any('are 12x12; they are resized to data.image_size = 8' in n for n in notes)
  assert any('have 3 channel(s); they are converted to data.num_channels = 1' in n for n in notes)
  assert not any('test split' in n for n in notes)   # it has a test/ subfolder


def test_an_unconditional_run_without_labels_keeps_num_classes_0_and_a_conditional_one_refuses(
    tmp_path):
  root = tmp_path / 'flat'
  os.makedirs(root)
  Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / 'a.png')
  config = folder_config(str(root))
  config.data.num_classes = 0
  assert not any('num_classes' in note for note in fit_to_data(config, GIVEN))
  config.model.class_conditional = True
  with pytest.raises(ConfigError, match='class_conditional needs labelled data'):
    fit_to_data(config, GIVEN)


def test_every_file_of_a_folder_is_checked_when_it_is_opened(tmp_path):
  # The bad file sorts last of 41: reading only the first image would not find it.
  root = rgb_folder(tmp_path / 'images', per_class=20)
  (tmp_path / 'images' / 'red' / 'zz_notes.png').write_text('notes, not an image')
  with pytest.raises(UnreadableImage, match='cannot read .*red/zz_notes.png as an image'):
    ImageFolder(root, 16, 3)


def test_likelihood_defaults_to_the_smaller_variance_probe():
  # Hutchinson's v^T J v has variance 2 ||S||_F^2 with Gaussian v and 2 (||S||_F^2 - sum S_ii^2)
  # with Rademacher v: never more. On a 2-D mixture with its exact score the per-point error of
  # log p has std ~1.9 nats (Gaussian) against ~0.8 (Rademacher), measured on 256 points; the
  # default must be Rademacher (the same numbers as asking for it) and its spread below 0.7x.
  sde, mixture = VPSDE(), random_mixture(2)
  x = mixture.sample(32, generator=torch.Generator().manual_seed(3)).double()
  truth = mixture.perturbed(sde, 1e-3).log_prob(x)
  solve = lambda **kw: likelihood(exact_score_fn(mixture, sde), sde, x, eps=1e-3, rtol=1e-4,
                                  atol=1e-4, generator=torch.Generator().manual_seed(4), **kw).logp
  default = solve()
  assert torch.equal(default, solve(hutchinson='rademacher'))
  gaussian = solve(hutchinson='gaussian')
  # the prior mismatch is the same constant-ish shift for both; compare spreads of the errors
  assert (default - truth).std() < 0.7 * (gaussian - truth).std()
  assert abs((default - truth).mean()) < 4 * (default - truth).std() / math.sqrt(32) + 0.05


def test_the_ode_samplers_name_leaves_out_settings_it_never_reads():
  sampling = digits_config().sampling        # corrector 'none', steps 100: pc's settings
  assert sampler_name(sampling) == 'pc_corrector-none_steps-100'
  sampling.method = 'ode'
  assert sampler_name(sampling) == 'ode'
  sampling.ode_method = 'rk4'                # a fixed-step method does take `steps`
  assert sampler_name(sampling) == 'ode_ode_method-rk4_steps-100'


def test_a_grid_of_16_digits_is_large_enough_to_see():
  picture = sample_picture(torch.rand(16, 1, 8, 8))
  assert picture.shape[-1] >= 256 and picture.shape[-2] >= 256   # 138 x 138 before


def test_an_error_during_training_starts_below_the_closed_progress_bar(tmp_path, capsys,
                                                                       one_thread):
  # A file spoilt after the folder was checked: the bar is closed (its line ended) before the
  # error propagates, so run.py's `error: ...` line does not land at the end of the bar's.
  root = rgb_folder(tmp_path / 'images', per_class=8)
  config = folder_config(root)
  config.training.update(n_iters=4, snapshot_sampling=False, bound_images=0)
  fit_to_data(config, GIVEN)
  trainer = Trainer(config, str(tmp_path / 'run'), progress=True)
  for name in ('blue', 'red'):
    for i in range(8):
      (tmp_path / 'images' / name / f'{i:03d}.png').write_text('spoilt')
  try:
    trainer.run()
    pytest.fail('the spoilt files were read')
  except UnreadableImage:   # where run.py prints it: the exception (and its frames) still alive
    err = capsys.readouterr().err
  assert 'training' in err and err.endswith('\n')


def test_an_attention_resolution_the_network_never_reaches_is_refused():
  config = digits_config()                   # attention at 4x4 of an 8x8 network: reached
  validate(config)
  config.data.image_size = 16                # 16 and 8 only: the 4 would be silently dropped
  with pytest.raises(ConfigError, match=r'never reaches 4; its resolutions are 16, 8'):
    validate(config)
