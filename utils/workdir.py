"""The layout of a run directory (a workdir); every path into one is built here.

  <workdir>/config.json        the resolved config, written before training starts
  <workdir>/checkpoints/       ckpt_<step>.pt and the `latest` pointer
  <workdir>/samples/           snapshot grids <step>.png; --mode sample's <key>.npz and .png
  <workdir>/tb/                TensorBoard events
  <workdir>/metrics.jsonl      one JSON line per logged step
  <workdir>/eval/<key>/        --mode eval: reports, samples and shards of one set of samples
  <workdir>/classifier/        --mode train_classifier: checkpoints/ as above, accuracy.json
  <workdir>/posthoc_ema/       with model.posthoc_ema_sigma_rels: snapshot_<step>.pt (the tracked
                               power-function EMAs); --mode posthoc_ema's sigma_rel_<s>.pt
  <workdir>/couplings.npz      training.loss 'reflow' | 'reflow_distill': the pairs (z, x) its
                               teacher run's ODE drew (pipeline/reflow.py)

<key> is pipeline.sampling.samples_key: '<checkpoint>-<sampler>-<hash of all that determines the
samples>', the same for both modes.
"""
import os


def config_path(workdir):
  return os.path.join(workdir, 'config.json')


def couplings_path(workdir):
  return os.path.join(workdir, 'couplings.npz')


def checkpoint_dir(workdir):
  return os.path.join(workdir, 'checkpoints')


def checkpoint_path(workdir, step):
  return os.path.join(checkpoint_dir(workdir), f'ckpt_{step}.pt')


def samples_dir(workdir):
  return os.path.join(workdir, 'samples')


def snapshot_path(workdir, step):
  return os.path.join(samples_dir(workdir), f'{step}.png')


def tensorboard_dir(workdir):
  return os.path.join(workdir, 'tb')


def metrics_path(workdir):
  return os.path.join(workdir, 'metrics.jsonl')


def sample_paths(workdir, key):
  """(.npz, .png) that --mode sample writes the set of samples `key` to."""
  base = os.path.join(samples_dir(workdir), key)
  return f'{base}.npz', f'{base}.png'


def eval_dir(workdir):
  return os.path.join(workdir, 'eval')


def eval_run_dir(workdir, key):
  return os.path.join(eval_dir(workdir), key)


def classifier_dir(workdir):
  """The run's time-dependent classifier (classifier guidance), laid out as a workdir."""
  return os.path.join(workdir, 'classifier')


def classifier_accuracy_path(workdir):
  return os.path.join(classifier_dir(workdir), 'accuracy.json')


def posthoc_ema_dir(workdir):
  return os.path.join(workdir, 'posthoc_ema')


def posthoc_snapshot_path(workdir, step):
  """The tracked power-function EMAs at training step `step` (models/posthoc_ema.py)."""
  return os.path.join(posthoc_ema_dir(workdir), f'snapshot_{step}.pt')


def posthoc_checkpoint_path(workdir, sigma_rel):
  """--mode posthoc_ema's checkpoint of the average reconstructed for `sigma_rel`."""
  return os.path.join(posthoc_ema_dir(workdir), f'sigma_rel_{sigma_rel:g}.pt')
