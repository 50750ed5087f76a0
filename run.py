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

import numpy as np
import torch
from absl import app, flags
from ml_collections import config_flags
from torchvision.utils import save_image

import sde_lib
from configs.resolve import config_name, resolve_config_argv
from models import restore_for_inference
from samplers import draw_samples
from training.trainer import train
from utils.device import get_device
from utils.errors import ConfigError
from utils.pictures import sample_picture
from utils.workdir import samples_dir

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'config name (configs/NAME.py) or path',
                                lock_config=True)
flags.DEFINE_enum('mode', 'train', ['train', 'sample', 'eval'], 'what to do')
flags.DEFINE_string('workdir', None, 'run directory (default runs/<config name>)')
flags.mark_flags_as_required(['config'])


def sample(config, workdir):
  """Draw config.sampling.num_samples with EMA weights; save an .npz and a PNG grid."""
  device = get_device(config.device)
  model, step, name = restore_for_inference(config, workdir, config.eval.ckpt, device)
  generator = torch.Generator(device).manual_seed(config.seed)
  samples, nfe = draw_samples(config, sde_lib.get_sde(config), model, config.sampling.num_samples,
                              device, generator)
  out = samples_dir(workdir)
  os.makedirs(out, exist_ok=True)
  npz, png = os.path.join(out, f'sample_{name}.npz'), os.path.join(out, f'sample_{name}.png')
  np.savez_compressed(npz, samples=samples.numpy(), step=step, nfe=nfe)
  bound = 1.2 * samples.abs().max().item() if samples.dim() == 2 else None
  save_image(sample_picture(samples, bound=bound), png)
  print(f"{len(samples)} samples from {name} (step {step}), {nfe} score evaluations per batch "
        f"({config.sampling.method}):\n  {npz}\n  {png}")


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
      import evaluation  # lazily: only eval needs clean-fid and the Inception weights
      evaluation.evaluate(config, workdir)
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
