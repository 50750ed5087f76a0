"""Any directory of images (searched recursively), e.g. a downloaded LSUN or CelebA folder.

If the directory has a subfolder named after the split (`train/`, `test/`) that subfolder is
the split; otherwise both splits are the whole directory. A split whose images all lie in
subfolders has one class per subfolder (as torchvision's ImageFolder): an image's label is the
index of its top subfolder among the sorted names of those holding images. Every file's header
is read when the folder is opened, so a file that is not an image stops a run before it writes
anything, not part way through training."""
import os

from PIL import Image
from torch.utils.data import Dataset

from data.errors import DatasetUnavailable, UnreadableImage
from data.pil import pil_to_tensor

EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp', '.tif', '.tiff')


class ImageFolder(Dataset):
  """(x of shape (num_channels, image_size, image_size) in [0, 1], class index) items, one per
  image file under `root` in sorted path order. `classes`: the class subfolders' names, or
  () when `root` itself holds images (every label 0); `formats`: the set of (width, height,
  PIL mode) of the files, read from their headers."""

  def __init__(self, root, image_size, num_channels):
    if not os.path.isdir(root):
      raise DatasetUnavailable(f"image folder {os.path.abspath(root)} does not exist: "
                               f"set config.data.root to a directory of images")
    self.paths = sorted(os.path.join(directory, name)
                        for directory, _, names in os.walk(root)
                        for name in names if name.lower().endswith(EXTENSIONS))
    if not self.paths:
      raise DatasetUnavailable(f"image folder {os.path.abspath(root)} holds no images "
                               f"({', '.join(EXTENSIONS)})")
    tops = [os.path.relpath(path, root).split(os.sep)[0] for path in self.paths]
    in_folders = all(os.path.isdir(os.path.join(root, top)) for top in tops)
    self.classes = tuple(sorted(set(tops))) if in_folders else ()
    index = {name: i for i, name in enumerate(self.classes)}
    self.labels = [index.get(top, 0) for top in tops]
    self.transform = pil_to_tensor(image_size, num_channels)
    self.formats = set()
    for path in self.paths:
      try:
        with Image.open(path) as image:   # reads the header only
          self.formats.add((*image.size, image.mode))
      except OSError as e:   # not an image (PIL's UnidentifiedImageError), or unreadable
        raise UnreadableImage(f"cannot read {path} as an image: {e}") from None

  def __len__(self):
    return len(self.paths)

  def __getitem__(self, index):
    try:
      with Image.open(self.paths[index]) as image:
        return self.transform(image), self.labels[index]
    except OSError as e:   # changed or truncated since its header was read
      raise UnreadableImage(f"cannot read {self.paths[index]} as an image: {e}") from None


def folder_dataset(split, root, image_size, num_channels):
  split_root = os.path.join(root, split)
  return ImageFolder(split_root if os.path.isdir(split_root) else root, image_size, num_channels)
