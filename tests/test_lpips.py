"""training/lpips.py against the `lpips` package (Zhang et al.'s own implementation; PyPI,
test-only) given the same backbone weights and the wheel's own v0.1 linear layers; what a
distance must be; a user's missing or wrong file in one line; and a CD step with
distill.distance='lpips' built by the pipeline. Nothing is downloaded: the backbones are
randomly initialized (their ImageNet weights are not needed to check the arithmetic)."""
import os
import shutil

import lpips
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from configs.edm_digits import get_config as edm_digits
from models import get_model
from pipeline.consistency import consistency_loss_fn
from pipeline.train import train
from sde_lib import get_sde
from training.lpips import BACKBONES, load_lpips, lpips_distance
from utils.errors import ConfigError

WHEEL_WEIGHTS = os.path.join(os.path.dirname(lpips.__file__), 'weights', 'v0.1')
BUILD = {'alex': torchvision.models.alexnet, 'vgg': torchvision.models.vgg16}
# the package builds its trunk with torchvision's deprecated pretrained=False
pytestmark = pytest.mark.filterwarnings('ignore:.*deprecated since 0.13:UserWarning')


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
  """Any download (torch.hub, torchvision's pretrained weights) fails the test."""
  def refuse(url, *args, **kwargs):
    raise AssertionError(f"tried to download {url}")
  monkeypatch.setattr(torch.hub, 'download_url_to_file', refuse)


def place(folder, net):
  """What a user places, with a random backbone: its `features.*` in torchvision's file name and
  the wheel's v0.1 linear layers. Returns the backbone's features."""
  torch.manual_seed(0)
  features = BUILD[net]().features
  torch.save({f'features.{k}': v for k, v in features.state_dict().items()},
             os.path.join(folder, BACKBONES[net].file))
  shutil.copy(os.path.join(WHEEL_WEIGHTS, BACKBONES[net].lpips_file), folder)
  return features


@pytest.fixture(scope='module')
def alex_folder(tmp_path_factory):
  """(folder, features): the AlexNet files placed, shared by the tests that only read them."""
  folder = tmp_path_factory.mktemp('lpips_alex')
  return str(folder), place(folder, 'alex')


def reference(net, features):
  """lpips.LPIPS with a random trunk (pnet_rand: no download) set to `features`, its linear
  layers the wheel's v0.1 ones."""
  ref = lpips.LPIPS(net=net, version='0.1', pretrained=True, pnet_rand=True, verbose=False)
  own = features.state_dict()
  # the package slices torchvision's features keeping their indices: slice<k>.<i>.* = features.<i>.*
  ref.net.load_state_dict({k: own[k.split('.', 1)[1]] for k in ref.net.state_dict()})
  return ref


def check_against_the_package(net, folder, features, size):
  ours, ref = load_lpips(net, folder), reference(net, features)
  g = torch.Generator().manual_seed(1)
  x, y = torch.rand(2, 3, 3, size, size, generator=g) * 2 - 1
  expected = ref(x, y).detach().flatten()
  torch.testing.assert_close(ours(x, y), expected, rtol=0, atol=1e-5)
  assert expected.min() > 1e-2   # distinct images, far from 0: the comparison means something


def test_alexnet_lpips_is_the_lpips_package(alex_folder, one_thread):
  check_against_the_package('alex', *alex_folder, size=64)


@pytest.mark.slow
def test_vgg_lpips_is_the_lpips_package(tmp_path, one_thread):
  check_against_the_package('vgg', str(tmp_path), place(tmp_path, 'vgg'), size=32)


def test_stages_are_the_papers_layers():
  """The five compared ReLUs: AlexNet's relu1..relu5 (all of them), VGG16's relu1_2, relu2_2,
  relu3_3, relu4_3, relu5_3 (the last of each block, before its max-pool)."""
  with torch.device('meta'):
    alex, vgg = BUILD['alex']().features, BUILD['vgg']().features
  assert BACKBONES['alex'].stages == tuple(i for i, m in enumerate(alex) if isinstance(m, nn.ReLU))
  assert BACKBONES['vgg'].stages == tuple(i - 1 for i, m in enumerate(vgg)
                                          if isinstance(m, nn.MaxPool2d))


