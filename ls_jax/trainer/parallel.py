"""Devices and data feeds: the mesh, how the step runs on it (jit with NamedSharding, or pmap),
and how batches reach it (device-resident splits, or host batches).

The step function is an argument (`Parallelism.compile_step`), so this module knows nothing of
what a step computes.
"""
import dataclasses
import functools
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np

from ls_jax.trainer import input_pipeline
from ls_jax.trainer.state import TrainState


def data_mesh(devices=None, model_axis_size: int = 1) -> jax.sharding.Mesh:
  """A mesh over all devices (of all processes), with sharding left to GSPMD: 1-D, axis `data`,
  or with `model_axis_size > 1`, 2-D `(data, model)`, consecutive devices on one `model` row."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  if model_axis_size == 1:
    return jax.sharding.Mesh(devices, ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  return jax.sharding.Mesh(devices.reshape(-1, model_axis_size), ("data", "model"),
                           axis_types=(jax.sharding.AxisType.Auto,) * 2)


@dataclasses.dataclass
class Parallelism:
  """How the step runs across devices: `jit` with NamedSharding, or `pmap`."""
  strategy: str
  mesh: jax.sharding.Mesh

  @property
  def replicated(self):
    return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())

  @property
  def vocab_parallel(self) -> bool:
    """Whether the mesh has a `model` axis: a language model's vocabulary is split over it."""
    return self.mesh.shape.get("model", 1) > 1

  def state_sharding(self, state: TrainState):
    """Replicated, except on a `model` axis: there the vocabulary-sized parameters (token
    embedding `[V, d]`, untied output kernel `[d, V]`) and their optimizer moments are split over
    `model` along V, as `losses.vocab_parallel_linear_smoothed_cross_entropy` reads them."""
    if not self.vocab_parallel:
      return self.replicated
    spec = jax.sharding.PartitionSpec

    def sharding(path, _):
      keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
      if keys[-1] == "embedding" and "token_embed" in keys:
        return jax.sharding.NamedSharding(self.mesh, spec("model", None))
      if keys[-1] == "output_kernel":
        return jax.sharding.NamedSharding(self.mesh, spec(None, "model"))
      return self.replicated

    return jax.tree_util.tree_map_with_path(sharding, state)

  @property
  def data_sharded(self):
    return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec("data"))

  @property
  def local_devices(self) -> list[jax.Device]:
    return [d for d in self.mesh.devices.flat if d.process_index == jax.process_index()]

  def global_batch(self, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """Process-local NumPy batch -> global array sharded over `data` (jit) or per device (pmap)."""
    if self.strategy == "pmap":
      count = len(self.local_devices)
      return jax.tree.map(lambda x: x.reshape((count, -1) + x.shape[1:]), local_batch)
    if jax.process_count() == 1:  # Same result, ~0.1 ms less per step (MNIST-1D steps are ~1 ms).
      return jax.device_put(local_batch, self.data_sharded)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self.data_sharded, x), local_batch)

  def compile_step(self, train_step: Callable[..., Any], *, resident_data: bool,
                   state_sharding=None, **step_kwargs):
    """`train_step(state, metric_sums, batch, rng, teacher_variables, **step_kwargs)`, jitted (or
    pmapped). With `resident_data`, the compiled step takes the device-resident training split
    and the epoch's order (`ResidentFeed`) and gathers its own batch; else a host batch. Its last
    argument is the teacher's variables (None without distillation). `state_sharding` is
    `self.state_sharding(state)` (default: replicated)."""
    kwargs = step_kwargs
    if self.strategy == "pmap":
      return jax.pmap(functools.partial(train_step, axis_name="data", **kwargs), axis_name="data",
                      in_axes=(0, 0, 0, None, None), donate_argnums=(0, 1),
                      devices=list(self.mesh.devices.flat))
    if resident_data:
      step = functools.partial(_step_on_resident_data, train_step=train_step,
                               batch_sharding=self.data_sharded, **kwargs)
      inputs = (self.replicated, self.replicated)
    else:
      step = functools.partial(train_step, **kwargs)
      inputs = (self.data_sharded,)
    if self.vocab_parallel:
      step = functools.partial(step, vocab_mesh=self.mesh)
    state_sharding = state_sharding or self.replicated
    return jax.jit(step, in_shardings=(state_sharding, self.replicated, *inputs, self.replicated,
                                       self.replicated),
                   out_shardings=(state_sharding, self.replicated), donate_argnums=(0, 1))

  def replicate_array(self, x: np.ndarray) -> jax.Array:
    """A host array, identical on every process, as one replicated global array."""
    return jax.make_array_from_callback(x.shape, self.replicated, lambda index: x[index])

  def to_device(self, state: TrainState) -> TrainState:
    if self.strategy == "pmap":
      return flax.jax_utils.replicate(state, self.local_devices)
    return jax.device_put(state, self.state_sharding(state))

  def new_metric_sums(self, names: tuple[str, ...]) -> dict[str, jax.Array]:
    """Zeroed on-device sums of the step's metrics, read once per logging interval."""
    if self.strategy == "pmap":
      return flax.jax_utils.replicate(_zero_metric_sums(names), self.local_devices)
    return _metric_sums_maker(names, self.replicated)()

  def read_metric_sums(self, sums: dict[str, jax.Array]) -> dict[str, float]:
    fetched = jax.device_get(sums)
    if self.strategy == "pmap":  # Identical across devices after pmean: keep device 0.
      fetched = jax.tree.map(lambda x: x[0], fetched)
    return {name: float(value) for name, value in fetched.items()}

  def from_device(self, state: TrainState) -> TrainState:
    """The state as one copy (checkpointing, evaluation)."""
    if self.strategy == "pmap":
      return jax.device_put(flax.jax_utils.unreplicate(state), self.replicated)
    return state


