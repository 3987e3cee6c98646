#!/usr/bin/env python
"""summary.csv and summary.md of finished runs: per-group CIs and paired differences with CE.

  python scripts/summarize.py runs/strength                 # writes runs/strength/summary.{csv,md}
  python scripts/summarize.py runs/a runs/b --out reports/ab

Arguments are workdirs or directories of workdirs. Runs are grouped by their whole config except
the seed, and each group is paired with CE of the same experiment (`ls_jax.experiments.runs`, the
loader, row builder and writer of every report); nothing else is pooled. The markdown is also
printed.
"""
import argparse
import pathlib
import shlex
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from ls_jax.experiments import runs  # pylint: disable=g-import-not-at-top


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("paths", nargs="+", help="workdirs, or directories holding workdirs")
  parser.add_argument("--out", help="where summary.csv and summary.md go (default: the first "
                      "directory of workdirs, or the first workdir's parent)")
  args = parser.parse_args(argv)
  try:
    loaded = runs.load(args.paths)
    rows = runs.summarize(loaded)
  except ValueError as e:
    print(f"summarize.py: error: {e}", file=sys.stderr)
    return 2
  first = pathlib.Path(args.paths[0])
  out = pathlib.Path(args.out) if args.out else (
      first.parent if (first / "results.json").exists() else first)
  sections = [s for s in (runs.missing_baselines(rows), runs.markdown(rows)) if s]
  command = "python scripts/summarize.py " + shlex.join(sys.argv[1:] if argv is None else argv)
  runs.write(runs.Report(rows, sections, {}, loaded), out, "Summary", command)
  print("\n\n".join(sections))
  print(f"wrote {out / 'summary.csv'} and {out / 'summary.md'} ({len(loaded)} runs)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
