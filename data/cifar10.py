"""CIFAR-10 (Krizhevsky 2009) from torchvision, never downloaded unless asked."""
import os
import tarfile

from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import extract_archive

from data.errors import DatasetUnavailable
from data.pil import pil_to_tensor

ARCHIVE = 'cifar-10-python.tar.gz'
FOLDER = 'cifar-10-batches-py'
URL = 'https://www.cs.toronto.edu/~kriz/cifar.html'


def missing_message(root):
  root = os.path.abspath(root)
  return (f"CIFAR-10 not found: place {ARCHIVE} (from {URL}) in {root}/ or its extracted "
          f"folder {FOLDER}/ at {os.path.join(root, FOLDER)}")


def cifar10_dataset(split, root, image_size=32, num_channels=3, download=False):
  """(x of shape (num_channels, image_size, image_size) in [0, 1], class) items; an archive
  placed in `root` is extracted on first use."""
  archive = os.path.join(root, ARCHIVE)
  try:
    if not download and not os.path.isdir(os.path.join(root, FOLDER)) and os.path.isfile(archive):
      extract_archive(archive, root)
  except (OSError, tarfile.TarError) as error:
    message = f"{missing_message(root)} ({archive} is unreadable: {error})"
    raise DatasetUnavailable(message) from None
  try:
    return CIFAR10(root, train=(split == 'train'), download=download,
                   transform=pil_to_tensor(image_size, num_channels))
  except (RuntimeError, OSError) as error:   # "Dataset not found or corrupted"; no network
    reason = f" (download failed: {error})" if download else ''
    raise DatasetUnavailable(missing_message(root) + reason) from None
