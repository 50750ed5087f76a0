"""validate(config): the ranges a config's numbers must lie in, checked before any data is
loaded or any file written; the first violation is one ConfigError naming the field."""
from utils.errors import ConfigError

# field -> (test, what the value must be)
RANGES = {
    'training.n_iters': (lambda v: v > 0, 'a positive number of steps'),
    'training.batch_size': (lambda v: v > 0, 'positive'),
    'training.grad_accum': (lambda v: v > 0, 'a positive number of micro-batches'),
    'training.num_workers': (lambda v: v >= -1, '>= 0, or -1 (auto)'),
    'training.log_freq': (lambda v: v > 0, 'positive'),
    'training.snapshot_freq': (lambda v: v > 0, 'positive'),
    'training.posthoc_snapshot_freq': (lambda v: v > 0, 'positive'),
    'model.posthoc_ema_sigma_rels': (
        lambda v: all(0 < s <= 12 ** -0.5 for s in v) and len(set(v)) == len(v),
        'distinct values in (0, 0.2887] (EDM2 sigma_rel, gamma >= 0), e.g. (0.05, 0.1)'),
    'eval.posthoc_sigma_rel': (lambda v: 0 <= v <= 12 ** -0.5,
                               'in (0, 0.2887] (EDM2 sigma_rel, gamma >= 0), or 0: unset'),
    'training.eps': (lambda v: 0 < v < 1, 'in (0, 1)'),
    'sampling.steps': (lambda v: v > 0, 'a positive number of steps'),
    'sampling.eps': (lambda v: 0 < v < 1, 'in (0, 1)'),
    'sampling.snr': (lambda v: v >= 0, '>= 0'),
    'sampling.n_steps_each': (lambda v: v >= 0, '>= 0'),
    'sampling.guidance_scale': (lambda v: 0 <= v < float('inf'), 'a finite number >= 0'),
    'sampling.classifier_scale': (lambda v: 0 <= v < float('inf'), 'a finite number >= 0'),
    'sampling.batch_size': (lambda v: v > 0, 'positive'),
    'sampling.num_samples': (lambda v: v > 0, 'positive'),
    'eval.batch_size': (lambda v: v > 0, 'positive'),
    'eval.inception_score_splits': (lambda v: v > 0, 'a positive number of splits'),
    'optim.lr': (lambda v: v > 0, 'positive'),
    'optim.optimizer': (lambda v: v in ('adam', 'adamw'), "'adam' or 'adamw'"),
    'model.label_dropout': (lambda v: 0 <= v <= 1, 'a probability in [0, 1]'),
    'model.sigma_data': (lambda v: 0 < v < float('inf'), "a positive standard deviation (EDM's "
                         "sigma_data; 0.5 for images in [-1, 1])"),
    'training.p_std': (lambda v: 0 < v < float('inf'), "positive (EDM's P_std of ln sigma)"),
    'training.p_mean': (lambda v: abs(v) < float('inf'), "finite (EDM's P_mean of ln sigma)"),
    'training.min_snr_gamma': (lambda v: 0 < v < float('inf'), 'a positive gamma (Hang et al. 5)'),
    'sde.beta_min': (lambda v: v >= 0, '>= 0'),
    'sde.sigma_min': (lambda v: v > 0, 'positive'),
    'sde.num_scales': (lambda v: v > 0, 'positive'),
    'sde.flow_T': (lambda v: 0 < v < 1, 'in (0, 1): the flows have m(1) = 0'),
    'data.image_size': (lambda v: v > 0, 'positive'),
    'restore.noise': (lambda v: 0 <= v < float('inf'), 'a finite sigma_y >= 0'),
    'restore.steps': (lambda v: v >= 2, 'at least 2 score evaluations'),
    'restore.num_images': (lambda v: v > 0, 'positive'),
    'restore.batch_size': (lambda v: v > 0, 'positive'),
    'restore.kernel_size': (lambda v: v > 0 and v % 2 == 1, 'an odd number of taps'),
    'restore.kernel_std': (lambda v: 0 < v < float('inf'), 'a positive std in pixels'),
}
# (smaller, larger): the first must be below the second
ORDERED = (('sde.beta_min', 'sde.beta_max'), ('sde.sigma_min', 'sde.sigma_max'))


def _get(config, field):
  section, name = field.split('.')
  return config[section][name]


def _check_resolution(config):
  """The U-Nets halve the resolution len(ch_mult) - 1 times: the image size must allow it, and
  each attention resolution must be one of those it passes through."""
  m, size = config.model, config.data.image_size
  if m.name in ('ddpm', 'ncsnpp'):
    factor = 2 ** (len(m.ch_mult) - 1)
    if size % factor:
      raise ConfigError(f"config.data.image_size {size} must be divisible by {factor}: "
                        f"{m.name} with ch_mult {tuple(m.ch_mult)} halves it "
                        f"{len(m.ch_mult) - 1} times")
    resolutions = [size // 2 ** level for level in range(len(m.ch_mult))]
    unused = [r for r in m.attn_resolutions if r not in resolutions]
    if unused:   # the network would silently have no attention there
      raise ConfigError(f"config.model.attn_resolutions {tuple(m.attn_resolutions)}: {m.name} at "
                        f"image_size {size} with ch_mult {tuple(m.ch_mult)} never reaches "
                        f"{', '.join(map(str, unused))}; its resolutions are "
                        f"{', '.join(map(str, resolutions))}")


def validate(config):
  """Raise ConfigError for the first value out of its range (RANGES, ORDERED) or an image size
  the network cannot downsample."""
  for field, (test, expected) in RANGES.items():
    value = _get(config, field)
    if not test(value):   # nan fails every test
      raise ConfigError(f"config.{field} must be {expected}, got {value!r}")
  for smaller, larger in ORDERED:
    a, b = _get(config, smaller), _get(config, larger)
    if not a < b:
      raise ConfigError(f"config.{smaller} ({a!r}) must be below config.{larger} ({b!r})")
  _check_resolution(config)
