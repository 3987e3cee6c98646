#!/usr/bin/env python
"""Every experiment: its sweep(s) into runs/, then its report(s) into docs/results/<name>/
(summary.csv, summary.md, PNGs), which docs/experiments/<name>.md shows. Run through
`scripts/reproduce.sh` (which sets up the environment first):

  scripts/reproduce.sh                              # every experiment, in registry order
  scripts/reproduce.sh strength calibration         # a subset, in the order given
  scripts/reproduce.sh --print methods noise        # the commands only, one per line
  TINY=1 scripts/reproduce.sh confidence            # a smoke test (see TINY below)

The experiments and their steps are `ls_jax.experiments.reports.REPORTS`: each entry lists its
sweeps (`scripts/sweep.py configs/sweeps/<file> --out runs/<out>`) and its report commands
(`scripts/report.py NAME --out docs/results/<name> --runs ...`); nothing here is per experiment.
A new experiment is one sweep file and one entry in REPORTS (with its report module).

TINY=1, the one smoke-test mode (the tests use it): every run trains 20 steps on seeds 0 and 1
(the methods select stage keeps its three selection seeds, which the evaluate stage needs), and
the representation reports use small example, draw and attack sets. Runs and reports go under
$TINY_DIR (default: a new temp dir): runs in $TINY_DIR/<out>, reports in $TINY_DIR/results/.

Finished runs are skipped (scripts/sweep.py), so a rerun only redoes the reports. strength,
confidence, calibration and selective share runs/evidence (one run per name); distillation,
projection, information and extrapolation share the teachers' runs. A sweep command that an
earlier experiment of the same invocation already ran is not repeated.
"""
import argparse
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from ls_jax.experiments import reports  # pylint: disable=g-import-not-at-top

SWEEPS = "configs/sweeps"
TINY_TRAINING = ("--override", "num_steps=20", "--override", "log_every_steps=10")


def commands(experiment: str, runs: str = "runs", results: str = "docs/results",
             tiny: bool = False) -> list[list[str]]:
  """The `scripts/...` command lines (without the interpreter) of one experiment, in order."""
  lines = []
  for step in reports.REPORTS[experiment].steps:
    fill = lambda args: [a.replace("{runs}", runs) for a in args]  # pylint: disable=cell-var-from-loop
    if isinstance(step, reports.Sweep):
      lines.append(["scripts/sweep.py", f"{SWEEPS}/{step.spec}".replace("{runs}", runs), "--out",
                    f"{runs}/{step.out}", *fill(step.args),
                    *(fill(step.tiny) + list(TINY_TRAINING) if tiny else [])])
    else:
      lines.append(["scripts/report.py", experiment, "--out", f"{results}/{step.name}",
                    *fill(step.args), *(fill(step.tiny) if tiny else [])])
  return lines


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog="Experiments: " + " ".join(reports.REPORTS))
  parser.add_argument("experiments", nargs="*", metavar="EXPERIMENT",
                      help="default: every experiment, in registry order")
  parser.add_argument("--print", action="store_true",
                      help="print the commands, one per line, and run nothing")
  args = parser.parse_args(argv)
  unknown = [e for e in args.experiments if e not in reports.REPORTS]
  if unknown:
    print(f"reproduce: unknown experiment '{unknown[0]}'; choose from: "
          f"{' '.join(reports.REPORTS)}", file=sys.stderr)
    return 2
  tiny = bool(os.environ.get("TINY"))
  runs, results = "runs", "docs/results"
  if tiny:
    runs = os.environ.get("TINY_DIR") or tempfile.mkdtemp()
    results = f"{runs}/results"
    print(f"TINY: runs and reports under {runs}", file=sys.stderr)
  done = set()
  for experiment in args.experiments or list(reports.REPORTS):
    if not args.print:
      print(f"== {experiment}", file=sys.stderr, flush=True)
    start = time.monotonic()
    for line in commands(experiment, runs, results, tiny):
      if line[0] == "scripts/sweep.py":
        if tuple(line) in done:  # Shared (the teachers): its runs are there already.
          continue
        done.add(tuple(line))
      if args.print:
        print(shlex.join(["python", *line]))
        continue
      print(f"$ {shlex.join(['python', *line])}", file=sys.stderr, flush=True)
      code = subprocess.run([sys.executable, *line], cwd=REPO_ROOT, check=False).returncode
      if code:
        print(f"reproduce: {experiment} stopped: exit status {code}", file=sys.stderr)
        return code
    if not args.print:
      print(f"== {experiment} took {time.monotonic() - start:.0f} s", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
