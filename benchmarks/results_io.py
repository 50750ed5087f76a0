"""Where a benchmark's results go: benchmarks/results/<name>.json and <name>.md, each written
atomically (a stopped run never leaves half a table) by utils.atomic.write_report, as
evaluation's reports are."""
import json
import os

from utils.atomic import atomic_write, write_report

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')


def results_dir(quick=False):
  """Where a benchmark writes by default: benchmarks/results, and a --quick run (a check of the
  pipeline, whose numbers mean little) under benchmarks/results/quick, never over the real ones."""
  return os.path.join(RESULTS, 'quick') if quick else RESULTS


def write_results(name, report, markdown, out_dir=RESULTS):
  """Write `report` (JSON-serialisable) and `markdown` to <out_dir>/<name>.{json,md}; returns
  the path without extension."""
  out = os.path.join(out_dir, name)
  write_report(out, report, markdown)
  return out


def partial_row(path, settings, empty=None):
  """(row, save): the row a stopped run of the same `settings` kept at `path` (else a copy of
  `empty`, default {}), and save() writing it back atomically, so a benchmark continues where
  it left off. Fill the returned dict in place: save() writes that object."""
  row = dict(empty or {})
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    if saved.get('settings') == settings:
      row = saved['row']
  save = lambda: atomic_write(path, lambda f: f.write(
      json.dumps({'settings': settings, 'row': row}).encode()))
  return row, save
