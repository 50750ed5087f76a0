"""Class-conditional networks for classifier-free guidance (Ho & Salimans 2021): unconditional
networks unchanged, the class embedding added to the time embedding, the null label, label
dropout in the losses, labels from the data and the trainer, and a learned conditional score
against the exact scores of two Gaussians."""
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import data
import sde_lib
from configs.default import get_default_config
from configs.run_config import defines_model
from sde_lib.gaussian_mixture import GaussianMixture, ring_mixture
from models import get_model
from models.ddpm import DDPM
from models.mlp import MLP
from models.ncsnpp import NCSNpp
from models.score_fn import chain_eps_fn, get_score_and_variance_fns, get_score_fn
from pipeline import train as trainer_module
from training.losses import get_loss_fn
from utils.errors import ConfigError

K = 3   # classes of the tiny networks; label K is the null label

# name -> (network with num_classes, input x, time labels, the module whose output is the time
# embedding every block receives)
IMAGE = dict(in_channels=1, image_size=8, nf=16, ch_mult=(1, 2), num_res_blocks=1,
             attn_resolutions=(4,), dropout=0.0)
NETWORKS = {
    'mlp': (lambda **kw: MLP(hidden=16, num_layers=1, **kw), (4, 2),
            lambda net: net.time_embed),
    'ddpm': (lambda **kw: DDPM(**IMAGE, num_groups=8, **kw), (4, 1, 8, 8),
             lambda net: net.time_embed),
    'ncsnpp': (lambda **kw: NCSNpp(**IMAGE, **kw), (4, 1, 8, 8), lambda net: net.plan['temb'][1]),
}
# The unconditional networks' state dicts as the code before class conditioning made them
# (commit cfd0756): number of keys and of parameters.
BEFORE = {'mlp': (14, 1_442), 'ddpm': (144, 176_849), 'ncsnpp': (155, 188_769)}


def build(name, seed=0, **kwargs):
  torch.manual_seed(seed)
  return NETWORKS[name][0](**kwargs).eval()


def inputs(name):
  generator = torch.Generator().manual_seed(1)
  shape = NETWORKS[name][1]
  return torch.randn(shape, generator=generator), 999 * torch.rand(shape[0], generator=generator)


def randomize(net):
  """Generic weights: the zero-initialized class embedding and the near-zero last layers of
  each residual branch leave the output (almost) independent of the class at init."""
  torch.manual_seed(2)
  for p in net.parameters():
    if p.ndim > 1:
      nn.init.xavier_uniform_(p)
  return net


# ---- networks ---------------------------------------------------------------------------------

@pytest.mark.parametrize('name', NETWORKS)
def test_unconditional_networks_keep_their_state_dict_and_outputs(name, tmp_path):
  before = build(name)
  state = before.state_dict()
  assert (len(state), sum(v.numel() for k, v in state.items() if k != 'sigmas')) == BEFORE[name]
  torch.save(state, tmp_path / 'net.pt')
  after = build(name, seed=5, num_classes=0)
  after.load_state_dict(torch.load(tmp_path / 'net.pt', weights_only=True))   # strict
  x, labels = inputs(name)
  with torch.no_grad():
    assert torch.equal(after(x, labels), before(x, labels))
  conditional = build(name, num_classes=K)
  extra = conditional.state_dict().keys() - state.keys()
  assert extra == {'class_embed.weight'} and state.keys() <= conditional.state_dict().keys()
  assert conditional.class_embed.weight.shape[0] == K + 1   # K classes and the null label


@pytest.mark.parametrize('name', NETWORKS)
def test_class_embedding_is_added_to_the_time_embedding_the_blocks_receive(name):
  """model(x, t, c) equals the unconditional network with the same weights whose time
  embedding (after its MLP) has e(c) added: the same additions, so equal bit for bit."""
  conditional = randomize(build(name, num_classes=K))
  twin = build(name)
  twin.load_state_dict({k: v for k, v in conditional.state_dict().items()
                        if k != 'class_embed.weight'})
  x, labels = inputs(name)
  classes = torch.tensor([0, 2, 1, 3])
  embedding = conditional.class_embed.weight.detach()[classes]
  NETWORKS[name][2](twin).register_forward_hook(lambda module, args, out: out + embedding)
  with torch.no_grad():
    assert torch.equal(conditional(x, labels, classes), twin(x, labels))


