"""Conditional generation on digits: classifier-free guidance on `vp_digits_cond`, classifier
guidance on the demo `vp_digits` with its time-dependent classifier, and inpainting by
replacement with and without RePaint's resampling.

Each model is trained here unless its workdir has it (vp_digits_cond, vp_digits: 3,000 steps;
the classifier: config.classifier.n_iters). The framework's digit classifier
(evaluation/digits_classifier.py) judges the samples: the rate at which it names the requested
class and its mean probability of that class, beside the digit Frechet distance to the train
split; for inpainting, its agreement with the original's label. Writes
benchmarks/results/conditional_digits.{json,md} and the pictures
conditional_digits_{guidance,classifier,inpainting}.png.

  .venv/bin/python benchmarks/conditional_digits.py [--num_samples 500] [--num_images 300]
      [--workdir runs/bench_conditional]
"""
import argparse
import os
import sys
import time

import torch
from torchvision.utils import save_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.results_io import RESULTS, write_results  # noqa: E402
from configs.vp_digits import get_config as demo_config  # noqa: E402
from configs.vp_digits_cond import get_config as cond_config  # noqa: E402
from data import get_data_scaler, get_eval_dataset  # noqa: E402
from data.masks import parse_mask  # noqa: E402
from evaluation.digits_classifier import load_or_train_digits_classifier  # noqa: E402
from evaluation.feature_metrics import fid, get_feature_space  # noqa: E402
from evaluation.shards import to_storage  # noqa: E402
from models import restore_for_inference  # noqa: E402
from pipeline.sampling import data_sampler, draw_samples  # noqa: E402
from utils.seeding import batch_generator  # noqa: E402
from restoration.imputation import Observation  # noqa: E402
from sde_lib import get_sde  # noqa: E402
from pipeline.train_classifier import train_classifier  # noqa: E402
from pipeline.train import train  # noqa: E402
from utils.device import get_device  # noqa: E402
from utils.pictures import rows_picture  # noqa: E402

SCALES = (0.0, 1.0, 3.0)               # guidance_scale w of classifier-free guidance
CLASSIFIER_SCALES = (0.0, 1.0, 3.0, 10.0)
MASK = 'top'                           # inpainting: the top half missing
REPAINT = dict(resample=5, jump_length=10)
PICTURE_COLUMNS = 4


def trained(make_config, run_dir, device):
  """(config, EMA network): the run in run_dir, trained (or its training finished) first."""
  config = make_config()
  start = time.time()
  train(config, run_dir, progress=False)
  print(f"{run_dir}: trained to step {config.training.n_iters} ({time.time() - start:.0f} s "
        f"now)", flush=True)
  return config, restore_for_inference(config, run_dir, '', device)[0]


def judge(config, samples, requested, device, space):
  """Rate and mean probability of the requested class by the digit classifier, and the digit
  Frechet distance of the samples."""
  classify = load_or_train_digits_classifier(config.data.root, device)[0]
  with torch.no_grad():
    probs = classify(samples.to(device)).softmax(1).cpu()
  return {'rate': (probs.argmax(1) == requested).double().mean().item(),
          'probability': probs.gather(1, requested[:, None]).mean().item(),
          'fd': fid(config, to_storage(samples), device, space)['fid']}


def guided_samples(config, model, device, num_samples, workdir=None, **sampling):
  s = config.sampling.copy_and_resolve_references()
  s.update(sampling)
  draw = data_sampler(config, get_sde(config), model, device, s, workdir=workdir)
  return draw_samples(draw, num_samples, config.eval.batch_size, config.seed, device,
                      progress=False)[0]


def class_rows(samples_by_setting):
  """Class k's row: PICTURE_COLUMNS samples of class k at each setting, left to right."""
  rows = []
  for k in range(10):
    row = []
    for samples in samples_by_setting:
      row += [samples[i] for i in range(k, len(samples), 10)][:PICTURE_COLUMNS]
    rows.append(row)
  return rows_picture(rows)


