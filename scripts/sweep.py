#!/usr/bin/env python
"""Runs every point x seed of a sweep file as a `scripts/train.py` subprocess.

  python scripts/sweep.py configs/sweeps/strength.py --out runs/strength
  python scripts/sweep.py configs/sweeps/methods.py:select --out runs/methods_select
  python scripts/sweep.py configs/sweeps/strength.py --out runs/tiny --override num_steps=20 \
      --seeds 0,1                                                                 # a smoke test
  python scripts/sweep.py configs/sweeps/strength.py --out runs/strength --print     # commands only
  python scripts/sweep.py configs/sweeps/strength.py --out runs/strength --slurm     # SLURM array
  python scripts/sweep.py configs/sweeps/noise.py --out runs/noise --match 'rate=0.6'  # a subset

Each run writes to `<out>/<name>` (names from the overrides, `ls_jax.experiments.sweeps.workdir_name`) and logs
to `<out>/logs/<name>.log`. A run with `results.json` is finished and skipped; any other is
(re)started, and train.py resumes it from its last checkpoint. A failed run does not stop the
sweep: the failures are listed at the end with their logs, and the exit status is 1.

`--parallel N` runs N at a time, each with XLA's CPU thread pool limited to one thread when N > 1
(the measured default, see README "Sweeps"). On an accelerator use `--parallel 1`.
"""
import argparse
import os
import pathlib
import re
import subprocess
import sys
import time

# The repository: sweep files import `configs.sweeps.common`, and each run is scripts/train.py,
# started there (config paths such as configs/mnist1d.py are relative to it).
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = REPO_ROOT / "scripts" / "train.py"
sys.path.insert(0, str(REPO_ROOT))
from ls_jax.experiments import sweeps  # pylint: disable=g-import-not-at-top

# One intra-op thread per process: with several processes on few cores, XLA's own thread pools
# would only contend with each other.
SINGLE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
DEFAULT_PARALLEL = 2


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else (
      f"{seconds // 60}m{seconds % 60:02d}s")


def _child_env(parallel: int) -> dict[str, str]:
  env = dict(os.environ)
  if parallel > 1:
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {SINGLE_THREAD_XLA_FLAGS}".strip()
  return env


def run_all(runs: list[sweeps.Run], out: pathlib.Path, extra: dict[str, str], parallel: int,
            stream=sys.stdout) -> list[sweeps.Run]:
  """Runs the unfinished runs, `parallel` at a time; returns the failed ones."""
  todo = [r for r in runs if not (out / r.name / "results.json").exists()]
  skipped = len(runs) - len(todo)
  print(f"{len(runs)} runs: {skipped} already finished, {len(todo)} to run, {parallel} at a time",
        file=stream, flush=True)
  (out / "logs").mkdir(parents=True, exist_ok=True)
  env = _child_env(parallel)
  running: dict[subprocess.Popen, tuple[sweeps.Run, float, object]] = {}
  failed, done, durations = [], 0, []
  start = time.monotonic()
  while todo or running:
    while todo and len(running) < parallel:
      run = todo.pop(0)
      log = open(out / "logs" / f"{run.name}.log", "a", encoding="utf-8")
      argv = sweeps.command(run, str(out), TRAIN_SCRIPT, extra)
      log.write(f"$ {sweeps.shell_line(argv)}\n")
      log.flush()
      process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                 cwd=REPO_ROOT)
      running[process] = (run, time.monotonic(), log)
    time.sleep(0.2)
    for process in [p for p in running if p.poll() is not None]:
      run, began, log = running.pop(process)
      log.close()
      ok = process.returncode == 0 and (out / run.name / "results.json").exists()
      done += 1
      durations.append(time.monotonic() - began)
      if not ok:
        failed.append(run)
      remaining = len(todo) + len(running)
      eta = sum(durations) / len(durations) * remaining / parallel
      print(f"[{done}/{done + remaining} done, {len(running)} running, {len(failed)} failed, "
            f"ETA {_duration(eta)}] {'ok    ' if ok else 'FAILED'} {run.name} "
            f"({durations[-1]:.1f} s)", file=stream, flush=True)
  print(f"sweep finished in {_duration(time.monotonic() - start)}: {len(runs) - len(failed)} of "
        f"{len(runs)} runs have results", file=stream, flush=True)
  for run in failed:
    print(f"failed: {run.name}  log: {out / 'logs' / (run.name + '.log')}", file=stream, flush=True)
  return failed


def _parse_overrides(items: list[str]) -> dict[str, str]:
  overrides = {}
  for item in items:
    key, has_value, value = item.partition("=")
    if not has_value or not key:
      raise SystemExit(f"sweep.py: error: --override {item!r}: expected field=value")
    overrides[key.removeprefix("config.")] = value
  return overrides


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("sweep",
                      help="sweep file with its argument, e.g. configs/sweeps/methods.py:select")
  parser.add_argument("--out", required=True, help="directory of the runs' workdirs")
  parser.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL,
                      help=f"runs at a time (default {DEFAULT_PARALLEL})")
  parser.add_argument("--seeds", help="comma-separated seeds replacing the sweep file's")
  parser.add_argument("--match", metavar="REGEX",
                      help="only the runs whose workdir name matches (re.search)")
  parser.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE",
                      help="config override for every run, e.g. num_steps=20 (repeatable)")
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--print", action="store_true", help="print the command lines, one per run")
  mode.add_argument("--slurm", action="store_true",
                    help="write <out>/commands.txt and <out>/sweep.sbatch (a SLURM array job)")
  args = parser.parse_args(argv)
  if args.parallel < 1:
    parser.error(f"--parallel must be >= 1, got {args.parallel}")
  try:
    sweep = sweeps.load(args.sweep)
    seeds = None if args.seeds is None else [int(s) for s in args.seeds.split(",")]
    runs = sweeps.runs(sweep, seeds)
    if args.match is not None:
      runs = [r for r in runs if re.search(args.match, r.name)]
  except (ValueError, re.error) as e:
    print(f"sweep.py: error: {e}", file=sys.stderr)
    return 2
  extra = _parse_overrides(args.override)
  out = pathlib.Path(args.out)
  lines = [sweeps.shell_line(sweeps.command(r, str(out), TRAIN_SCRIPT, extra)) for r in runs]
  if args.print:
    print("\n".join(lines))
    return 0
  if args.slurm:
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    commands = (out / "commands.txt").resolve()
    commands.write_text("\n".join(lines) + "\n")
    script = out / "sweep.sbatch"
    script.write_text(sweeps.slurm_script(str(commands), len(lines),
                                          str((out / "logs").resolve()), str(REPO_ROOT)))
    print(f"wrote {commands} ({len(lines)} runs) and {script}; submit with: sbatch {script}")
    return 0
  return 1 if run_all(runs, out, extra, args.parallel) else 0


if __name__ == "__main__":
  sys.exit(main())
