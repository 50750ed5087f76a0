"""Evaluate a checkpoint: sample quality (FID with KID, precision / recall and the Inception
Score; FD-DINOv2 on natural images), bits/dim by the probability-flow ODE, the DDPM
variational bound, score evaluations and wall time per sample; one row per sampler.

Samplers compared in one call are `config.eval.samplers`, each a string of comma-separated
`field=value` overrides of `config.sampling`, e.g. "method=ode" or
"method=pc,predictor=euler_maruyama,corrector=none,steps=100" (values take the type of the
field they replace); an empty tuple evaluates `config.sampling` as it is. Each sampler writes
`<workdir>/eval/<key>/` (pipeline.sampling.samples_key: checkpoint, sampler name, hash of all that
determines the samples): report.json, report.md, samples.npz, grid.png, likelihood.npz
(per-image bits/dim) and shards/, which a rerun with the same key reuses. Every sampler setting
and the FID feature space are checked before anything slow starts.

Under torchrun every process draws its share of the samples' shards and of the likelihoods'
batches (evaluation/shards.py, pipeline/bpd.py); the main process gathers them, computes FID
and writes the reports, which equal one process's. Statistics of the network that samplers or
the dequantizer need are computed once, by the main process, and read by the others.
"""
import os

from pipeline.bpd import split_bpd, split_score_bound, split_vlb
from evaluation.dinov2 import DINOv2Unavailable
from evaluation.feature_metrics import InceptionUnavailable, fid, get_dinov2_space, get_feature_space
from evaluation.shards import generate_shards, save_samples
from models import get_score_fn, parameterization_of, restore_for_inference
from pipeline.sampling import (class_labels, data_sampler, sample_classes, sampler_name,
                               samples_key, variance_inputs)
from pipeline.statistics import network_statistic
from samplers.registry import resolved_sampling
from sde_lib import get_sde
from pipeline.dequantizer import FittedDequantizer, dequantizer_settings, fit_dequantizer
from utils.atomic import save_npz_atomic, write_report
from utils.checkpoint import resolve_checkpoint
from utils.distributed import Distributed, main_first
from utils.errors import ConfigError
from utils.run_lock import RunLock
from utils.workdir import eval_dir, eval_run_dir


def parse_sampler_spec(spec, sampling):
  """A copy of `sampling` with the spec's overrides ('' -> an unchanged copy)."""
  sampling = sampling.copy_and_resolve_references()
  for item in (item for item in spec.split(',') if item.strip()):
    key, sep, value = (part.strip() for part in item.partition('='))
    if not sep or key not in sampling:
      raise ConfigError(f"bad sampler spec {spec!r}: expected field=value pairs with fields of "
                        f"config.sampling ({', '.join(sorted(sampling.keys()))})")
    current = sampling[key]
    if isinstance(current, bool):
      if value.lower() not in ('true', 'false'):
        raise ConfigError(f"bad sampler spec {spec!r}: {key} takes true or false, got {value!r}")
      sampling[key] = value.lower() == 'true'
    else:
      try:
        sampling[key] = type(current)(value)
      except ValueError:
        raise ConfigError(f"bad sampler spec {spec!r}: {key} takes a {type(current).__name__}, "
                          f"got {value!r}") from None
  return sampling


def feature_space(build, config, device, notes):
  """build(config, device), a feature space (or None where it does not apply), or None with a
  note when its network's weights are missing."""
  try:
    return build(config, device)
  except (InceptionUnavailable, DINOv2Unavailable) as err:
    notes.append(str(err))
    return None


