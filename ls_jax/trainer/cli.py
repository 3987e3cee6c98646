"""The command line of scripts/train.py and `ls-jax-train`: flags in, one line out on any error.

Every error the user can fix (a bad flag or config value, a missing dataset, a workdir from
another experiment, a non-finite loss) ends in one line on stderr, `ls_jax: error: ...`, and exit
status 2. A SIGTERM or SIGINT during training ends in a checkpoint, one line, and exit status 0;
at any other moment in one line and exit status 128 + the signal number (`ls_jax.trainer.interrupts`).
"""
# pylint: disable=g-import-not-at-top,wrong-import-position
from ls_jax.trainer import interrupts

interrupts.exit_on_signals()  # First: a signal during the imports below must not print a trace.

import os
import pathlib
import re
import sys
import traceback

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from ls_jax.trainer import errors

USAGE = """Trains and evaluates one config: ls-jax-train --config=FILE[:VARIANT] --workdir=DIR

  python scripts/train.py --config=configs/mnist1d.py --workdir=runs/mnist1d
  python scripts/train.py --config configs/mnist1d.py:mlp,runlocal --workdir runs/mlp_smoke
  python scripts/train.py --config=configs/mnist1d.py --config.loss.label_smoothing=0.1 \\
      --workdir=runs/mnist1d_ls0.1

Every config field can be overridden with --config.FIELD=VALUE. The fields, their defaults and
their documentation are in configs/default.py; --print_config prints the resolved config (after
the variant and the overrides) and exits. Rerunning with the same --workdir resumes from its
latest checkpoint. Multi-host: --coordinator_address/--num_processes/--process_id, or SLURM / a
TPU pod slice (README, "Running at scale"). Errors the user can fix end in one line and exit
status 2.
"""

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file and optional :variant, e.g. configs/mnist1d.py:mlp,runlocal. "
    "Fields: configs/default.py; see them resolved with --print_config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and results go.")
_RESTART = flags.DEFINE_bool("restart", False,
                             "Move an existing run in --workdir aside and start fresh.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0, for multi-process training.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")
_INIT_TIMEOUT = flags.DEFINE_integer("distributed_timeout", 300,
                                     "Seconds to wait for every process to join.")
_PRINT_CONFIG = flags.DEFINE_bool("print_config", False,
                                  "Print the resolved config (after overrides) and exit.")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache_dir",
    os.environ.get("JAX_COMPILATION_CACHE_DIR", "~/.cache/ls_jax/jax_compilation_cache"),
    "JAX's persistent compilation cache: a rerun of the same step loads it instead of compiling. "
    "Empty turns it off. Default: $JAX_COMPILATION_CACHE_DIR if set.")


def _fail(message: str) -> None:
  print(f"ls_jax: error: {message}", file=sys.stderr, flush=True)
  _exit(2)


def _exit(status: int) -> None:
  """Ends the process now, skipping interpreter finalization.

  Everything the run writes is closed and flushed before this point. Finalization resets the
  signal handlers to their defaults, so a signal arriving while JAX's runtime is torn down would
  kill the process without a word; tearing down XLA's threads is also slow, and can crash.
  """
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)


