"""evaluation.evaluate end to end on a tiny vp_digits run, and its sampler specs."""
import json
import os

import pytest

from configs.default import get_default_config
from configs.vp_digits import get_config as digits_config
from evaluation import fid as fid_lib
from evaluation.evaluate import evaluate, parse_sampler_spec
from test_trainer import one_thread  # noqa: F401  (the fixture: one intra-op thread per test)
from training.trainer import train


def test_sampler_specs():
  sampling = get_default_config().sampling
  name, parsed = parse_sampler_spec('', sampling)
  assert name == sampling.method and parsed.to_dict() == sampling.to_dict()
  name, parsed = parse_sampler_spec('method=pc, predictor=euler_maruyama,steps=100,noise_removal=false',
                                    sampling)
  assert name == 'pc_predictor-euler_maruyama_steps-100_noise_removal-false'
  assert parsed.steps == 100 and parsed.noise_removal is False and sampling.steps == 1000
  for bad in ('method', 'colour=red', 'steps=many', 'noise_removal=maybe'):
    with pytest.raises(ValueError, match='bad sampler spec'):
      parse_sampler_spec(bad, sampling)


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
  config.eval.bpd_rtol = config.eval.bpd_atol = 1e-3
  config.eval.samplers = ('method=pc,steps=5', 'method=ancestral,steps=5')
  return config


@pytest.mark.slow
def test_evaluate_tiny_digits_run(tmp_path, capsys, monkeypatch, one_thread):  # noqa: F811
  config = tiny_digits_config(tmp_path / 'data')
  workdir = str(tmp_path / 'run')
  train(config, workdir, progress=False)
  reports = evaluate(config, workdir)

  # Both samplers report every enabled number, in JSON and in markdown.
  assert [r['sampler'] for r in reports] == ['pc_steps-5', 'ancestral_steps-5']
  for report in reports:
    out_dir = os.path.join(workdir, 'eval', f"ckpt_20-{report['sampler']}")
    for name in ('report.json', 'report.md', 'samples.npz', 'grid.png', 'likelihood.npz'):
      assert os.path.exists(os.path.join(out_dir, name)), name
    with open(os.path.join(out_dir, 'report.json')) as f:
      saved = json.load(f)
    assert saved['nfe_per_sample'] == 5 and saved['seconds_per_sample'] > 0
    assert saved['num_samples'] == 32 and len(os.listdir(os.path.join(out_dir, 'shards'))) == 2
    # An untrained 20-step model: bits/dim well above 0, finite; FID above the data's floor.
    assert 0 < saved['bpd']['mean'] < 100 and saved['bpd']['num_images'] == 8
    assert 0 < saved['vlb']['mean'] < 100 and saved['vlb']['num_images'] == 8
    assert saved['fid']['feature_space'] == 'digits_classifier'
    assert saved['fid']['fid'] > saved['fid']['train_test_floor'] > 0
    with open(os.path.join(out_dir, 'report.md')) as f:
      md = f.read()
    for text in ('bits/dim (ODE)', 'bits/dim (VLB)', 'Floor (train vs test', f"{saved['fid']['fid']:.3f}"):
      assert text in md
  printed = capsys.readouterr().out
  assert '| ancestral_steps-5 |' in printed and '| pc_steps-5 |' in printed

  # Without Inception weights (and no network), a data set that needs them gets one clear
  # message, FID is skipped, and the rest of the report is still written; the shards of the
  # first call are reused.
  monkeypatch.setattr(fid_lib, 'CLEANFID_WEIGHTS_DIR', str(tmp_path / 'no_weights'))
  monkeypatch.setattr('cleanfid.downloads_helper.inception_url', 'http://unreachable.invalid/x.pt')
  monkeypatch.setitem(fid_lib.FEATURE_SPACES, 'digits', fid_lib.inception_space)
  config.eval.enable_bpd = config.eval.enable_vlb = False
  reports = evaluate(config, workdir)
  printed = capsys.readouterr().out
  assert printed.count('FID skipped') == 1 and fid_lib.INCEPTION_FILE in printed
  for report in reports:
    assert 'fid' not in report and report['nfe_per_sample'] == 5
    assert any('FID skipped' in note for note in report['notes'])
    with open(os.path.join(workdir, 'eval', f"ckpt_20-{report['sampler']}", 'report.md')) as f:
      assert 'FID skipped' in f.read()
