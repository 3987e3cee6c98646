"""The command line of scripts/train.py: flags in, one line out on any error the user can fix.

Every such error (a bad flag or config value, a missing dataset, a workdir from another experiment,
a non-finite loss) ends in one line on stderr, `ls_jax: error: ...`, and exit status 2. A SIGTERM
or SIGINT ends in a checkpoint, one line, and exit status 0.
"""
import os
import pathlib
import re
import sys
import traceback

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from ls_jax import errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/mnist1d.py.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and results go.")
_RESTART = flags.DEFINE_bool("restart", False,
                             "Move an existing run in --workdir aside and start fresh.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0, for multi-process training.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")
_INIT_TIMEOUT = flags.DEFINE_integer("distributed_timeout", 300,
                                     "Seconds to wait for every process to join.")


def _fail(message: str) -> None:
  print(f"ls_jax: error: {message}", file=sys.stderr, flush=True)
  sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with every error (bad override, bad config file) as one line.

  config_flags loads the config file lazily; reading `.value` here loads it inside the `try`.
  """
  path = next((a.split("=", 1)[1].split(":")[0] for a in argv if a.startswith("--config=")), None)
  try:
    remaining = flags.FLAGS(argv)
    if not path:
      _fail("--config is required, e.g. --config=configs/mnist1d.py")
    if not os.path.isfile(path):
      _fail(f"config file {path} does not exist")
    if _CONFIG.value is None:
      _fail(f"config file {path}: get_config() returned None")
  except flags.UnrecognizedFlagError as e:
    hint = " (not a field of the config)" if e.flagname.startswith("config.") else ""
    _fail(f"unknown option --{e.flagname}{hint}")
  except (KeyError, AttributeError) as e:
    if "get_config" in str(e):
      _fail(f"config file {path} does not define get_config()")
    key = re.findall(r"[A-Za-z_]\w*", str(e))[0]
    overrides = [a[2:].split("=")[0] for a in argv if a.startswith("--config.")]
    field = next((o[len("config."):] for o in overrides if key in o.split(".")), key)
    suggestion = re.search(r'Did you mean "(\w+)"', str(e))
    hint = f" (did you mean {suggestion.group(1)!r}?)" if suggestion else ""
    _fail(f"unknown config field {field!r} in a --config override{hint}")
  except Exception as e:  # pylint: disable=broad-except  # Errors raised by the config file itself.
    _fail(errors.one_line(e))
  return remaining


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; options are --flags")
  if not _WORKDIR.value:
    _fail("--workdir is required, e.g. --workdir=runs/mnist1d")
  if not flags.FLAGS["verbosity"].present:  # Orbax and JAX log every save at INFO: keep it quiet.
    logging.set_verbosity(logging.WARNING)
  import jax  # pylint: disable=g-import-not-at-top  # After flags: --help stays fast.
  from ls_jax import train  # pylint: disable=g-import-not-at-top
  if _COORDINATOR.value is not None or _launched_by_cluster():
    # Before anything touches the backend. Gloo gives CPU devices cross-process collectives;
    # GPU and TPU backends ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
      jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                                 num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value,
                                 initialization_timeout=_INIT_TIMEOUT.value)
    except Exception as e:  # pylint: disable=broad-except
      _fail(f"jax.distributed.initialize failed: {errors.one_line(e)}")
  try:
    results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, restart=_RESTART.value)
  except train.Interrupted as e:
    if jax.process_index() == 0:
      print(f"ls_jax: {e}", file=sys.stderr, flush=True)
    sys.exit(0)
  except errors.UserError as e:
    _fail(str(e))
  except Exception as e:  # pylint: disable=broad-except  # A bug: keep the trace, print one line.
    log = pathlib.Path(_WORKDIR.value) / "error.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(traceback.format_exc())
    print(f"ls_jax: internal error: {type(e).__name__}: {errors.one_line(e)} (traceback in {log}; "
          "please report it)", file=sys.stderr, flush=True)
    sys.exit(1)
  if jax.process_index() == 0:
    print(train.summary_line(results, _CONFIG.value, _WORKDIR.value), flush=True)


def _launched_by_cluster() -> bool:
  """SLURM with several tasks, or a multi-host TPU slice: `initialize()` reads the rest itself."""
  return int(os.environ.get("SLURM_NTASKS", "1")) > 1 or "TPU_WORKER_HOSTNAMES" in os.environ


def run() -> None:
  app.run(main, flags_parser=parse_flags)