class HostFeed:
  """Streaming splits, or pmap: the host builds each batch and copies it to the devices."""

  def __init__(self, split: input_pipeline.Split, config, parallelism: Parallelism,
               start_step: int):
    self._batches = input_pipeline.train_batches(
        split, start_step=start_step, num_steps=config.num_steps, batch_size=config.batch_size,
        seed=config.seed, process_index=jax.process_index(), process_count=jax.process_count())
    self._parallelism = parallelism

  def __call__(self, step: int) -> tuple[dict[str, jax.Array]]:
    del step  # The iterator is already at `step`.
    return (self._parallelism.global_batch(next(self._batches)),)


class ResidentFeed:
  """In-memory splits under jit: the split is copied to the devices once, and each step gathers
  its own batch there (`_step_on_resident_data`). The host only uploads each epoch's order."""

  def __init__(self, split: input_pipeline.Split, config, parallelism: Parallelism):
    input_pipeline.check_batch_fits(split, config.batch_size)
    self._data = {"image": parallelism.replicate_array(split.images),
                  "label": parallelism.replicate_array(split.labels)}
    self._order_of = functools.partial(input_pipeline.epoch_order, num_examples=len(split),
                                       batch_size=config.batch_size, seed=config.seed)
    self._steps_per_epoch = len(split) // config.batch_size
    self._parallelism = parallelism
    self._epoch, self._order = None, None

  def __call__(self, step: int) -> tuple[dict[str, jax.Array], jax.Array]:
    if step // self._steps_per_epoch != self._epoch:
      self._epoch = step // self._steps_per_epoch
      self._order = self._parallelism.replicate_array(self._order_of(step).astype(np.int32))
    return self._data, self._order


def make_feed(split: input_pipeline.Split, config, parallelism: Parallelism,
              start_step: int) -> HostFeed | ResidentFeed:
  """A device-resident feed for in-memory splits under jit; host batches otherwise."""
  if split.images is not None and parallelism.strategy == "jit":
    return ResidentFeed(split, config, parallelism)
  return HostFeed(split, config, parallelism, start_step)


def _step_on_resident_data(state: TrainState, metric_sums: dict[str, jax.Array],
                           data: dict[str, jax.Array], epoch_order: jax.Array, base_rng: jax.Array,
                           teacher_variables: Optional[dict[str, Any]] = None, *,
                           train_step: Callable[..., Any], batch_sharding: jax.sharding.Sharding,
                           **step_kwargs) -> tuple[TrainState, dict[str, jax.Array]]:
  """`train_step` on a batch gathered on device from a device-resident split (no host copy).

  The sharding constraint makes each device gather only its own slice of the global batch.
  """
  batch = input_pipeline.take_batch(data, epoch_order, state.step, step_kwargs["config"].batch_size)
  batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
  return train_step(state, metric_sums, batch, base_rng, teacher_variables, **step_kwargs)


def _zero_metric_sums(names: tuple[str, ...]) -> dict[str, jax.Array]:
  return {name: jnp.zeros((), jnp.float32) for name in names}


@functools.lru_cache(maxsize=None)
def _metric_sums_maker(names: tuple[str, ...], sharding: jax.sharding.Sharding):
  """One jitted zero-maker per (names, sharding): the loop asks for new sums at every logging
  step, and a fresh `jax.jit` each time would trace and lower again (~7 ms)."""
  return jax.jit(functools.partial(_zero_metric_sums, names), out_shardings=sharding)