def likelihood_numbers(config, model, sde, score_fn, device, notes, checkpoint=None, ddp=None):
  """Sampler-independent numbers: ({'bpd': ..., 'vlb': ..., 'score_bound': ...}, per-image
  arrays), each batch of images with its own generator (pipeline/bpd.py); under torchrun
  (`ddp`) each process computes its share and the main process gets them ({}, {} elsewhere)."""
  numbers, arrays = {}, {}
  e, seed = config.eval, config.seed
  if e.enable_bpd:
    flow = None
    if e.dequantization == 'variational':
      with main_first(ddp):
        flow = variational_dequantizer(config, model, sde, score_fn, device, checkpoint)
      uniform = config.copy_and_resolve_references()
      uniform.eval.dequantization = 'uniform'
      numbers['bpd_uniform'], arrays['bpd_uniform'] = ode_bpd(uniform, score_fn, sde, device, ddp)
    numbers['bpd'], arrays['bpd'] = ode_bpd(config, score_fn, sde, device, ddp, flow)
  if config.eval.enable_vlb:
    if getattr(sde, 'chain_arrays', None) is None:
      notes.append(f"VLB skipped: the DDPM bound needs the VP chain ({config.sde.name} has none)")
    elif config.data.dataset == 'toy2d':
      notes.append("VLB skipped: its discretized decoder needs quantized image data")
    else:
      variance = config.eval.vlb_variance
      with main_first(ddp):
        inputs = variance_inputs(config, sde, model, device, variance, checkpoint)
      numbers['vlb'], arrays['vlb'], arrays['vlb_terms'] = split_vlb(
          config, model, sde, device=device, seed=seed, inputs=inputs, ddp=ddp)
      if numbers['vlb'] is not None:
        numbers['vlb']['variance'] = variance
        numbers['vlb']['variance_description'] = variance_description(config, variance)
        numbers['vlb']['steps'] = config.eval.vlb_steps or sde.N
  if e.enable_score_bound:
    numbers['score_bound'], arrays['score_bound'] = split_score_bound(
        config, score_fn, sde, device=device, seed=seed, ddp=ddp)
  if ddp is not None and not ddp.is_main:
    return {}, {}
  return numbers, arrays


def ode_bpd(config, score_fn, sde, device, ddp=None, flow=None):
  """split_bpd with a 'method' line that says how it was computed."""
  bpd, per_image = split_bpd(config, score_fn, sde, device=device, seed=config.seed, flow=flow,
                             ddp=ddp)
  if bpd is None:
    return None, None
  e = config.eval
  probes = '' if e.hutchinson == 'exact' else f" ({e.n_probes} probe(s))"
  draws = 'one draw' if bpd['draws'] == 1 else f"importance-weighted over {bpd['draws']} draws"
  dequantization = ('continuous data, no dequantization' if bpd['dequantization'] == 'none'
                    else f"{bpd['dequantization']} dequantization, {draws}")
  bpd['method'] = (f"probability-flow ODE, {e.hutchinson} divergence{probes}, "
                   f"eps={e.bpd_eps}; {dequantization}")
  return bpd, per_image


def variational_dequantizer(config, model, sde, score_fn, device, checkpoint):
  """The flow q(u | x) fitted to the checkpoint (pipeline/dequantizer.py), cached beside it
  (pipeline/statistics.py); the network is frozen while it is fitted."""
  model.requires_grad_(False)
  return network_statistic(
      config, 'dequantizer', dequantizer_settings(config),
      lambda progress: fit_dequantizer(config, score_fn, sde, device, progress),
      lambda state: FittedDequantizer.from_state(state, config.data.num_channels, device),
      checkpoint, model).flow


def variance_description(config, variance):
  """The reverse variance a bound used, in words."""
  return {'beta': 'beta (Ho et al. fixedlarge)', 'beta_tilde': 'beta-tilde (Ho et al. fixedsmall)',
          'learned': 'learned (Nichol & Dhariwal 2021)',
          'analytic': f"analytic (Bao et al. 2022; Gamma from {config.sampling.analytic_samples} "
                      "training points per step)"}.get(variance, variance)


def format_number(value, digits=3):
  return '-' if value is None else f'{value:.{digits}f}'


