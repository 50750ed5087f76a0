"""The documentation's own promises: every relative link and image of README.md and docs/*.md
resolves (anchors included), every ```bash / ```python block says whether it runs, and the
runnable ones run.

A block's marker is the line just above its fence:
  <!-- runnable -->          run by this test, with SMALL's overrides appended to each command
                             (a few steps, a tiny network: seconds instead of hours)
  <!-- not run: why -->      the reason (8 GPUs, a published file, the whole suite, ...)
docs/api.md and docs/getting_started.md run their blocks in their own tests (OWN_TESTS).

The runnable commands run in order, page after page, in one scratch folder (`runs/` lands
there), each forked from one process that has imported the framework once (a fresh interpreter
per command would cost its ~4 s of imports each). A run a command names by `--workdir runs/X`
or a Python block by 'runs/X' that no earlier command trained is first trained, tiny, from
configs/X.py. Each Python block runs alone, in a namespace of its own.
"""
import json
import os
import re
import shlex
import subprocess
import sys
import time
import unicodedata

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ['README.md'] + sorted(os.path.join('docs', name) for name in os.listdir(
    os.path.join(ROOT, 'docs')) if name.endswith('.md'))
OWN_TESTS = {'docs/api.md': 'tests/test_api_docs.py',
             'docs/getting_started.md': 'tests/test_getting_started.py'}
FENCE = re.compile(r'^```(\w*)\n(.*?)^```', re.S | re.M)
MARKER = re.compile(r'<!-- (runnable|not run: .+?) -->$')
CODE_LANGUAGES = {'bash', 'sh', 'shell', 'python'}

# What each run.py mode is given on top of the documented command: the same mechanism, with a
# few steps of a tiny network. The last value of a field wins; where the documented value is
# the smaller number it is kept (smaller()).
SMALL = {
    'train': ['--config.device=cpu', '--config.model.nf=8', '--config.model.num_groups=4',
              '--config.model.hidden=16', '--config.training.batch_size=16',
              '--config.training.n_iters=2', '--config.training.snapshot_sampling=False',
              '--config.training.bound_images=2', '--config.training.bound_times=1',
              '--config.training.posthoc_snapshot_freq=1', '--config.reflow.num_pairs=32'],
    'sample': ['--config.sampling.steps=4', '--config.sampling.num_samples=4',
               '--config.sampling.batch_size=4', '--config.sampling.rtol=1e-2',
               '--config.sampling.atol=1e-2', '--config.sampling.ems_samples=8',
               '--config.sampling.ems_grid=20', '--config.sampling.analytic_samples=4'],
    'eval': ['--config.sampling.steps=4', '--config.sampling.rtol=1e-2',
             '--config.sampling.atol=1e-2', '--config.eval.num_samples=4',
             '--config.eval.batch_size=4', '--config.eval.bpd_num_images=2',
             '--config.eval.vlb_num_images=2', '--config.eval.vlb_steps=10',
             '--config.eval.bpd_rtol=1e-2', '--config.eval.bpd_atol=1e-2', '--config.eval.enable_fd_dinov2=False', '--config.eval.score_bound_times=2',
             '--config.eval.dequantizer_steps=2', '--config.eval.dequantizer_batch_size=4'],
    'train_classifier': ['--config.classifier.n_iters=2', '--config.classifier.batch_size=16'],
    'inpaint': ['--config.sampling.steps=10', '--config.inpaint.num_completions=2'],
    'colorize': ['--config.sampling.steps=10', '--config.inpaint.num_completions=2'],
    'restore': ['--config.restore.num_images=2', '--config.restore.batch_size=2',
                '--config.restore.steps=4'],
    'posthoc_ema': [],
    'convert': [],
}
# The published CIFAR-10 checkpoints stand in as score_sde_pytorch's own tiny ones
# (tests/fixtures/score_sde), with the sizes they were written at.
FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'score_sde')
PLACEHOLDERS = {'/path/to/checkpoint_8.pth': os.path.join(FIXTURES, 'tiny_vp_ddpmpp_continuous.pth'),
                '/path/to/checkpoint_26.pth': os.path.join(FIXTURES, 'tiny_vp_ddpmpp_continuous.pth'),
                '/path/to/checkpoint_24.pth': os.path.join(FIXTURES, 'tiny_ve_ncsnpp_continuous.pth')}