def test_a_distance_zero_on_equal_images_symmetric_and_image_range(alex_folder, one_thread):
  d = load_lpips('alex', alex_folder[0])
  g = torch.Generator().manual_seed(2)
  x, y = torch.rand(2, 2, 3, 64, 64, generator=g) * 2 - 1
  assert torch.equal(d(x, x), torch.zeros(2))
  assert torch.equal(d(x, y), d(y, x))
  # grey 8x8 digits: seen as RGB at 224 (CM's bilinear resize), the same from [0, 1] data
  a, b = torch.rand(2, 2, 1, 8, 8, generator=g) * 2 - 1
  rgb224 = lambda x: F.interpolate(x, size=224, mode='bilinear').repeat(1, 3, 1, 1)
  torch.testing.assert_close(lpips_distance(d)(a, b), d(rgb224(a), rgb224(b)))
  torch.testing.assert_close(lpips_distance(d, centered=False)((a + 1) / 2, (b + 1) / 2),
                             lpips_distance(d)(a, b))


def test_missing_or_wrong_files_say_what_to_place_where(tmp_path, alex_folder):
  folder = str(tmp_path)
  with pytest.raises(ConfigError) as e:
    load_lpips('alex', folder)
  path = os.path.join(folder, 'alexnet-owt-7be5be79.pth')
  url = 'https://download.pytorch.org/models/alexnet-owt-7be5be79.pth'
  assert str(e.value) == (f"LPIPS: {path} not found; place torchvision's ImageNet alexnet weights "
                          f"({url}) at {path}")
  shutil.copy(os.path.join(alex_folder[0], 'alexnet-owt-7be5be79.pth'), folder)
  with pytest.raises(ConfigError, match=r"alex.pth not found; place the LPIPS v0.1 linear layers "
                     r"for alex \(lpips/weights/v0.1/alex.pth inside the lpips==0.1.4 wheel"):
    load_lpips('alex', folder)
  shutil.copy(os.path.join(WHEEL_WEIGHTS, 'vgg.pth'), os.path.join(folder, 'alex.pth'))
  with pytest.raises(ConfigError, match=r"alex.pth is not the LPIPS v0.1 linear layers for alex "
                     r"\(.*size mismatch") as e:
    load_lpips('alex', folder)
  assert '\n' not in str(e.value)
  torch.save({'features.0.weight': torch.zeros(1)}, path)   # a backbone file that does not fit
  with pytest.raises(ConfigError, match="alexnet-owt-7be5be79.pth is not torchvision's ImageNet "
                                        "alexnet weights"):
    load_lpips('alex', folder)


def test_cd_with_lpips_from_the_config_backpropagates(tmp_path, alex_folder, one_thread):
  """One CD loss and backward with distill.distance='lpips' (AlexNet) as the pipeline builds it,
  on 8x8 digits seen at 224: finite gradients for the student; no folder set is one line."""
  teacher = str(tmp_path / 'teacher')
  config = edm_digits()
  config.device = 'cpu'
  config.model.update(nf=8, num_groups=4, ch_mult=(1, 2), attn_resolutions=(4,), dropout=0.0)
  config.training.update(batch_size=4, n_iters=1, snapshot_sampling=False, bound_images=0)
  train(config, teacher, progress=False)
  config.model.parameterization, config.training.loss = 'consistency', 'cd'
  config.distill.update(teacher=teacher, num_scales=6, distance='lpips', lpips_net='alex')
  with pytest.raises(ConfigError, match='set config.distill.lpips_weights to a folder holding '
                                        'alexnet-owt-7be5be79.pth and alex.pth'):
    consistency_loss_fn(config, get_sde(config))
  config.distill.lpips_weights = alex_folder[0]
  loss_fn = consistency_loss_fn(config, get_sde(config))
  model = get_model(config)
  loss_fn.initialize(model)
  x0 = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
  loss = loss_fn(model, x0, generator=torch.Generator().manual_seed(4))
  assert loss.shape == (4,) and (loss > 0).all()
  loss.mean().backward()
  grads = [p.grad for p in model.parameters() if p.grad is not None]
  assert grads and all(g.isfinite().all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