def table(reports):
  """A markdown table, one row per sampler."""
  head = ('| sampler | NFE/sample | s/sample | FID | IS | FD-DINOv2 | bits/dim (ODE) | '
          'bits/dim (VLB) |\n' + '|---' * 8 + '|')
  rows = []
  for r in reports:
    f, d = r.get('fid', {}), r.get('fd_dinov2', {})
    rows.append(f"| {r['sampler']} | {format_number(r['nfe_per_sample'], 1)} | "
                f"{format_number(r['seconds_per_sample'], 4)} | {format_number(f.get('fid'))} | "
                f"{format_number(f.get('inception_score'), 2)} | {format_number(d.get('fid'), 2)} | "
                f"{format_number(r.get('bpd', {}).get('mean'))} | "
                f"{format_number(r.get('vlb', {}).get('mean'))} |")
  return '\n'.join([head] + rows)


def markdown_report(report):
  lines = [f"# Evaluation of {report['checkpoint']} (step {report['step']}), sampler {report['sampler']}",
           '', table([report]), '']
  if 'fid' in report:
    f = report['fid']
    mode = f" (clean-fid mode {f['fid_mode']})" if f.get('fid_mode') else ''
    lines.append(f"FID: Frechet distance in the {f['feature_space']} feature space{mode} to "
                 f"{f['reference']}, {f['num_samples']} samples.")
    if 'train_test_floor' in f:
      lines.append(f"Floor (train vs test split, same features): {f['train_test_floor']:.3f}.")
    if 'fid_at_floor_size' in f:
      lines.append(f"The first {f['floor_size']} samples (the test split's size, for a like-for-like "
                   f"comparison with the floor): {f['fid_at_floor_size']:.3f}.")
    if 'kid' in f:
      lines.append(f"KID: {f['kid']:.5f}; precision {f['precision']:.3f}, recall {f['recall']:.3f} "
                   f"(k = 3 nearest neighbours, {f['precision_recall_size']} samples against as "
                   f"many reference points).")
    if 'inception_score' in f:
      lines.append(f"Inception Score: {f['inception_score']:.3f} +- {f['inception_score_std']:.3f} "
                   f"(mean and std over {f['inception_score_splits']} splits; softmax over the "
                   f"{f['num_classes']} classes of the {f['feature_space']} network).")
    if 'classifier_test_accuracy' in f:
      lines.append(f"Feature classifier test accuracy: {f['classifier_test_accuracy']:.3f}.")
  if 'fd_dinov2' in report:
    d = report['fd_dinov2']
    lines.append(f"FD-DINOv2: {d['fid']:.3f}, Frechet distance in DINOv2 ViT-L/14 features (class "
                 f"token, 224x224 bicubic) to {d['reference']}, {d['num_samples']} samples.")
    if 'kid' in d:
      lines.append(f"In DINOv2 features, KID: {d['kid']:.5f}; precision {d['precision']:.3f}, "
                   f"recall {d['recall']:.3f} ({d['precision_recall_size']} samples).")
  if 'bpd' in report:
    r = report['bpd']
    lines.append(f"bits/dim (ODE): {r['mean']:.4f} +- {r['stderr']:.4f} over {r['num_images']} "
                 f"test images ({r['method']}).")
  if 'bpd' in report and 'density' in report['bpd']:
    r = report['bpd']['density']
    lines.append(f"  -log p(y) alone, of the dequantized points: {r['mean']:.4f} +- "
                 f"{r['stderr']:.4f} bits/dim.")
  if 'bpd_uniform' in report:
    r = report['bpd_uniform']
    lines.append(f"bits/dim (ODE, uniform dequantization): {r['mean']:.4f} +- {r['stderr']:.4f} "
                 f"over {r['num_images']} test images ({r['method']}).")
  if 'score_bound' in report:
    r = report['score_bound']
    lines.append(f"bits/dim (score-matching bound, Song et al. 2021b): {r['mean']:.4f} +- "
                 f"{r['stderr']:.4f} over {r['num_images']} test images ({r['times']} draws of "
                 f"(t, z) per image, uniform dequantization, eps={r['eps']}).")
  if 'vlb' in report:
    r = report['vlb']
    lines.append(f"bits/dim (VLB): {r['mean']:.4f} +- {r['stderr']:.4f} over {r['num_images']} "
                 f"test images (reverse variance {r['variance_description']}, {r['steps']}-step chain).")
  lines += [f"Note: {note}" for note in report['notes']]
  return '\n'.join(lines) + '\n'


