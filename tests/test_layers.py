"""The library never reads a config file or a run directory: its packages import nothing from
the application layer (pipeline/, configs/, run.py), sde_lib/ and samplers/ nothing from
configs/, data/, training/ or evaluation/ either, and no two packages import each other
(read from the source with ast, so an import inside a function counts too)."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('utils', 'sde_lib', 'models', 'samplers', 'restoration', 'data', 'evaluation',
            'training', 'configs', 'pipeline')
LIBRARY = ('sde_lib', 'models', 'samplers', 'restoration', 'evaluation', 'training')
APPLICATION = ('pipeline', 'configs', 'run')
# The two promised by issue 24: processes and samplers work on a plain score_fn.
CORE_FORBIDDEN = ('configs', 'data', 'training', 'evaluation', 'pipeline', 'run')
# Reading a checkpoint directory is the one thing models/ offers the application layer
# (models.restore_for_inference, DESIGN.md); models/convert.py is its command line.
APPLICATION_MODULES = {'models/restore.py', 'models/convert.py'}


def imports(package):
  """{(module file, imported top-level package)} of a package's files, absolute imports."""
  found = set()
  for name in sorted(os.listdir(os.path.join(ROOT, package))):
    if not name.endswith('.py'):
      continue
    path = os.path.join(package, name)
    with open(os.path.join(ROOT, path)) as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        modules = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        modules = [node.module]
      else:
        continue
      found |= {(path, m.split('.')[0]) for m in modules if m.split('.')[0] != package}
  return found


@pytest.mark.parametrize('package', ['sde_lib', 'samplers'])
def test_processes_and_samplers_import_no_application_data_training_or_evaluation(package):
  bad = sorted((path, top) for path, top in imports(package) if top in CORE_FORBIDDEN)
  assert not bad, bad


@pytest.mark.parametrize('package', LIBRARY)
def test_the_library_imports_no_application_layer(package):
  bad = sorted((path, top) for path, top in imports(package)
               if top in APPLICATION and path not in APPLICATION_MODULES)
  assert not bad, bad


def test_no_two_packages_import_each_other():
  graph = {p: {top for path, top in imports(p) if top in PACKAGES
               and path not in APPLICATION_MODULES} for p in PACKAGES}
  cycles = sorted((a, b) for a in PACKAGES for b in graph[a] if a < b and a in graph[b])
  assert not cycles, cycles
