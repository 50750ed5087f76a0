"""Frechet distance against closed forms; clean-fid's pipeline with the project's digits
features; the clean-fid mode reaching clean-fid; sample shards that resume; the offline
Inception message; the Inception Score of each space's classifier; the FD-DINOv2 space."""
import os

import numpy as np
import pytest
import scipy.linalg
import torch

from configs.default import get_default_config
from cubic_oracle import pil_bicubic
from evaluation import dinov2 as dinov2_lib
from evaluation import feature_metrics as fid_lib
from evaluation.digits_classifier import load_or_train_digits_classifier, train_digits_classifier
from pipeline.evaluate import markdown_report
from evaluation.sample_metrics import inception_score
from evaluation.shards import from_storage, generate_shards, to_storage
from pipeline.sampling import draw_samples
from utils.errors import ConfigError


def digits_config(root):
  config = get_default_config()
  config.data.dataset = 'digits'
  config.data.image_size = 8
  config.data.num_channels = 1
  config.data.num_bins = 17
  config.data.root = str(root)
  config.eval.batch_size = 128
  return config


@pytest.fixture(scope='module')
def digits_root(tmp_path_factory):
  """A data root with the digits classifier trained once for the module."""
  root = tmp_path_factory.mktemp('digits_root')
  load_or_train_digits_classifier(str(root))
  return root


def test_frechet_distance_of_diagonal_gaussians():
  # Commuting (diagonal) covariances: d^2 = ||mu1 - mu2||^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
  # Float64 eigendecompositions: agreement to 1e-10.
  rng = np.random.default_rng(0)
  mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
  a, b = rng.uniform(0.1, 3, size=20), rng.uniform(0.1, 3, size=20)
  want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
  assert fid_lib.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, abs=1e-10)


def test_frechet_distance_against_scipy_sqrtm():
  # General (non-commuting) covariances against tr sqrtm(S1 S2) by scipy's Schur method, a
  # second algorithm; well-conditioned 30x30 matrices agree to 1e-8 relative.
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(30, 30)), rng.normal(size=(30, 30))
  s1, s2 = a @ a.T / 30 + 0.1 * np.eye(30), b @ b.T / 30 + 0.1 * np.eye(30)
  mu1, mu2 = rng.normal(size=30), rng.normal(size=30)
  want = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
  assert fid_lib.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-8)


def test_frechet_distance_of_a_set_with_itself():
  # 100 samples in 64 dimensions: a rank-deficient covariance, where sqrtm of the product is
  # ill-conditioned. Identical statistics must give ~0 (|d^2| < 1e-8 against tr(S) ~ 64).
  features = np.random.default_rng(2).normal(size=(100, 64))
  stats = fid_lib.feature_statistics(features)
  assert abs(fid_lib.frechet_distance(*stats, *stats)) < 1e-8
  with pytest.raises(ValueError, match='shape'):
    fid_lib.frechet_distance(stats[0][:3], stats[1][:3, :3], *stats)


def test_digits_classifier_is_accurate_and_reproducible(digits_root):
  # Measured test accuracy 0.97 (300 test digits); 0.9 leaves room for other BLAS builds.
  # Training twice with the same seed gives identical weights; the cache returns them.
  model, accuracy = load_or_train_digits_classifier(str(digits_root))
  assert accuracy > 0.9
  again, again_accuracy = train_digits_classifier(seed=0)
  assert again_accuracy == accuracy
  for (name, p), q in zip(model.state_dict().items(), again.state_dict().values()):
    assert torch.equal(p, q), name
  assert os.path.exists(os.path.join(digits_root, 'digits_classifier.pt'))


def test_cleanfid_pipeline_with_the_digits_features(digits_root):
  # clean-fid's get_model_features driven with the classifier as custom extractor must give
  # exactly the classifier's features of the stored images (float32 rounding: 1e-5), also when
  # N (1497) is not a multiple of the batch size (128); and the distances must then behave:
  # train samples vs train statistics ~0, test samples vs train statistics = the reported
  # floor, noise images far above it.
  config = digits_config(digits_root)
  space = fid_lib.get_feature_space(config, 'cpu')
  train = fid_lib.dataset_samples(config, 'train')
  assert train.dtype == np.uint8 and train.shape == (1497, 8, 8, 1)
  features = fid_lib.extract_features(space, train, batch_size=128)
  classifier, _ = load_or_train_digits_classifier(str(digits_root))
  with torch.no_grad():
    direct = classifier.features(from_storage(train)).double().numpy()
  assert np.allclose(features, direct, atol=1e-5)

  # ~0: dead ReLU features give a singular covariance, where clipped eigenvalues leave
  # ~sqrt(machine eps) * tr(S) of rounding (measured 5e-6 against a train-test floor of 3.3).
  same = fid_lib.fid(config, train)
  assert same['feature_space'] == 'digits_classifier' and abs(same['fid']) < 1e-4
  test = fid_lib.fid(config, fid_lib.dataset_samples(config, 'test'))
  assert test['fid'] == pytest.approx(test['train_test_floor'], rel=1e-9) and test['fid'] > 0
  # Samples that begin with the test split: their first 300 (the floor's size) are the floor.
  test_first = np.concatenate([fid_lib.dataset_samples(config, 'test'), train[:200]])
  padded = fid_lib.fid(config, test_first)
  assert padded['floor_size'] == 300
  assert padded['fid_at_floor_size'] == pytest.approx(test['train_test_floor'], rel=1e-9)
  noise = np.random.default_rng(3).integers(0, 256, size=(500, 8, 8, 1), dtype=np.uint8)
  assert fid_lib.fid(config, noise)['fid'] > 10 * test['train_test_floor']
  assert os.path.exists(os.path.join(digits_root, 'fid_stats', 'digits_digits_classifier_train_8.npz'))