@pytest.mark.parametrize('name', NETWORKS)
def test_output_depends_on_the_class_and_none_is_the_null_label(name):
  net = randomize(build(name, num_classes=K))
  x, labels = inputs(name)
  batch = len(x)
  with torch.no_grad():
    outputs = [net(x, labels, torch.full((batch,), c)) for c in range(K + 1)]
    unlabelled = net(x, labels)
    explicit_none = net(x, labels, None)
  # Different rows of a random embedding move every sample's output far beyond fp32 rounding.
  for a in range(K + 1):
    for b in range(a):
      change = (outputs[a] - outputs[b]).flatten(1).norm(dim=1)
      assert (change > 1e-3 * outputs[a].flatten(1).norm(dim=1)).all(), (a, b)
  assert torch.equal(unlabelled, outputs[K]) and torch.equal(explicit_none, outputs[K])


@pytest.mark.parametrize('name', NETWORKS)
def test_bad_classes_are_value_errors(name):
  x, labels = inputs(name)
  with pytest.raises(ValueError, match='unconditional'):
    build(name)(x, labels, torch.zeros(len(x), dtype=torch.long))
  net = build(name, num_classes=K)
  for bad in (torch.full((len(x),), K + 1), torch.full((len(x),), -1)):
    with pytest.raises(ValueError, match=f'0..{K}'):
      net(x, labels, bad)
  with pytest.raises(ValueError, match='shape'):
    net(x, labels, torch.zeros(len(x) + 1, dtype=torch.long))
  with pytest.raises(ValueError, match='LongTensor'):
    net(x, labels, torch.zeros(len(x)))


def conditional_config(name='mlp', num_classes=K, **model):
  config = get_default_config()
  config.model.update(name=name, class_conditional=True, nf=16, ch_mult=(1, 2),
                      num_res_blocks=1, attn_resolutions=(4,), num_groups=8, hidden=16,
                      num_layers=1, **model)
  config.data.update(dataset='toy2d' if name == 'mlp' else 'digits', image_size=8,
                     num_channels=1, num_classes=num_classes)
  return config


def test_get_model_builds_the_configured_class_embedding_and_refuses_bad_settings():
  for name in NETWORKS:
    assert get_model(conditional_config(name)).class_embed.num_embeddings == K + 1
  unconditional = conditional_config(num_classes=10)
  unconditional.model.class_conditional = False
  assert get_model(unconditional).class_embed is None
  for num_classes in (0, 1):
    with pytest.raises(ConfigError, match='data.num_classes'):
      get_model(conditional_config(num_classes=num_classes))
  with pytest.raises(ConfigError, match='conditional=False'):
    get_model(conditional_config('ncsnpp', conditional=False))
  for field in ('model.class_conditional', 'model.label_dropout'):
    assert defines_model(field), field
  assert not defines_model('data.num_classes')   # the embedding's shape: checked on loading


# ---- score functions --------------------------------------------------------------------------

def test_score_functions_pass_classes_to_the_network():
  sde = sde_lib.VPSDE()
  net = randomize(MLP(hidden=16, num_layers=1, out_dim=4, num_classes=2)).eval()   # eps, v
  x, t = torch.randn(3, 2), torch.tensor([0.2, 0.5, 0.9])
  c0, c1 = torch.tensor([0, 1, 2]), torch.tensor([1, 1, 0])
  with torch.no_grad():
    def expected(classes):
      out = net(x, sde.network_label(t), classes)
      return -out[:, :2] / sde.marginal_std(t)[:, None], out[:, 2:]
    assert torch.equal(get_score_fn(sde, net)(x, t, c0), expected(c0)[0])
    assert torch.equal(get_score_fn(sde, net)(x, t), expected(None)[0])
    score_fn, variance_fn = get_score_and_variance_fns(sde, net)
    assert torch.equal(score_fn(x, t, c0), expected(c0)[0])
    assert torch.equal(variance_fn(x, t, c1), expected(c1)[1])   # not the cached c0 output
    two_arguments = lambda x, labels: x   # noqa: E731 (unconditional: called as before)
    assert torch.equal(get_score_fn(sde, two_arguments)(x, t), -x / sde.marginal_std(t)[:, None])
    index = torch.tensor([0, 400, 999])
    eps, v = chain_eps_fn(sde, net, continuous=False)(x, index, c1)
    out = net(x, index.float(), c1)
    assert torch.equal(eps, out[:, :2]) and torch.equal(v, out[:, 2:])


# ---- label dropout ----------------------------------------------------------------------------

class Recorder(nn.Module):
  """Records the classes it is called with; outputs zeros with `channels` times the channels
  of x (2: eps and the variance output v)."""

  def __init__(self, channels=1):
    super().__init__()
    self.channels, self.seen = channels, []

  def forward(self, x, labels, *classes):
    self.seen.append(classes)
    return torch.zeros(x.shape[0], self.channels * x.shape[1], *x.shape[2:])


