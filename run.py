"""Train, sample or evaluate a score-based model.

  python run.py --config vp_digits --mode train
  python run.py --workdir runs/vp_digits --mode sample --config.sampling.method=ode
  python run.py --workdir runs/vp_digits --mode eval
  python run.py --workdir runs/vp_digits_cond --mode sample --config.sampling.guidance_scale=1
  python run.py --workdir runs/vp_digits --mode train_classifier
  python run.py --workdir runs/vp_digits --mode inpaint --config.inpaint.mask=left
  python run.py --workdir runs/vp_digits --mode restore --config.restore.operator=sr2
  python run.py --workdir runs/vp_digits --mode posthoc_ema --config.eval.posthoc_sigma_rel=0.08
  python run.py --config reflow_digits --mode train --config.distill.teacher=runs/rf_digits

--config takes a name (configs/NAME.py) or a path; --config.a.b=v overrides any field.
--workdir defaults to runs/<config name>. Training writes the resolved config to
<workdir>/config.json; sample and eval start from that file and apply only the --config.a.b=v
given, and a resumed training run is compared with it: a change to a field that defines the
trained model (configs/run_config.py) is refused unless --allow_model_override is passed.
A bad config or input (utils.errors.ConfigError) ends with one line on stderr and exit 1; any
other exception is a bug and keeps its traceback.
"""
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from configs.resolve import DEFAULT_CONFIG, config_argv_or_exit, config_name
from configs.run_config import inference_config
from configs.validate import validate
from pipeline.evaluate import evaluate
from evaluation.shards import save_samples, to_storage
from models import restore_for_inference
from pipeline.posthoc_ema import write_posthoc_checkpoint
from pipeline.restore import restore_images, summary as restore_summary
from pipeline.complete import KINDS, complete
from pipeline.sampling import class_labels, data_sampler, draw_samples, sample_classes, samples_key
from sde_lib import get_sde
from pipeline.train_classifier import train_classifier
from pipeline.train import train
from utils.checkpoint import resolve_checkpoint
from utils.device import get_device
from utils.errors import ConfigError
from utils.run_lock import RunLock
from utils.workdir import classifier_dir, sample_paths

FLAGS = flags.FLAGS
# Defining the flag already applies the command line's overrides to the default config, where
# an unknown field would end in a traceback: check them first.
config_argv_or_exit(sys.argv)
config_flags.DEFINE_config_file(
    'config', DEFAULT_CONFIG, "config name (configs/NAME.py) or path; sample and eval may leave "
    "it out and use the workdir's config.json", lock_config=True)
flags.DEFINE_enum('mode', 'train', ['train', 'sample', 'eval', 'train_classifier', 'inpaint',
                                    'colorize', 'posthoc_ema', 'restore'], 'what to do')
flags.DEFINE_string('workdir', None, 'run directory (default runs/<config name>)')
flags.DEFINE_bool('allow_model_override', False,
                  "let --config.* change a field that defines an existing run's trained model "
                  "(model, sde, training.continuous, the data's shape and scaling)")


def sample(config, workdir):
  """Draw config.sampling.num_samples with EMA weights into samples/<key>.npz (the stored form
  eval's samples.npz has) and a picture samples/<key>.png."""
  device = get_device(config.device)
  checkpoint = resolve_checkpoint(workdir, config.eval.ckpt)
  model, step, name = restore_for_inference(config, workdir, checkpoint, device)
  s = config.sampling
  draw = data_sampler(config, get_sde(config), model, device, checkpoint=checkpoint,
                      workdir=workdir)
  samples, nfe = draw_samples(draw, s.num_samples, s.batch_size, config.seed, device)
  npz, png = sample_paths(workdir, samples_key(config, s, checkpoint, s.batch_size, device,
                                               workdir))
  labels = class_labels(config, s)
  save_samples(npz, png, to_storage(samples), nfe=nfe, step=step,
               labels=None if labels is None else sample_classes(labels, 0, len(samples)))
  print(f"{len(samples)} samples from {name} (step {step}), {nfe:g} score evaluations per sample "
        f"({s.method}):\n  {npz}\n  {png}")


def config_and_workdir(mode):
  """(config, workdir) the flags ask for."""
  config_file = config_flags.get_config_filename(FLAGS['config'])
  named = os.path.realpath(config_file) != os.path.realpath(DEFAULT_CONFIG)
  if not (named or FLAGS.workdir):
    raise ConfigError("name a config (--config NAME) or a run (--workdir DIR)")
  workdir = FLAGS.workdir or os.path.join('runs', config_name(config_file))
  if mode == 'train':
    if not named:
      raise ConfigError("training needs a config: --config NAME (configs/NAME.py) or a path")
    return FLAGS.config, workdir
  config, notes = inference_config(workdir, FLAGS.config if named else None,
                                   config_flags.get_override_values(FLAGS['config']),
                                   FLAGS.allow_model_override)
  for note in notes:
    print(f"note: {note}")
  return config, workdir


def main(argv):
  del argv
  try:
    config, workdir = config_and_workdir(FLAGS.mode)
    validate(config)
    if FLAGS.mode == 'train':
      step = train(config, workdir, allow_model_override=FLAGS.allow_model_override,
                   given=set(config_flags.get_override_values(FLAGS['config'])))
      n = config.training.n_iters
      if int(os.environ.get('RANK', '0')) == 0 and step < n:   # SIGTERM, SIGUSR1
        print(f"stopped at step {step} of {n} (training/preemption.py); the same command resumes")
      elif int(os.environ.get('RANK', '0')) == 0:   # one line, also under torchrun
        print(f"trained to step {step}; checkpoints, sample grids, metrics.jsonl and tb/ in {workdir}")
    elif FLAGS.mode == 'sample':
      sample(config, workdir)
    elif FLAGS.mode == 'posthoc_ema':
      path, step = write_posthoc_checkpoint(workdir, config.eval.posthoc_sigma_rel)
      print(f"the EMA of sigma_rel {config.eval.posthoc_sigma_rel:g} at step {step}: {path}\n"
            f"  use it with --config.eval.ckpt={path}")
    elif FLAGS.mode == 'train_classifier':
      with RunLock(classifier_dir(workdir), 'train_classifier'):   # one writer (utils/run_lock.py)
        train_classifier(config, workdir)
    elif FLAGS.mode == 'restore':
      base, report = restore_images(config, workdir)
      print(f"{restore_summary(report)}\n  {base}.png\n  {base}.npz\n  {base}.json")
    elif FLAGS.mode in KINDS:
      png, npz = complete(config, workdir, FLAGS.mode)
      image = str(config.inpaint.image).strip()
      used = f"test image {image}" if image.isdigit() else image
      if FLAGS.mode == 'inpaint':
        used += f", mask {config.inpaint.mask!r}"
      print(f"input ({used}), {config.inpaint.num_completions} completions and the original:\n"
            f"  {png}\n  {npz}")
    else:
      evaluate(config, workdir)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)


def run():
  app.run(main, argv=config_argv_or_exit(sys.argv))


if __name__ == '__main__':
  run()