def _config_path(argv: list[str]) -> str | None:
  """The config file named by `--config=PATH[:arg]` or `--config PATH[:arg]`."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      value = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(argv):
      value = argv[i + 1]
    else:
      continue
    return value.split(":")[0]
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with every error (bad override, bad config file) as one line.

  config_flags loads the config file lazily; reading `.value` here loads it inside the `try`.
  """
  path = _config_path(argv)
  if path and os.path.isfile(path):
    _make_configs_importable(pathlib.Path(path))
  try:
    remaining = flags.FLAGS(argv)
    if not path:
      _fail("--config is required, e.g. --config=configs/mnist1d.py")
    if not os.path.isfile(path):
      _fail(f"config file {path} does not exist")
    if _CONFIG.value is None:
      _fail(f"config file {path}: get_config() returned None")
  except SystemExit:  # absl's --help/--helpfull print the usage, then exit 1; asking is no error.
    _exit(0)
  except flags.UnrecognizedFlagError as e:
    hint = " (not a field of the config)" if e.flagname.startswith("config.") else ""
    _fail(f"unknown option --{e.flagname}{hint}")
  except (KeyError, AttributeError) as e:
    if "get_config" in str(e):
      _fail(f"config file {path} does not define get_config()")
    overrides = [a[2:].split("=")[0] for a in argv if a.startswith("--config.")]
    if not overrides:  # Raised by the config file itself.
      _fail(_config_file_error(e, path))
    key = re.findall(r"[A-Za-z_]\w*", str(e))[0]
    field = next((o[len("config."):] for o in overrides if key in o.split(".")), key)
    suggestion = re.search(r'Did you mean "(\w+)"', str(e))
    hint = f" (did you mean {suggestion.group(1)!r}?)" if suggestion else ""
    _fail(f"unknown config field {field!r} in a --config override{hint}")
  except flags.IllegalFlagValueError as e:
    bad_override = re.match(r"flag --config\.([\w.]+)=(.*?): ", str(e), re.S)
    if bad_override:  # A value of the wrong type in a `--config.FIELD=VALUE` override.
      field, value = bad_override.groups()
      _fail(f"--config.{field}={value}: expected {_expected_type(field, str(e))}")
    _fail(_config_file_error(e, path))
  except Exception as e:  # pylint: disable=broad-except  # Errors raised by the config file itself.
    _fail(_config_file_error(e, path))
  return remaining


def _expected_type(field: str, message: str) -> str:
  """What a config field takes, in words: from configs/default.py's value, else from the parser's
  message (a field that only a user's config file defines)."""
  from ls_jax.trainer import default_config  # pylint: disable=g-import-not-at-top
  node = default_config.get_config()
  for key in field.split("."):
    node = node[key] if key in node else None
    if node is None:
      break
  if node is None:
    if "as a ConfigDict" in message:
      return "a group of fields: set one of them, --config.FIELD.NAME=VALUE"
    if "int()" in message:
      return "an integer"
    return "a number" if "float" in message else "a value of the field's type"
  if hasattr(node, "keys"):  # A ConfigDict: its fields are set one by one.
    return (f"a group of fields: set one of them, e.g. --config.{field}.{sorted(node.keys())[0]}"
            "=VALUE")
  if isinstance(node, bool):
    return "true or false"
  if isinstance(node, int):
    return "an integer"
  if isinstance(node, float):
    return "a number"
  if isinstance(node, (tuple, list)):
    return "a tuple, e.g. (0.5, 0.75)"
  return f"a {type(node).__name__}"


def _make_configs_importable(config_file: pathlib.Path) -> None:
  """Puts the repository whose `configs` package a config file imports (`from configs import
  mnist1d`) first on `sys.path`, from any working directory and for the installed `ls-jax-train`.

  That repository is the nearest folder above the config file holding `configs/__init__.py` (the
  shipped configs, and a user's file anywhere inside a clone); for a config file outside any clone,
  the nearest such folder above the working directory, else above the installed `ls_jax` (an
  editable install), unless `configs` is already importable (`scripts/train.py` puts its own clone
  first). A standalone config file that starts from
  `ls_jax.trainer.default_config` needs none of this.
  """
  import importlib.util  # pylint: disable=g-import-not-at-top

  def repository_above(folder: pathlib.Path) -> pathlib.Path | None:
    return next((d for d in (folder, *folder.parents) if (d / "configs" / "__init__.py").is_file()),
                None)

  root = repository_above(config_file.resolve().parent)
  if root is None and importlib.util.find_spec("configs") is None:
    import ls_jax  # pylint: disable=g-import-not-at-top  # An editable install: its own clone.
    root = (repository_above(pathlib.Path.cwd())
            or repository_above(pathlib.Path(ls_jax.__file__).resolve().parent))
  if root is not None:
    sys.path.insert(0, str(root))


