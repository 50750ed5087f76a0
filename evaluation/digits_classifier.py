"""A small digits classifier whose hidden layer is the feature space of the digits 'FID'.

Inception features mean nothing on 8x8 grey digits, so the Frechet distance there is taken on
the penultimate layer of this MLP, trained by the project on the digits train split with a
fixed seed (full-batch Adam), and cached with its test accuracy in
`<config.data.root>/digits_classifier.pt` (tensors and plain values, written atomically).
"""
import os

import torch
import torch.nn.functional as F
from torch import nn

from data import digits
from utils.atomic import atomic_write

CACHE_NAME = 'digits_classifier.pt'


class DigitsClassifier(nn.Module):
  """8x8 image -> 64 features -> 10 logits. Larger inputs (digits repeated to 16 or 32 pixels)
  are average-pooled back to 8x8, which undoes nearest-neighbour upsampling exactly."""

  def __init__(self, hidden=128, features=64):
    super().__init__()
    self.body = nn.Sequential(nn.Flatten(), nn.Linear(digits.NATIVE_SIZE ** 2, hidden), nn.ReLU(),
                              nn.Linear(hidden, features), nn.ReLU())
    self.head = nn.Linear(features, 10)

  def features(self, x):
    """x: [B, 1, H, W] in [0, 1]."""
    return self.body(F.adaptive_avg_pool2d(x, digits.NATIVE_SIZE))

  def forward(self, x):
    return self.head(self.features(x))


def _split(split):
  data = digits.digits_dataset(split)
  return data.tensors


def train_digits_classifier(seed=0, steps=100, lr=1e-2):
  """(classifier, test accuracy) trained reproducibly: the seed fixes the initialization."""
  with torch.random.fork_rng():
    torch.manual_seed(seed)
    model = DigitsClassifier()
  x, y = _split('train')
  optimizer = torch.optim.Adam(model.parameters(), lr=lr)
  for _ in range(steps):
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
  return model.eval(), test_accuracy(model)


@torch.no_grad()
def test_accuracy(model):
  x, y = _split('test')
  return (model(x).argmax(1) == y).float().mean().item()


def load_or_train_digits_classifier(root, device='cpu'):
  """The cached classifier in `root` (trained and cached on first use) and its test accuracy."""
  path = os.path.join(root, CACHE_NAME)
  if not os.path.exists(path):
    model, accuracy = train_digits_classifier()
    atomic_write(path, lambda f: torch.save({'model': model.state_dict(), 'test_accuracy': accuracy}, f))
  state = torch.load(path, map_location='cpu', weights_only=True)
  model = DigitsClassifier()
  try:
    model.load_state_dict(state['model'])
  except RuntimeError as e:
    raise RuntimeError(f"{path} does not fit DigitsClassifier (delete it to retrain): {e}") from None
  return model.to(device).eval(), float(state['test_accuracy'])
