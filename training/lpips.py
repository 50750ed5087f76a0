"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric"), the perceptual distance of consistency distillation (Song et al. 2023), from weights
the user places; nothing is downloaded.

  d(x, y) = sum_l mean_hw w_l . (phi_l(x)_hw - phi_l(y)_hw)^2,   phi_l = f_l / ||f_l||_channels,

f_l the backbone's (AlexNet or VGG16, ImageNet-trained, torchvision's) activations after its
five ReLU stages, w_l >= 0 the learned 1x1 linear layers of the `lpips` package's v0.1 weights,
inputs in [-1, 1] shifted and scaled per channel first. The numbers are the `lpips` package's
(LPIPS(net=..., version='0.1'); tests/test_lpips.py checks ours against it).
"""
import os
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from utils.errors import ConfigError

SHIFT = (-0.030, -0.088, -0.188)   # v0.1's ScalingLayer: (x - shift) / scale on [-1, 1] RGB;
SCALE = (0.458, 0.448, 0.450)      # ImageNet's mean and std carried to [-1, 1] (2 mean - 1, 2 std)
EPS = 1e-10                        # phi = f / (||f|| + eps), as the package
CM_SIZE = 224                      # CM resizes images below 256 pixels to 224 before LPIPS
LPIPS_WHEEL = 'lpips==0.1.4'       # the PyPI wheel holding the v0.1 linear layers


@dataclass(frozen=True)
class Backbone:
  build: object      # torchvision builder; its .features are the trunk
  weights: object    # torchvision's ImageNet weights enum member (its url names the file)
  stages: tuple      # indices in .features of the five ReLUs compared
  lpips_file: str    # the v0.1 linear layers' file in the lpips wheel (lpips/weights/v0.1/)

  @property
  def file(self):
    return os.path.basename(self.weights.url)


BACKBONES = {
    'alex': Backbone(torchvision.models.alexnet, torchvision.models.AlexNet_Weights.IMAGENET1K_V1,
                     (1, 4, 7, 9, 11), 'alex.pth'),
    'vgg': Backbone(torchvision.models.vgg16, torchvision.models.VGG16_Weights.IMAGENET1K_V1,
                    (3, 8, 15, 22, 29), 'vgg.pth'),
}


class LPIPS(nn.Module):
  """d(x, y) -> [batch] for RGB images x, y in [-1, 1] (N, 3, H, W): `features` a backbone's
  layers up to its last compared ReLU, `stages` those ReLUs' indices, one bias-free 1x1
  convolution to one channel per stage. Frozen: gradients reach the images only."""

  def __init__(self, features, stages):
    super().__init__()
    self.features, self.stages = features, tuple(stages)
    self.lins = nn.ModuleList(nn.Conv2d(features[i - 1].out_channels, 1, 1, bias=False)
                              for i in self.stages)   # each ReLU follows its convolution
    self.register_buffer('shift', torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
    self.register_buffer('scale', torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
    self.requires_grad_(False).eval()

  def stage_features(self, x):
    """phi_l(x): each stage's activations unit-normalized over channels."""
    x = (x - self.shift) / self.scale
    out = []
    for i, layer in enumerate(self.features):
      x = layer(x)
      if i in self.stages:
        # vector_norm's gradient is 0 where all channels are 0 (sqrt(sum f^2) would give NaN)
        out.append(x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + EPS))
    return out

  def forward(self, x, y):
    return sum(lin((fx - fy).square()).mean((1, 2, 3))
               for lin, fx, fy in zip(self.lins, self.stage_features(x), self.stage_features(y)))


def read_weights(path, what, source):
  """The state dict in a user-placed file, torch.load(weights_only=True); a one-line ConfigError
  saying what to place where when it is missing, unreadable or not a state dict."""
  place = f"place {what} ({source}) at {path}"
  if not os.path.isfile(path):
    raise ConfigError(f"LPIPS: {path} not found; {place}")
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:   # not a torch file, or one holding more than tensors and plain values
    raise ConfigError(f"LPIPS: cannot read {path} as weights ({type(e).__name__}); "
                      f"{place}") from None
  if not isinstance(state, dict):
    raise ConfigError(f"LPIPS: {path} holds a {type(state).__name__}, not a state dict; {place}")
  return state


def load_strict(module, state, path, what, source):
  """module.load_state_dict(state, strict=True, assign=True); a misfit is one line naming the
  file, what it should be and where to get it."""
  try:
    module.load_state_dict(state, strict=True, assign=True)
  except RuntimeError as e:   # other keys or shapes
    detail = ' '.join(str(e).split())[:300]
    raise ConfigError(f"LPIPS: {path} is not {what} ({detail}); place {what} ({source}) "
                      f"there") from None


def load_lpips(net, folder):
  """LPIPS with backbone `net` ('alex' | 'vgg') from `folder`, which holds torchvision's
  ImageNet weights file (alexnet-owt-7be5be79.pth | vgg16-397923af.pth) and the lpips wheel's
  v0.1 linear layers (alex.pth | vgg.pth), under those names. The backbone file's `features.*`
  load strictly; its other entries (the classifier) are not used."""
  b = BACKBONES[net]
  path = os.path.join(folder, b.file)
  what, source = f"torchvision's ImageNet {b.build.__name__} weights", b.weights.url
  state = read_weights(path, what, source)
  features = {k[len('features.'):]: v for k, v in state.items() if k.startswith('features.')}
  with torch.device('meta'):   # no initialization for weights about to be replaced
    trunk = b.build().features[:b.stages[-1] + 1]
  load_strict(trunk, features, path, what, source)

  path = os.path.join(folder, b.lpips_file)
  what = f"the LPIPS v0.1 linear layers for {net}"
  source = (f"lpips/weights/v0.1/{b.lpips_file} inside the {LPIPS_WHEEL} wheel: "
            f"pip download {LPIPS_WHEEL} --no-deps")
  state = read_weights(path, what, source)
  lpips = LPIPS(trunk, b.stages)
  # the package's names: lin<l>.model.1.weight (model.0 is a dropout)
  renamed = {re.sub(r'^lin(\d+)\.model\.1\.', r'\1.', k): v for k, v in state.items()}
  load_strict(lpips.lins, renamed, path, what, source)
  return lpips


def lpips_distance(lpips, centered=True):
  """d(a, b) -> [batch] for images in the model's range ([-1, 1] when `centered`, else [0, 1]),
  as CM does: images under 256 pixels resized bilinearly to CM_SIZE x CM_SIZE first (so 8x8 digits
  are seen at 224, where AlexNet and VGG16 reach all five stages), grey repeated to RGB."""

  def distance(a, b):
    lpips.to(a.device)

    def rgb(x):
      x = x if centered else 2 * x - 1
      if x.shape[-1] < 256:
        x = F.interpolate(x, size=(CM_SIZE, CM_SIZE), mode='bilinear', align_corners=False)
      return x.expand(-1, 3, -1, -1)

    return lpips(rgb(a), rgb(b))

  return distance
