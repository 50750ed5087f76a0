"""The Results tables (docs/results.md) are the ones the benchmarks wrote, and each benchmark's
--quick run still writes tables of that structure (the header row and the row names of every
table docs/results.md shows; benchmarks/readme_tables.py) holding finite numbers in their
quantities' ranges."""
import math
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.readme_tables import (  # noqa: E402
    first_section, pages, readme_blocks, section_of, table_rows, table_shapes)

# script -> the results files whose first sections docs/results.md shows
SCRIPTS = {
    'backbones_digits.py': ['backbones_digits.md'],
    'consistency_digits.py': ['consistency_digits.md'],
    'consistency_mixtures.py': ['consistency_mixtures.md'],
    'digits.py': ['digits.md'],
    'edm_digits.py': ['edm_digits.md'],
    'flow_digits.py': ['flow_digits.md'],
    'flow_mixtures.py': ['flow_mixtures.md'],
    'likelihood_accuracy.py': ['likelihood_accuracy.md'],
    'restoration_quality.py': ['restoration.md'],
    'sampler_quality.py': ['sampler_quality.md'],
    'throughput.py': ['throughput_cpu.md'],
}


# The range of each number in a results table, by file, then by table (a list, in order; a
# dict serves every table) and a piece of the column header; other columns need finite
# numbers only. --quick runs use stand-in models (digits' FID is ~990 there), so these are the
# quantities' own ranges, not the README's values: a distance, an error size, a count or a
# rate is >= 0, a classifier's confidence a probability.
NONNEGATIVE, PROBABILITY = (0.0, math.inf), (0.0, 1.0)
RANGES = {
    'digits.md': [{'evaluations': NONNEGATIVE}, {'evaluations': PROBABILITY},
                  {'bits/dim': NONNEGATIVE, 'images': NONNEGATIVE, 'evaluations': NONNEGATIVE}],
    'likelihood_accuracy.md': [{'spread': NONNEGATIVE, 'evaluations': NONNEGATIVE},
                               {'s.e.': NONNEGATIVE, 'images': NONNEGATIVE,
                                'evaluations': NONNEGATIVE}],
    'sampler_quality.md': {'sliced W2': NONNEGATIVE, 'flow error': NONNEGATIVE},
    'throughput_cpu.md': [{'parameters': NONNEGATIVE, '/s': NONNEGATIVE, 'ms': NONNEGATIVE}, {}],
    'edm_digits.md': {' @ ': NONNEGATIVE, 'bits/dim': NONNEGATIVE, 'training': NONNEGATIVE},
    'consistency_mixtures.md': {'flow error': NONNEGATIVE, 'CD steps': NONNEGATIVE},
    'consistency_digits.md': {'FD': NONNEGATIVE, 'training': NONNEGATIVE},
}
NUMBER = re.compile(r'[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?', re.I)


def bad_numbers(name, section, like):
  """The cells of `section`'s tables (results file `name`) that are neither '-', nor the text
  `like` (the README's section of the same file) has there, nor number-led with every number
  finite and the first in its column's RANGES: (table, row, column, cell) of each."""
  bad, ranges = [], RANGES.get(name, {})
  for k, ((header, rows), (_, like_rows)) in enumerate(zip(table_rows(section), table_rows(like))):
    columns = ranges[k] if isinstance(ranges, list) else ranges
    for row, like_row in zip(rows, like_rows):
      for column, cell, like_cell in zip(header[1:], row[1:], like_row[1:]):
        if cell == '-' or (cell == like_cell and not NUMBER.match(cell)):
          continue
        numbers = [float(n) for n in NUMBER.findall(cell)]
        lo, hi = next((r for key, r in columns.items() if key in column), (-math.inf, math.inf))
        if (not NUMBER.match(cell) or re.search('nan|inf', cell, re.I)
                or not all(math.isfinite(n) for n in numbers) or not lo <= numbers[0] <= hi):
          bad.append((k, row[0], column, cell))
  return bad


def test_readme_shows_the_results_files_as_written():
  """Every block of docs/results.md is its results file's first section, every script's files
  have one there, and a block on any other page (README.md, docs/*.md) is current too."""
  blocks = readme_blocks()
  assert sorted(blocks) == sorted(name for names in SCRIPTS.values() for name in names)
  for name, block in blocks.items():
    assert block == section_of(name), \
        f"docs/results.md's {name} differs: run benchmarks/readme_tables.py"
    assert table_shapes(block), f"{name}'s first section has no table"
  for page in pages():
    for name, block in readme_blocks(page).items():
      assert block == section_of(name), f"{page}'s {name} differs: run benchmarks/readme_tables.py"


def test_table_shapes_reads_headers_and_row_names():
  section = first_section("# t\n\ntext\n\n| a | b |\n|---|:-:|\n| x | 1 |\n| y | 2 |\n\n"
                          "| c |\n|---|\n| z |\n## rest\n| no | |\n")
  assert table_shapes(section) == [(['a', 'b'], ['x', 'y']), (['c'], ['z'])]


def test_the_readme_numbers_are_in_range_and_bad_ones_are_found():
  """The README's own tables pass bad_numbers (so RANGES fits them); NaN, inf, a number out of
  its range or text where a number stood are each found."""
  for name, block in readme_blocks().items():
    assert bad_numbers(name, block, block) == [], name
  like = ("| sampler | sliced W2, 10 | NLL gap, 10 | note |\n|---|---|---|---|\n"
          "| a | 0.1 | -2 | x |\n")
  for cells, bad_column in [("0.2 | -3.5 | x", None), ("- | 1e-3 | x", None),
                            ("nan | 1 | x", 'sliced W2, 10'), ("0.1 | inf | x", 'NLL gap, 10'),
                            ("-0.1 | 1 | x", 'sliced W2, 10'),
                            ("0.1 +- nan | 1 | x", 'sliced W2, 10'),
                            ("0.1 | 1 | y", 'note')]:
    found = bad_numbers('sampler_quality.md', like.replace('0.1 | -2 | x', cells), like)
    assert [column for _, _, column, _ in found] == ([bad_column] if bad_column else []), cells


@pytest.fixture(scope='module')
def quick_results(tmp_path_factory):
  """Every script's --quick run, side by side (one thread each: 2 cores run them in about half
  the time of one after another); {script: its output directory}."""
  out = tmp_path_factory.mktemp('quick')
  env = {**os.environ, 'CUDA_VISIBLE_DEVICES': '', 'OMP_NUM_THREADS': '1'}
  runs = {script: subprocess.Popen(
      [sys.executable, os.path.join('benchmarks', script), '--quick', '--out', str(out / script)],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for script in SCRIPTS}
  failed = {}
  for script, run in runs.items():
    output = run.communicate(timeout=600)[0]
    if run.returncode:
      failed[script] = output[-3000:]
  assert not failed, failed
  return {script: out / script for script in SCRIPTS}


@pytest.mark.parametrize('script', sorted(SCRIPTS))
def test_quick_run_writes_the_readme_tables(script, quick_results):
  blocks = readme_blocks()
  for name in SCRIPTS[script]:
    quick = section_of(name, quick_results[script])
    assert table_shapes(quick) == table_shapes(blocks[name])
    assert bad_numbers(name, quick, blocks[name]) == [], name
