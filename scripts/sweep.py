#!/usr/bin/env python
"""Runs every point x seed of a sweep file, each as `scripts/train.py` would train it alone.

  python scripts/sweep.py configs/sweeps/strength.py --out runs/strength
  python scripts/sweep.py configs/sweeps/methods.py:select --out runs/methods_select
  python scripts/sweep.py configs/sweeps/strength.py --out runs/tiny --override num_steps=20 \
      --seeds 0,1                                                                 # a smoke test
  python scripts/sweep.py configs/sweeps/strength.py --out runs/strength --print     # commands only
  python scripts/sweep.py configs/sweeps/strength.py --out runs/strength --slurm \
      --time 2:00:00 --cpus-per-task 4 --mem 8G --throttle 50                     # SLURM array
  python scripts/sweep.py configs/sweeps/noise.py --out runs/noise --match 'rate=0.6'  # a subset

Each run writes to `<out>/<name>` (names from the overrides, `ls_jax.experiments.sweeps.workdir_name`;
a float is spelt `:g` where that parses back to it, else by `repr`, so every value reaches training
and its name unchanged) and logs to `<out>/logs/<name>.log`.

Checked before anything starts. Every run's config is built from its command line and validated
as train.py does (`sweeps.resolve`): a misspelt field, a wrong type or a bad value in any point,
or a Python error in the sweep file, is one line (the file and line, or the point and the field)
and exit status 2, with no run started.

Which runs it trains. A run whose results.json holds the config this sweep would train (compared
as train.py compares a workdir's config on resume: log and checkpoint intervals may differ) is
finished and skipped. A workdir whose config differs (results.json or config.json; e.g. trained
with `--override num_steps=20`) is a mismatch: one line per run naming the field
(`num_steps: 20 there, 6000 here`), and the sweep refuses (exit 2, nothing started) unless
`--restart-mismatched` is given, which moves each such workdir to `<out>/replaced/<name>.old-<time>`
(never deleted, and out of the way of summarize.py) and trains it afresh. Any other run is
(re)started, and train.py resumes it from its last checkpoint. A failed run does not stop the
sweep: the failures are listed at the end with their logs, and the exit status is 1.

Several sweeps on one `--out` (a second terminal, a re-submitted job). Each run is trained under
an exclusive lock, `fcntl.flock` on `<out>/.locks/<name>.lock`, held by the sweep and by the
train.py it started until that process exits. A sweep that finds a run locked says "running
elsewhere", goes on with the others, and at the end waits for it: finished there, it counts; if
the other process died without finishing it, this sweep trains it. The SLURM commands take the
same lock (`flock -n`; a task whose run is locked exits 75) and skip a run with results.json.

Killed. SIGINT or SIGTERM: each running train.py gets SIGTERM, checkpoints and exits, and the sweep
exits 130 / 143. `kill -9` of sweep.py (Linux): the kernel sends each train.py SIGTERM
(PR_SET_PDEATHSIG), which checkpoints and exits; the locks go with the processes. Rerunning the
same command resumes every unfinished run from its last checkpoint (bit-identical to an
uninterrupted run) and trains nothing twice. Elsewhere than Linux the orphaned runs finish on
their own, holding their locks.

How runs are trained. By default in `--parallel` long-lived worker processes
(`ls_jax.experiments.sweep_worker`), started while the sweep validates its points: each imports
JAX once and keeps its compiled programs and decoded datasets, so a run pays no process start
(docs/benchmarks.md gives the throughput of both modes). `--process-per-run` starts one
`scripts/train.py` process per run instead, which is what the paragraphs above describe. A
worker
builds each run's config from the same `--config...` arguments train.py would get, trains it with
`train.train_and_evaluate`, and writes the same log; its results are identical to the run trained
alone by train.py (tests/test_sweep_in_process.py). Everything above holds per run: the worker
holds the run's lock (a copy of the sweep's) while it trains, an error fails that run only and the
worker takes the next, a signal checkpoints the running runs (kill -9 of the sweep: the workers get
SIGTERM), and a worker that dies (out of memory, a crash) fails its run, which a rerun resumes, and
a new worker takes the next one.

`--parallel N` runs N at a time (the measured default: docs/benchmarks.md). Each run may use every
core, as train.py alone does: XLA:CPU's rounding depends on the cores a process has, so a sweep's
run equals the same run trained alone only on the same cores. On an accelerator use `--parallel 1`.
"""
import argparse
import ctypes
import fcntl
import json
import os
import pathlib
import re
import select
import signal
import socket
import subprocess
import sys
import time

