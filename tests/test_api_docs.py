"""Every ```python block of docs/api.md, run in order in one namespace (as a notebook would)
by the installed framework's python in a scratch folder outside the checkout."""
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.path.join(ROOT, '.venv', 'bin', 'python')
DOC = os.path.join(ROOT, 'docs', 'api.md')


def python_blocks(path):
  return re.findall(r'^```python\n(.*?)^```', open(path).read(), flags=re.S | re.M)


@pytest.mark.slow
def test_every_snippet_of_the_api_doc_runs(tmp_path):
  blocks = python_blocks(DOC)
  assert len(blocks) >= 4
  (tmp_path / 'snippets.py').write_text('\n'.join(blocks))
  env = dict(os.environ, OMP_NUM_THREADS='1')
  result = subprocess.run([PYTHON, 'snippets.py'], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'bits/dim' in result.stdout and 'log-density error' in result.stdout
