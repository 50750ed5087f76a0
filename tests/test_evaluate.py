"""pipeline.evaluate end to end: its numbers against what its saved samples and arrays and
closed forms say, and samples cached by everything that determines them."""
import json
import os

import numpy as np
import pytest
import torch

from configs.default import get_default_config
from configs.vp_digits import get_config as digits_config
from configs.vp_toy2d import get_config as toy2d_config
from data import get_eval_dataset
from evaluation import feature_metrics as fid_lib
from evaluation.digits_classifier import load_or_train_digits_classifier
from pipeline.evaluate import evaluate, parse_sampler_spec
from evaluation.dinov2 import DINOV2_FILE
from evaluation.sample_metrics import inception_score, kid, precision_recall
from evaluation.shards import from_storage, to_storage
from pipeline.sampling import sampler_name, samples_key
from samplers.registry import FAST_SAMPLERS
from sde_lib import get_sde
from pipeline.train import train
from utils.errors import ConfigError


def test_sampler_specs():
  sampling = get_default_config().sampling
  assert parse_sampler_spec('', sampling).to_dict() == sampling.to_dict()
  parsed = parse_sampler_spec('method=pc, predictor=euler_maruyama,steps=100,noise_removal=false',
                              sampling)
  assert parsed.steps == 100 and parsed.noise_removal is False and sampling.steps == 1000
  assert sampler_name(parsed) == 'pc_noise_removal-false_predictor-euler_maruyama_steps-100'
  for bad in ('method', 'colour=red', 'steps=many', 'noise_removal=maybe'):
    with pytest.raises(ConfigError, match='bad sampler spec'):
      parse_sampler_spec(bad, sampling)


def changed(value):
  """Another value of the same type."""
  if isinstance(value, bool):
    return not value
  if isinstance(value, (int, float)):
    return value * 2 + 1 if value != float('inf') else 1.0
  if isinstance(value, tuple):
    return value + (1,)
  return value + '_other'


def test_samples_key_changes_with_everything_that_determines_the_samples(tmp_path):
  """Every field of config.sampling but num_samples and batch_size (the batch size a set is
  drawn in is an argument), the seed, the batch size, the device type, the checkpoint and every
  field that defines the model change the key; the number of samples and settings that do not
  touch sampling leave it alone. Fields are enumerated, so a new one is covered unasked. The
  hash alone is compared: the readable part names some changes too, but not all."""
  config = toy2d_config()
  workdir = str(tmp_path)
  ckpt = os.path.join(workdir, 'checkpoints', 'ckpt_5.pt')
  moved = os.path.join(str(tmp_path / 'elsewhere'), 'ckpt_5.pt')
  classifier = os.path.join(workdir, 'classifier', 'checkpoints', 'ckpt_1.pt')
  for path, content in ((ckpt, b'weights'), (ckpt.replace('ckpt_5', 'ckpt_6'), b'weights'),
                        (moved, b'weights'), (classifier, b'classifier')):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
      f.write(content)
  key = lambda c, checkpoint=ckpt, batch=4, device='cpu': samples_key(
      c, c.sampling, checkpoint, batch, device, workdir).rsplit('-', 1)[1]
  assert samples_key(config, config.sampling, ckpt, 4, 'cpu').startswith(
      'ckpt_5-pc_corrector-none_steps-200-')
  base = key(config)
  assert len(base) == 10 and key(config) == base
  for field in config.sampling.keys():
    other = config.copy_and_resolve_references()
    other.sampling[field] = changed(config.sampling[field])
    if field in ('num_samples', 'batch_size'):
      assert key(other) == base, field
    else:
      assert key(other) != base, field
  assert len({base, key(config, batch=8), key(config, device='cuda'),
              key(config, checkpoint=ckpt.replace('ckpt_5', 'ckpt_6'))}) == 4
  assert key(config, checkpoint=moved) == base   # the same file elsewhere: the same samples
  guided = config.copy_and_resolve_references()
  guided.sampling.classifier_scale = 1.0
  before = key(guided)
  with open(classifier, 'wb') as f:   # a retrained classifier guides to other samples
    f.write(b'retrained')
  assert key(guided) != before
  for field in ('seed', 'model.hidden', 'model.parameterization', 'sde.beta_max', 'sde.name',
                'training.continuous', 'data.centered', 'data.image_size'):
    other = config.copy_and_resolve_references()
    section, _, name = field.rpartition('.')
    target = other[section] if section else other
    target[name] = changed(target[name])
    assert key(other) != base, field
  for field in ('eval.num_samples', 'eval.batch_size', 'training.n_iters', 'optim.lr', 'eval.fid_mode'):
    other = config.copy_and_resolve_references()
    section, name = field.split('.')
    other[section][name] = changed(other[section][name])
    assert key(other) == base, field
  with open(ckpt, 'wb') as f:                     # retrained into the same workdir
    f.write(b'other weights')
  assert key(config) != base


