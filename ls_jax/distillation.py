"""Knowledge distillation in the trainer: a finished run's model as the teacher of a new one.

`--config.distill.teacher_workdir=runs/teacher` restores the teacher from that run directory: its
own `config.json` says which model it is, its last checkpoint gives the variables. The teacher
runs inside the student's jitted, sharded step on the same (augmented) inputs, without gradient,
and the student's loss is `losses.distillation_loss` (Hinton et al. 2015):
`(1 - w) * hard-label loss + w * T^2 * KL(softmax(teacher / T) || softmax(student / T))`.
"""
import dataclasses
import json
import pathlib
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ls_jax import checkpointing
from ls_jax import models
from ls_jax.errors import UserError


@dataclasses.dataclass
class Teacher:
  model: flax.linen.Module      # Static: part of the compiled step.
  variables: dict[str, Any]     # Replicated arrays: an argument of the step.
  workdir: str


def load_teacher(config: ml_collections.ConfigDict, replicate) -> Teacher:
  """The teacher named by `config.distill.teacher_workdir`, checked against the student's config.

  `replicate` places a host array on the step's devices (`Parallelism.replicate_array`). A missing
  or unfinished teacher, or one trained on other data or classes, is a one-line `UserError`.
  """
  workdir = pathlib.Path(config.distill.teacher_workdir)
  config_path = workdir / "config.json"
  if not config_path.exists():
    raise UserError(f"distill.teacher_workdir={str(workdir)!r} holds no run (no config.json); "
                    "train the teacher there first")
  teacher_config = json.loads(config_path.read_text())
  steps = sorted(int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit())
  if not steps or steps[-1] < teacher_config["num_steps"] or not (workdir / "results.json").exists():
    done = steps[-1] if steps else 0
    raise UserError(f"teacher {workdir} is unfinished (step {done} of "
                    f"{teacher_config['num_steps']}); rerun its command to finish it first")
  for field, ours, theirs in (("num_classes", config.num_classes, teacher_config["num_classes"]),
                              ("data.name", config.data.name, teacher_config["data"]["name"])):
    if ours != theirs:
      raise UserError(f"teacher {workdir} has {field}={theirs!r}, the student {ours!r}")
  model, variables = saved_model(workdir, steps[-1])
  return Teacher(model=model, variables=jax.tree.map(lambda x: replicate(np.asarray(x)), variables),
                 workdir=str(workdir))


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
