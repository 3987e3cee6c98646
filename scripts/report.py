#!/usr/bin/env python
"""One experiment's report: summary.csv, summary.md and PNG figures, from finished runs.

  python scripts/report.py EXPERIMENT --runs DIR [DIR ...] --out docs/results/<name> [options]
  python scripts/report.py strength --runs runs/evidence --out docs/results/strength
  python scripts/report.py methods --runs runs/methods --selection runs/methods_select \\
      --out docs/results/methods
  python scripts/report.py distillation --runs runs/distillation_teachers \\
      runs/distillation_students --out docs/results/distillation
  python scripts/report.py information --runs runs/distillation_teachers --examples 20 --draws 4 \\
      --out /tmp/information
  python scripts/report.py EXPERIMENT --help        # its options

EXPERIMENT is a key of `ls_jax.experiments.reports.REPORTS`. --runs takes workdirs or directories
of workdirs; each report picks the runs it needs (strength, confidence, calibration and selective
read the shared runs/evidence). Reading, grouping, pairing and writing are
`ls_jax.experiments.runs`'s, the same for every experiment.
"""
import argparse
import pathlib
import shlex
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # configs.sweeps, ls_jax.
from ls_jax.experiments import reports, runs  # pylint: disable=g-import-not-at-top


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  experiments = parser.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT",
                                      help=", ".join(reports.REPORTS))
  for name, experiment in reports.REPORTS.items():
    sub = experiments.add_parser(name, help=f"{experiment.title} (sweeps: {experiment.sweeps})",
                                 description=f"{experiment.title}. Sweeps: {experiment.sweeps}.")
    sub.add_argument("--runs", required=True, nargs="+",
                     help="workdirs, or directories of workdirs")
    sub.add_argument("--out", required=True, help="where summary.csv, summary.md, *.png go")
    for option in experiment.options:
      parse = option.type
      if option.list:
        parse = lambda text, t=option.type: tuple(t(v) for v in text.split(","))
      default = (",".join(map(str, option.default)) if option.list else option.default)
      sub.add_argument(f"--{option.name.replace('_', '-')}", dest=option.name, type=parse,
                       default=option.default, help=f"{option.help} (default {default})")
  return parser


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  experiment = reports.REPORTS[args.experiment]
  command = "python scripts/report.py " + shlex.join(sys.argv[1:] if argv is None else argv)
  options = {o.name: getattr(args, o.name) for o in experiment.options}
  try:
    report = experiment.report(runs.load(args.runs), **options)
  except ValueError as e:
    print(f"report.py: error: {e}", file=sys.stderr)
    return 2
  written = runs.write(report, args.out, experiment.title, command, experiment.plot)
  print(f"wrote {', '.join(written)} to {args.out} ({len(report.runs)} runs)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
