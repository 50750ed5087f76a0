"""The layout of a run directory (a workdir); every path into one is built here.

  <workdir>/config.json        the resolved config, written before training starts
  <workdir>/checkpoints/       ckpt_<step>.pt and the `latest` pointer
  <workdir>/samples/           snapshot grids <step>.png and --mode sample outputs
  <workdir>/tb/                TensorBoard events
  <workdir>/metrics.jsonl      one JSON line per logged step
  <workdir>/eval/              one folder per evaluated (checkpoint, sampler settings)
"""
import os


def config_path(workdir):
  return os.path.join(workdir, 'config.json')


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


def eval_dir(workdir):
  return os.path.join(workdir, 'eval')
