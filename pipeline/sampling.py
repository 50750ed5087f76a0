"""Draw a network's samples into data space, and name a set of samples by what determines it.

Batch i of a set is drawn with its own generator seeded by (seed, i). A set is then fixed by
the network and the config fields that define it, the sampling settings, the seed, the batch
size and the device type (CPU and CUDA random streams differ), whoever draws it (a training
snapshot, --mode sample, --mode eval's shards) and however often a run is interrupted;
`samples_key` names a set by exactly these.
"""
import functools
import hashlib
import json
import os

import torch

from configs.default import get_default_config
from configs.run_config import model_fields
from data import data_range, data_shape, get_data_scaler, get_eval_dataset, get_samples_to_data
from models import parameterization_of
from models.score_fn import chain_eps_fn
from models import get_score_fn
from models.classifier import classifier_log_prob_fn
from models.restore import classifier_checkpoint, restore_classifier
from models.score_fn import get_score_and_variance_fns
from samplers.analytic_variance import GAMMA_VERSION, GammaTable, estimate_gamma
from samplers.ems import EMS, EMS_VERSION, compute_ems
from samplers.guidance import classifier_free, classifier_guided
from restoration.imputation import impute
from pipeline.statistics import checkpoint_sha256, network_statistic
from samplers.probability_flow import FIXED_STEP_METHODS
from samplers.registry import get_sampler, resolved_sampling
from sde_lib.reverse_variance import NEEDS_LEARNING, VarianceInputs, check_variance
from utils.errors import ConfigError
from utils.seeding import batch_generator

# Fields of config.sampling that do not change how a sample is drawn: how many are drawn, and
# the batch size of --mode sample (the batch size a set is actually drawn in enters the key).
NOT_SAMPLER_SETTINGS = ('num_samples', 'batch_size')


def data_sampler(config, sde, model, device, sampling=None, checkpoint=None, workdir=None,
                 resample=1, jump_length=1):
  """draw(n, generator=None, progress=True, start=0, observation=None) -> (n samples in data
  space on the CPU, score evaluations per sample) with `sampling` (default config.sampling) on
  the network's score; `start` is the index of the first of them in their set. A model of
  uniformly dequantized images gives the levels of its samples' bins (data.get_samples_to_data).
  With an `observation` (restoration.imputation.Observation, in model space) the samples complete
  it (impute: inpainting, colorization), 'pc' and 'ancestral' with RePaint's resampling when
  resample > 1.

  Classes (class_labels): sample i of a set has class labels[i mod L], with classifier-free
  guidance of scale sampling.guidance_scale on a class-conditional network and classifier
  guidance of scale sampling.classifier_scale with the classifier of the run in `workdir`
  (samplers/guidance.py).

  The network is used as given (callers put EMA weights in and switch to eval mode).
  Statistics a sampler needs from the network ('dpm_solver_v3''s EMS, the 'analytic' reverse
  variance's Gamma table; pipeline/statistics.py) are those of `checkpoint` (the path its
  weights came from), read or computed here, and the sampler is built here, so a setting it
  cannot run raises ConfigError before anything is drawn. Without a path (training snapshots)
  they are those of the weights the network has when a batch is drawn, and a sampler that
  needs them is built (and its settings checked) then.
  """
  sampling = config.sampling if sampling is None else sampling
  continuous = config.training.continuous
  score_fn, output_fn = score_and_variance_fns(config, sde, model)
  labels = class_labels(config, sampling)
  guided = guided_score_fn(config, sampling, sde, score_fn, device, workdir)
  to_data = get_samples_to_data(config)

  def statistics():
    """(EMS or None, VarianceInputs or None) of the network for this sampler."""
    ems = inputs = None
    if sampling.method == 'dpm_solver_v3':
      ems = network_statistic(
          config, 'ems', ems_settings(sampling, sde),
          lambda progress: training_ems(config, sampling, sde, score_fn, device, progress),
          EMS.from_state, checkpoint, model)
    if sampling.variance in ('learned', 'analytic'):
      inputs = variance_inputs(config, sde, model, device, sampling.variance, checkpoint,
                               output_fn)
    return ems, inputs

  def build(n, ems, inputs):
    return get_sampler(sampling, sde, (n,) + data_shape(config), device=device,
                       continuous=continuous, ems=ems, variance_inputs=inputs,
                       resample=resample, jump_length=jump_length)

  # Without a checkpoint the statistics are those of the weights at each draw.
  per_draw = checkpoint is None and (sampling.method == 'dpm_solver_v3'
                                     or sampling.variance == 'analytic')
  fixed = None if per_draw else statistics()

  @functools.lru_cache(maxsize=None)
  def fixed_sampler(n):
    return build(n, *fixed)

  if not per_draw:
    fixed_sampler(sampling.batch_size)   # built now: a setting it cannot run stops the caller

  def draw(n, generator=None, progress=True, start=0, observation=None):
    score = (score_fn if labels is None
             else guided(torch.tensor(sample_classes(labels, start, n), device=device)))
    sampler = build(n, *statistics()) if per_draw else fixed_sampler(n)
    if observation is None:
      x, nfe = sampler(score, generator=generator, progress=progress)
    elif sampling.thresholding:
      raise ConfigError("sampling.thresholding reads every coordinate of x0_hat, including the "
                        "unused known ones of imputation: turn it off to inpaint or colorize")
    else:
      x, nfe = impute(sampler, score, sampler.sde, observation, (n,) + data_shape(config),
                      generator, progress)
    return to_data(x).cpu(), nfe

  return draw


