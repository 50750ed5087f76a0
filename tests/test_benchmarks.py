"""The README's Results tables are the ones the benchmarks wrote, and each benchmark's --quick
run still writes tables of that structure (the header row and the row names of every table the
README shows; benchmarks/readme_tables.py)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.readme_tables import (  # noqa: E402
    first_section, readme_blocks, section_of, table_shapes)

# script -> the results files whose first sections the README shows
SCRIPTS = {
    'digits.py': ['digits.md'],
    'likelihood_accuracy.py': ['likelihood_accuracy.md'],
    'sampler_quality.py': ['sampler_quality.md'],
    'throughput.py': ['throughput_cpu.md'],
}


def test_readme_shows_the_results_files_as_written():
  """Every README block is its results file's first section, and every script's files have one."""
  blocks = readme_blocks()
  assert sorted(blocks) == sorted(name for names in SCRIPTS.values() for name in names)
  for name, block in blocks.items():
    assert block == section_of(name), f"README's {name} differs: run benchmarks/readme_tables.py"
    assert table_shapes(block), f"{name}'s first section has no table"


def test_table_shapes_reads_headers_and_row_names():
  section = first_section("# t\n\ntext\n\n| a | b |\n|---|:-:|\n| x | 1 |\n| y | 2 |\n\n"
                          "| c |\n|---|\n| z |\n## rest\n| no | |\n")
  assert table_shapes(section) == [(['a', 'b'], ['x', 'y']), (['c'], ['z'])]


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
    assert table_shapes(section_of(name, quick_results[script])) == table_shapes(blocks[name])