def test_points_feature_space(tmp_path):
  # toy2d: the distance of the train split's own points to the train statistics is ~0.
  config = get_default_config()
  config.data.dataset = 'toy2d'
  config.data.root = str(tmp_path)
  train = fid_lib.dataset_samples(config, 'train')
  result = fid_lib.fid(config, train)
  assert result['feature_space'] == 'points' and abs(result['fid']) < 1e-9
  assert result['train_test_floor'] > 0


def test_shards_resume_and_are_the_seeded_batches(tmp_path):
  # 10 samples in shards of 4 (4, 4, 2) are draw_samples' seeded batches, stored. Deleting the
  # middle shard and rerunning draws only that shard again, bit-identically. Asking for 12
  # reuses the two full shards and draws the last, now full, one again.
  calls = []

  def draw(n, generator, progress=True, start=0):
    calls.append(n)
    return torch.rand(n, 1, 2, 2, generator=generator), 7

  samples, nfe, seconds = generate_shards(str(tmp_path), 10, 4, draw, seed=5, progress=False)
  assert calls == [4, 4, 2] and samples.shape == (10, 2, 2, 1) and samples.dtype == np.uint8
  assert nfe == 7 and seconds >= 0
  assert np.array_equal(samples, to_storage(draw_samples(draw, 10, 4, 5, 'cpu')[0]))
  os.remove(tmp_path / 'shard_1.npz')
  again, _, _ = generate_shards(str(tmp_path), 10, 4, draw, seed=5, progress=False)
  assert calls[6:] == [4] and np.array_equal(samples, again)
  longer, _, _ = generate_shards(str(tmp_path), 12, 4, draw, seed=5, progress=False)
  assert calls[7:] == [4] and np.array_equal(longer[:8], samples[:8])
  assert np.array_equal(longer, to_storage(draw_samples(draw, 12, 4, 5, 'cpu')[0]))


def test_offline_inception_message(tmp_path, monkeypatch):
  # No weights on disk and no network: one InceptionUnavailable naming the file and where
  # clean-fid expects it. (Made deterministic by pointing clean-fid's folder at an empty dir
  # and its download at an unreachable address.)
  monkeypatch.setattr(fid_lib, 'CLEANFID_WEIGHTS_DIR', str(tmp_path))
  monkeypatch.setattr('cleanfid.downloads_helper.inception_url', 'http://unreachable.invalid/x.pt')
  config = get_default_config()
  with pytest.raises(fid_lib.InceptionUnavailable) as info:
    fid_lib.get_feature_space(config, 'cpu')
  message = str(info.value)
  assert fid_lib.INCEPTION_FILE in message and str(tmp_path) in message
  assert 'inception_weights' in message
  config.eval.inception_weights = str(tmp_path / 'missing.pt')
  with pytest.raises(fid_lib.InceptionUnavailable, match='not a file'):
    fid_lib.get_feature_space(config, 'cpu')


class FakeInception(torch.nn.Module):
  """Stands in for clean-fid's TorchScript Inception (whose weights cannot be downloaded here):
  records how it was built and the images it is given; two features per image, about 0 for
  uniform noise (so that its logits layer below gives probabilities that vary)."""
  calls = []

  def __init__(self, path, download=True, resize_inside=False):
    super().__init__()
    self.resize_inside = resize_inside
    self.base = torch.nn.Module()   # the TorchScript's 2048 -> 1008 logits layer, here 2 -> 3
    self.base.output = torch.nn.Linear(2, 3)
    with torch.no_grad():
      self.base.output.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
      self.base.output.bias.copy_(torch.tensor([1.0, -1.0, 0.5]))

  def forward(self, x):
    features = torch.stack([x.mean((1, 2, 3)) - 127.5, x[:, 0].std((1, 2)) - x[:, 1].std((1, 2))], 1)
    FakeInception.calls.append((self.resize_inside, tuple(x.shape[1:]), features))
    return features