TINY_CIFAR = ['--config.device=cpu', '--config.model.nf=16', "--config.model.ch_mult=(1,2)",
              '--config.model.num_res_blocks=1', "--config.model.attn_resolutions=(8,)",
              '--config.model.dropout=0.0', '--config.data.image_size=16']


def blocks(page):
  """[(language, marker or None, text, line number)] of the page's fenced blocks."""
  text = open(os.path.join(ROOT, page)).read()
  found = []
  for m in FENCE.finditer(text):
    line = text.count('\n', 0, m.start()) + 1
    above = text[:m.start()].rstrip('\n').rsplit('\n', 1)[-1].strip()
    marker = MARKER.match(above)
    found.append((m.group(1), marker and marker.group(1), m.group(2), line))
  return found


def commands(text):
  """A bash block's commands: continuation lines joined, comments and blank lines dropped."""
  text = text.replace('\\\n', ' ')
  found = []
  for line in text.splitlines():
    argv = shlex.split(line, comments=True)
    while argv and re.match(r'^[A-Z_]+=', argv[0]):   # OMP_NUM_THREADS=1 ...: the test's own
      argv = argv[1:]
    if argv:
      found.append(argv)
  return found


# ---------------------------------------------------------------------------------------------
# Links


def slug(heading):
  """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
  heading = re.sub(r'[`*]', '', heading.strip())
  heading = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading).lower()   # a link: its text
  kept = ''.join(c for c in heading if c in ' -_' or unicodedata.category(c)[0] in 'LN')
  return kept.replace(' ', '-')


def anchors(path):
  text = FENCE.sub('', open(path).read())
  seen, found = {}, set()
  for heading in re.findall(r'^#{1,6} (.+)$', text, re.M):
    base = slug(heading)
    n = seen.get(base, 0)
    seen[base] = n + 1
    found.add(base if n == 0 else f'{base}-{n}')
  return found


def links(page):
  """[(target, line)] of the page's Markdown links and images outside code."""
  text = open(os.path.join(ROOT, page)).read()
  text = FENCE.sub(lambda m: '\n' * m.group().count('\n'), text)
  text = re.sub(r'`[^`\n]*`', '', text)
  found = []
  for m in re.finditer(r'!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)|<img [^>]*src="([^"]+)"', text):
    found.append((m.group(1) or m.group(2), text.count('\n', 0, m.start()) + 1))
  return found


def broken_links(page):
  broken = []
  for target, line in links(page):
    if re.match(r'[a-z]+:', target):      # http(s), mailto
      continue
    path, _, anchor = target.partition('#')
    resolved = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path else \
        os.path.join(ROOT, page)
    if not os.path.exists(resolved):
      broken.append(f'{page}:{line}: {target} (no such file)')
    elif anchor and resolved.endswith('.md') and anchor not in anchors(resolved):
      broken.append(f'{page}:{line}: {target} (no heading #{anchor})')
  return broken


def test_slug_follows_github():
  assert slug('Published checkpoints') == 'published-checkpoints'
  assert slug("Sample quality against k-diffusion and diffusers, on exact scores") == \
      'sample-quality-against-k-diffusion-and-diffusers-on-exact-scores'
  assert slug('`run.py`: the modes (train, sample)') == 'runpy-the-modes-train-sample'
  assert slug('EDM\'s training on digits') == 'edms-training-on-digits'


@pytest.mark.parametrize('page', PAGES)
def test_every_relative_link_and_image_resolves(page):
  assert broken_links(page) == []