def evaluate(config, workdir):
  """Run what config.eval enables on the checkpoint (EMA weights) for each sampler; write the
  reports and print the table. Returns the list of reports (dicts; empty under torchrun but on
  the main process)."""
  e = config.eval
  ddp = Distributed(config.device)
  device = ddp.device
  checkpoint = resolve_checkpoint(workdir, e.ckpt)
  model, step, ckpt_name = restore_for_inference(config, workdir, checkpoint, device)
  sde = get_sde(config)
  specs = e.samplers or ('',)
  samplings = [parse_sampler_spec(spec, config.sampling) for spec in specs]
  with ddp.main_first():
    draws = [data_sampler(config, sde, model, device, sampling, checkpoint, workdir)
             for sampling in samplings]
  keys = [samples_key(config, sampling, checkpoint, e.batch_size, device, workdir)
          for sampling in samplings]
  locks = [RunLock(eval_run_dir(workdir, key), 'eval', ddp).acquire()   # one writer per folder
           for key in dict.fromkeys(keys)]
  notes = []
  space = (feature_space(get_feature_space, config, device, notes)
           if e.enable_fid and ddp.is_main else None)
  dinov2 = (feature_space(get_dinov2_space, config, device, notes)
            if e.enable_fd_dinov2 and ddp.is_main else None)
  score_fn = get_score_fn(sde, model, config.training.continuous, parameterization_of(config))
  numbers, arrays = likelihood_numbers(config, model, sde, score_fn, device, notes, checkpoint,
                                       ddp)
  reports = []
  for spec, sampling, draw, key in zip(specs, samplings, draws, keys):
    out_dir = eval_run_dir(workdir, key)
    shards = generate_shards(os.path.join(out_dir, 'shards'), e.num_samples, e.batch_size, draw,
                             seed=config.seed, device=device, progress=ddp.is_main, ddp=ddp)
    if not ddp.is_main:
      continue
    samples, nfe, seconds = shards
    labels = class_labels(config, sampling)
    save_samples(os.path.join(out_dir, 'samples.npz'), os.path.join(out_dir, 'grid.png'), samples,
                 labels=None if labels is None else sample_classes(labels, 0, len(samples)))
    if arrays:
      save_npz_atomic(os.path.join(out_dir, 'likelihood.npz'), **arrays)
    report = {'checkpoint': ckpt_name, 'step': step, 'sampler': sampler_name(sampling),
              'sampler_spec': spec, 'key': key, 'sampling': resolved_sampling(sampling),
              'seed': config.seed, 'batch_size': e.batch_size, 'num_samples': e.num_samples,
              'processes': ddp.world_size, 'nfe_per_sample': nfe, 'seconds_per_sample': seconds,
              **numbers, 'notes': list(notes)}
    if space is not None:
      report['fid'] = fid(config, samples, device, space)
    if dinov2 is not None:
      report['fd_dinov2'] = fid(config, samples, device, dinov2)
    write_report(os.path.join(out_dir, 'report'), report, markdown_report(report))
    reports.append(report)
  if ddp.is_main:
    print(table(reports))
    for note in notes:
      print(f"Note: {note}")
    print(f"reports in {eval_dir(workdir)}")
  for lock in locks:
    lock.release()
  ddp.close()
  return reports