def test_fid_mode_reaches_clean_fid(tmp_path, monkeypatch):
  # 'clean': clean-fid resizes every image to 299x299 (PIL bicubic) before the network;
  # 'legacy_tensorflow': the network gets the 32x32 images and resizes inside, as TensorFlow's
  # FID did. Each mode is compared with clean-fid's CIFAR-10 statistics for that mode (two
  # different files here), and the result names the mode. legacy_pytorch (another network)
  # and unknown modes are ConfigErrors naming the choices, whatever the data set.
  weights = tmp_path / fid_lib.INCEPTION_FILE
  weights.write_bytes(b'')
  monkeypatch.setattr(fid_lib, 'InceptionV3W', FakeInception)
  monkeypatch.setattr(fid_lib, 'CLEANFID_STATS_DIR', str(tmp_path))
  stats = {'clean': (np.zeros(2), np.eye(2)), 'legacy_tensorflow': (np.ones(2), 2 * np.eye(2))}
  for mode, (mu, sigma) in stats.items():
    np.savez(tmp_path / f'cifar10_{mode}_train_32.npz', mu=mu, sigma=sigma)
  config = get_default_config()
  config.eval.inception_weights, config.eval.batch_size = str(weights), 4
  config.eval.inception_score_splits = 2
  samples = np.random.default_rng(4).integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
  for mode, inside, shape in (('clean', False, (3, 299, 299)), ('legacy_tensorflow', True, (3, 32, 32))):
    config.eval.fid_mode = mode
    FakeInception.calls = []
    result = fid_lib.fid(config, samples)
    assert {(r, s) for r, s, _ in FakeInception.calls} == {(inside, shape)}, mode
    # Two batches of 4, the last padded by repetition; the first 6 features are the samples'.
    features = torch.cat([f for _, _, f in FakeInception.calls])[:6].double().numpy()
    want = fid_lib.frechet_distance(*fid_lib.feature_statistics(features), *stats[mode])
    assert result['fid'] == pytest.approx(want, rel=1e-9) and result['fid_mode'] == mode
    # Inception Score from the same features through the logits layer without its bias (as
    # Salimans et al.'s code), softmax over all its classes, 2 splits: float64, 1e-9.
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    probs = torch.softmax(torch.from_numpy(features) @ weight.T, 1)
    assert (result['inception_score'], result['inception_score_std']) == pytest.approx(
        inception_score(probs, 2), rel=1e-9)
    assert result['inception_score'] > 1.1   # measured 1.28, 1.29: the probabilities vary
    assert result['num_classes'] == 3 and result['inception_score_splits'] == 2
    assert f'cifar10_{mode}_train_32.npz' in result['reference']
    report = {'checkpoint': 'ckpt_1', 'step': 1, 'sampler': 'pc', 'nfe_per_sample': 1,
              'seconds_per_sample': 1.0, 'fid': result, 'notes': []}
    assert f'clean-fid mode {mode}' in markdown_report(report)
  for mode in ('legacy_pytorch', 'bogus'):
    config.eval.fid_mode = mode
    for dataset in ('cifar10', 'toy2d'):
      config.data.dataset = dataset
      with pytest.raises(ConfigError, match='legacy_tensorflow'):
        fid_lib.get_feature_space(config, 'cpu')


def test_digits_inception_score(digits_root):
  """The 'digit IS' from the classifier's head on the features of clean-fid's pipeline: its
  probabilities equal the classifier's own softmax of the stored images (float32 features:
  1e-6). The test split (300 digits, classes 26-36 each; accuracy 0.97) gives an IS near but
  below 10, the bound exp H(p(y)) (measured 9.58 in one split; 8.4 in 10 splits of 30, whose
  class counts vary more); the 29 threes give < 1.5 (measured 1.24); one digit repeated gives 1
  exactly, whatever the splits. fid() reports the 10-split score of the same probabilities."""
  config = digits_config(digits_root)
  space = fid_lib.get_feature_space(config, 'cpu')
  test = fid_lib.dataset_samples(config, 'test')
  labels = fid_lib.get_eval_dataset(config, 'test').base.tensors[1]
  probs = space.classify(fid_lib.extract_features(space, test, batch_size=128))
  classifier, _ = load_or_train_digits_classifier(str(digits_root))
  with torch.no_grad():
    direct = torch.softmax(classifier(from_storage(test)).double(), 1)
  assert probs.shape == (300, 10) and torch.allclose(probs, direct, atol=1e-6)
  assert 9 < inception_score(probs, splits=1)[0] < 10
  assert inception_score(probs[labels == 3], splits=1)[0] < 1.5
  assert inception_score(probs[[5] * 40], splits=10) == pytest.approx((1.0, 0.0), abs=1e-12)
  result = fid_lib.fid(config, test[:60])   # 60 samples: KID, computed beside, stays cheap
  assert (result['inception_score'], result['inception_score_std']) == pytest.approx(
      inception_score(direct[:60], 10), rel=1e-6)
  assert result['num_classes'] == 10 and result['inception_score_splits'] == 10