def test_a_broken_link_is_found(tmp_path, monkeypatch):
  (tmp_path / 'docs').mkdir()
  (tmp_path / 'docs' / 'a.md').write_text('# A\n\n## Two words\n\n[ok](a.md#two-words) '
                                          '[gone](b.md) [no](#three) ![pic](../x.png)\n'
                                          '```\n[in code](nowhere.md)\n```\n')
  monkeypatch.setattr(sys.modules[__name__], 'ROOT', str(tmp_path))
  assert [b.split(': ')[1] for b in broken_links('docs/a.md')] == [
      'b.md (no such file)', '#three (no heading #three)', '../x.png (no such file)']


# ---------------------------------------------------------------------------------------------
# The README


def test_the_readme_is_short_and_opens_with_the_two_commands():
  """At most 15,000 characters; its first code block is `make demo` and `make test`, the
  fresh-machine commands (.ci/run calls `make test`)."""
  text = open(os.path.join(ROOT, 'README.md')).read()
  assert len(text) <= 15_000, f'README.md has {len(text)} characters'
  _, _, first, _ = blocks('README.md')[0]
  assert [argv[:2] for argv in commands(first)] == [['make', 'demo'], ['make', 'test']]
  assert text.index('make demo') < text.index('\n## ', text.index('## Two commands'))


def cifar10_rows(page):
  return [line for line in open(os.path.join(ROOT, page))
          if re.match(r'\| `\w+_cifar10(_deep)?` \| (Ho|Song) et al\.', line)]


def test_the_readme_and_the_results_page_quote_the_same_paper_numbers():
  """tests/test_configs.py pins the README's rows to the configs' docstrings; docs/results.md
  repeats the table and must not drift from it."""
  assert len(cifar10_rows('README.md')) == 7
  assert cifar10_rows('docs/results.md') == cifar10_rows('README.md')


# ---------------------------------------------------------------------------------------------
# Blocks


@pytest.mark.parametrize('page', PAGES)
def test_every_code_block_says_whether_it_runs(page):
  """A ```bash / ```python block is marked runnable or not run with a reason, unless its page's
  blocks run in a test of their own; a runnable bash block holds only commands this test runs."""
  unmarked = []
  for language, marker, text, line in blocks(page):
    if language not in CODE_LANGUAGES or page in OWN_TESTS:
      continue
    if marker is None:
      unmarked.append(f'{page}:{line}')
    elif marker == 'runnable' and language != 'python':
      for argv in commands(text):
        assert argv[:1] == ['.venv/bin/python'] and (argv[1] in ('run.py', '-m')), \
            f'{page}:{line}: this test runs .venv/bin/python run.py|-m commands, not {argv[:2]}'
  assert unmarked == [], 'mark these blocks <!-- runnable --> or <!-- not run: why -->'


def job(argv):
  """What the scratch folder runs for a documented command: {'script' or 'module', 'argv', 'mode'}."""
  for placeholder, real in PLACEHOLDERS.items():
    argv = [a.replace(placeholder, real) for a in argv]
  if argv[1] == '-m':
    module, args, mode = argv[2], argv[3:], 'convert'
  else:
    module, args = None, argv[2:]
    mode = args[args.index('--mode') + 1] if '--mode' in args else 'train'
  small = list(SMALL[mode])
  if '--config' in args and args[args.index('--config') + 1].endswith('cifar10'):
    small = TINY_CIFAR + [s for s in small if '.model.' not in s]
  return {'module': module, 'script': None if module else os.path.join(ROOT, argv[1]),
          'argv': args + [smaller(s, args) for s in small], 'mode': mode}


def smaller(override, args):
  """SMALL's `--config.a.b=v`, or the documented value of a.b where that is a smaller number
  (a consistency model sampled in 3 steps keeps its 3)."""
  field, value = override.split('=', 1)
  given = [a.split('=', 1)[1] for a in args if a.startswith(field + '=')]
  try:
    if given and float(given[-1]) < float(value):
      return f'{field}={given[-1]}'
  except ValueError:    # not a number: SMALL's value
    pass
  return override


def workdir_of(j):
  args = j['argv']
  return args[args.index('--workdir') + 1] if '--workdir' in args else \
      'runs/' + args[args.index('--config') + 1]


