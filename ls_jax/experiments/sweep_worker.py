"""A long-lived training process of `scripts/sweep.py` (by default): many runs, one JAX import.

  python -m ls_jax.experiments.sweep_worker FD     # started by sweep.py, never by hand

`FD` is this process's end of an `AF_UNIX` `SOCK_SEQPACKET` socket pair. Each message from the
sweep is one run, as JSON, with the run's lock file descriptor attached (`SCM_RIGHTS`):

  {"name": "mnist1d_..._seed0", "config": "configs/mnist1d.py", "seed": 0,
   "overrides": {"loss.label_smoothing": "0.1"}, "extra": {"num_steps": "20"},
   "workdir": "runs/x/mnist1d_..._seed0", "log": "runs/x/logs/mnist1d_..._seed0.log"}

The worker holds the lock while it trains (it shares the sweep's lock: one open file), so the lock
outlives the sweep if the sweep dies, as a train.py subprocess's does. It builds the config from
the same `--config...` arguments, in the same order, that train.py would get (`sweeps.build_config`, ml_collections'
`config_flags` parsing, the same parsing as train.py's), sends the run's stdout and stderr to its
log, calls `train.train_and_evaluate` and answers `{"rc": N}` with train.py's exit status: 0
trained (or stopped by a signal with a checkpoint), 2 an error the user can fix (one line
`ls_jax: error: ...` in the log), 1 a bug (one line, the traceback in `<workdir>/error.log`).
Any exception fails that run only; the worker takes the next one.

Signals are train.py's (`ls_jax.trainer.interrupts`): SIGTERM/SIGINT during the training loop
checkpoints the run, answers and exits 0; at any other moment the worker exits at once, 128 + the
signal. After a stop it exits. The end of the socket (the sweep closed it, or died) ends the worker between runs.
"""
# pylint: disable=g-import-not-at-top,wrong-import-position
from ls_jax.trainer import interrupts

interrupts.exit_on_signals()  # First, as in the CLI: a signal during the imports is one line.

import importlib
import json
import os
import pathlib
import socket
import sys
import traceback

BETWEEN_RUNS = "between runs of a sweep worker; rerun the sweep to train the rest"
MAX_MESSAGE = 1 << 20


def _setup_jax() -> None:
  """What `ls_jax.trainer.cli.main` sets before training: quiet logging, the compilation cache."""
  from absl import flags
  from absl import logging
  flags.FLAGS.mark_as_parsed()  # No "logging before flag parsing" line in every log.
  logging.set_verbosity(logging.WARNING)
  import jax
  cache = os.environ.get("JAX_COMPILATION_CACHE_DIR", "~/.cache/ls_jax/jax_compilation_cache")
  if cache:  # As train.py's --compilation_cache_dir default.
    jax.config.update("jax_compilation_cache_dir", str(pathlib.Path(cache).expanduser()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


_stopped = []


def _train(job: dict, root: str) -> int:
  """One run, as `scripts/train.py <the same arguments>` would train it; its exit status."""
  from ls_jax.experiments import sweeps
  from ls_jax.trainer import errors
  from ls_jax.trainer import train
  workdir = job["workdir"]
  try:
    # The overrides arrive spelt as on the command line (`sweeps.format_value`, which leaves a
    # string unchanged), so `sweeps.config_args` gives train.py's exact arguments.
    run = sweeps.Run(job["name"], job["config"], dict(job["overrides"]), int(job["seed"]))
    config = sweeps.build_config(run, dict(job["extra"]), root)
  except ValueError as e:
    print(f"ls_jax: error: {e}", file=sys.stderr, flush=True)
    return 2
  try:
    results = train.train_and_evaluate(config, workdir)
  except train.Interrupted as e:
    print(f"ls_jax: {e}", file=sys.stderr, flush=True)
    _stopped.append(True)
    return 0
  except errors.UserError as e:
    print(f"ls_jax: error: {e}", file=sys.stderr, flush=True)
    return 2
  except Exception as e:  # pylint: disable=broad-except  # A bug: keep the trace, one line.
    log = pathlib.Path(workdir) / "error.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(traceback.format_exc())
    print(f"ls_jax: internal error: {type(e).__name__}: {errors.one_line(e)} (traceback in {log}; "
          "please report it)", file=sys.stderr, flush=True)
    return 1
  finally:
    interrupts.set_situation(BETWEEN_RUNS)
  print(train.summary_line(results, config, workdir), flush=True)
  return 0


def _with_output_to(log_path: str, work):
  """`work()` with fds 1 and 2 (and so sys.stdout/sys.stderr) appended to `log_path`."""
  sys.stdout.flush()
  sys.stderr.flush()
  saved = (os.dup(1), os.dup(2))
  log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    os.dup2(log, 1)
    os.dup2(log, 2)
    return work()
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    for fd in (log, *saved):
      os.close(fd)


def serve(sock: socket.socket, root: str) -> None:
  interrupts.set_situation(BETWEEN_RUNS)
  _setup_jax()
  importlib.import_module("ls_jax.trainer.train")  # Once per worker, before the first run.
  while True:
    try:
      data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 1)
    except OSError:
      data, fds = b"", []
    if not data:  # The sweep is done with this worker, or died.
      return
    job = json.loads(data)
    try:
      rc = _with_output_to(job["log"], lambda: _train(job, root))
    finally:
      for fd in fds:  # The run's lock: released here (the sweep releases its copy).
        os.close(fd)
    try:
      sock.send(json.dumps({"rc": rc}).encode())
    except OSError:  # The sweep is gone.
      return
    if _stopped:  # Stopped by a signal: the run is checkpointed, and so is this worker.
      return


def main(argv: list[str]) -> None:
  root = str(pathlib.Path(__file__).resolve().parents[2])
  if root not in sys.path:
    sys.path.insert(0, root)  # Sweep and config files import `configs`.
  sock = socket.socket(fileno=int(argv[1]))
  status = 1
  try:
    serve(sock, root)
    status = 0
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # As the CLI: no interpreter teardown of JAX's threads.


if __name__ == "__main__":
  main(sys.argv)
