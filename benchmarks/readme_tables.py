"""The documentation's Results tables are the benchmarks' own: each block between
`<!-- results: NAME.md -->` and `<!-- /results -->` in docs/results.md is the first section (the
lines between the `# ` title and the first `## ` heading) of benchmarks/results/NAME.md. A
block on another page (README.md, docs/*.md) is kept current the same way.

  .venv/bin/python benchmarks/readme_tables.py           # paste the current results in
  .venv/bin/python benchmarks/readme_tables.py --check   # exit 1 where a page differs
  .venv/bin/python benchmarks/readme_tables.py --only flow_digits.md   # one benchmark's

tests/test_benchmarks.py checks that docs/results.md holds these sections and that every
script's --quick run writes tables of the same structure (header row and row names).
"""
import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_PAGE = os.path.join(ROOT, 'docs', 'results.md')
RESULTS = os.path.join(ROOT, 'benchmarks', 'results')
BLOCK = re.compile(r'(<!-- results: (\S+\.md) -->\n)(.*?)(<!-- /results -->)', re.S)


def first_section(markdown):
  """The lines after the `# ` title up to the first `## ` heading, stripped."""
  lines = markdown.splitlines()
  if lines and lines[0].startswith('# '):
    lines = lines[1:]
  end = next((i for i, line in enumerate(lines) if line.startswith('## ')), len(lines))
  return '\n'.join(lines[:end]).strip()


def table_rows(section):
  """[(header cells, [cells of each row])] of each Markdown table in `section`."""
  tables, rows = [], None
  for line in section.splitlines() + ['']:
    if line.startswith('|'):
      cells = [c.strip() for c in line.strip().strip('|').split('|')]
      if rows is None:
        rows = [cells]
      elif not set(''.join(cells)) <= set('-: '):    # not the |---| separator
        rows.append(cells)
    elif rows is not None:
      tables.append((rows[0], rows[1:]))
      rows = None
  return tables


def table_shapes(section):
  """[(header cells, first cells of the rows)] of each Markdown table in `section`."""
  return [(header, [row[0] for row in rows]) for header, rows in table_rows(section)]


def pages():
  """README.md and docs/*.md: the pages a block may stand on."""
  docs = os.path.join(ROOT, 'docs')
  return [os.path.join(ROOT, 'README.md')] + sorted(
      os.path.join(docs, name) for name in os.listdir(docs) if name.endswith('.md'))


def readme_blocks(page=RESULTS_PAGE):
  """{results file name: the page's block for it} (docs/results.md unless told)."""
  with open(page) as f:
    return {m.group(2): m.group(3).strip() for m in BLOCK.finditer(f.read())}


def section_of(name, results=RESULTS):
  with open(os.path.join(results, name)) as f:
    return first_section(f.read())


def update(page=RESULTS_PAGE, results=RESULTS, only=None):
  """Paste each block's results section (of the results files named in `only`, default all)
  into the page; returns the names changed."""
  with open(page) as f:
    text = f.read()
  changed = []

  def paste(m):
    if only is not None and m.group(2) not in only:
      return m.group(0)
    section = section_of(m.group(2), results)
    if section != m.group(3).strip():
      changed.append(m.group(2))
    return f'{m.group(1)}{section}\n{m.group(4)}'

  text = BLOCK.sub(paste, text)
  if changed:
    with open(page, 'w') as f:
      f.write(text)
  return changed


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--check', action='store_true', help='only say which blocks differ')
  parser.add_argument('--only', nargs='+', metavar='NAME.md',
                      help='paste only these results files (a benchmark rerun alone)')
  args = parser.parse_args()
  if args.check:
    stale = [f'{os.path.relpath(page, ROOT)} differs from benchmarks/results/{n}'
             for page in pages() for n, block in readme_blocks(page).items()
             if block != section_of(n)]
    print('\n'.join(stale) or 'current')
    sys.exit(1 if stale else 0)
  updated = [f'updated {n} in {os.path.relpath(page, ROOT)}' for page in pages()
             for n in update(page, only=args.only)]
  print('\n'.join(updated) or 'already current')


if __name__ == '__main__':
  main()