def dropout_config(chain, p):
  if not chain:
    return conditional_config(label_dropout=p)
  config = conditional_config('ddpm', label_dropout=p, learn_variance=True)
  config.training.update(loss='ddpm', continuous=False)
  return config


@pytest.mark.parametrize('chain', [False, True], ids=['dsm', 'hybrid'])
@pytest.mark.parametrize('p', [0.1, 0.3])
def test_label_dropout_replaces_the_fraction_p_by_the_null_label(chain, p):
  """Binomial test: n = 20,000 labels, each null with probability p; the count of nulls must
  lie within 5 standard deviations of n p (two-sided level 6e-7 under the normal limit)."""
  n = 20_000
  config = dropout_config(chain, p)
  x0 = torch.rand(n, 1, 2, 2) if chain else torch.randn(n, 2)
  classes = torch.arange(n) % K
  model = Recorder(2 if chain else 1)
  get_loss_fn(config, sde_lib.get_sde(config))(model, x0, torch.Generator().manual_seed(0),
                                               classes)
  (seen,), = model.seen
  null = seen == K
  assert abs(null.sum().item() - n * p) < 5 * math.sqrt(n * p * (1 - p)), null.float().mean()
  assert torch.equal(seen[~null], classes[~null])
  for p_edge, expected in ((0.0, classes), (1.0, torch.full_like(classes, K))):
    model = Recorder(2 if chain else 1)
    get_loss_fn(dropout_config(chain, p_edge), sde_lib.get_sde(config))(model, x0, None, classes)
    assert torch.equal(model.seen[0][0], expected)
  with pytest.raises(ValueError, match='classes'):
    get_loss_fn(config, sde_lib.get_sde(config))(model, x0)


@pytest.mark.parametrize('chain', [False, True], ids=['dsm', 'hybrid'])
def test_unconditional_losses_ignore_classes_and_keep_their_random_stream(chain):
  """Bit for bit: an unconditional config's loss is the same with and without classes, and a
  conditional network with a zero embedding and the same other weights under a conditional config
  gives the same values too: the dropout draw comes after the time and noise draws."""
  config = dropout_config(chain, 0.5)
  config.model.class_conditional = False
  sde = sde_lib.get_sde(config)
  x0 = torch.rand(64, 1, 8, 8) if chain else torch.randn(64, 2)
  unconditional = get_model(config)
  conditional = get_model(dropout_config(chain, 0.5))
  conditional.load_state_dict(unconditional.state_dict(), strict=False)
  torch.nn.init.zeros_(conditional.class_embed.weight)
  classes = torch.arange(64) % K

  def loss(config, model, **kwargs):
    return get_loss_fn(config, sde)(model, x0, torch.Generator().manual_seed(3), **kwargs)

  expected = loss(config, unconditional)
  assert torch.equal(loss(config, unconditional, classes=classes), expected)
  assert torch.equal(loss(dropout_config(chain, 0.5), conditional, classes=classes), expected)


# ---- data -------------------------------------------------------------------------------------

def write_png(path, value):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


def test_folder_class_subfolders_give_labels_and_their_count_is_checked(tmp_path):
  # sorted classes: cat = 0, dog = 1; an image deeper in a class folder keeps its class
  for path, value in (('cat/b.png', 10), ('dog/sub/a.png', 20), ('cat/a.png', 30),
                      ('dog/c.png', 40)):
    write_png(tmp_path / 'train' / path, value)
  config = conditional_config(num_classes=2)
  config.data.update(dataset='folder', root=str(tmp_path), num_channels=3, random_flip=False)
  items = [data.get_dataset(config, 'train')[i] for i in range(4)]
  # sorted paths: cat/a (30), cat/b (10), dog/c (40), dog/sub/a (20)
  assert [round(x[0, 0, 0].item() * 255) for x, _ in items] == [30, 10, 40, 20]
  assert [label for _, label in items] == [0, 0, 1, 1]
  config.data.num_classes = 3
  with pytest.raises(ConfigError, match='folder has 2 classes.*num_classes = 3'):
    data.get_dataset(config, 'train')
  write_png(tmp_path / 'train' / 'top.png', 50)         # an image outside the class folders
  config.model.class_conditional = False                # ... makes it an unlabelled folder
  assert {label for _, label in data.get_dataset(config, 'train')} == {0}
  config.model.class_conditional = True
  with pytest.raises(ConfigError, match='folder has 0 classes'):
    data.get_dataset(config, 'train')


