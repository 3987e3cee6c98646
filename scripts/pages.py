#!/usr/bin/env python
"""Rewrites the generated tables and numbers of README.md and docs/**/*.md from their data.

  python scripts/pages.py            # rewrite, in place, every page that is out of date
  python scripts/pages.py --check    # change nothing; exit 1 and name the pages out of date

Each `<!-- table: docs/results/NAME/summary.csv ... -->` ... `<!-- /table -->` block and each
`<!-- value: ... -->` ... `<!-- /value -->` number is rendered again from the committed csv; the
directive syntax is in the docstring of `ls_jax/experiments/pages.py`. Run it after a report
rewrites a summary.csv.
"""
import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ls_jax.experiments import pages  # pylint: disable=g-import-not-at-top


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--check", action="store_true",
                      help="change nothing; exit 1 if a page is out of date with its data")
  parser.add_argument("paths", nargs="*", type=pathlib.Path,
                      help="pages to render (default: README.md and docs/**/*.md)")
  args = parser.parse_args(argv)
  paths = [p.resolve() for p in args.paths] or None
  try:
    changed = pages.update_pages(ROOT, paths, write=not args.check)
  except pages.PagesError as e:
    print(f"pages.py: error: {e}", file=sys.stderr)
    return 2
  for path in changed:
    verb = "out of date" if args.check else "rewritten"
    print(f"{path.relative_to(ROOT)}: {verb}")
  return 1 if changed and args.check else 0


if __name__ == "__main__":
  sys.exit(main())
