"""Training and evaluation: one jitted, data-parallel train step driven by an ml-collections config.

The same code runs on one CPU, on 8 devices, or on many hosts: the batch is sharded over the
`data` axis of a device mesh (`NamedSharding`, the pjit way) and params are replicated, so XLA
inserts the gradient all-reduce. `config.parallelism='pmap'` runs the same step under `jax.pmap`
with an explicit `pmean` (`ls_jax.trainer.parallel`).

Reproducibility: the data order is a function of (seed, step) (see `input_pipeline`), and the
step's randomness is `fold_in(seed, step)`. A resumed run therefore replays exactly the
uninterrupted one, bit for bit on the same machine and software versions.

The loop is generic: the task (`ls_jax.trainer.tasks`: classification with the losses of the
method table, or next-token language modelling) says how a batch becomes inputs, what its loss
is, and what evaluation keeps.
"""
import collections
import functools
import json
import sys
import time
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ls_jax import models
from ls_jax.trainer import checkpointing
from ls_jax.trainer import distillation
from ls_jax.trainer import evaluation
from ls_jax.trainer import finished_runs
from ls_jax.trainer import host
from ls_jax.trainer import input_pipeline
from ls_jax.trainer import interrupts
from ls_jax.trainer import methods
from ls_jax.trainer import parallel
from ls_jax.trainer import state as state_lib
from ls_jax.trainer import tasks
from ls_jax.trainer.errors import NonFiniteLoss, UserError
from ls_jax.trainer.metrics_writer import MetricsWriter, Progress
from ls_jax.trainer.state import TrainState, model_variables