# The repository: sweep files import `configs.sweeps.common`, and each run is scripts/train.py,
# started there (config paths such as configs/mnist1d.py are relative to it).
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = REPO_ROOT / "scripts" / "train.py"
sys.path.insert(0, str(REPO_ROOT))
from ls_jax.experiments import sweeps  # pylint: disable=g-import-not-at-top

DEFAULT_PARALLEL = 2
LOCKED_EXIT = 75  # EX_TEMPFAIL: a SLURM task whose run is locked by another process.
REPLACED = "replaced"  # <out>/replaced/<name>.old-<time>: mismatched runs moved aside.


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else (
      f"{seconds // 60}m{seconds % 60:02d}s")


def _die_with_parent():
  """A `preexec_fn`: on Linux the child gets SIGTERM when the sweep dies, even by `kill -9`."""
  if not sys.platform.startswith("linux"):
    return None
  prctl = ctypes.CDLL(None, use_errno=True).prctl
  parent = os.getpid()

  def preexec():
    prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # The sweep died before prctl took effect.
      os.kill(os.getpid(), signal.SIGTERM)
  return preexec


def lock_path(out: pathlib.Path, name: str) -> pathlib.Path:
  return out / ".locks" / f"{name}.lock"


def try_lock(out: pathlib.Path, name: str) -> int | None:
  """An open fd holding the run's exclusive lock, or None if another process holds it."""
  path = lock_path(out, name)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    os.close(fd)
    return None
  return fd


def _saved_config(workdir: pathlib.Path) -> tuple[str, dict] | None:
  """The config a workdir holds, from results.json (finished) or config.json (started)."""
  import json  # pylint: disable=g-import-not-at-top
  for name in ("results.json", "config.json"):
    try:
      saved = json.loads((workdir / name).read_text())
    except (FileNotFoundError, ValueError):
      continue
    return name, saved.get("config", {}) if name == "results.json" else saved
  return None


def state(out: pathlib.Path, run: sweeps.Run, config: dict) -> tuple[str, str]:
  """('done' | 'todo' | 'mismatch', the mismatch line) of a run's workdir."""
  workdir = out / run.name
  saved = _saved_config(workdir)
  if saved is None:
    return "todo", ""
  source, there = saved
  if source == "results.json":  # A field newer than the finished run: its default.
    from ls_jax.trainer import default_config  # pylint: disable=g-import-not-at-top
    there = default_config.resolved(there)
  differences = sweeps.config_differences(there, config)
  if not differences:
    return ("done" if source == "results.json" else "todo"), ""
  shown = "; ".join(f"{k}: {a!r} there, {b!r} here" for k, a, b in differences[:3])
  more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
  return "mismatch", f"mismatch: {workdir} ({source}): {shown}{more}"


def move_aside(out: pathlib.Path, name: str, stream) -> None:
  aside = out / REPLACED / f"{name}.old-{time.strftime('%Y%m%d-%H%M%S')}"
  aside.parent.mkdir(parents=True, exist_ok=True)
  (out / name).rename(aside)
  print(f"moved {out / name} (another config) to {aside}", file=stream, flush=True)


class _Worker:
  """A long-lived `ls_jax.experiments.sweep_worker` process (unless `--process-per-run`), and the
  sweep's end of its socket. Like the `Popen` of a train.py, it has `poll`, `returncode`,
  `send_signal` and `wait`, for the run it is training."""

  def __init__(self, preexec):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    self.process = subprocess.Popen(
        [sys.executable, "-m", "ls_jax.experiments.sweep_worker", str(theirs.fileno())],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        cwd=REPO_ROOT, pass_fds=(theirs.fileno(),), preexec_fn=preexec)
    theirs.close()
    ours.setblocking(False)
    self.sock = ours
    self.returncode: int | None = None
    self.died: str | None = None  # Why the worker ended without answering: the run failed.

  def start(self, run: sweeps.Run, extra: dict[str, str], workdir: pathlib.Path,
            log: pathlib.Path, lock_fd: int) -> None:
    """Sends one run and the lock it is trained under (the worker holds a copy of it)."""
    job = {"name": run.name, "config": run.config, "seed": run.seed,
           "overrides": {k: sweeps.format_value(v) for k, v in run.overrides.items()},
           "extra": extra, "workdir": str(workdir), "log": str(log.absolute())}
    self.returncode = None
    socket.send_fds(self.sock, [json.dumps(job).encode()], [lock_fd])

  def poll(self) -> int | None:
    if self.returncode is None and self.died is None:
      try:
        answer = self.sock.recv(4096)
      except BlockingIOError:
        return None
      except OSError:
        answer = b""
      if answer:
        self.returncode = int(json.loads(answer)["rc"])
      else:  # It died during the run (out of memory, a crash): a new worker takes the next one.
        status = self.process.wait()
        self.died = (f"killed by {signal.Signals(-status).name}" if status < 0
                     else f"exit status {status}")
        self.returncode = status or 1
    return self.returncode

  def send_signal(self, signum: int) -> None:
    if self.process.poll() is None:
      self.process.send_signal(signum)

  def wait(self) -> int:
    return self.process.wait()

  def close(self) -> None:
    """Ends an idle worker: the end of its socket is its signal to exit."""
    self.sock.close()