def test_toy_ring_labels_are_its_modes_and_their_count_is_checked():
  config = conditional_config(num_classes=8)
  config.data.toy_size = 64
  points, modes = data.get_dataset(config, 'train').tensors
  angles = torch.atan2(points[:, 1], points[:, 0]) % (2 * math.pi)
  # std 0.2 at radius 4: a point is 0.05 rad from its mode's angle per std, the modes 0.79 apart
  assert torch.equal(torch.round(angles / (2 * math.pi / 8)).long() % 8, modes)
  config.data.num_classes = 10
  with pytest.raises(ConfigError, match='toy2d has 8 classes'):
    data.get_dataset(config, 'train')


# ---- training ---------------------------------------------------------------------------------

def test_trainer_passes_each_batchs_labels_to_the_loss(tmp_path, one_thread, monkeypatch):
  """The classes the loss receives are the modes of the ring points they came with (a point
  is 7 std nearer its own mode than any other)."""
  config = conditional_config(num_classes=8)
  config.device = 'cpu'
  config.data.update(toy_size=256, centered=False, random_flip=False)
  config.training.update(batch_size=32, n_iters=3, log_freq=3, snapshot_freq=3, bound_images=0)
  config.training.snapshot_samples = 8
  config.sampling.update(method='pc', corrector='none', steps=2)
  seen, real = [], trainer_module.get_loss_fn

  def recording(config, sde):
    loss_fn = real(config, sde)

    def recorded(model, x, generator=None, classes=None, rows=None):
      seen.append((x, classes))
      return loss_fn(model, x, generator, classes, rows)

    return recorded

  monkeypatch.setattr(trainer_module, 'get_loss_fn', recording)
  trainer_module.train(config, str(tmp_path), progress=False)
  means = ring_mixture(8, 4.0, 0.2).means.float()
  assert len(seen) == 3
  for x, classes in seen:
    assert classes is not None and classes.dtype == torch.long
    assert torch.equal(classes, torch.cdist(x, means).argmin(1))


def test_conditioning_is_learned_two_gaussians(one_thread):
  """Class 0 ~ N((-2, 0), 0.25 I), class 1 ~ N((2, 0), 0.25 I), equal weights. A tiny MLP
  trained with label dropout 0.2 must give for each class the score of p_t(x | c) =
  N(m mu_c, (0.25 m^2 + s^2) I), and for the null label the mixture's score.
  1. Directions at t = 0.1, x = (-1, 0) and (1, 0): each class points to its own mean at both
     points, the null label to the nearer mode (exact x-components >= 2.7 in size; learned >= 2).
  2. On points of the mixture's marginal (both modes) at t = 0.3 and 0.5, the relative squared
     error sum |s_theta - s|^2 / sum |s|^2 of each label's score is below 0.08: measured <= 0.061
     with this seed, while answering with any other label's exact score gives >= 0.16, so the
     bound separates a conditioned model from one that ignores or confuses its labels."""
  torch.manual_seed(0)
  config = conditional_config(num_classes=2, label_dropout=0.2)
  config.training.reduce_mean = True
  sde = sde_lib.get_sde(config)
  means = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
  model = MLP(hidden=64, num_layers=2, num_classes=2)
  optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
  loss_fn = get_loss_fn(config, sde)
  for _ in range(800):
    classes = torch.randint(2, (256,))
    x0 = means[classes] + 0.5 * torch.randn(256, 2)
    loss = loss_fn(model, x0, classes=classes).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

  cov = 0.25 * torch.eye(2).expand(2, 2, 2)
  truths = [GaussianMixture([1.0], means[c:c + 1], cov[:1]) for c in range(2)]
  truths.append(GaussianMixture([0.5, 0.5], means, cov))          # the null label: the mixture
  score_fn = get_score_fn(sde, model.eval())
  labels = lambda c, n: torch.full((n,), c)   # noqa: E731
  generator = torch.Generator().manual_seed(1)
  with torch.no_grad():
    points = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
    signs = [torch.sign(score_fn(points, torch.full((2,), 0.1), labels(c, 2))[:, 0]).tolist()
             for c in range(3)]
    assert signs == [[-1, -1], [1, 1], [-1, 1]]
    for time in (0.3, 0.5):
      x = truths[2].perturbed(sde, time).sample(2000, generator)
      for c, truth in enumerate(truths):
        exact = truth.perturbed(sde, time).score(x)
        learned = score_fn(x, torch.full((2000,), time), labels(c, 2000))
        error = (learned - exact).square().sum() / exact.square().sum()
        assert error < 0.08, (time, c, error.item())