def train_step(state: TrainState, metric_sums: dict[str, jax.Array], batch: dict[str, jax.Array],
               base_rng: jax.Array, teacher_variables: Optional[dict[str, Any]] = None, *,
               model: flax.linen.Module, config: ml_collections.ConfigDict, task: tasks.Task,
               teacher_model: Optional[flax.linen.Module] = None,
               axis_name: Optional[str] = None,
               vocab_mesh: Optional[jax.sharding.Mesh] = None,
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on a global batch (or on a device's shard under pmap, `axis_name` set).

  The step's metrics are added to `metric_sums` on device, so the host reads them once per
  logging interval instead of once per step. With a teacher (`ls_jax.trainer.distillation`), its
  logits on the same inputs enter the loss; it gets no gradient. With `vocab_mesh`, a language
  model's loss is split over the vocabulary on the mesh's `model` axis.
  """
  rng = jax.random.fold_in(base_rng, state.step)
  inputs, targets = task.prepare(rng, batch, config)
  teacher_logits = None
  if teacher_model is not None:
    teacher_logits = jax.lax.stop_gradient(
        teacher_model.apply(teacher_variables, inputs, train=False))

  (loss, (logits, batch_stats)), grads = task.loss_and_grads(
      model, model_variables(state, state.params), inputs, batch["label"], targets, config,
      teacher_logits=teacher_logits, vocab_mesh=vocab_mesh,
      has_batch_stats=state.batch_stats is not None)
  if axis_name is not None:  # Under jit the mean over the global batch already spans devices.
    grads, loss = jax.lax.pmean((grads, loss), axis_name)
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)  # The norm is finite iff every entry is.
  updated = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  # A non-finite step changes nothing but the counters: params stay the last good ones.
  state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), updated,
                       state.replace(step=updated.step))
  state = state.replace(
      num_nonfinite_steps=state.num_nonfinite_steps + (~finite).astype(jnp.int32),
      first_nonfinite_step=jnp.where((state.first_nonfinite_step < 0) & ~finite,
                                     updated.step - 1, state.first_nonfinite_step))
  metrics = {"loss": loss, "grad_norm": grad_norm, **task.step_metrics(logits, batch["label"])}
  if axis_name is not None:
    metrics = jax.lax.pmean(metrics, axis_name)
  return state, jax.tree.map(jnp.add, metric_sums, metrics)


def compile_train_step(parallelism: parallel.Parallelism, model: flax.linen.Module,
                       config: ml_collections.ConfigDict, *, resident_data: bool,
                       teacher_model: Optional[flax.linen.Module] = None, state_sharding=None):
  """`train_step` for `config`'s task, compiled for `parallelism` (`Parallelism.compile_step`)."""
  return parallelism.compile_step(train_step, resident_data=resident_data,
                                  state_sharding=state_sharding, model=model, config=config,
                                  task=tasks.task_for(config), teacher_model=teacher_model)


def eval_outputs(state: TrainState, inputs: jax.Array, labels: jax.Array, *,
                 model: flax.linen.Module, config: ml_collections.ConfigDict,
                 task: tasks.Task) -> dict[str, jax.Array]:
  """What evaluation keeps of one batch (the task's `eval_outputs`)."""
  return task.eval_outputs(model, model_variables(state, state.params), inputs, labels, config)


def get_model(config: ml_collections.ConfigDict, task: tasks.Task) -> flax.linen.Module:
  """The model `config` names; the task adds its own arguments (a language model's size)."""
  return models.get_model(config.model.name, num_classes=config.num_classes,
                          dtype=jnp.dtype(config.compute_dtype), **task.model_kwargs(config))


def _example_shape(split: input_pipeline.Split, config,
                   task: tasks.Task) -> tuple[tuple[int, ...], jnp.dtype]:
  """One example's shape and dtype; streamed (ImageNet-sized) splits give the crop size."""
  if split.images is not None:
    return split.images.shape[1:], task.input_dtype
  return (config.data.image_size, config.data.image_size, 3), jnp.float32


# ------------------------------------------------------------------------------------------------
# Jitted functions reused across the runs of one process (a sweep worker's).

# What a run's jitted functions depend on besides its config: the seed enters them only as an
# argument (the keys, and the data order, chosen on the host), and `init_from` only on the host.
_NOT_TRACED_FIELDS = ("seed", "init_from")
_REUSED: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
# The functions of this many configs are kept, the most recently used: a sweep of up to this many
# points gets them back on its next seed (its seeds are outermost), at ~20 MiB a config for the
# MNIST-1D CNN (executables and traces).
_REUSED_CONFIGS = 16


def _reuse_key(config: ml_collections.ConfigDict, parallelism: parallel.Parallelism,
               input_shape: tuple[int, ...], input_dtype) -> str:
  """Equal for two runs whose jitted functions are the same: all of the config but
  `_NOT_TRACED_FIELDS`, the devices and the example shape."""
  fields = config.to_dict()
  for name in _NOT_TRACED_FIELDS:
    fields.pop(name)
  return json.dumps([fields, parallelism.strategy, parallelism.mesh.axis_names,
                     parallelism.mesh.devices.shape, [d.id for d in parallelism.mesh.devices.flat],
                     input_shape, jnp.dtype(input_dtype).name], sort_keys=True, default=repr)


def _reused(key: Optional[str], name: str, build: Callable[[], Any]) -> Any:
  """`build()`, or what it returned for the same `key` and `name` earlier in this process (key
  None: always built).

  A sweep worker trains the seeds of a point one after another: the second seed on reuses the
  first one's jitted functions instead of tracing and lowering them again (~0.25 s of a
  2000-step run; the persistent compilation cache already spares the compilation itself).
  """
  if key is None:
    return build()
  functions = _REUSED.setdefault(key, {})
  _REUSED.move_to_end(key)
  while len(_REUSED) > _REUSED_CONFIGS:
    _REUSED.popitem(last=False)
  if name not in functions:
    functions[name] = build()
  return functions[name]


# ------------------------------------------------------------------------------------------------
# The loop.


def _stop_requested(stop: interrupts.StopRequest, at_sync_point: bool) -> bool:
  """Whether to stop now. With several processes, all must agree on the step where they stop,
  so the flags are only compared (one small all-gather) at sync points, the logging steps."""
  if jax.process_count() == 1:
    return stop.signal_name is not None
  if not at_sync_point:
    return False
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  flags = multihost_utils.process_allgather(np.int32(stop.signal_name is not None))
  return bool(np.any(flags))


def environment_info(mesh: jax.sharding.Mesh) -> dict[str, Any]:
  """What produced a result: device, host CPU, software versions (bit-identity needs all equal)."""
  import platform  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  device = mesh.devices.flat[0]
  return {"jax_version": jax.__version__, "jaxlib_version": jaxlib.__version__,
          "flax_version": flax.__version__, "optax_version": optax.__version__,
          "numpy_version": np.__version__, "python_version": platform.python_version(),
          "backend": jax.default_backend(), "device_kind": device.device_kind,
          "device_count": mesh.size, "process_count": jax.process_count(),
          "cpu_model": host.cpu_model(), "cpu_cores_available": host.cores_available()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, restart: bool = False,
                       devices: Optional[list[jax.Device]] = None) -> dict[str, Any]:
  """Trains (resuming from `workdir` if it holds a run), evaluates, writes results.json.

  `devices` defaults to every device of every process; `restart` moves an existing run aside.
  """
  from ls_jax.trainer import config_checks  # pylint: disable=g-import-not-at-top
  from ls_jax.trainer import default_config  # pylint: disable=g-import-not-at-top
  devices = jax.devices() if devices is None else devices
  interrupts.set_situation(interrupts.BEFORE_FIRST_STEP)  # A second run in the same process.
  config_checks.validate(config, reference=default_config.get_config(), device_count=len(devices))
  mesh = parallel.data_mesh(devices, config.model_axis_size)
  run = checkpointing.RunDirectory(workdir, config, restart=restart)
  is_main = jax.process_index() == 0

  dataset = input_pipeline.load_dataset(config.data, num_classes=config.num_classes,
                                        seed=config.seed)
  task = tasks.task_for(config)
  if (dataset.vocabulary is not None) != isinstance(task, tasks.LanguageModel):
    raise UserError(f"config.model.name={config.model.name!r} does not fit dataset "
                    f"{config.data.name!r}: language models ({', '.join(models.LANGUAGE_MODELS)}) "
                    "train on token data, classifiers on labelled examples")
  model = get_model(config, task)
  if config.parallelism == "pmap" and hasattr(model, "bn_axis_name"):
    model = model.clone(bn_axis_name="data")  # Batch statistics over all devices, as under jit.
  input_shape, input_dtype = _example_shape(dataset.train, config, task)
  tx = state_lib.make_optimizer(config.optimizer, config.num_steps)
  parallelism = parallel.Parallelism(config.parallelism, mesh)
  # The init draws from an `rbg` key: it compiles 2-3x faster than threefry for the same
  # model. The step's randomness (augmentation, mixing) stays on threefry `fold_in(seed, step)`.
  init_rng = jax.random.key(config.seed, impl="rbg")
  step_rng = jax.random.key(config.seed)
  reuse_key = _reuse_key(config, parallelism, input_shape, input_dtype)

  def jitted_init():
    init = functools.partial(state_lib.create_train_state, model=model, input_shape=input_shape,
                             tx=tx, input_dtype=input_dtype)
    state_sharding = parallelism.state_sharding(jax.eval_shape(init, init_rng))
    return jax.jit(init, out_shardings=state_sharding), state_sharding

  init, state_sharding = _reused(reuse_key, "init", jitted_init)
  state = init(init_rng)
  if config.init_from and run.latest_step() is None:  # A checkpoint of this run wins.
    state = finished_runs.warm_start(state, config)
  state = run.restore_or_keep(state)
  start_step = int(state.step)
  if start_step:
    interrupts.set_situation(f"before training resumed from step {start_step}; the checkpoint "
                             "is intact, rerun the same command to resume")
    if is_main:
      print(f"ls_jax: resuming from step {start_step} in {workdir}", file=sys.stderr, flush=True)

  writer = MetricsWriter(workdir, enabled=is_main)
  if start_step == 0 and dataset.noise_report is not None:
    writer.write_text("label_noise",
                      f"realized rate {dataset.noise_report.realized_noise_rate:.4f}")
  feed = parallel.make_feed(dataset.train, config, parallelism, start_step)
  teacher_model, teacher_variables = None, None
  if config.distill.teacher_workdir:
    teacher = distillation.load_teacher(config, parallelism.replicate_array)
    teacher_model, teacher_variables = teacher.model, teacher.variables
  resident_data = isinstance(feed, parallel.ResidentFeed)
  step_fn = _reused(
      None if teacher_model is not None else reuse_key, f"step, resident data {resident_data}",
      lambda: compile_train_step(parallelism, model, config, resident_data=resident_data,
                                 teacher_model=teacher_model, state_sharding=state_sharding))
  eval_forward = _reused(reuse_key, "eval", lambda: evaluation.compile_forward(
      functools.partial(eval_outputs, model=model, config=config, task=task), parallelism,
      state_sharding))
  state = parallelism.to_device(state)
  step_metrics = task.step_metric_names
  metric_sums = parallelism.new_metric_sums(step_metrics)
  schedule = state_lib.learning_rate_schedule(config.optimizer, config.num_steps)

  progress = Progress(start_step, config.num_steps, enabled=is_main)
  train_seconds, interval_start = 0.0, time.perf_counter()
  with interrupts.StopRequest() as stop:
    for step in range(start_step + 1, config.num_steps + 1):
      state, metric_sums = step_fn(state, metric_sums, *feed(step - 1), step_rng,
                                   teacher_variables)
      at_log = step % config.log_every_steps == 0 or step == config.num_steps
      at_checkpoint = step % config.checkpoint_every_steps == 0 or step == config.num_steps
      at_eval = bool(config.eval_every_steps) and step % config.eval_every_steps == 0
      if at_log or at_checkpoint or at_eval:
        _check_finite(state, config, run, step)
        summary = {name: total / (step - progress.last_step)
                   for name, total in parallelism.read_metric_sums(metric_sums).items()}
        metric_sums = parallelism.new_metric_sums(step_metrics)
        elapsed = time.perf_counter() - interval_start
        train_seconds += elapsed
        summary["learning_rate"] = float(schedule(step - 1))
        summary["steps_per_second"] = (step - progress.last_step) / elapsed
        writer.write_scalars(step, summary)
        progress.update(step, summary)
        if at_eval and step < config.num_steps:  # The final evaluation covers the last step.
          outputs = evaluation.evaluate(parallelism.from_device(state), dataset.validation,
                                        forward=eval_forward, config=config,
                                        parallelism=parallelism)
          writer.write_scalars(step, _validation_scalars(task.split_metrics(outputs), task))
        if at_checkpoint:
          run.save(step, parallelism.from_device(state),
                   train_seconds=train_seconds + run.previous_train_seconds)
        interval_start = time.perf_counter()
      if _stop_requested(stop, at_sync_point=at_log):
        _check_finite(state, config, run, step)
        train_seconds += time.perf_counter() - interval_start
        run.save(step, parallelism.from_device(state),
                 train_seconds=train_seconds + run.previous_train_seconds, wait=True)
        progress.close()
        raise Interrupted(f"stopped by {stop.signal_name} after step {step}; checkpoint saved in "
                          f"{run.checkpoint_dir}; rerun the same command to resume")
  progress.close()
  run.wait()
  interrupts.set_situation(f"after training, during the final evaluation; the final checkpoint "
                           f"is in {run.checkpoint_dir}: rerun the same command to evaluate")

  state = parallelism.from_device(state)
  evaluate_split = functools.partial(evaluation.evaluate, state, forward=eval_forward,
                                     config=config, parallelism=parallelism)
  results, predictions = task.final_results(evaluate_split(dataset.validation),
                                            evaluate_split(dataset.test))
  results.update({
      "steps": int(state.step), "examples_seen": int(state.step) * config.batch_size,
      "train_seconds": train_seconds + run.previous_train_seconds,
      "nonfinite_steps_skipped": int(state.num_nonfinite_steps),
      "label_noise_realized_rate": (dataset.noise_report.realized_noise_rate
                                    if dataset.noise_report is not None else 0.0),
      "environment": environment_info(parallelism.mesh), "config": config.to_dict(),
  })
  writer.write_scalars(int(state.step), {
      **_validation_scalars(results["validation"], task),
      **{f"test/{k}": v for k, v in results.items() if isinstance(v, float)}})
  writer.write_predictions(predictions)
  writer.write_results(results)
  writer.close()
  return results


def _validation_scalars(metrics: dict[str, float], task: tasks.Task) -> dict[str, float]:
  return {f"val/{name}": metrics[name] for name in task.validation_metric_names}


class Interrupted(Exception):
  """A clean stop on a signal, with a checkpoint written: the caller exits 0."""


def _check_finite(state: TrainState, config, run, step: int) -> None:
  first_bad = int(jax.device_get(state.first_nonfinite_step).reshape(-1)[0])
  if first_bad >= 0 and config.nonfinite_loss == "stop":
    last = run.latest_step()
    kept = f"the last good checkpoint is step {last} in {run.checkpoint_dir}" if last else (
        "no checkpoint had been written yet")
    raise NonFiniteLoss(f"the loss or gradient became non-finite at step {first_bad + 1}; "
                        f"stopped at step {step} without saving; {kept} (lower the learning rate "
                        "or set --config.nonfinite_loss=skip)")


def summary_line(results: dict[str, Any], config: ml_collections.ConfigDict, workdir: str) -> str:
  """A README-table row: what was trained, and the test metrics that answer the papers."""
  return tasks.task_for(config).summary_line(results, config, methods.label(config.to_dict()),
                                             workdir)
