"""The run directory: the config a run was started with, and its Orbax checkpoints.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a run
killed mid-save (even `kill -9`) resumes from the last complete checkpoint. The workdir records
the config it was started with; resuming with a config that changes the experiment is refused.
"""
import json
import pathlib
import time
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from ls_jax.trainer import errors
from ls_jax.trainer import default_config
from ls_jax.trainer.default_config import BOOKKEEPING_FIELDS
from ls_jax.trainer.errors import UserError


def config_differences(saved: dict[str, Any], current: dict[str, Any]
                       ) -> list[tuple[str, Any, Any]]:
  """`(field, saved value, current value)` of every field in which two configs (as dicts) are a
  different experiment: all but the bookkeeping fields a resumed run may change. The one test of
  "same run" for a resume here and for a sweep's finished runs (`ls_jax.experiments.sweeps`)."""
  saved, current = default_config.flatten(saved), default_config.flatten(current)
  return [(key, saved.get(key), current.get(key)) for key in sorted(set(saved) | set(current))
          if key not in BOOKKEEPING_FIELDS and saved.get(key) != current.get(key)]


class RunDirectory:
  """`<workdir>/config.json` and `<workdir>/checkpoints/<step>`."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, *, restart: bool = False):
    self.workdir = pathlib.Path(workdir)
    self.checkpoint_dir = self.workdir / "checkpoints"
    config_path = self.workdir / "config.json"
    if restart and self.workdir.exists() and jax.process_index() == 0:
      # Never delete a run: move it aside.
      aside = self.workdir.with_name(f"{self.workdir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
      self.workdir.rename(aside)
      print(f"ls_jax: moved the previous run to {aside}", flush=True)
    _sync("restart")
    if config_path.exists():
      self._check_same_experiment(json.loads(config_path.read_text()), config.to_dict())
    elif jax.process_index() == 0:
      self.workdir.mkdir(parents=True, exist_ok=True)
      tmp = config_path.with_suffix(".json.tmp")
      tmp.write_text(json.dumps(config.to_dict(), indent=2, default=list))
      tmp.rename(config_path)
    _sync("config")
    self._manager = ocp.CheckpointManager(
        self.checkpoint_dir.absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True,
                                             cleanup_tmp_directories=True))
    self.previous_train_seconds = 0.0

  def _check_same_experiment(self, saved: dict, current: dict) -> None:
    for key, there, now in config_differences(saved, current)[:1]:
      raise UserError(
          f"workdir {self.workdir} holds a run with a different config ({key}: "
          f"{there!r} there, {now!r} now), so it cannot be resumed; use "
          "another --workdir, or pass --restart to move that run aside and start fresh")

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def restore_or_keep(self, state):
    """The latest checkpoint restored into `state`'s structure and shardings, else `state`."""
    step = self.latest_step()
    if step is None:
      return state
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), progress=ocp.args.JsonRestore()))
    except Exception as e:  # Orbax/TensorStore raise many types; the message is what matters.
      raise UserError(
          f"checkpoint {self.checkpoint_dir / str(step)} cannot be restored "
          f"({type(e).__name__}: {errors.one_line(e)[:200]}); "
          "delete that step directory to resume from an earlier one, or pass --restart") from None
    self.previous_train_seconds = restored.progress["train_seconds"]
    return restored.state

  def save(self, step: int, state, *, train_seconds: float = 0.0, wait: bool = False) -> None:
    if step not in self._manager.all_steps():  # A stop right after a scheduled save: done.
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          progress=ocp.args.JsonSave({"train_seconds": train_seconds})))
    if wait:
      self._manager.wait_until_finished()

  def wait(self) -> None:
    self._manager.wait_until_finished()


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(f"ls_jax:{name}")



def read_state_arrays(step_dir: str) -> dict[str, Any]:
  """A saved train state as a tree of NumPy arrays, on any topology (for analysis and tests)."""
  # The item's handler, not a `Checkpointer`: a Checkpointer looks for the step's metadata file
  # (`_CHECKPOINT_METADATA`) inside the item directory, where `CheckpointManager` never writes
  # it (it is one level up, in the step directory), and logs a warning on every load.
  handler = ocp.PyTreeCheckpointHandler()
  path = pathlib.Path(step_dir).absolute() / "state"
  try:
    metadata = handler.metadata(path)
    metadata = getattr(metadata, "item_metadata", metadata)
    metadata = getattr(metadata, "tree", metadata)
    return handler.restore(path, args=ocp.args.PyTreeRestore(restore_args=jax.tree.map(
        lambda _: ocp.RestoreArgs(restore_type=np.ndarray), metadata)))
  finally:
    handler.close()