def test_samples_key_follows_what_a_default_setting_resolves_to(tmp_path, monkeypatch):
  """A fast sampler's 'default' schedule is keyed as what it resolves to: the same key as the
  schedule named explicitly (the same samples), and a new key once the registry's default
  changes (other samples), so a set drawn under old defaults is never reused."""
  config = toy2d_config()
  config.sampling.method, config.sampling.steps = 'heun', 10
  ckpt = str(tmp_path / 'ckpt_5.pt')
  with open(ckpt, 'wb') as f:
    f.write(b'weights')
  key = lambda sampling: samples_key(config, sampling, ckpt, 4, 'cpu').rsplit('-', 1)[1]
  default = FAST_SAMPLERS['heun'].defaults['time_schedule']
  named = config.sampling.copy_and_resolve_references()
  named.time_schedule = default
  before = key(config.sampling)
  assert key(named) == before
  other = 'uniform' if default != 'uniform' else 'karras'
  monkeypatch.setitem(FAST_SAMPLERS['heun'].defaults, 'time_schedule', other)
  assert key(config.sampling) != before


def tiny_toy_config():
  config = toy2d_config()
  config.device = 'cpu'
  config.model.hidden, config.model.num_layers = 16, 1
  config.data.toy_size = 512
  config.training.batch_size = 64
  config.training.n_iters = 2
  config.training.snapshot_freq = 2
  config.training.snapshot_sampling = False
  config.sampling.corrector = 'langevin'   # so that snr and n_steps_each change the samples
  config.sampling.steps = 3
  config.eval.num_samples = 8
  config.eval.batch_size = 4
  config.eval.enable_bpd = config.eval.enable_vlb = config.eval.enable_fid = False
  config.eval.enable_score_bound = False
  return config


def stored_shards(out_dir):
  """{shard file: modification time in ns}."""
  shard_dir = os.path.join(out_dir, 'shards')
  return {name: os.stat(os.path.join(shard_dir, name)).st_mtime_ns for name in os.listdir(shard_dir)}


@pytest.mark.slow
def test_eval_draws_fresh_samples_for_new_settings_and_reuses_unchanged_ones(tmp_path, capsys,
                                                                             one_thread):  # noqa: F811
  """After any sampling field, the seed or the batch size changes, eval draws a new set in a
  new folder (and the samples differ wherever the field acts on this sampler); the old folder
  keeps its shards untouched; rerunning the first settings reuses its shards."""
  config = tiny_toy_config()
  workdir = str(tmp_path)
  train(config, workdir, progress=False)
  eval_dir = os.path.join(workdir, 'eval')

  def run(c):
    [report] = evaluate(c, workdir)
    out_dir = os.path.join(eval_dir, report['key'])
    with np.load(os.path.join(out_dir, 'samples.npz')) as stored:
      return out_dir, stored['samples'], stored_shards(out_dir)

  first_dir, first, first_shards = run(config)
  # (field, value, whether it changes these samples: pc with Langevin on a continuous model)
  changes = [('sampling.steps', 4, True), ('sampling.snr', 0.3, True), ('sampling.eps', 0.01, True),
             ('sampling.n_steps_each', 2, True), ('sampling.corrector', 'ald', True),
             ('sampling.predictor', 'euler_maruyama', True), ('sampling.noise_removal', False, True),
             ('sampling.method', 'ancestral', True), ('sampling.method', 'ode', True),
             ('sampling.variance', 'beta', False), ('sampling.rtol', 1e-3, False),
             ('seed', 7, True), ('eval.batch_size', 8, True)]
  folders = {first_dir}
  for field, value, acts in changes:
    other = config.copy_and_resolve_references()
    section, _, name = field.rpartition('.')
    (other[section] if section else other)[name] = value
    out_dir, samples, _ = run(other)
    assert out_dir not in folders, field
    folders.add(out_dir)
    assert acts == (not np.array_equal(samples, first)), field
  assert stored_shards(first_dir) == first_shards
  again_dir, again, again_shards = run(config)
  assert again_dir == first_dir and again_shards == first_shards and np.array_equal(again, first)
  assert sorted(os.listdir(eval_dir)) == sorted(os.path.basename(d) for d in folders)
  capsys.readouterr()


