"""Fit the variational dequantizer q(u | x) (models/dequantizer.py) to a trained score model,
afterwards and with the score network frozen (Song et al. 2021b train theirs jointly; the
bound below is the same). The ODE likelihood is too slow to train through, so q minimises the
score-matching bound B (evaluation/score_bound.py), a differentiable upper bound on -log p(y):

    min_q  E_x E_{u ~ q(. | x)} [ B(y) + log q(u | x) ],   y = scaler((k + u) / num_bins),

over the training split, one importance-sampled time per image and step. Any q gives a valid
bound on the ODE model too (evaluation/dequantization.py), so fitting q against B only chooses
which one.
"""
import torch
from tqdm.auto import tqdm

from data import get_data_scaler, get_eval_dataset
from evaluation.dequantization import dequantized
from evaluation.score_bound import score_matching_bound
from models.dequantizer import DequantizationFlow
from samplers.likelihood import bits_per_dim


class FittedDequantizer:
  """A fitted flow and what built it: a per-checkpoint statistic (pipeline/statistics.py)."""

  def __init__(self, flow, settings, losses):
    self.flow, self.settings, self.losses = flow, settings, losses

  def state_dict(self):
    return {'flow': self.flow.state_dict(), 'settings': self.settings, 'losses': self.losses}

  @classmethod
  def from_state(cls, state, channels, device):
    """The fitted flow of a state_dict, on `device`."""
    settings = state['settings']
    flow = DequantizationFlow(channels, settings['hidden'], settings['layers']).to(device)
    flow.load_state_dict(state['flow'])
    return cls(flow.eval(), settings, state['losses'])


def dequantizer_settings(config):
  e = config.eval
  return {'steps': e.dequantizer_steps, 'batch_size': e.dequantizer_batch_size,
          'lr': e.dequantizer_lr, 'hidden': e.dequantizer_hidden, 'layers': e.dequantizer_layers,
          'eps': e.bpd_eps}


def fit_dequantizer(config, score_fn, sde, device, progress=True):
  """A FittedDequantizer for score_fn, fitted on the training split."""
  settings = dequantizer_settings(config)
  images = torch.stack([item[0] for item in get_eval_dataset(config, 'train')]).to(device)
  torch.manual_seed(config.seed)
  flow = DequantizationFlow(images.shape[1], settings['hidden'], settings['layers']).to(device)
  generator = torch.Generator(device).manual_seed(config.seed)
  losses = fit_flow(flow, images, score_fn, sde, config.data.num_bins, get_data_scaler(config),
                    settings, generator, progress)
  return FittedDequantizer(flow.eval(), settings, losses)


def fit_flow(flow, images, score_fn, sde, num_bins, scaler, settings, generator=None,
             progress=True):
  """Adam on E[B(y) + log q(u | x)] in bits/dim over random batches of `images` (on the grid
  k / (num_bins - 1) in [0, 1]); returns the mean objective over each tenth of the steps."""
  optimizer = torch.optim.Adam(flow.parameters(), lr=settings['lr'])
  dim, losses, window = images[0].numel(), [], []
  for step in tqdm(range(settings['steps']), desc='dequantizer', disable=not progress):
    index = torch.randint(len(images), (settings['batch_size'],), device=images.device,
                          generator=generator)
    y, log_q = dequantized(flow, images[index], num_bins, scaler, generator)
    bound = score_matching_bound(score_fn, sde, y, settings['eps'], generator=generator).total
    loss = bits_per_dim(-(bound + log_q), dim, num_bins, scaler).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    window.append(loss.item())
    if len(window) * 10 >= settings['steps'] or step == settings['steps'] - 1:
      losses.append(sum(window) / len(window))
      window = []
  return losses