def needed_runs(text, trained):
  """The runs/X a command or Python block reads that no earlier command wrote and configs/X.py
  can train."""
  configs = {name[:-3] for name in os.listdir(os.path.join(ROOT, 'configs'))}
  return [name for name in dict.fromkeys(re.findall(r'runs/(\w+)', text))
          if name not in trained and name in configs]


def plan():
  """[(page, line, job)] of every runnable block, in order, with the tiny trainings they need.
  A Python block runs alone, in a namespace of its own, as a reader would paste it."""
  jobs, trained = [], set()

  def train_first(text, page, line):
    for name in needed_runs(text, trained):
      jobs.append((page, line, job(['.venv/bin/python', 'run.py', '--config', name])))
      trained.add(name)

  for page in PAGES:
    for language, marker, text, line in blocks(page):
      if marker != 'runnable' or page in OWN_TESTS:
        continue
      if language == 'python':
        train_first(text, page, line)
        jobs.append((page, line, {'code': text, 'mode': 'python'}))
        continue
      for argv in commands(text):
        j = job(argv)
        if j['mode'] in ('train', 'convert'):
          trained.add(os.path.basename(workdir_of(j)))
        else:
          train_first(' '.join(argv), page, line)
        jobs.append((page, line, j))
  return jobs


def run_jobs(jobs, cwd):
  """Run in `cwd`, each job forked from this process once the framework is imported; returns
  [{'rc', 'seconds', 'output'}]."""
  os.chdir(cwd)
  sys.path.insert(0, ROOT)
  import runpy
  import torch  # noqa: F401  (the imports every job shares)
  import evaluation, models, samplers, pipeline.train, pipeline.api  # noqa: F401,E401
  results = []
  for j in jobs:
    out = os.path.join(cwd, f'job{len(results)}.log')
    start = time.time()
    pid = os.fork()
    if pid == 0:
      fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
      os.dup2(fd, 1)
      os.dup2(fd, 2)
      code = 0
      try:
        if j['mode'] == 'python':
          exec(compile(j['code'], 'block', 'exec'), {'__name__': '__main__'})
        else:
          sys.argv = [j['script'] or j['module']] + j['argv']
          if j['module']:
            runpy.run_module(j['module'], run_name='__main__', alter_sys=True)
          else:
            runpy.run_path(j['script'], run_name='__main__')
      except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
      except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(code)
    _, status = os.waitpid(pid, 0)
    results.append({'rc': os.waitstatus_to_exitcode(status), 'seconds': time.time() - start,
                    'output': open(out).read()[-3000:]})
  return results


@pytest.fixture(scope='module')
def ran(tmp_path_factory):
  """Every runnable block's jobs, run in one child interpreter: [(page, line, job, result)]."""
  jobs = plan()
  cwd = tmp_path_factory.mktemp('docs')
  (cwd / 'jobs.json').write_text(json.dumps(jobs))
  env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
  done = subprocess.run([sys.executable, __file__, str(cwd)], env=env, capture_output=True,
                        text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  results = json.loads((cwd / 'results.json').read_text())
  return [(page, line, j, r) for (page, line, j), r in zip(jobs, results)]


def test_the_plan_covers_every_runnable_block():
  planned = {(page, line) for page, line, _ in plan()}
  for page in PAGES:
    for language, marker, _, line in blocks(page):
      if marker == 'runnable' and page not in OWN_TESTS:
        assert (page, line) in planned


@pytest.mark.slow
def test_every_runnable_block_runs(ran):
  failed = [f"{page}:{line} {' '.join(j.get('argv', ['python block']))}\n{r['output']}"
            for page, line, j, r in ran if r['rc'] != 0]
  assert not failed, '\n\n'.join(failed)
  assert sum(1 for *_, j, _ in ran if j['mode'] == 'train') >= 3


if __name__ == '__main__':
  folder = sys.argv[1]
  jobs = json.load(open(os.path.join(folder, 'jobs.json')))
  results = run_jobs([j for _, _, j in jobs], folder)
  with open(os.path.join(folder, 'results.json'), 'w') as f:
    json.dump(results, f)
