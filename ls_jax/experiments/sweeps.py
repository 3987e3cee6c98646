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
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_sweep"):
    raise ValueError(f"sweep file {path} does not define get_sweep(arg)")
  sweep = module.get_sweep(arg)
  missing = {"config", "points", "seeds"} - set(sweep)
  if missing:
    raise ValueError(f"sweep file {path}: get_sweep() must return the key {sorted(missing)[0]!r}")
  sweep = {**sweep, "points": list(sweep["points"]), "seeds": [int(s) for s in sweep["seeds"]]}
  for point in sweep["points"]:
    if "seed" in point:
      raise ValueError(f"sweep file {path}: set seeds with 'seeds', not in a point ({point})")
  return sweep


def format_value(value: Any) -> str:
  """A value as workdir names and command lines spell it: floats by `:g` (0.1, 1e-05, 0)."""
  return f"{value:g}" if isinstance(value, float) else str(value)


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
  overrides = {**{k: format_value(v) for k, v in run.overrides.items()}, "seed": str(run.seed),
               **(extra_overrides or {})}
  return [python, str(train_script), f"--config={run.config}",
          *[f"--config.{key}={value}" for key, value in overrides.items()],
          f"--workdir={pathlib.Path(out_dir) / run.name}"]


def shell_line(argv: list[str]) -> str:
  return " ".join(shlex.quote(a) for a in argv)


def slurm_script(commands_file: str, num_tasks: int, log_dir: str, workdir: str) -> str:
  """A SLURM array job running line `SLURM_ARRAY_TASK_ID + 1` of `commands_file` per task, from
  the directory `workdir` (where the commands' relative paths start: the repository).

  Scheduling is SLURM's; add `#SBATCH` lines (partition, time, GPUs) for your cluster, or pass
  them to `sbatch` on its command line. `%a` in the log name is the array index.
  """
  return (
      "#!/usr/bin/env bash\n"
      f"#SBATCH --array=0-{num_tasks - 1}\n"
      "#SBATCH --ntasks=1\n"
      f"#SBATCH --output={log_dir}/slurm-%A_%a.log\n"
      "set -euo pipefail\n"
      f"cd {shlex.quote(str(workdir))}\n"
      f'eval "$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(commands_file)})"\n')
