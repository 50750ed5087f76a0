"""Train, sample or evaluate a score-based model.

  python run.py --config vp_digits --mode train
  python run.py --config vp_digits --mode sample --config.sampling.method=ode
  python run.py --config vp_digits --mode eval

--config takes a name (configs/NAME.py) or a path; --config.a.b=v overrides any field.
--workdir defaults to runs/<config name>. A bad config or input (utils.errors.ConfigError) ends
with one line on stderr and exit 1; any other exception is a bug and keeps its traceback.
"""
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from configs.resolve import config_name, resolve_config_argv
from evaluation import evaluate
from evaluation.shards import save_samples, to_storage
from models import restore_for_inference
from samplers.draw import data_sampler, draw_samples, samples_key
from sde_lib import get_sde
from training.trainer import train
from utils.checkpoint import resolve_checkpoint
from utils.device import get_device
from utils.errors import ConfigError
from utils.workdir import sample_paths

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'config name (configs/NAME.py) or path',
                                lock_config=True)
flags.DEFINE_enum('mode', 'train', ['train', 'sample', 'eval'], 'what to do')
flags.DEFINE_string('workdir', None, 'run directory (default runs/<config name>)')
flags.mark_flags_as_required(['config'])


def sample(config, workdir):
  """Draw config.sampling.num_samples with EMA weights into samples/<key>.npz (the stored form
  eval's samples.npz has) and a picture samples/<key>.png."""
  device = get_device(config.device)
  checkpoint = resolve_checkpoint(workdir, config.eval.ckpt)
  model, step, name = restore_for_inference(config, workdir, checkpoint, device)
  s = config.sampling
  draw = data_sampler(config, get_sde(config), model, device)
  samples, nfe = draw_samples(draw, s.num_samples, s.batch_size, config.seed, device)
  npz, png = sample_paths(workdir, samples_key(config, s, workdir, checkpoint, s.batch_size, device))
  save_samples(npz, png, to_storage(samples), nfe=nfe, step=step)
  print(f"{len(samples)} samples from {name} (step {step}), {nfe:g} score evaluations per sample "
        f"({s.method}):\n  {npz}\n  {png}")


def main(argv):
  del argv
  config = FLAGS.config
  workdir = FLAGS.workdir or os.path.join('runs', config_name(config_flags.get_config_filename(FLAGS['config'])))
  try:
    if FLAGS.mode == 'train':
      step = train(config, workdir)
      if int(os.environ.get('RANK', '0')) == 0:   # one line, also under torchrun
        print(f"trained to step {step}; checkpoints, sample grids, metrics.jsonl and tb/ in {workdir}")
    elif FLAGS.mode == 'sample':
      sample(config, workdir)
    else:
      evaluate(config, workdir)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)


def run():
  try:
    argv = resolve_config_argv(sys.argv)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  app.run(main, argv=argv)


if __name__ == '__main__':
  run()
