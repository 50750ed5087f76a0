"""The sample metrics in a feature space: Frechet distances (FID, Heusel et al. 2017) and, in the
same features, KID, precision / recall and the Inception Score (evaluation/sample_metrics.py).

Features are extracted with clean-fid (Parmar et al. 2022) and its Inception network for
natural images (CIFAR-10, image folders), in the clean-fid mode config.eval.fid_mode:
  clean:             PIL bicubic resizing to 299x299 outside the network (clean-fid's own FID);
  legacy_tensorflow: the network resizes inside, as TensorFlow's FID code did, so the numbers
                     compare with the papers' (Ho et al., Song et al.: 50k samples against the
                     CIFAR-10 train statistics, which clean-fid publishes for each mode).
clean-fid's third mode, legacy_pytorch, uses another network (pytorch-fid's weights, fetched by
torch.hub), which this project does not load; it is refused. Where Inception means nothing
there is a documented substitute, with the distance between the train and test splits
reported as the floor a perfect model would reach:
  digits: the hidden layer of a small classifier trained by the project on the train split
          (evaluation/digits_classifier.py), run through clean-fid's feature pipeline;
  toy2d:  the 2-D points themselves.
Where the space's network classifies (Inception's 1008 logits of the 2015 graph, the digits
classifier's 10 classes), the Inception Score of its class probabilities is reported too
(evaluation/sample_metrics.py). FD-DINOv2 (Stein et al. 2023) is the same distance in the
features of DINOv2 ViT-L/14 (evaluation/dinov2.py), for the natural-image data sets, with
weights the user places (config.eval.dinov2_weights_dir); images go through dgm-eval's
preprocessing: PIL bicubic resize of the uint8 image to 224x224, then ImageNet's mean and std.
The Frechet distance of finite samples is biased upwards by roughly 1/N, so the floor (the
test split's N: 300 digits, 20,000 points) is comparable to a score from a similar N.
The reference statistics are clean-fid's published CIFAR-10 statistics for the mode when their
file is on disk, otherwise computed once from the local train split and cached under
`<config.data.root>/fid_stats/` (the file name carries the mode).
"""
import dataclasses
import os
import platform
import tempfile
from typing import Callable, Optional

import cleanfid
import numpy as np
import torch
from PIL import Image
from cleanfid import fid as cleanfid_fid
from cleanfid.downloads_helper import check_download_inception, inception_url
from cleanfid.inception_torchscript import InceptionV3W

from data import get_eval_dataset
from evaluation.digits_classifier import load_or_train_digits_classifier
from evaluation.dinov2 import load_dinov2
from evaluation.sample_metrics import inception_score, kid, precision_recall
from evaluation.shards import to_storage
from utils.atomic import save_npz_atomic
from utils.errors import ConfigError

INCEPTION_FILE = 'inception-2015-12-05.pt'
# Where clean-fid's feature_extractor() looks for (and downloads) the Inception weights.
CLEANFID_WEIGHTS_DIR = './' if platform.system() == 'Windows' else '/tmp'
CLEANFID_STATS_DIR = os.path.join(os.path.dirname(cleanfid.__file__), 'stats')
FID_MODES = ('clean', 'legacy_tensorflow')
REFERENCE_FEATURES = 10_000   # reference features kept beside computed statistics (KID, P/R)
DINOV2_DATASETS = ('cifar10', 'folder')   # natural images, where DINOv2 features mean something
DINOV2_SIZE = 224
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class InceptionUnavailable(RuntimeError):
  """The Inception weights are neither on disk nor downloadable; the message says where to put them."""


def frechet_distance(mu1, sigma1, mu2, sigma2):
  """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}).

  S1 S2 is similar to the symmetric PSD matrix S1^{1/2} S2 S1^{1/2}, so tr((S1 S2)^{1/2}) is
  the sum of the square roots of that matrix's eigenvalues: two symmetric eigendecompositions
  (stable, real), with rounding's tiny negative eigenvalues clipped to 0.
  """
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError(f"feature statistics differ in shape: {mu1.shape}/{sigma1.shape} vs "
                     f"{mu2.shape}/{sigma2.shape}")
  evals, evecs = np.linalg.eigh(sigma1)
  sqrt1 = (evecs * np.sqrt(np.clip(evals, 0, None))) @ evecs.T
  middle = sqrt1 @ sigma2 @ sqrt1
  tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def feature_statistics(features):
  """Mean and (unbiased) covariance of [N, F] features, float64."""
  features = np.asarray(features, np.float64)
  return features.mean(0), np.cov(features, rowvar=False)


