#!/usr/bin/env python
"""summary.csv and summary.md of finished runs: per-group CIs and paired differences with CE.

  python scripts/summarize.py runs/strength                 # writes runs/strength/summary.{csv,md}
  python scripts/summarize.py runs/a runs/b --out reports/ab

Arguments are workdirs or directories of workdirs. Runs are grouped by their whole config except
the seed (`ls_jax.experiments.study`); nothing else is pooled. The markdown is also printed.
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from ls_jax.experiments import study  # pylint: disable=g-import-not-at-top


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("paths", nargs="+", help="workdirs, or directories holding workdirs")
  parser.add_argument("--out", help="where summary.csv and summary.md go (default: the first "
                      "directory of workdirs, or the first workdir's parent)")
  args = parser.parse_args(argv)
  workdirs = study.find_workdirs(args.paths)
  if not workdirs:
    print(f"summarize.py: error: no finished run (results.json) under {' '.join(args.paths)}",
          file=sys.stderr)
    return 2
  try:
    rows = study.summarize([study.load_run(w) for w in workdirs])
  except ValueError as e:
    print(f"summarize.py: error: {e}", file=sys.stderr)
    return 2
  first = pathlib.Path(args.paths[0])
  out = pathlib.Path(args.out) if args.out else (
      first.parent if (first / "results.json").exists() else first)
  out.mkdir(parents=True, exist_ok=True)
  study.write_csv(rows, out / "summary.csv")
  text = study.markdown(rows)
  (out / "summary.md").write_text(f"{len(workdirs)} runs.\n\n{text}")
  print(text)
  print(f"wrote {out / 'summary.csv'} and {out / 'summary.md'} ({len(workdirs)} runs)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
