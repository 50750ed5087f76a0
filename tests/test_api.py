"""pipeline/api.py from a script outside the checkout, with the installed framework (make setup:
pip install -e .), against what run.py stores and what eval computes on the same images."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from configs.vp_digits import get_config as digits_config
from pipeline.train import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.path.join(ROOT, '.venv', 'bin', 'python')   # the venv `make setup` installs into
SAMPLING = ['--config.sampling.steps=3', '--config.sampling.num_samples=6',
            '--config.sampling.batch_size=4']

SCRIPT = textwrap.dedent('''
    import json, sys
    import numpy as np
    import configs, pipeline
    from pipeline.api import bits_per_dim, likelihood_report, load_run, sample_images
    from pipeline.bpd import split_bpd
    from data import get_eval_dataset
    from models import get_score_fn, parameterization_of

    workdir, stored = sys.argv[1], sys.argv[2]
    run = load_run(workdir, overrides={'sampling.steps': 3, 'eval.batch_size': 2,
                                       'eval.bpd_num_images': 3, 'eval.bpd_rtol': 1e-2,
                                       'eval.bpd_atol': 1e-2, 'eval.vlb_num_images': 3,
                                       'eval.vlb_steps': 10, 'eval.enable_score_bound': False})
    images = sample_images(run, 6, batch_size=4)
    test = get_eval_dataset(run.config, 'test')
    first = np.stack([test[i][0].numpy() for i in range(3)])
    mine = bits_per_dim(run, first)
    score_fn = get_score_fn(run.sde, run.model, run.config.training.continuous,
                            parameterization_of(run.config))
    _, evals = split_bpd(run.config, score_fn, run.sde, seed=run.config.seed, progress=False)
    report, per_image, notes = likelihood_report(run)
    print(json.dumps({'where': [configs.__path__[0], pipeline.__file__],
                      'min': float(images.min()), 'max': float(images.max()),
                      'same': bool(np.array_equal(np.load(stored)['samples'],
                                                  (images.permute(0, 2, 3, 1) * 255).round()
                                                  .byte().numpy())),
                      'mine': mine.tolist(), 'eval': evals.tolist(),
                      'report': {k: report[k]['mean'] for k in report},
                      'report_bpd': per_image['bpd'].tolist(), 'report_vlb': per_image['vlb'].tolist()}))
''')


@pytest.mark.slow
def test_a_script_outside_the_checkout_samples_and_gets_evals_bits_per_dim(tmp_path, one_thread):
  workdir = str(tmp_path / 'run')
  config = digits_config()
  config.device = 'cpu'
  config.model.update(nf=8, num_groups=4)
  config.training.update(batch_size=16, n_iters=2, snapshot_sampling=False, bound_images=0)
  config.sampling.update(steps=3, num_samples=6, batch_size=4)
  train(config, workdir, progress=False)
  env = dict(os.environ, OMP_NUM_THREADS='1')
  env.pop('PYTHONPATH', None)
  sampled = subprocess.run([PYTHON, 'run.py', '--workdir', workdir, '--mode', 'sample', *SAMPLING],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert sampled.returncode == 0, sampled.stderr[-2000:]
  stored = next(line.strip() for line in sampled.stdout.splitlines() if line.strip().endswith('.npz'))
  outside = tmp_path / 'elsewhere'
  outside.mkdir()
  (outside / 'script.py').write_text(SCRIPT)
  result = subprocess.run([PYTHON, 'script.py', workdir, stored], cwd=outside, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  import json
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert all(path.startswith(ROOT) for path in out['where'])   # the checkout, installed
  assert 0 <= out['min'] and out['max'] <= 1                   # images in [0, 1] ...
  assert out['same']                                          # ... as run.py stores them
  # the same images, dequantization draws and probes as eval: equal up to float summation
  assert np.allclose(out['mine'], out['eval'], rtol=0, atol=1e-6)
  # likelihood_report: eval's numbers (ODE bits/dim and the DDPM bound, the score bound off)
  assert sorted(out['report']) == ['bpd', 'vlb']
  assert np.allclose(out['report_bpd'], out['mine'], rtol=0, atol=1e-6)
  assert out['report']['bpd'] == pytest.approx(np.mean(out['report_bpd']), abs=1e-9)
  assert len(out['report_vlb']) == 3 and out['report']['vlb'] == pytest.approx(np.mean(out['report_vlb']), abs=1e-9)
