"""get_model(config): the one place where config fields become network arguments."""
from models.classifier import NoisyClassifier
from models.consistency import ConsistencyPreconditioning
from models.ddpm import DDPM
from models.dit import DiT
from models.mlp import MLP
from models.parameterizations import EDMPreconditioning, get_parameterization
from models.ncsnpp import NCSNpp
from models.uvit import UViT
from data import data_shape
from utils.errors import ConfigError


def output_channels(config, channels):
  """The network's output channels: the data's, twice that with a learned reverse variance
  (eps, then the variance output v; Nichol & Dhariwal 2021), which is defined on the VP
  chain of an eps network trained on its steps."""
  m = config.model
  if not m.learn_variance:
    return channels
  if (config.sde.name != 'vpsde' or config.training.continuous or m.parameterization != 'eps'
      or m.scale_by_sigma):
    raise ConfigError("model.learn_variance learns the reverse variance of the DDPM chain: it "
                      "needs sde.name='vpsde', training.continuous=False, "
                      "model.parameterization='eps' and model.scale_by_sigma=False")
  return 2 * channels


def num_classes(config):
  """K of a class-conditional model (model.class_conditional: data.num_classes classes and a
  null label; Ho & Salimans 2021), 0 for an unconditional one."""
  if not config.model.class_conditional:
    return 0
  if config.data.num_classes < 2:
    raise ConfigError(f"model.class_conditional needs the data set's number of classes in "
                      f"data.num_classes (at least 2), got {config.data.num_classes}")
  return config.data.num_classes


def _ddpm(config):
  m, d = config.model, config.data
  return DDPM(in_channels=d.num_channels, out_channels=output_channels(config, d.num_channels),
              nf=m.nf, ch_mult=tuple(m.ch_mult),
              num_res_blocks=m.num_res_blocks, attn_resolutions=tuple(m.attn_resolutions),
              dropout=m.dropout, image_size=d.image_size, num_groups=m.num_groups,
              num_classes=num_classes(config))


def _ncsnpp(config):
  m, d, sde = config.model, config.data, config.sde
  if m.embedding_type == 'fourier' and not config.training.continuous:
    raise ConfigError("ncsnpp: the Fourier embedding takes log sigma(t) of continuous time; "
                      "use embedding_type='positional' with training.continuous=False")
  if m.scale_by_sigma and m.embedding_type != 'fourier':
    raise ConfigError("ncsnpp: scale_by_sigma needs embedding_type='fourier' (the positional "
                      "variant looks sigma up by score_sde's reversed discrete VE step, which "
                      "our chain steps do not follow)")
  return NCSNpp(
      in_channels=d.num_channels, out_channels=output_channels(config, d.num_channels),
      image_size=d.image_size, nf=m.nf, ch_mult=tuple(m.ch_mult),
      num_res_blocks=m.num_res_blocks, attn_resolutions=tuple(m.attn_resolutions),
      dropout=m.dropout, resblock_type=m.resblock_type, skip_rescale=m.skip_rescale,
      embedding_type=m.embedding_type, fourier_scale=m.fourier_scale, fir=m.fir,
      fir_kernel=tuple(m.fir_kernel), progressive=m.progressive,
      progressive_input=m.progressive_input, progressive_combine=m.progressive_combine,
      resamp_with_conv=m.resamp_with_conv, init_scale=m.init_scale, conditional=m.conditional,
      scale_by_sigma=m.scale_by_sigma, centered=d.centered, nonlinearity=m.nonlinearity,
      sigma_min=sde.sigma_min, sigma_max=sde.sigma_max, num_scales=sde.num_scales,
      num_classes=num_classes(config))


def _mlp(config):
  return MLP(dim=2, hidden=config.model.hidden, num_layers=config.model.num_layers,
              out_dim=output_channels(config, 2), num_classes=num_classes(config))


def _dit(config):
  """DiT; the paper's class_dropout_prob is model.label_dropout, applied by the loss."""
  m, d = config.model, config.data
  return DiT(input_size=d.image_size, patch_size=m.patch_size, in_channels=d.num_channels,
             out_channels=output_channels(config, d.num_channels), hidden_size=m.hidden_size,
             depth=m.depth, num_heads=m.num_heads, mlp_ratio=m.mlp_ratio, qkv_bias=m.qkv_bias,
             num_classes=num_classes(config), convention=m.dit_convention)


def _uvit(config):
  m, d = config.model, config.data
  return UViT(image_size=d.image_size, patch_size=m.patch_size, in_channels=d.num_channels,
              out_channels=output_channels(config, d.num_channels), hidden_size=m.hidden_size,
              depth=m.depth, num_heads=m.num_heads, mlp_ratio=m.mlp_ratio, qkv_bias=m.qkv_bias,
              mlp_time_embed=m.mlp_time_embed, num_classes=num_classes(config))


MODELS = {'ddpm': _ddpm, 'dit': _dit, 'mlp': _mlp, 'ncsnpp': _ncsnpp, 'uvit': _uvit}


def get_model(config):
  """The network named by `config.model.name`, on the CPU (callers move it)."""
  name = config.model.name
  if name not in MODELS:
    raise ConfigError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
  return MODELS[name](config)


def parameterization_of(config):
  """The Parameterization `config.model.parameterization` names (models/parameterizations.py):
  what the network's output means, the one place its config fields are read. 'edm' takes
  model.sigma_data; 've_precond' multiplies the network's output by sigma itself."""
  m = config.model
  if m.parameterization == 'edm':
    return EDMPreconditioning(m.sigma_data)
  if m.parameterization == 'consistency':   # models/consistency.py: f(x, sde.sigma_min) = x
    return ConsistencyPreconditioning(m.sigma_data, config.sde.sigma_min)
  if m.parameterization == 've_precond' and m.scale_by_sigma:
    raise ConfigError("model.parameterization='ve_precond' multiplies the network's output F by "
                      "c_out = sigma: set model.scale_by_sigma=False (the weights are the same)")
  return get_parameterization(m.parameterization)


def get_classifier(config):
  """The time-dependent classifier of classifier guidance (config.classifier), on the CPU."""
  c, d = config.classifier, config.data
  if len(data_shape(config)) != 3:
    raise ConfigError("the guidance classifier is an image network; the data are not images")
  if d.num_classes < 2:
    raise ConfigError("a classifier needs labelled data: set config.data.num_classes (digits and "
                      "CIFAR-10 have 10; a folder data set has one subfolder per class)")
  return NoisyClassifier(in_channels=d.num_channels, num_classes=d.num_classes, nf=c.nf,
                         ch_mult=tuple(c.ch_mult), num_res_blocks=c.num_res_blocks,
                         image_size=d.image_size)