def inpainting(config, model, device, images, labels, space, **repaint):
  """Agreement of the digit classifier with the originals' labels on one completion of each
  image (MASK missing; a conditional model completes with its null label)."""
  config = config.copy_and_resolve_references()
  config.sampling.class_label = 'null' if config.model.class_conditional else 'all'
  mask = parse_mask(MASK, images.shape[-2], images.shape[-1])
  draw = data_sampler(config, get_sde(config), model, device, **repaint)
  observed = Observation(get_data_scaler(config)(images).to(device), mask.to(device))
  x, _ = draw(len(images), batch_generator(config.seed, 0, device), False, 0, observed)
  return judge(config, x, labels, device, space)['rate'], x


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'bench_conditional'))
  parser.add_argument('--num_samples', type=int, default=500)
  parser.add_argument('--num_images', type=int, default=300)
  args = parser.parse_args()
  device = get_device('auto')
  requested = torch.arange(args.num_samples) % 10
  report = {'device': str(device), 'threads': torch.get_num_threads(), 'args': vars(args)}

  cond_dir = os.path.join(args.workdir, 'vp_digits_cond')
  config, model = trained(cond_config, cond_dir, device)
  space = get_feature_space(config, device)
  report['classifier_free'], pictures = {}, []
  for w in SCALES:
    samples = guided_samples(config, model, device, args.num_samples, guidance_scale=w)
    report['classifier_free'][w] = judge(config, samples, requested, device, space)
    pictures.append(samples)
    print(f"classifier-free w = {w}: {report['classifier_free'][w]}", flush=True)
  save_image(class_rows(pictures), os.path.join(RESULTS, 'conditional_digits_guidance.png'))

  demo_dir = os.path.join(args.workdir, 'vp_digits')
  demo, demo_model = trained(demo_config, demo_dir, device)
  report['classifier_accuracy'] = train_classifier(demo, demo_dir, progress=False)   # or resumes
  report['classifier'], pictures = {}, []
  for c in CLASSIFIER_SCALES:
    samples = guided_samples(demo, demo_model, device, args.num_samples, demo_dir,
                             classifier_scale=c)
    report['classifier'][c] = judge(demo, samples, requested, device, space)
    pictures.append(samples)
    print(f"classifier guidance c = {c}: {report['classifier'][c]}", flush=True)
  save_image(class_rows(pictures), os.path.join(RESULTS, 'conditional_digits_classifier.png'))

  test = get_eval_dataset(demo, 'test')
  n = min(args.num_images, len(test))
  images = torch.stack([test[i][0] for i in range(n)])
  labels = torch.tensor([int(test[i][1]) for i in range(n)])
  report['inpainting'] = {}
  for name, (cfg, net) in {'vp_digits': (demo, demo_model),
                           'vp_digits_cond': (config, model)}.items():
    plain, x = inpainting(cfg, net, device, images, labels, space)
    resampled, y = inpainting(cfg, net, device, images, labels, space, **REPAINT)
    report['inpainting'][name] = {'replacement': plain, 'repaint': resampled}
    print(f"inpainting {name}: {report['inpainting'][name]}", flush=True)
  mask = parse_mask(MASK, 8, 8)
  rows = [[images[i] * mask + 0.5 * (1 - mask), x[i], y[i], images[i]] for i in range(10)]
  save_image(rows_picture(rows), os.path.join(RESULTS, 'conditional_digits_inpainting.png'))
  report['inpainting']['masked inputs'] = judge(demo, images * mask + 0.5 * (1 - mask), labels,
                                                device, space)['rate']

  cell = lambda r: f"{r['rate']:.3f} | {r['probability']:.3f} | {r['fd']:.2f}"
  lines = ['| guidance | scale | class named | p(requested) | digit FD |', '|---|---|---|---|---|']
  lines += [f"| classifier-free (vp_digits_cond) | w = {w:g} | {cell(r)} |"
            for w, r in report['classifier_free'].items()]
  lines += [f"| classifier (vp_digits + classifier) | c = {c:g} | {cell(r)} |"
            for c, r in report['classifier'].items()]
  accuracy = ', '.join(f"t = {t:g}: {a:.2f}" for t, a in report['classifier_accuracy'].items())
  inpaint = ['| model | replacement | RePaint (resample 5, jump 10) |', '|---|---|---|']
  inpaint += [f"| {name} | {r['replacement']:.3f} | {r['repaint']:.3f} |"
              for name, r in report['inpainting'].items() if name != 'masked inputs']
  md = (f"# Conditional generation on digits\n\n`benchmarks/conditional_digits.py --num_samples "
        f"{args.num_samples} --num_images {n}` on {device} ({torch.get_num_threads()} threads). "
        f"{args.num_samples} samples, class i mod 10 requested of sample i, the config's sampler "
        f"(100 reverse-diffusion steps); the digit classifier's rate of naming the requested "
        f"class (chance 0.1) and mean probability of it, and the digit Frechet distance to the "
        f"train split:\n\n" + '\n'.join(lines) +
        f"\n\nThe time-dependent classifier's test accuracy: {accuracy}.\n\n"
        f"Inpainting {n} test digits with the {MASK} half missing: the digit classifier agrees "
        f"with the original label on one completion each (on the masked inputs, grey where "
        f"missing: {report['inpainting']['masked inputs']:.3f}):\n\n" + '\n'.join(inpaint) + '\n')
  print(md)
  write_results('conditional_digits', report, md)


if __name__ == '__main__':
  main()
