"""Sweep files: loading them, naming their runs, and the train.py command line of each run.

A sweep file (`configs/sweeps/*.py`) is plain Python with `get_sweep(arg: str) -> dict`:

  {"config": "configs/mnist1d.py",          # base config, with its `:variant` if any
   "points": [{"loss.label_smoothing": 0.1}, ...],   # override dicts (configs/sweeps/common.py)
   "seeds": range(10)}

Every point runs once per seed. Two keys of a point are not config fields: `config` replaces the
base config for that point, and `name` replaces its overrides in the workdir name (for overrides
that are long, such as a teacher's path, or that do not define the experiment, such as checkpoint
intervals). A string value may hold `{seed}`, replaced by the run's seed: a student distilled from
the teacher of the same seed (configs/sweeps/distillation_students.py).
`scripts/sweep.py` runs them; this module holds what the runner, its tests and the analysis share.
Paths are the caller's: a sweep file is read from its path (relative to the working directory, and
its `configs.sweeps` imports need the repository on `sys.path`, which `scripts/sweep.py` sets), and
`command` is given the train script to run.
"""
import importlib.util
import pathlib
import re
import shlex
import sys
import traceback
from typing import Any, NamedTuple


class Run(NamedTuple):
  """One train.py run: a config file (with variant), its overrides, its seed, its workdir name."""
  name: str
  config: str
  overrides: dict[str, Any]
  seed: int


def split_spec(spec: str) -> tuple[str, str]:
  """`'configs/sweeps/x.py:arg'` -> `('configs/sweeps/x.py', 'arg')`."""
  path, _, arg = spec.partition(":")
  return path, arg


