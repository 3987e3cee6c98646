"""Evaluation of a split on the mesh: the task's forward outputs of every example, gathered on
every process. What the outputs mean (logits, per-token numbers) is the task's business
(`ls_jax.trainer.tasks`)."""
from typing import Callable

import jax
import numpy as np

from ls_jax import calibration
from ls_jax.trainer import input_pipeline
from ls_jax.trainer.errors import NonFiniteLoss
from ls_jax.trainer.parallel import Parallelism
from ls_jax.trainer.state import TrainState


def compile_forward(eval_outputs: Callable[..., dict[str, jax.Array]], parallelism: Parallelism,
                    state_sharding=None):
  """`eval_outputs(state, inputs, labels)` jitted on the mesh, compiled once per run."""
  return jax.jit(eval_outputs,
                 in_shardings=(state_sharding or parallelism.replicated, parallelism.data_sharded,
                               parallelism.data_sharded),
                 out_shardings=parallelism.data_sharded)


def evaluate(state: TrainState, split: input_pipeline.Split, *, forward, config,
             parallelism: Parallelism) -> dict[str, np.ndarray]:
  """`forward`'s outputs (`compile_forward`) and the labels of every example of a split, as
  float32 / int / bool NumPy arrays on every process, under the names the task's `eval_outputs`
  gives them plus "label"."""
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  devices = parallelism.mesh.size
  batch_size = -(-config.eval_batch_size // devices) * devices
  kept = []
  for batch in input_pipeline.eval_batches(split, batch_size=batch_size,
                                           process_index=jax.process_index(),
                                           process_count=jax.process_count()):
    images, labels, mask = (jax.make_array_from_process_local_data(parallelism.data_sharded, x)
                            for x in (batch["image"], batch["label"], batch["mask"]))
    outputs = {**forward(state, images, labels), "label": labels, "mask": mask}
    if jax.process_count() > 1:
      gathered = multihost_utils.process_allgather(outputs, tiled=True)
    else:
      gathered = jax.device_get(outputs)
    keep = np.asarray(gathered.pop("mask"), bool)
    kept.append({name: np.asarray(x)[keep] for name, x in gathered.items()})
  arrays = {name: np.concatenate([batch[name] for batch in kept]).astype(
      np.float32 if np.issubdtype(kept[0][name].dtype, np.floating) else kept[0][name].dtype)
            for name in kept[0]}
  if not all(np.all(np.isfinite(x)) for x in arrays.values() if x.dtype == np.float32):
    raise NonFiniteLoss(
        f"the model's outputs on split {split.name!r} are not finite: the parameters diverged "
        f"(by step {int(jax.device_get(state.step))}; nonfinite_loss=skip only skips updates whose "
        "loss or gradient is already non-finite); the checkpoints are kept (lower the learning "
        "rate)")
  return arrays


def bins_json(bins: calibration.ReliabilityBins) -> dict[str, list]:
  """Reliability bins as results.json stores them (what scripts/plot_calibration.py draws)."""
  as_list = lambda x: [None if np.isnan(v) else float(v) for v in np.asarray(x, np.float64)]
  return {"edges": as_list(bins.edges), "mean_confidence": as_list(bins.mean_confidence),
          "accuracy": as_list(bins.accuracy), "count": [int(c) for c in bins.count]}
