"""The README's Results tables are the benchmarks' own: each block between
`<!-- results: NAME.md -->` and `<!-- /results -->` in README.md is the first section (the
lines between the `# ` title and the first `## ` heading) of benchmarks/results/NAME.md.

  .venv/bin/python benchmarks/readme_tables.py           # paste the current results in
  .venv/bin/python benchmarks/readme_tables.py --check   # exit 1 where the README differs

tests/test_benchmarks.py checks that the README holds these sections and that every script's
--quick run writes tables of the same structure (header row and row names).
"""
import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, 'README.md')
RESULTS = os.path.join(ROOT, 'benchmarks', 'results')
BLOCK = re.compile(r'(<!-- results: (\S+\.md) -->\n)(.*?)(<!-- /results -->)', re.S)


def first_section(markdown):
  """The lines after the `# ` title up to the first `## ` heading, stripped."""
  lines = markdown.splitlines()
  if lines and lines[0].startswith('# '):
    lines = lines[1:]
  end = next((i for i, line in enumerate(lines) if line.startswith('## ')), len(lines))
  return '\n'.join(lines[:end]).strip()


def table_shapes(section):
  """[(header cells, first cells of the rows)] of each Markdown table in `section`."""
  shapes, rows = [], None
  for line in section.splitlines() + ['']:
    if line.startswith('|'):
      cells = [c.strip() for c in line.strip().strip('|').split('|')]
      if rows is None:
        rows = [cells]
      elif not set(''.join(cells)) <= set('-: '):    # not the |---| separator
        rows.append(cells)
    elif rows is not None:
      shapes.append((rows[0], [r[0] for r in rows[1:]]))
      rows = None
  return shapes


def readme_blocks(readme=README):
  """{results file name: the README's block for it}."""
  with open(readme) as f:
    return {m.group(2): m.group(3).strip() for m in BLOCK.finditer(f.read())}


def section_of(name, results=RESULTS):
  with open(os.path.join(results, name)) as f:
    return first_section(f.read())


def update(readme=README, results=RESULTS):
  """Paste each block's results section into the README; returns the names changed."""
  with open(readme) as f:
    text = f.read()
  changed = []

  def paste(m):
    section = section_of(m.group(2), results)
    if section != m.group(3).strip():
      changed.append(m.group(2))
    return f'{m.group(1)}{section}\n{m.group(4)}'

  text = BLOCK.sub(paste, text)
  with open(readme, 'w') as f:
    f.write(text)
  return changed


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--check', action='store_true', help='only say which blocks differ')
  args = parser.parse_args()
  if args.check:
    stale = [n for n, block in readme_blocks().items() if block != section_of(n)]
    print('\n'.join(f'README differs from benchmarks/results/{n}' for n in stale) or 'current')
    sys.exit(1 if stale else 0)
  print('\n'.join(f'updated {n}' for n in update()) or 'README already current')


if __name__ == '__main__':
  main()