def tiny_digits_config(root):
  config = digits_config()
  config.device = 'cpu'
  config.data.root = str(root)
  config.sde.num_scales = 50             # a 50-step chain keeps the VLB to 50 network calls
  config.training.n_iters = 20
  config.training.snapshot_freq = 20
  config.training.snapshot_sampling = False
  config.model.nf = 16
  config.eval.num_samples = 32
  config.eval.batch_size = 16
  config.eval.bpd_num_images = 8
  config.eval.vlb_num_images = 8
  config.eval.score_bound_times = 3
  config.eval.bpd_rtol = config.eval.bpd_atol = 1e-3
  config.eval.samplers = ('method=pc,steps=5,corrector=langevin', 'method=ancestral,steps=5')
  return config


def digits_features(classifier, stored):
  with torch.no_grad():
    return classifier.features(from_storage(stored)).double().numpy()


@pytest.mark.slow
def test_evaluate_reports_what_its_saved_samples_and_bounds_say(tmp_path, capsys, monkeypatch,
                                                                one_thread):  # noqa: F811
  """The report against truths that do not rerun evaluate's own calls or random streams: the
  evaluation counts each sampler's algorithm implies; the sample metrics recomputed from the
  saved samples; the bits/dim, VLB and score-bound summaries against their saved per-image
  arrays; the VLB's prior term against its closed form and its terms against their signs."""
  config = tiny_digits_config(tmp_path / 'data')
  workdir = str(tmp_path / 'run')
  train(config, workdir, progress=False)
  reports = evaluate(config, workdir)
  printed = capsys.readouterr().out

  sde = get_sde(config)
  classifier, _ = load_or_train_digits_classifier(config.data.root)
  train_split = get_eval_dataset(config, 'train').base.tensors[0]
  test_split = get_eval_dataset(config, 'test').base.tensors[0]
  train_features = digits_features(classifier, to_storage(train_split))
  mu_train, sigma_train = fid_lib.feature_statistics(train_features)
  test_features = digits_features(classifier, to_storage(test_split))
  mu_test, sigma_test = fid_lib.feature_statistics(test_features)

  # Score evaluations per sample, as each algorithm counts them: PC with one Langevin step
  # per predictor step makes 2 per step; ancestral sampling one.
  assert [r['nfe_per_sample'] for r in reports] == [10, 5]
  for report in reports:
    out_dir = os.path.join(workdir, 'eval', report['key'])
    with open(os.path.join(out_dir, 'report.json')) as f:
      assert json.load(f) == json.loads(json.dumps(report))
    with np.load(os.path.join(out_dir, 'samples.npz')) as stored:
      samples = stored['samples']
    assert samples.shape == (32, 8, 8, 1) and samples.dtype == np.uint8
    # FID, KID, precision / recall and the digit IS of the saved samples' classifier features
    # against the train split's (their math is tested in test_feature_metrics / test_sample_metrics; here
    # that the report holds them for these samples). Float32 features: 1e-6 relative.
    f = report['fid']
    sample_features = digits_features(classifier, samples)
    want = fid_lib.frechet_distance(*fid_lib.feature_statistics(sample_features), mu_train,
                                    sigma_train)
    assert f['fid'] == pytest.approx(want, rel=1e-6) and f['feature_space'] == 'digits_classifier'
    assert f['kid'] == pytest.approx(kid(sample_features, train_features), rel=1e-6)
    assert (f['precision'], f['recall']) == pytest.approx(
        precision_recall(sample_features, train_features[:len(samples)]), abs=1e-12)
    assert f['precision_recall_size'] == len(samples) and 0 < f['recall'] <= 1
    floor = fid_lib.frechet_distance(mu_test, sigma_test, mu_train, sigma_train)
    assert f['train_test_floor'] == pytest.approx(floor, rel=1e-6) and f['fid'] > floor
    assert 'fid_mode' not in f   # a clean-fid mode means nothing for these features
    with torch.no_grad():
      probs = torch.softmax(classifier(from_storage(samples)).double(), 1)
    assert (f['inception_score'], f['inception_score_std']) == pytest.approx(
        inception_score(probs, 10), rel=1e-6)
    # No FD-DINOv2 for digits, which are not natural images, and no note about it.
    assert 'fd_dinov2' not in report and not any('DINOv2' in note for note in report['notes'])
    with open(os.path.join(out_dir, 'report.md')) as md:
      text = md.read()
    for line in (f"{f['fid']:.3f}", f"KID: {f['kid']:.5f}", f"{report['bpd']['mean']:.4f}",
                 f"Inception Score: {f['inception_score']:.3f} +- {f['inception_score_std']:.3f}",
                 f"{report['vlb']['mean']:.4f}",
                 f'reverse variance beta (Ho et al. fixedlarge), {sde.N}-step chain'):
      assert line in text
    assert f"| {report['sampler']} |" in printed
  # The likelihood numbers do not depend on the sampler.
  assert reports[0]['bpd'] == reports[1]['bpd'] and reports[0]['vlb'] == reports[1]['vlb']
  with np.load(os.path.join(workdir, 'eval', reports[0]['key'], 'likelihood.npz')) as saved:
    arrays = {name: saved[name] for name in saved.files}
  # Each summary is its saved per-image values' mean and standard error (float64: 1e-12).
  for name, count in (('bpd', 8), ('vlb', 8), ('score_bound', 8)):
    values, summary = arrays[name].astype(np.float64), reports[0][name]
    assert len(values) == summary['num_images'] == count, name
    assert summary['mean'] == pytest.approx(values.mean(), rel=1e-12), name
    assert summary['stderr'] == pytest.approx(values.std(ddof=1) / np.sqrt(count), rel=1e-12), name
  assert reports[0]['score_bound']['times'] == 3
  assert 'uniform dequantization' in reports[0]['bpd']['method']
  # The VLB: with eval.vlb_variance ('beta'), not the sampler's 'beta_tilde'; on the full
  # 50-step chain, whose terms (KLs and the decoder's -log P) are each >= 0 and sum with the
  # prior to the total (float32 arrays: 1e-6). The prior of each of the first 8 test images x0
  # (scaled to [-1, 1]) is KL(N(sqrt(abar_N) x0, 1 - abar_N) || N(0, 1)) / (D log 2), abar_N
  # from Ho et al.'s betas linspace(0.1 / N, 20 / N, N). 1e-2 relative: the bound runs in the
  # images' float32, where -log(1 - abar_N) - abar_N is off by 4e-9 nats a dimension against a
  # prior of ~3e-6 (measured 0.27%); a slip in the prior's mean coefficient moves it 100%.
  vlb_report = reports[0]['vlb']
  assert config.sampling.variance == 'beta_tilde' and config.eval.vlb_variance == 'beta'
  assert vlb_report['variance'] == 'beta' and vlb_report['steps'] == sde.N == 50
  assert (arrays['vlb_terms'] >= 0).all() and arrays['vlb_terms'].shape == (50,)
  assert arrays['vlb'].astype(np.float64).mean() == pytest.approx(    # saved in float32: 1e-6
      vlb_report['prior'] + arrays['vlb_terms'].astype(np.float64).sum(), rel=1e-6)
  abar = float(np.prod(1 - np.linspace(0.1 / 50, 20 / 50, 50)))
  x0 = 2 * test_split[:8].double().flatten(1).numpy() - 1
  prior = (0.5 * (abar * x0 ** 2 - abar - np.log(1 - abar))).sum(1) / (x0.shape[1] * np.log(2))
  assert vlb_report['prior'] == pytest.approx(prior.mean(), rel=1e-2)

  # Without Inception weights (and no network), a data set that needs them gets one clear
  # message, FID is skipped, and the rest of the report is still written; the shards of the
  # first call are reused. The same for FD-DINOv2 without its weights (the digits admitted
  # as natural images for the occasion).
  monkeypatch.setattr(fid_lib, 'CLEANFID_WEIGHTS_DIR', str(tmp_path / 'no_weights'))
  monkeypatch.setattr('cleanfid.downloads_helper.inception_url', 'http://unreachable.invalid/x.pt')
  monkeypatch.setitem(fid_lib.FEATURE_SPACES, 'digits', fid_lib.inception_space)
  monkeypatch.setattr(fid_lib, 'DINOV2_DATASETS', ('digits',))
  config.eval.dinov2_weights_dir = str(tmp_path / 'no_dinov2')
  config.eval.enable_bpd = config.eval.enable_vlb = False
  again = evaluate(config, workdir)
  printed = capsys.readouterr().out
  assert printed.count('FID skipped') == 1 and fid_lib.INCEPTION_FILE in printed
  assert printed.count('FD-DINOv2 skipped') == 1 and DINOV2_FILE in printed
  for report, first in zip(again, reports):
    assert report['key'] == first['key'] and report['seconds_per_sample'] == first['seconds_per_sample']
    assert 'fid' not in report and 'fd_dinov2' not in report
    assert report['nfe_per_sample'] == first['nfe_per_sample'] and 'score_bound' in report
    for skipped in ('FID skipped', 'FD-DINOv2 skipped'):
      assert any(skipped in note for note in report['notes'])
    with open(os.path.join(workdir, 'eval', report['key'], 'report.md')) as f:
      text = f.read()
    assert 'FID skipped' in text and 'FD-DINOv2 skipped' in text