def load(spec: str) -> dict[str, Any]:
  """Imports the sweep file `path[:arg]` and returns its checked `get_sweep(arg)`."""
  path, arg = split_spec(spec)
  if not pathlib.Path(path).is_file():
    raise ValueError(f"sweep file {path} does not exist")
  module_spec = importlib.util.spec_from_file_location(f"_sweep_{pathlib.Path(path).stem}", path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_sweep"):
      raise ValueError(f"sweep file {path} does not define get_sweep(arg)")
    sweep = module.get_sweep(arg)
  except Exception as e:  # pylint: disable=broad-except  # The sweep file's own errors.
    raise ValueError(_where(e, path)) from None
  missing = {"config", "points", "seeds"} - set(sweep)
  if missing:
    raise ValueError(f"sweep file {path}: get_sweep() must return the key {sorted(missing)[0]!r}")
  sweep = {**sweep, "points": list(sweep["points"]), "seeds": [int(s) for s in sweep["seeds"]]}
  for point in sweep["points"]:
    if "seed" in point:
      raise ValueError(f"sweep file {path}: set seeds with 'seeds', not in a point ({point})")
  return sweep


def _where(error: BaseException, path: str) -> str:
  """`file:line: message` of an exception raised while importing or calling a sweep file: the
  deepest frame in the sweep file itself, else the deepest frame (a helper it called)."""
  if isinstance(error, ValueError) and str(error).startswith(f"sweep file {path} "):
    return str(error)
  message = " ".join(str(error).split())
  if not isinstance(error, ValueError):  # ValueErrors are the sweep files' deliberate messages.
    message = f"{type(error).__name__}: {message}" if message else type(error).__name__
  if isinstance(error, SyntaxError):
    return f"{error.filename}:{error.lineno}: SyntaxError: {error.msg}"
  frames = traceback.extract_tb(error.__traceback__)
  target = pathlib.Path(path).resolve()
  inside = [f for f in frames if pathlib.Path(f.filename).resolve() == target]
  frame = (inside or frames or [None])[-1]
  return f"{frame.filename}:{frame.lineno}: {message}" if frame else f"{path}: {message}"


def format_value(value: Any) -> str:
  """A value as workdir names and command lines spell it, a float so that it parses back to
  itself: `:g` where that round-trips (0.1, 1e-05, 0, 3: the names of the existing runs), else
  `repr`, the shortest string that does (0.1234567, not `:g`'s 0.123457). Distinct floats get
  distinct strings."""
  if isinstance(value, float):
    short = f"{value:g}"
    return short if float(short) == value or value != value else repr(value)
  return str(value)


def workdir_name(config: str, overrides: dict[str, Any], seed: int, label: str = "") -> str:
  """A stable, readable, filesystem-safe name: `mnist1d-mlp_loss.label_smoothing=0.1_seed3`.

  The config file's stem and variant, then `label` if given, else the overrides in the order the
  sweep file gives them.
  """
  path, variant = split_spec(config)
  parts = [pathlib.Path(path).stem + (f"-{variant}" if variant else "")]
  parts += [label] if label else [f"{key}={format_value(value)}" for key, value in overrides.items()]
  parts.append(f"seed{seed}")
  return re.sub(r"[^A-Za-z0-9_.=+-]", "-", "_".join(parts))


def runs(sweep: dict[str, Any], seeds: list[int] | None = None) -> list[Run]:
  """Every (point, seed) of a loaded sweep, seeds outermost so that early results cover all points.

  Raises:
    ValueError: if two runs would share a workdir (two identical points).
  """
  result, names = [], set()
  for seed in sweep["seeds"] if seeds is None else seeds:
    for point in sweep["points"]:
      overrides = {k: v.replace("{seed}", str(seed)) if isinstance(v, str) else v
                   for k, v in point.items() if k not in ("config", "name")}
      config = point.get("config", sweep["config"])
      name = workdir_name(config, overrides, seed, point.get("name", ""))
      if name in names:
        raise ValueError(f"two runs of the sweep are both named {name} (a repeated point?)")
      names.add(name)
      result.append(Run(name, config, overrides, seed))
  return result


def command(run: Run, out_dir: str, train_script: str,
            extra_overrides: dict[str, str] | None = None, python: str = sys.executable
            ) -> list[str]:
  """The argv that runs `train_script` (the path of `scripts/train.py`) for `run`, writing to
  `out_dir/run.name`.

  `extra_overrides` (e.g. `{"num_steps": "20"}` for a smoke test) go last, so they win; they are
  not part of the workdir name, so give such runs their own `out_dir`.
  """
  return [python, str(train_script), *config_args(run, extra_overrides),
          f"--workdir={pathlib.Path(out_dir) / run.name}"]


def shell_line(argv: list[str]) -> str:
  return " ".join(shlex.quote(a) for a in argv)


def config_args(run: Run, extra_overrides: dict[str, str] | None = None) -> list[str]:
  """The `--config...` arguments of `command`: the config file, the run's overrides, its seed."""
  overrides = {**{k: format_value(v) for k, v in run.overrides.items()}, "seed": str(run.seed),
               **(extra_overrides or {})}
  return [f"--config={run.config}", *[f"--config.{key}={value}" for key, value in overrides.items()]]


def build_config(run: Run, extra_overrides: dict[str, str] | None = None, root: str = "."):
  """The config `command(run, ...)` trains, parsed from that command line by ml_collections
  `config_flags` exactly as train.py parses it (not yet validated: `resolve`). `root` is the
  directory the command runs in (relative config paths start there).

  Raises:
    ValueError: one line naming the field, for an unknown field or a value of the wrong type, or
      the config file's own error.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top  # Only the runner needs these.
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  args = config_args(run, extra_overrides)
  path, _ = split_spec(run.config)
  if not (pathlib.Path(root) / path).is_file():
    raise ValueError(f"config file {path} does not exist")
  args[0] = f"--config={pathlib.Path(root) / run.config}"
  argv = ["train.py", *args]
  flag_values = flags.FlagValues()
  holder = config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values,
                                           lock_config=True, sys_argv=argv)
  try:
    flag_values(argv)
    return holder.value
  except (KeyError, AttributeError) as e:
    key = re.findall(r"[A-Za-z_]\w*", str(e))
    field = next((a.split("=")[0][len("--config."):] for a in args[1:]
                  if key and key[0] in a.split("=")[0].split(".")), key[0] if key else str(e))
    raise ValueError(f"unknown config field {field!r}") from None
  except flags.Error as e:
    cause = e.__context__ or e
    what = " ".join(str(cause).split())
    if "Error whilst parsing config file" in str(e):  # The config file's own error: its last line.
      what = re.sub(r"^ValueError: ", "", str(e).strip().splitlines()[-1])
    flag = re.match(r"flag --config\.([\w.]+)=", str(e))
    raise ValueError(f"config.{flag.group(1)}: {what}" if flag else what) from None


def resolve(run: Run, extra_overrides: dict[str, str] | None = None, root: str = "."):
  """`build_config`, validated as train.py validates it (`ls_jax.trainer.config_checks`). The
  checks that need the devices (the batch divisible by their number) are left to the run.

  Raises:
    ValueError: one line naming the field: unknown, of the wrong type, or out of range.
  """
  from ls_jax.trainer import config_checks, default_config  # pylint: disable=g-import-not-at-top
  from ls_jax.trainer.errors import UserError  # pylint: disable=g-import-not-at-top
  config = build_config(run, extra_overrides, root)
  try:
    device_count = config.get("model_axis_size", 1)
    device_count = device_count if isinstance(device_count, int) and device_count > 0 else 1
    config_checks.validate(config, reference=default_config.get_config(),
                           device_count=device_count)
  except UserError as e:
    raise ValueError(str(e)) from None
  return config


def config_differences(there: dict[str, Any], here: dict[str, Any]) -> list[tuple[str, Any, Any]]:
  """`(field, value there, value here)` of every field in which a saved run's config (`there`,
  config.json or results.json's `config`) differs from the config a sweep would train (`here`),
  by the trainer's own comparison: the fields `RunDirectory` lets a resumed run change are not
  differences, and a run that differs in any other one is a different experiment."""
  from ls_jax.trainer import checkpointing  # pylint: disable=g-import-not-at-top
  return checkpointing.config_differences(there, here)


def slurm_script(commands_file: str, num_tasks: int, log_dir: str, *, time: str = "24:00:00",
                 cpus_per_task: int = 2, mem: str = "8G", throttle: int = 0,
                 python: str = "python", job_name: str = "ls_jax_sweep",
                 extra_sbatch: tuple[str, ...] = ()) -> str:
  """A SLURM array job running line `SLURM_ARRAY_TASK_ID + 1` of `commands_file` per task.

  Nothing in it is an absolute path of this machine: it runs in `$LS_JAX_REPO`, by default the
  directory `sbatch` was called from (submit from the repository), and the commands' `$PYTHON` is
  `$LS_JAX_PYTHON`, by default `python` (a path relative to the repository, such as
  `.venv/bin/python`, works on any node that sees the repository). `commands_file` and `log_dir`
  are relative to the repository (or absolute, if they are outside it). `throttle` > 0 runs at most
  that many tasks at once (`--array=0-N%throttle`). `%a` in the log name is the array index.
  """
  array = f"0-{num_tasks - 1}" + (f"%{throttle}" if throttle > 0 else "")
  return (
      "#!/usr/bin/env bash\n"
      f"#SBATCH --job-name={job_name}\n"
      f"#SBATCH --array={array}\n"
      "#SBATCH --ntasks=1\n"
      f"#SBATCH --cpus-per-task={cpus_per_task}\n"
      f"#SBATCH --mem={mem}\n"
      f"#SBATCH --time={time}\n"
      f"#SBATCH --output={log_dir}/slurm-%A_%a.log\n"
      + "".join(f"#SBATCH {line}\n" for line in extra_sbatch) +
      "set -euo pipefail\n"
      "# The repository (where the commands' relative paths start) and the Python that runs them;\n"
      "# set LS_JAX_REPO / LS_JAX_PYTHON to override, e.g. where nodes mount it elsewhere.\n"
      'cd "${LS_JAX_REPO:-$SLURM_SUBMIT_DIR}"\n'
      f'PYTHON="${{LS_JAX_PYTHON:-{python}}}"\n'
      f'eval "$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(commands_file)})"\n')