def _config_file_error(error: BaseException, path: str) -> str:
  """One line for an exception raised while loading a config file: where in which file, and what.

  The deliberate `ValueError`s of the config helpers (an unknown variant) already say it all.
  """
  if isinstance(error, flags.IllegalFlagValueError) and error.__context__ is not None:
    error = error.__context__  # config_flags wraps the config file's own exception.
  if isinstance(error, SyntaxError):
    return f"config file {error.filename}, line {error.lineno}: SyntaxError: {error.msg}"
  what = errors.one_line(error)
  if isinstance(error, ModuleNotFoundError) and error.name == "configs":
    what += (" (the shipped configs/ are importable from a config file or a working directory "
             "inside a clone of the repository, or with PYTHONPATH=<the clone>)")
  if isinstance(error, ValueError):
    return what
  if not what.startswith(type(error).__name__):
    what = f"{type(error).__name__}: {what}"
  # config_flags embeds the config file's traceback in the message; otherwise it is the error's.
  frames = [(f.filename, f.lineno, f.line) for f in traceback.extract_tb(error.__traceback__)]
  frames += [(m[1], int(m[2]), m[3].strip()) for m in re.finditer(
      r'File "([^"]+)", line (\d+), in [^\n]*\n([^\n]*)', str(error))]
  config_dir = pathlib.Path(path).resolve().parent
  inside = [f for f in frames if pathlib.Path(f[0]).resolve().parent == config_dir]
  if not inside:
    return what
  filename, lineno, line = inside[-1]
  return f"config file {filename}, line {lineno} (`{line}`): {what}"


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; options are --flags")
  if _PRINT_CONFIG.value:
    # Validated as training validates it, so that what prints is what trains. The checks that
    # depend on the devices (batch divisible by their count) wait for the devices of the run.
    from ls_jax.trainer import config_checks  # pylint: disable=g-import-not-at-top
    from ls_jax.trainer import default_config  # pylint: disable=g-import-not-at-top
    try:
      config_checks.validate(_CONFIG.value, reference=default_config.get_config(), device_count=1)
    except errors.UserError as e:
      _fail(str(e))
    print(_CONFIG.value, end="", flush=True)
    return
  if not _WORKDIR.value:
    _fail("--workdir is required, e.g. --workdir=runs/mnist1d")
  if not flags.FLAGS["verbosity"].present:  # Orbax and JAX log every save at INFO: keep it quiet.
    logging.set_verbosity(logging.WARNING)
  import jax  # pylint: disable=g-import-not-at-top  # After flags: --help stays fast.
  if _COMPILATION_CACHE.value:
    jax.config.update("jax_compilation_cache_dir",
                      str(pathlib.Path(_COMPILATION_CACHE.value).expanduser()))
    # Every compilation is worth keeping: the small models' steps compile in ~1 s, under the
    # default threshold, and they are what a sweep recompiles hundreds of times.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  from ls_jax.trainer import train  # pylint: disable=g-import-not-at-top
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
    _leave_cluster_and_exit(0)
  except errors.UserError as e:
    _fail(str(e))
  except Exception as e:  # pylint: disable=broad-except  # A bug: keep the trace, print one line.
    log = pathlib.Path(_WORKDIR.value) / "error.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(traceback.format_exc())
    print(f"ls_jax: internal error: {type(e).__name__}: {errors.one_line(e)} (traceback in {log}; "
          "please report it)", file=sys.stderr, flush=True)
    _exit(1)
  if jax.process_index() == 0:
    print(train.summary_line(results, _CONFIG.value, _WORKDIR.value), flush=True)
  _leave_cluster_and_exit(0)


def _leave_cluster_and_exit(status: int) -> None:
  """`_exit`, after the processes of a multi-process run have left together (a barrier)."""
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() > 1:
    jax.distributed.shutdown()
  _exit(status)


def _launched_by_cluster() -> bool:
  """SLURM with several tasks, or a multi-host TPU slice: `initialize()` reads the rest itself."""
  return int(os.environ.get("SLURM_NTASKS", "1")) > 1 or "TPU_WORKER_HOSTNAMES" in os.environ


def run() -> None:
  # absl prints the main module's docstring for --help; the console script has none.
  sys.modules["__main__"].__doc__ = USAGE
  app.run(main, flags_parser=parse_flags)