class _Stop(Exception):
  def __init__(self, signum):
    super().__init__(signum)
    self.signum = signum


def _raise_stop(signum, frame):
  del frame
  raise _Stop(signum)


def run_all(runs: list[sweeps.Run], configs: dict[str, dict], out: pathlib.Path,
            extra: dict[str, str], parallel: int, restart_mismatched: bool = False,
            stream=sys.stdout, train_script=TRAIN_SCRIPT, in_process: bool = False,
            workers: list[_Worker] | None = None) -> list[sweeps.Run] | None:
  """Runs the unfinished runs, `parallel` at a time; returns the failed ones (None: refused).

  `in_process`: in `parallel` long-lived worker processes (`_Worker`; `workers` already started)
  instead of one train.py each.
  """
  states = {r.name: state(out, r, configs[r.name]) for r in runs}
  mismatched = [r for r in runs if states[r.name][0] == "mismatch"]
  for run in mismatched:
    print(states[run.name][1], file=stream, flush=True)
  if mismatched and not restart_mismatched:
    print(f"sweep.py: error: {len(mismatched)} workdirs in {out} hold runs with another config "
          "(above); use another --out, or pass --restart-mismatched to move them to "
          f"{out / REPLACED} and train them afresh", file=sys.stderr, flush=True)
    return None
  todo = [r for r in runs if states[r.name][0] != "done"]
  skipped = len(runs) - len(todo)
  print(f"{len(runs)} runs: {skipped} already finished, {len(todo)} to run, {parallel} at a time",
        file=stream, flush=True)
  (out / "logs").mkdir(parents=True, exist_ok=True)
  preexec = _die_with_parent()
  running: dict[subprocess.Popen | _Worker, tuple[sweeps.Run, float, object, int]] = {}
  idle: list[_Worker] = list(workers or [])
  elsewhere: list[sweeps.Run] = []
  failed, done, durations, waiting_said = [], 0, [], False
  start = time.monotonic()
  handlers = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    while todo or running or elsewhere:
      while todo and len(running) < parallel:
        run = todo.pop(0)
        fd = try_lock(out, run.name)
        if fd is None:
          print(f"running elsewhere: {run.name} (will wait for it at the end)", file=stream,
                flush=True)
          elsewhere.append(run)
          continue
        status, line = state(out, run, configs[run.name])  # It may have changed meanwhile.
        if status == "done":
          os.close(fd)
          done += 1
          print(f"finished elsewhere: {run.name}", file=stream, flush=True)
          continue
        if status == "mismatch":
          if not restart_mismatched:
            os.close(fd)
            print(line, file=stream, flush=True)
            failed.append(run)
            continue
          move_aside(out, run.name, stream)
        log_path = out / "logs" / f"{run.name}.log"
        log = open(log_path, "a", encoding="utf-8")
        argv = sweeps.command(run, str(out), train_script, extra)
        if in_process:
          worker = idle.pop() if idle else _Worker(preexec)
          if worker.process.poll() is not None:  # Died while idle.
            worker.close()
            worker = _Worker(preexec)
          log.write(f"# trained in-process by sweep worker {worker.process.pid}, as:\n")
          log.write(f"$ {sweeps.shell_line(argv)}\n")
          log.flush()
          # The worker gets a copy of the lock: held until it has finished the run, or exited.
          try:
            worker.start(run, extra, out / run.name, log_path, fd)
          except OSError:  # Died just now: its answer is the end of its socket, a failed run.
            pass
          running[worker] = (run, time.monotonic(), log, fd)
          continue
        log.write(f"$ {sweeps.shell_line(argv)}\n")
        log.flush()
        # The child inherits the lock: it stays held until train.py exits, even if the sweep dies.
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=REPO_ROOT, pass_fds=(fd,), preexec_fn=preexec)
        running[process] = (run, time.monotonic(), log, fd)
      if not todo and not running and elsewhere:
        if not waiting_said:
          print(f"waiting for {len(elsewhere)} runs running elsewhere", file=stream, flush=True)
          waiting_said = True
        for run in list(elsewhere):  # Free again: finished there, or for this sweep to train.
          fd = try_lock(out, run.name)
          if fd is not None:
            os.close(fd)
            elsewhere.remove(run)
            todo.append(run)
        if not todo:
          time.sleep(1.0)
        continue
      # A worker's answer wakes the sweep at once (its next run starts without a polling delay);
      # a train.py process is polled.
      select.select([p.sock for p in running if isinstance(p, _Worker)], [], [], 0.2)
      for process in [p for p in running if p.poll() is not None]:
        run, began, log, fd = running.pop(process)
        if isinstance(process, _Worker):
          if process.died:
            log.write(f"sweep.py: the sweep worker (pid {process.process.pid}) died during this "
                      f"run ({process.died}); rerun the sweep to resume it\n")
          else:
            idle.append(process)
        log.close()
        os.close(fd)
        ok = process.returncode == 0 and (out / run.name / "results.json").exists()
        done += 1
        durations.append(time.monotonic() - began)
        if not ok:
          failed.append(run)
        remaining = len(todo) + len(running) + len(elsewhere)
        eta = sum(durations) / len(durations) * remaining / parallel
        print(f"[{done}/{done + remaining} done, {len(running)} running, {len(failed)} failed, "
              f"ETA {_duration(eta)}] {'ok    ' if ok else 'FAILED'} {run.name} "
              f"({durations[-1]:.1f} s)", file=stream, flush=True)
  except _Stop as stop:
    for s, handler in handlers.items():
      signal.signal(s, signal.SIG_IGN if s == stop.signum else handler)
    for process in [*running, *idle]:  # Each checkpoints and exits; a rerun resumes it.
      process.send_signal(signal.SIGTERM)
    for process in [*running, *idle]:
      process.wait()
    name = signal.Signals(stop.signum).name
    print(f"sweep.py: stopped by {name}; {len(running)} running runs checkpointed; rerun the "
          "same command to resume", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(128 + stop.signum)
  finally:
    for s, handler in handlers.items():
      signal.signal(s, handler)
  for worker in idle:
    worker.close()
  for worker in idle:
    worker.wait()
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


def _relative(path: pathlib.Path) -> str:
  """`path` relative to the repository where it is inside it (SLURM nodes may mount it elsewhere),
  else absolute."""
  path = path.absolute()
  try:
    return str(path.relative_to(REPO_ROOT))
  except ValueError:
    return str(path)


def _default_python() -> str:
  """The Python running this script, relative to the repository where it lives there (.venv)."""
  return _relative(pathlib.Path(sys.executable))


def write_slurm(runs, configs, out: pathlib.Path, extra, args) -> int:
  states = {r.name: state(out, r, configs[r.name]) for r in runs}
  mismatched = [r for r in runs if states[r.name][0] == "mismatch"]
  for run in mismatched:
    print(states[run.name][1])
  if mismatched:
    if not args.restart_mismatched:
      print(f"sweep.py: error: {len(mismatched)} workdirs in {out} hold runs with another config "
            "(above); use another --out, or pass --restart-mismatched to move them aside",
            file=sys.stderr)
      return 2
    for run in mismatched:
      fd = try_lock(out, run.name)
      if fd is None:
        print(f"sweep.py: error: {run.name} is running elsewhere; stop it first", file=sys.stderr)
        return 2
      move_aside(out, run.name, sys.stdout)
      os.close(fd)
  out.mkdir(parents=True, exist_ok=True)
  (out / "logs").mkdir(exist_ok=True)
  (out / ".locks").mkdir(exist_ok=True)
  rel_out = pathlib.Path(_relative(out))
  lines = []
  for run in runs:
    argv = sweeps.command(run, str(rel_out), "scripts/train.py", extra, python="PYTHON")
    train = sweeps.shell_line(argv[1:])
    lock = sweeps.shell_line([str(rel_out / ".locks" / f"{run.name}.lock")])
    results = sweeps.shell_line([str(rel_out / run.name / "results.json")])
    lines.append(f"test -e {results} || flock -n -E {LOCKED_EXIT} {lock} \"$PYTHON\" {train}")
  commands = out / "commands.txt"
  commands.write_text("\n".join(lines) + "\n")
  script = out / "sweep.sbatch"
  script.write_text(sweeps.slurm_script(
      _relative(commands), len(lines), _relative(out / "logs"), time=args.time,
      cpus_per_task=args.cpus_per_task, mem=args.mem, throttle=args.throttle,
      python=args.python or _default_python(), job_name=f"sweep_{out.name}"))
  print(f"wrote {commands} ({len(lines)} runs) and {script}; submit from the repository with: "
        f"sbatch {_relative(script)}")
  return 0


def _seed_list(text: str) -> list[int]:
  """`--seeds 0,1,2`; argparse turns the ValueError into one usage line naming `--seeds`."""
  try:
    return [int(seed) for seed in text.split(",")]
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("sweep",
                      help="sweep file with its argument, e.g. configs/sweeps/methods.py:select")
  parser.add_argument("--out", required=True, help="directory of the runs' workdirs")
  parser.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL,
                      help=f"runs at a time (default {DEFAULT_PARALLEL})")
  parser.add_argument("--seeds", type=_seed_list,
                      help="comma-separated seeds replacing the sweep file's")
  parser.add_argument("--match", metavar="REGEX",
                      help="only the runs whose workdir name matches (re.search)")
  parser.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE",
                      help="config override for every run, e.g. num_steps=20 (repeatable)")
  parser.add_argument("--process-per-run", action="store_true",
                      help="one scripts/train.py process per run instead of --parallel long-lived "
                      "worker processes that import JAX once (the default)")
  parser.add_argument("--restart-mismatched", action="store_true",
                      help="move workdirs that hold another config to <out>/replaced/ and train "
                      "them afresh (default: list them and refuse)")
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--print", action="store_true", help="print the command lines, one per run")
  mode.add_argument("--slurm", action="store_true",
                    help="write <out>/commands.txt and <out>/sweep.sbatch (a SLURM array job)")
  slurm = parser.add_argument_group("SLURM (with --slurm)")
  slurm.add_argument("--time", default="24:00:00", help="per task (default 24:00:00)")
  slurm.add_argument("--cpus-per-task", type=int, default=2,
                     help="default 2; a run's numbers depend on its core count (README)")
  slurm.add_argument("--mem", default="8G", help="per task (default 8G)")
  slurm.add_argument("--throttle", type=int, default=0, metavar="N",
                     help="at most N tasks at once (--array=...%%N; default 0: no limit)")
  slurm.add_argument("--python", help="the Python on the nodes, absolute or relative to the "
                     "repository (default: the one running sweep.py, relative to the repository "
                     "if inside it); the job's $LS_JAX_PYTHON overrides it")
  # Tests only: a stand-in for train.py (it implies --process-per-run).
  parser.add_argument("--train-script", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.parallel < 1:
    parser.error(f"--parallel must be >= 1, got {args.parallel}")
  if args.throttle < 0 or args.cpus_per_task < 1:
    parser.error("--throttle must be >= 0 and --cpus-per-task >= 1")
  extra = _parse_overrides(args.override)
  in_process = not args.process_per_run and args.train_script is None
  workers: list[_Worker] = []
  if in_process and not (args.print or args.slurm):
    # Started now, they import JAX while this process loads and validates the points (~1.5 s).
    workers = [_Worker(_die_with_parent()) for _ in range(args.parallel)]
  try:
    return _sweep(args, extra, workers, in_process)
  finally:
    for worker in workers:  # Idle at the end, or never used: the end of its socket ends it.
      worker.close()


def _sweep(args: argparse.Namespace, extra: dict[str, str], workers: list["_Worker"],
           in_process: bool) -> int:
  """Loads and validates the sweep's runs, then prints, writes SLURM files or trains them."""
  try:
    sweep = sweeps.load(args.sweep)
    runs = sweeps.runs(sweep, args.seeds)
    if args.match is not None:
      runs = [r for r in runs if re.search(args.match, r.name)]
  except (ValueError, re.error) as e:
    print(f"sweep.py: error: {e}", file=sys.stderr)
    return 2
  # Every run's config, built and validated as train.py will, before anything starts.
  configs = {}
  for run in runs:
    try:
      configs[run.name] = sweeps.resolve(run, extra, str(REPO_ROOT)).to_dict()
    except ValueError as e:
      point = {k: v for k, v in run.overrides.items()}
      print(f"sweep.py: error: {sweeps.split_spec(args.sweep)[0]}: point {point} (run "
            f"{run.name}): {e}", file=sys.stderr)
      return 2
  out = pathlib.Path(args.out)
  if args.print:
    print("\n".join(sweeps.shell_line(sweeps.command(r, str(out), TRAIN_SCRIPT, extra))
                    for r in runs))
    return 0
  if args.slurm:
    return write_slurm(runs, configs, out, extra, args)
  failed = run_all(runs, configs, out, extra, args.parallel, args.restart_mismatched,
                   train_script=args.train_script or TRAIN_SCRIPT, in_process=in_process,
                   workers=workers)
  return 2 if failed is None else 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