def class_labels(config, sampling):
  """The labels a set's samples cycle through, from sampling.class_label ('all': 0..K-1; 'k' or
  'a,b,...'; 'null': a conditional network's null label K), or None when no class is asked
  for (an unconditional network without classifier guidance). Bad requests are ConfigErrors."""
  conditional = config.model.class_conditional
  guided = sampling.guidance_scale > 0 or sampling.classifier_scale > 0
  if sampling.guidance_scale > 0 and not conditional:
    raise ConfigError("sampling.guidance_scale > 0 (classifier-free guidance) needs a "
                      "class-conditional model (model.class_conditional=True)")
  spec, k = str(sampling.class_label).strip(), config.data.num_classes
  if not (conditional or sampling.classifier_scale > 0):
    if spec != 'all':
      raise ConfigError(f"sampling.class_label={spec!r} needs a class-conditional model or "
                        f"classifier guidance (sampling.classifier_scale > 0)")
    return None
  if spec == 'all':
    return list(range(k))
  if spec == 'null':
    if guided or not conditional:
      raise ConfigError("sampling.class_label='null' samples a class-conditional model's "
                        "unconditional branch, without guidance")
    return [k]
  try:
    labels = [int(label) for label in spec.split(',')]
  except ValueError:
    labels = None
  if not labels or any(not 0 <= label < k for label in labels):
    raise ConfigError(f"sampling.class_label must be 'all', 'null', a class in 0..{k - 1} or a "
                      f"comma-separated list of them, got {spec!r}")
  return labels


def sample_classes(labels, start, n):
  """The classes of samples start, ..., start + n - 1 of a set cycling through `labels`."""
  return [labels[i % len(labels)] for i in range(start, start + n)]


def guided_score_fn(config, sampling, sde, class_score_fn, device, workdir=None):
  """guided(classes) -> score_fn(x, t): the class-conditional score with classifier-free
  guidance (a conditional network) and then classifier guidance (scale > 0: the classifier of
  the run in `workdir`), samplers/guidance.py."""
  if config.model.class_conditional and config.model.learn_variance:
    raise ConfigError("class-conditional sampling of a learned-variance network is not "
                      "supported: its variance output would ignore the class")
  log_prob_fn = None
  if sampling.classifier_scale > 0:
    if workdir is None:
      raise ConfigError("sampling.classifier_scale > 0 needs the run's classifier; sample "
                        "with run.py --mode sample|eval --workdir DIR")
    log_prob_fn = classifier_log_prob_fn(sde, restore_classifier(config, workdir, device)[0])

  def guided(classes):
    score_fn = class_score_fn
    if config.model.class_conditional:
      score_fn = classifier_free(class_score_fn, classes, config.data.num_classes,
                                 sampling.guidance_scale)
    if log_prob_fn is not None:
      score_fn = classifier_guided(score_fn, log_prob_fn, classes, sampling.classifier_scale)
    return score_fn

  return guided


def score_and_variance_fns(config, sde, model):
  """(score_fn, the network's variance output function or None): a learned-variance network's
  two share each evaluation (models.score_fn.get_score_and_variance_fns)."""
  args = (sde, model, config.training.continuous, parameterization_of(config))
  if config.model.learn_variance:
    return get_score_and_variance_fns(*args)
  return get_score_fn(*args), None


def variance_inputs(config, sde, model, device, variance, checkpoint=None, output_fn=None):
  """sde_lib.reverse_variance.VarianceInputs of `variance` for the network: its variance
  output function ('learned'), its Gamma table ('analytic': pipeline.statistics, from
  sampling.analytic_samples training points; of `checkpoint`, or without one of the weights
  `model` has now), and the data's range and level width."""
  check_variance(variance)
  if variance == 'learned' and not config.model.learn_variance:
    raise ConfigError(NEEDS_LEARNING)
  lo, hi = data_range(config)
  images = len(data_shape(config)) == 3
  inputs = VarianceInputs(output_fn=output_fn, data_half_range=(hi - lo) / 2,
                          bin_width=(hi - lo) / (config.data.num_bins - 1) if images else None)
  if variance == 'analytic':
    inputs.gamma = network_statistic(
        config, 'gamma', {'samples': config.sampling.analytic_samples, 'version': GAMMA_VERSION},
        lambda progress: training_gamma(config, sde, model, device, progress),
        GammaTable.from_state, checkpoint, model)
  return inputs