def tiny_dinov2(tmp_path, monkeypatch):
  """A 1-block DINOv2 (width 32, random) standing in for ViT-L/14, whose weights cannot be
  downloaded here, saved where eval.dinov2_weights_dir points."""
  monkeypatch.setattr(dinov2_lib, 'VITL14', dict(embed_dim=32, depth=1, num_heads=2))
  torch.manual_seed(0)
  torch.save(dinov2_lib.DINOv2(**dinov2_lib.VITL14).state_dict(), tmp_path / dinov2_lib.DINOV2_FILE)
  return dinov2_lib.load_dinov2(str(tmp_path))


def test_dinov2_space(digits_root, tmp_path, monkeypatch):
  """Constant-colour images stay constant under any resize: through the space they must reach
  the network at 224 x 224 as (c / 255 - ImageNet mean) / std per channel, built here by hand
  (float32: 1e-5). With the digits admitted as natural images (they are not: None before),
  the train split's statistics are cached under a name of their own (the resize cut to 28 px
  to keep 1497 images fast), and fid() in this space is the distance of the samples' features
  to them (1e-9), with no Inception Score (DINOv2 has no classifier); the report gets its lines."""
  model = tiny_dinov2(tmp_path, monkeypatch)
  config = digits_config(digits_root)
  config.eval.dinov2_weights_dir = str(tmp_path)
  assert fid_lib.get_dinov2_space(config, 'cpu') is None
  monkeypatch.setattr(fid_lib, 'DINOV2_DATASETS', ('digits',))
  space = fid_lib.get_dinov2_space(config, 'cpu')
  colours = np.random.default_rng(5).integers(0, 256, size=(5, 1, 1, 3), dtype=np.uint8)
  features = fid_lib.extract_features(space, np.repeat(np.repeat(colours, 8, 1), 8, 2), batch_size=4)
  mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])   # ImageNet's
  x = (torch.from_numpy(colours[:, 0, 0]).double() / 255 - mean) / std
  with torch.no_grad():
    want = model(x.float()[:, :, None, None].expand(-1, -1, 224, 224)).double().numpy()
  assert features.shape == (5, 32) and np.allclose(features, want, atol=1e-5)

  monkeypatch.setattr(fid_lib, 'DINOV2_SIZE', 28)
  train = fid_lib.dataset_samples(config, 'train')
  mu, sigma, count, _, features = fid_lib.reference_statistics(config, space, 'train')
  assert count == len(train) and mu.shape == (32,)
  assert os.path.exists(os.path.join(digits_root, 'fid_stats', 'digits_dinov2_vitl14_train_8.npz'))
  result = fid_lib.fid(config, train[:50], space=space)   # 50 samples: KID stays cheap
  want = fid_lib.frechet_distance(*fid_lib.feature_statistics(features[:50]), mu, sigma)
  assert result['feature_space'] == 'dinov2_vitl14' and result['fid'] == pytest.approx(want, rel=1e-9)
  assert 'inception_score' not in result and 'kid' in result
  report = {'checkpoint': 'ckpt_1', 'step': 1, 'sampler': 'pc', 'nfe_per_sample': 1,
            'seconds_per_sample': 1.0, 'fd_dinov2': result, 'notes': []}
  text = markdown_report(report)
  assert f"FD-DINOv2: {result['fid']:.3f}" in text and 'In DINOv2 features, KID' in text


def test_dinov2_resize_is_pil_bicubic():
  """dgm-eval's resize, PIL's bicubic filter on the uint8 image, against cubic convolution
  (a = -0.5) written out: PIL resizes the rows first and stores them in 8 bits (rounded,
  clipped) before the columns, so the oracle does too. Within 1.5 grey levels: the final
  rounding and PIL's fixed-point weights (measured 0.5 here, 1.1 from 32 px); a bilinear
  filter is 44 levels off."""
  image = np.random.default_rng(6).integers(0, 256, size=(8, 8, 3)).astype(np.float64)
  weights = pil_bicubic(8, 224)
  rows = np.clip(np.round(np.einsum('ijc,sj->isc', image, weights)), 0, 255)
  want = np.clip(np.einsum('ri,isc->rsc', weights, rows), 0, 255)
  got = fid_lib.dinov2_resize(image.astype(np.float32))
  assert got.shape == (224, 224, 3) and np.abs(got - want).max() <= 1.5
