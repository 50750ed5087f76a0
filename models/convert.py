"""Write a published checkpoint as a run of ours, so training can resume from it.

  python -m models.convert --config vp_cifar10 --ckpt checkpoint_8.pth --workdir runs/vp_published
  python -m models.convert --config ddpm_cifar10 --ckpt ddpm-cifar10-32/ --workdir runs/ddpm_published

--ckpt: a score_sde_pytorch checkpoint file, a diffusers DDPM or DiT folder or one of our own files.
The checkpoint is checked against the config (one line naming the first key that does not fit)
and written as <workdir>/checkpoints/ckpt_<step>.pt with the config as <workdir>/config.json;
`run.py --workdir DIR --mode train|sample|eval` then take it from there (training from a
checkpoint without an optimizer state, a diffusers folder, starts Adam afresh). An existing run
is never overwritten.
"""
import sys

from absl import app, flags
from ml_collections import config_flags

from configs.resolve import config_argv_or_exit
from configs.run_config import write_run_config
from models.restore import restore
from utils.checkpoint import list_checkpoints, save_checkpoint
from utils.errors import ConfigError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'the config the checkpoint was trained with',
                                lock_config=True)
flags.DEFINE_string('ckpt', None, 'the published checkpoint (file or diffusers folder)')
flags.DEFINE_string('workdir', None, 'the new run directory')


def convert(config, ckpt, workdir):
  """Check `ckpt` against `config` and write it into `workdir` as our checkpoint; returns its path."""
  if list_checkpoints(workdir):
    raise ConfigError(f"{workdir} already holds checkpoints; convert into a new directory")
  _, _, state = restore(config, ckpt)
  write_run_config(config, workdir)
  return save_checkpoint(workdir, int(state['step']), state, keep=config.training.keep_checkpoints)


def main(argv):
  del argv
  try:
    if FLAGS.config is None or not FLAGS.ckpt or not FLAGS.workdir:
      raise ConfigError("usage: python -m models.convert --config NAME --ckpt PATH --workdir DIR")
    path = convert(FLAGS.config, FLAGS.ckpt, FLAGS.workdir)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(f"wrote {path}; continue with: python run.py --workdir {FLAGS.workdir} --mode train")


if __name__ == '__main__':
  app.run(main, argv=config_argv_or_exit(sys.argv))