@dataclasses.dataclass
class FeatureSpace:
  name: str
  model_fn: Optional[Callable]   # clean-fid extractor: [B, C, H, W] in [0, 255] -> [B, F]; None: raw points
  resize: Optional[Callable]     # per-image [H, W, C] resize for clean-fid; None: the mode's own
  mode: Optional[str]            # clean-fid mode of Inception features; None where none applies
  channels: Optional[int]        # grey images are repeated to this many channels
  floor: bool                    # also report the train-vs-test distance
  info: dict                     # reported with the distance
  classify: Optional[Callable] = None  # [N, F] features -> [N, C] p(y|x) by the network's own
                                       # classifier head (Inception Score); None: no classes


def softmax_head(weight, bias=None):
  """A classifier head on features: [N, F] -> softmax(features W^T + b), float64."""
  weight = weight.detach().double().cpu()
  bias = None if bias is None else bias.detach().double().cpu()
  return lambda features: torch.softmax(
      torch.nn.functional.linear(torch.as_tensor(features, dtype=torch.float64), weight, bias), 1)


def inception_weights_dir(config):
  """A directory holding INCEPTION_FILE: config.eval.inception_weights or clean-fid's own."""
  path = config.eval.inception_weights
  if path:
    if not os.path.isfile(path):
      raise InceptionUnavailable(f"config.eval.inception_weights={path!r} is not a file; point it "
                                 f"at a copy of {INCEPTION_FILE} ({inception_url})")
    if os.path.basename(path) == INCEPTION_FILE:
      return os.path.dirname(os.path.abspath(path))
    link_dir = tempfile.mkdtemp(prefix='inception-')     # clean-fid loads <dir>/INCEPTION_FILE
    os.symlink(os.path.abspath(path), os.path.join(link_dir, INCEPTION_FILE))
    return link_dir
  try:
    check_download_inception(fpath=CLEANFID_WEIGHTS_DIR)
  except OSError as e:
    target = os.path.join(CLEANFID_WEIGHTS_DIR, INCEPTION_FILE)
    raise InceptionUnavailable(
        f"FID skipped: clean-fid's Inception weights are not on disk and could not be downloaded "
        f"({getattr(e, 'reason', e)}). Place {INCEPTION_FILE} (from {inception_url}) at {target}, "
        f"or pass --config.eval.inception_weights=/path/to/{INCEPTION_FILE}.") from None
  return CLEANFID_WEIGHTS_DIR


def fid_mode(config):
  """config.eval.fid_mode, checked."""
  mode = config.eval.fid_mode
  if mode not in FID_MODES:
    raise ConfigError(f"eval.fid_mode {mode!r} is not supported; choose one of {list(FID_MODES)} "
                      f"(legacy_tensorflow gives numbers comparable with the papers' FID)")
  return mode


def inception_space(config, device):
  mode = fid_mode(config)
  weights_dir = inception_weights_dir(config)
  try:
    # legacy_tensorflow: the TorchScript network's own TF-style resize of the unresized images.
    model = InceptionV3W(weights_dir, download=False,
                         resize_inside=mode == 'legacy_tensorflow').to(device).eval()
  except (RuntimeError, ValueError) as e:
    path = os.path.join(weights_dir, INCEPTION_FILE)
    raise InceptionUnavailable(f"FID skipped: {path} could not be loaded as clean-fid's TorchScript "
                               f"Inception ({type(e).__name__}); replace it with {inception_url}") from None
  # The 2015 graph's 1008 logits without their bias, as Salimans et al.'s Inception Score code
  # (and StyleGAN's, EDM's) took them: softmax(pool3 W).
  return FeatureSpace('inception', model, resize=None, mode=mode, channels=3, floor=False,
                      info={'fid_mode': mode}, classify=softmax_head(model.base.output.weight))