def training_points(config, num_points, device):
  """num_points training points (a subset drawn with config.seed, as stored: no flips or
  dequantization; scaled to the model's range) and the generator that drew them."""
  dataset = get_eval_dataset(config, 'train')
  generator = torch.Generator().manual_seed(config.seed)
  index = torch.randperm(len(dataset), generator=generator)[:num_points]
  data = get_data_scaler(config)(torch.stack([dataset[int(i)][0] for i in index]))
  return data.to(device), generator


def training_ems(config, sampling, sde, score_fn, device, progress=True):
  """The EMS of score_fn (samplers/ems.py) from sampling.ems_samples training points on
  sampling.ems_grid intervals in lambda from T to sampling.eps."""
  data, generator = training_points(config, sampling.ems_samples, device)
  return compute_ems(score_fn, sde, data, sampling.eps, sampling.ems_grid,
                     sampling.batch_size, generator=generator, progress=progress)


def training_gamma(config, sde, model, device, progress=True):
  """The network's Gamma table (samplers/analytic_variance.py) from sampling.analytic_samples
  training points, one noise draw per point and chain step."""
  data, generator = training_points(config, config.sampling.analytic_samples, device)
  eps_fn = chain_eps_fn(sde, model, config.training.continuous, parameterization_of(config))
  return estimate_gamma(eps_fn, sde, data, config.eval.batch_size, generator=generator,
                        progress=progress)


def ems_settings(sampling, sde):
  """What besides the network determines its EMS."""
  return {'samples': sampling.ems_samples, 'grid': sampling.ems_grid,
          'times': [sampling.eps, sde.T], 'version': EMS_VERSION}


def draw_samples(draw, num_samples, batch_size, seed, device, progress=True):
  """(num_samples samples in data space, score evaluations per sample) from draw(n, generator,
  progress, start) (see data_sampler), in batches of batch_size seeded by batch_generator."""
  batches, nfe = [], 0.0
  for index, start in enumerate(range(0, num_samples, batch_size)):
    n = min(batch_size, num_samples - start)
    x, batch_nfe = draw(n, batch_generator(seed, index, device), progress, start)
    batches.append(x)
    nfe += batch_nfe * n
  return torch.cat(batches), nfe / num_samples


# Settings only some methods read (others: 'steps' alone); a name leaves out those it ignores.
METHOD_SETTINGS = {
    'pc': ('predictor', 'corrector', 'snr', 'n_steps_each', 'steps', 'variance'),
    'ancestral': ('steps', 'variance'),
    'ode': ('ode_method', 'rtol', 'atol'),   # and 'steps' for a fixed-step ode_method
    'sde': ('sde_solver', 'sde_atol', 'sde_rtol', 'steps'),
}


def sampler_name(sampling):
  """The method and the settings it reads that differ from configs/default.py's, e.g.
  'pc_corrector-none_steps-100' or 'ode': short and readable, not unique (samples_key is)."""
  default = get_default_config().sampling
  reads = METHOD_SETTINGS.get(sampling.method, ('steps',))
  if sampling.method == 'ode' and sampling.ode_method in FIXED_STEP_METHODS:
    reads += ('steps',)
  ignored = {k for names in METHOD_SETTINGS.values() for k in names} - set(reads)
  changed = [f'{k}-{str(v).lower() if isinstance(v, bool) else v}'
             for k, v in sampling.items()
             if k not in ('method',) + NOT_SAMPLER_SETTINGS and k not in ignored
             and v != default.get(k)]
  return '_'.join([sampling.method] + changed)


def samples_key(config, sampling, checkpoint, batch_size, device, workdir=None):
  """'<checkpoint>-<sampler_name>-<hash>', e.g. 'ckpt_20-pc_steps-5-3f9a0c2e71': the name of the
  set of samples `checkpoint` (a path) draws with `sampling` in batches of `batch_size`.

  The hash covers everything that determines the set (see the module docstring): the
  checkpoint (its name and the SHA-256 of its bytes, so a run retrained into the same workdir
  never meets its predecessor's samples), every sampling setting (a fast sampler's 'default'
  ones as they resolve: registry.resolved_sampling), the batch size, the seed,
  the device type, the config fields that define the model and, with classifier guidance, the
  classifier's checkpoint (of the run in `workdir`). A change to any of them gives a new name;
  the number of samples does not (a longer set begins with a shorter one).
  """
  determines = {
      'checkpoint': [os.path.basename(checkpoint), checkpoint_sha256(checkpoint)],
      'sampling': {k: v for k, v in resolved_sampling(sampling).items()
                   if k not in NOT_SAMPLER_SETTINGS},
      'batch_size': batch_size,
      'seed': config.seed,
      'device': torch.device(device).type,
      'model': model_fields(config),
  }
  if sampling.classifier_scale > 0:
    determines['classifier'] = checkpoint_sha256(classifier_checkpoint(workdir))
  digest = hashlib.sha256(json.dumps(determines, sort_keys=True).encode()).hexdigest()[:10]
  name = os.path.splitext(os.path.basename(checkpoint))[0]
  return f'{name}-{sampler_name(sampling)}-{digest}'
