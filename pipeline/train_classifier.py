"""Train the time-dependent classifier p_phi(y | x_t, t) of classifier guidance (Dhariwal &
Nichol 2021, sec. 4; Song et al. 2021, app. I.1): cross-entropy on training images diffused to
t ~ U[eps, T] by the run's SDE, x_t = m(t) x_0 + s(t) z.

It lives in <workdir>/classifier/ (utils.workdir.classifier_dir) with the score model's
checkpoint layout, and its test accuracy at each of config.classifier.eval_times is written to
<workdir>/classifier/accuracy.json.
"""
import json

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from data import get_data_scaler, get_dataset, get_eval_dataset
from models.registry import get_classifier
from sde_lib import batch_broadcast, get_sde
from training.batches import StepBatches, step_loader
from utils.atomic import atomic_write
from utils.checkpoint import (latest_checkpoint, load_checkpoint, load_state_strict,
                              save_checkpoint)
from utils.device import get_device
from utils.workdir import classifier_accuracy_path, classifier_dir


def diffuse(sde, x0, t, generator=None):
  """x_t = m(t) x_0 + s(t) z."""
  mean, std = sde.marginal_coeffs(t)
  z = torch.randn(x0.shape, generator=generator, device=x0.device)
  return batch_broadcast(mean, x0) * x0 + batch_broadcast(std, x0) * z


@torch.no_grad()
def accuracy_by_time(config, sde, classifier, device):
  """{t: test accuracy of argmax p_phi(y | x_t, t)} at config.classifier.eval_times (one noise
  draw per image, seeded)."""
  test = get_eval_dataset(config, 'test')
  x0 = get_data_scaler(config)(torch.stack([test[i][0] for i in range(len(test))])).to(device)
  y = torch.as_tensor([int(test[i][1]) for i in range(len(test))], device=device)
  generator = torch.Generator(device).manual_seed(config.seed)
  result = {}
  for time in config.classifier.eval_times:
    t = torch.full((len(x0),), max(float(time), config.training.eps), device=device)
    correct = 0
    for rows in torch.arange(len(x0), device=device).split(config.eval.batch_size):
      x_t = diffuse(sde, x0[rows], t[rows], generator)
      correct += int((classifier(x_t, sde.network_label(t[rows])).argmax(1) == y[rows]).sum())
    result[float(time)] = correct / len(x0)
  return result


def train_classifier(config, workdir, progress=True):
  """Train (or resume) the run's classifier to config.classifier.n_iters steps; returns the
  test accuracy by time (accuracy_by_time), also written to accuracy.json and printed."""
  c, device = config.classifier, get_device(config.device)
  sde, scaler, folder = get_sde(config), get_data_scaler(config), classifier_dir(workdir)
  classifier = get_classifier(config).to(device)
  optimizer = torch.optim.Adam(classifier.parameters(), lr=c.lr)
  step, path = 0, latest_checkpoint(folder)
  if path is not None:
    state = load_checkpoint(path, device)
    load_state_strict(classifier, state['model'], 'classifier')
    optimizer.load_state_dict(state['optimizer'])
    step = state['step']
  batches = iter(step_loader(StepBatches(get_dataset(config, 'train'), c.batch_size, 1, 0,
                                         config.seed), step, c.n_iters))
  generator = torch.Generator(device).manual_seed(config.seed + step)
  bar = tqdm(range(step, c.n_iters), desc='classifier', disable=not progress, leave=False)
  classifier.train()
  for step in bar:
    x, y, _ = next(batches)
    x0 = scaler(x.to(device))
    t = config.training.eps + (sde.T - config.training.eps) * torch.rand(
        len(x0), device=device, generator=generator)
    loss = F.cross_entropy(classifier(diffuse(sde, x0, t, generator), sde.network_label(t)),
                           y.to(device))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    bar.set_postfix(loss=f'{loss.item():.3f}')
    if (step + 1) % c.checkpoint_freq == 0 or step + 1 == c.n_iters:
      save_checkpoint(folder, step + 1, {'model': classifier.state_dict(),
                                         'optimizer': optimizer.state_dict(), 'step': step + 1},
                      keep=1)
  classifier.eval()
  accuracy = accuracy_by_time(config, sde, classifier, device)
  report = {'step': c.n_iters, 'chance': 1 / config.data.num_classes,
            'accuracy': {str(t): a for t, a in accuracy.items()}}
  atomic_write(classifier_accuracy_path(workdir),
               lambda f: f.write(json.dumps(report, indent=1).encode()))
  print('test accuracy of the classifier by time (chance '
        f"{report['chance']:.2f}):\n" + '\n'.join(f'  t = {t:.2f}: {a:.3f}'
                                                  for t, a in accuracy.items()))
  return accuracy