def digits_space(config, device):
  classifier, accuracy = load_or_train_digits_classifier(config.data.root, device)
  return FeatureSpace('digits_classifier', lambda x: classifier.features(x / 255),
                      resize=lambda image: image, mode=None, channels=None, floor=True,
                      info={'classifier_test_accuracy': accuracy},
                      classify=softmax_head(classifier.head.weight, classifier.head.bias))


def points_space(config, device):
  return FeatureSpace('points', None, resize=None, mode=None, channels=None, floor=True, info={})


# data set -> feature space builder(config, device)
FEATURE_SPACES = {'cifar10': inception_space, 'folder': inception_space, 'digits': digits_space,
                  'toy2d': points_space}


def dinov2_weights_dir(config):
  """config.eval.dinov2_weights_dir, or torch.hub's checkpoint folder (where torch.hub.load of
  facebookresearch/dinov2's dinov2_vitl14 leaves the file)."""
  return config.eval.dinov2_weights_dir or os.path.join(torch.hub.get_dir(), 'checkpoints')


def dinov2_resize(image):
  """[H, W, 3] image in [0, 255] -> 224x224 by PIL's bicubic filter on the uint8 image (dgm-eval)."""
  image = Image.fromarray(image.astype(np.uint8)).resize((DINOV2_SIZE, DINOV2_SIZE), Image.BICUBIC)
  return np.asarray(image, np.float32)


def get_dinov2_space(config, device):
  """DINOv2 ViT-L/14 features for FD-DINOv2, or None for data that are not natural images.
  Raises evaluation.dinov2.DINOv2Unavailable when the weights are missing."""
  if config.data.dataset not in DINOV2_DATASETS:
    return None
  model = load_dinov2(dinov2_weights_dir(config), device)
  mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
  std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
  return FeatureSpace('dinov2_vitl14', lambda x: model((x / 255 - mean) / std), resize=dinov2_resize,
                      mode=None, channels=3, floor=False, info={})


def get_feature_space(config, device):
  """The data set's feature space; a ConfigError for a bad eval.fid_mode whatever the space."""
  fid_mode(config)
  if config.data.dataset not in FEATURE_SPACES:
    raise ConfigError(f"no FID feature space for data set {config.data.dataset!r}; "
                      f"known: {sorted(FEATURE_SPACES)}")
  return FEATURE_SPACES[config.data.dataset](config, device)


