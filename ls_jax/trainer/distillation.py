"""Knowledge distillation in the trainer: a finished run's model as the teacher of a new one.

`--config.distill.teacher_workdir=runs/teacher` restores the teacher from that run directory: its
own `config.json` says which model it is, its last checkpoint gives the variables. The teacher
runs inside the student's jitted, sharded step on the same (augmented) inputs, without gradient,
and the student's loss is `losses.distillation_loss` (Hinton et al. 2015):
`(1 - w) * hard-label loss + w * T^2 * KL(softmax(teacher / T) || softmax(student / T))`.
"""
import dataclasses
from typing import Any

import flax
import jax
import ml_collections
import numpy as np

from ls_jax.trainer import finished_runs


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
  workdir = config.distill.teacher_workdir
  model, variables, _ = finished_runs.load(workdir, config, field="distill.teacher_workdir",
                                           this_run="the student")
  return Teacher(model=model, variables=jax.tree.map(lambda x: replicate(np.asarray(x)), variables),
                 workdir=workdir)
