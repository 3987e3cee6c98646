"""A finished run as the start of a new one: its model and final variables, checked against the new
run's config.

Two config fields name a finished run's workdir:
* `distill.teacher_workdir`: its model teaches the new one (`ls_jax.trainer.distillation`);
* `init_from`: its final weights initialize the new one, with a fresh optimizer state and step 0
  (fine-tuning; e.g. the CE warm-up before negative label smoothing in Wei et al. 2022).
A run is finished when its last checkpoint is at its `num_steps` and its results.json exists.
"""
import json
import pathlib
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ls_jax.trainer import checkpointing
from ls_jax import models
from ls_jax.trainer.errors import UserError


def load(workdir: str, config: ml_collections.ConfigDict, *, field: str, this_run: str
         ) -> tuple[flax.linen.Module, dict[str, Any], dict[str, Any]]:
  """The model, final NumPy variables and config of the finished run in `workdir`.

  Errors name the config `field` that points there and the run being configured as `this_run`
  ("the student"). A missing or unfinished run, or one trained on other data or classes, is a
  one-line `UserError`.
  """
  path = pathlib.Path(workdir)
  config_path = path / "config.json"
  if not config_path.exists():
    raise UserError(f"{field}={str(path)!r} holds no run (no config.json); train it there first")
  run_config = json.loads(config_path.read_text())
  steps = sorted(int(p.name) for p in (path / "checkpoints").glob("*") if p.name.isdigit())
  if not steps or steps[-1] < run_config["num_steps"] or not (path / "results.json").exists():
    done = steps[-1] if steps else 0
    raise UserError(f"{field}={str(path)!r} is unfinished (step {done} of "
                    f"{run_config['num_steps']}); rerun its command to finish it first")
  for name, ours, theirs in (("num_classes", config.num_classes, run_config["num_classes"]),
                             ("data.name", config.data.name, run_config["data"]["name"])):
    if ours != theirs:
      raise UserError(f"{field}={str(path)!r} has {name}={theirs!r}, {this_run} {ours!r}")
  model, variables = saved_model(path, steps[-1])
  return model, variables, run_config


def saved_model(workdir: pathlib.Path, step: int) -> tuple[flax.linen.Module, dict[str, Any]]:
  """The model of the run in `workdir` (from its config.json) and its NumPy variables at `step`.

  Reads `checkpoints/<step>` on any topology (`checkpointing.read_state_arrays`); the variables
  are `{'params': ...}`, plus `'batch_stats'` for BatchNorm models.
  """
  config = json.loads((pathlib.Path(workdir) / "config.json").read_text())
  state = checkpointing.read_state_arrays(pathlib.Path(workdir) / "checkpoints" / str(step))
  variables = {"params": state["params"]}
  if state.get("batch_stats") is not None:
    variables["batch_stats"] = state["batch_stats"]
  model = models.get_model(config["model"]["name"], num_classes=config["num_classes"],
                           dtype=jnp.dtype(config["compute_dtype"]))
  return model, variables


def warm_start(state, config: ml_collections.ConfigDict):
  """`state` (a fresh `train.TrainState`) with the final params and batch statistics of the run in
  `config.init_from`, placed with `state`'s shardings; the optimizer state and step stay fresh."""
  source = f"init_from={config.init_from!r}"
  _, variables, run_config = load(config.init_from, config, field="init_from", this_run="this run")
  if run_config["model"]["name"] != config.model.name:
    raise UserError(f"{source} has model.name={run_config['model']['name']!r}, "
                    f"this run {config.model.name!r}")
  ours = {"params": state.params}
  if state.batch_stats is not None:
    ours["batch_stats"] = state.batch_stats
  theirs_shapes = jax.tree.map(np.shape, variables)
  if jax.tree.map(np.shape, ours) != theirs_shapes:
    raise UserError(f"{source} has other parameter shapes than this run (a different model "
                    "size); init_from needs the same architecture")
  # As `Parallelism.replicate_array`: every process holds the same host array, so no cross-process
  # check per leaf (which `device_put` of a host array onto a multi-process sharding does).
  placed = jax.tree.map(
      lambda new, old: jax.make_array_from_callback(
          old.shape, old.sharding, lambda index, x=np.asarray(new, old.dtype): x[index]),
      variables, ours)
  return state.replace(params=placed["params"], batch_stats=placed.get("batch_stats"))