def extract_features(space, samples, batch_size=100, device='cpu', desc='features'):
  """[N, F] float64 features of stored samples (see evaluation.shards) with clean-fid's
  generator pipeline (get_model_features): it asks a generator G for batches of images in
  [0, 255]; here G replays the stored samples in order, the last batch padded by repetition
  (clean-fid keeps the first N features)."""
  if space.model_fn is None:
    return samples.reshape(len(samples), -1).astype(np.float64)
  images = torch.from_numpy(samples).permute(0, 3, 1, 2).float()
  if space.channels and images.shape[1] == 1:
    images = images.expand(-1, space.channels, -1, -1)
  starts = iter(range(0, len(images), batch_size))

  def replay(_):
    chunk = images[next(starts):][:batch_size]
    repeats = -(-batch_size // len(chunk))
    return chunk.repeat(repeats, 1, 1, 1)[:batch_size]

  features = cleanfid_fid.get_model_features(
      replay, space.model_fn, mode=space.mode or 'clean', z_dim=1, num_gen=len(images), batch_size=batch_size,
      device=torch.device(device), desc=desc, custom_fn_resize=space.resize)
  return features.astype(np.float64)


def dataset_samples(config, split):
  """The split in stored form, without dequantization or flips."""
  dataset = get_eval_dataset(config, split)
  loader = torch.utils.data.DataLoader(dataset, batch_size=500)
  return np.concatenate([to_storage(x) for x, _ in loader])


def reference_statistics(config, space, split, batch_size=100, device='cpu'):
  """(mu, sigma, number of images or None, description, features or None) of the data split's
  features. Statistics computed here keep the first REFERENCE_FEATURES features (float32)
  beside them, for KID and precision / recall; clean-fid's published ones come without."""
  c = config.data
  named = os.path.join(CLEANFID_STATS_DIR, f'cifar10_{space.mode}_{split}_32.npz')
  if space.name == 'inception' and c.dataset == 'cifar10' and c.image_size == 32 and os.path.exists(named):
    with np.load(named) as stats:
      return (stats['mu'], stats['sigma'], None,
              f"clean-fid's cifar10 {split} statistics ({named})", None)
  space_name = f'{space.name}_{space.mode}' if space.mode else space.name
  path = os.path.join(c.root, 'fid_stats', f'{c.dataset}_{space_name}_{split}_{c.image_size}.npz')
  stats = None
  if os.path.exists(path):
    with np.load(path) as stored:
      stats = dict(stored)
  if stats is None or 'features' not in stats:   # none yet, or cached before features were kept
    features = extract_features(space, dataset_samples(config, split), batch_size, device,
                                desc=f'{split} features')
    mu, sigma = feature_statistics(features)
    stats = dict(mu=mu, sigma=sigma, count=len(features),
                 features=features[:REFERENCE_FEATURES].astype(np.float32))
    save_npz_atomic(path, **stats)
  return (stats['mu'], stats['sigma'], int(stats['count']), f"{c.dataset} {split} split ({path})",
          stats['features'].astype(np.float64))


def fid(config, samples, device='cpu', space=None, sample_metrics=True):
  """Frechet distance of stored samples to the train split in the data set's feature space
  (`space`, default get_feature_space): {'fid', 'feature_space', 'reference', 'num_samples',
  ['fid_mode'], ['train_test_floor', 'fid_at_floor_size', 'floor_size'], ...}. The floor is
  the test split's distance; since the distance is biased upwards by ~1/N, the first
  `floor_size` samples' distance is reported beside it for a like-for-like comparison. Raises
  InceptionUnavailable when Inception is needed and missing. Where the reference features are
  at hand (statistics computed here, not clean-fid's published ones) the result also has 'kid'
  and 'precision', 'recall' (evaluation/sample_metrics.py) of the first
  'precision_recall_size' samples against as many reference features. Where the space
  classifies, 'inception_score', 'inception_score_std' over 'inception_score_splits' splits
  (config.eval.inception_score_splits, at most one per sample) of its 'num_classes'.
  sample_metrics=False leaves KID, precision / recall and IS out (KID costs seconds a call)."""
  space = space or get_feature_space(config, device)
  batch_size = config.eval.batch_size
  mu_ref, sigma_ref, _, reference, ref_features = reference_statistics(config, space, 'train',
                                                                       batch_size, device)
  features = extract_features(space, samples, batch_size, device, desc='sample features')
  result = {'fid': frechet_distance(*feature_statistics(features), mu_ref, sigma_ref),
            'feature_space': space.name, 'reference': reference, 'num_samples': len(samples),
            **space.info}
  if ref_features is not None and sample_metrics:
    size = min(len(features), len(ref_features))   # Kynkaanniemi et al. compare equal sizes
    result['kid'] = kid(features, ref_features)
    result['precision'], result['recall'] = precision_recall(features[:size], ref_features[:size])
    result['precision_recall_size'] = size
  if space.classify is not None and sample_metrics:
    probs = space.classify(features)
    splits = min(config.eval.inception_score_splits, len(probs))
    result['inception_score'], result['inception_score_std'] = inception_score(probs, splits)
    result['inception_score_splits'], result['num_classes'] = splits, probs.shape[1]
  if space.floor:
    mu_test, sigma_test, n_test, _, _ = reference_statistics(config, space, 'test', batch_size,
                                                             device)
    result['train_test_floor'] = frechet_distance(mu_test, sigma_test, mu_ref, sigma_ref)
    if n_test is not None and n_test < len(features):
      result['floor_size'] = n_test
      result['fid_at_floor_size'] = frechet_distance(*feature_statistics(features[:n_test]),
                                                     mu_ref, sigma_ref)
  return result
