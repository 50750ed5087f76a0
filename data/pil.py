"""The one PIL -> tensor pipeline of the file-backed image data sets (CIFAR-10, folders)."""
import functools

from torchvision import transforms

from utils.errors import ConfigError

MODES = {1: 'L', 3: 'RGB'}
NUM_LEVELS = 256      # 8-bit images


def _convert(image, mode):
  return image.convert(mode)


def pil_to_tensor(image_size, num_channels):
  """PIL image -> float (num_channels, image_size, image_size) in [0, 1]: convert to L or RGB,
  resize the shorter side to image_size (bicubic), center-crop the square. Resizing happens on
  the 8-bit PIL image, so the result stays on the grid k / 255 that dequantization expects,
  and it is the identity at the native size."""
  if num_channels not in MODES:
    raise ConfigError(f"num_channels must be one of {sorted(MODES)}, got {num_channels}")
  return transforms.Compose([
      functools.partial(_convert, mode=MODES[num_channels]),
      transforms.Resize(image_size, interpolation=transforms.InterpolationMode.BICUBIC),
      transforms.CenterCrop(image_size),
      transforms.ToTensor(),
  ])
