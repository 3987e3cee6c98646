"""Training and evaluation: one jitted, data-parallel train step driven by an ml-collections config.

The same code runs on one CPU, on 8 devices, or on many hosts: the batch is sharded over the
`data` axis of a device mesh (`NamedSharding`, the pjit way) and params are replicated, so XLA
inserts the gradient all-reduce. `config.parallelism='pmap'` runs the same step under `jax.pmap`
with an explicit `pmean`.

Reproducibility: the data order is a function of (seed, step) (see `input_pipeline`), and the
step's randomness is `fold_in(seed, step)`. A resumed run therefore replays exactly the
uninterrupted one, bit for bit on CPU.

Two tasks share the loop: classification (logits from the model, `objective`), and next-token
language modelling (`config.model.name` in `models.LANGUAGE_MODELS`), whose model returns hidden
states and whose output layer is fused into the loss (`next_token_loss`), so that the
(tokens, vocabulary) logits are never built in the step; evaluation then computes per-token
metrics one batch at a time (`next_token_outputs`).
"""
import dataclasses
import functools
import sys
import time
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state
from scipy import special

from ls_jax import calibration
from ls_jax.trainer import checkpointing
from ls_jax.trainer import distillation
from ls_jax.trainer import finished_runs
from ls_jax.trainer import host
from ls_jax.trainer import input_pipeline
from ls_jax.trainer import interrupts
from ls_jax import losses
from ls_jax import mixing
from ls_jax import models
from ls_jax.trainer import tokenizer
from ls_jax.trainer.errors import UserError
from ls_jax.trainer import methods
from ls_jax.trainer.metrics_writer import MetricsWriter, Progress


class TrainState(train_state.TrainState):
  batch_stats: Any
  # Updates whose loss or gradient was not finite are not applied (see `train_step`).
  num_nonfinite_steps: jax.Array
  first_nonfinite_step: jax.Array  # -1 while every step was finite.


class NonFiniteLoss(UserError):
  pass


# ------------------------------------------------------------------------------------------------
# The step.


def next_token_loss(model: flax.linen.Module, variables: dict[str, Any], tokens: jax.Array,
                    labels: jax.Array, config: ml_collections.ConfigDict,
                    vocab_mesh: Optional[jax.sharding.Mesh] = None) -> jax.Array:
  """Mean label-smoothed CE (+ z-loss) of the next tokens `labels` over the non-padding ones.

  The output layer is applied inside `losses.linear_smoothed_cross_entropy`, chunk by chunk over
  the vocabulary, so no `(tokens, V)` logits exist in the forward or the backward pass. With
  `vocab_mesh`, `losses.vocab_parallel_linear_smoothed_cross_entropy` splits V over its `model`
  axis and the tokens over `data`.
  """
  hidden = model.apply(variables, tokens, where=tokens != tokenizer.PAD_ID, train=True)
  kernel = model.apply(variables, method="output_kernel")
  where = labels != tokenizer.PAD_ID
  loss_fn = losses.linear_smoothed_cross_entropy
  if vocab_mesh is not None:
    loss_fn = functools.partial(losses.vocab_parallel_linear_smoothed_cross_entropy,
                                mesh=vocab_mesh)
  per_token = loss_fn(hidden, kernel, labels, config.loss.label_smoothing, where=where,
                      z_loss=config.lm.z_loss, chunk_size=config.lm.chunk_size)
  return per_token.sum() / jnp.maximum(where.sum(), 1)


METRIC_NAMES = ("loss", "accuracy", "mean_confidence", "grad_norm")
# A language model's step never has its logits: token accuracy and confidence come from evaluation.
LANGUAGE_MODEL_METRIC_NAMES = ("loss", "grad_norm")


def metric_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return (LANGUAGE_MODEL_METRIC_NAMES if config.model.name in models.LANGUAGE_MODELS
          else METRIC_NAMES)


def zero_metric_sums(names: tuple[str, ...] = METRIC_NAMES) -> dict[str, jax.Array]:
  return {name: jnp.zeros((), jnp.float32) for name in names}


def train_step(state: TrainState, metric_sums: dict[str, jax.Array], batch: dict[str, jax.Array],
               base_rng: jax.Array, teacher_variables: Optional[dict[str, Any]] = None, *,
               model: flax.linen.Module, config: ml_collections.ConfigDict,
               teacher_model: Optional[flax.linen.Module] = None,
               axis_name: Optional[str] = None,
               vocab_mesh: Optional[jax.sharding.Mesh] = None,
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on a global batch (or on a device's shard under pmap, `axis_name` set).

  The step's metrics are added to `metric_sums` on device, so the host reads them once per
  logging interval instead of once per step. With a teacher (`ls_jax.trainer.distillation`), its logits
  on the same inputs enter the loss; it gets no gradient. A language model's batch holds input
  tokens as "image" and the next tokens as "label", both `[batch, seq_len]`; with `vocab_mesh`,
  its loss is split over the vocabulary on the mesh's `model` axis.
  """
  language_model = config.model.name in models.LANGUAGE_MODELS
  rng = jax.random.fold_in(base_rng, state.step)
  augment_rng, mix_rng = jax.random.split(rng)
  images, targets, teacher_logits = batch["image"], None, None
  if not language_model:
    images = input_pipeline.normalize(images, config.data.name, jnp.dtype(config.compute_dtype))
    if config.data.augment == "crop_flip":
      images = input_pipeline.random_crop_flip(augment_rng, images)
    images, targets = methods.mix_batch(mix_rng, images, batch["label"], config)
  if teacher_model is not None:
    teacher_logits = jax.lax.stop_gradient(
        teacher_model.apply(teacher_variables, images, train=False))

  def loss_fn(params):
    variables = model_variables(state, params)
    if language_model:
      return next_token_loss(model, variables, images, batch["label"], config,
                             vocab_mesh), (None, None)
    if state.batch_stats is not None:
      logits, updates = model.apply(variables, images, train=True, mutable=["batch_stats"])
    else:
      logits, updates = model.apply(variables, images, train=True), {}
    loss = methods.per_example_loss(logits, batch["label"], targets, config,
                                   teacher_logits).mean()
    return loss, (logits, updates.get("batch_stats"))

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
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
  metrics = {"loss": loss, "grad_norm": grad_norm}
  if not language_model:
    metrics["accuracy"] = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    metrics["mean_confidence"] = jnp.mean(jnp.max(jax.nn.softmax(logits), -1))
  if axis_name is not None:
    metrics = jax.lax.pmean(metrics, axis_name)
  return state, jax.tree.map(jnp.add, metric_sums, metrics)


def train_step_on_resident_data(state: TrainState, metric_sums: dict[str, jax.Array],
                                data: dict[str, jax.Array], epoch_order: jax.Array,
                                base_rng: jax.Array,
                                teacher_variables: Optional[dict[str, Any]] = None, *,
                                batch_sharding: jax.sharding.Sharding,
                                **step_kwargs) -> tuple[TrainState, dict[str, jax.Array]]:
  """`train_step` on a batch gathered on device from a device-resident split (no host copy).

  The sharding constraint makes each device gather only its own slice of the global batch.
  """
  batch = input_pipeline.take_batch(data, epoch_order, state.step, step_kwargs["config"].batch_size)
  batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
  return train_step(state, metric_sums, batch, base_rng, teacher_variables, **step_kwargs)


def eval_outputs(state: TrainState, images: jax.Array, labels: jax.Array, *,
                 model: flax.linen.Module,
                 config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
  """What evaluation keeps of one batch: a classifier's logits, or a language model's per-token
  numbers (`next_token_outputs`)."""
  variables = model_variables(state, state.params)
  if config.model.name in models.LANGUAGE_MODELS:
    return next_token_outputs(model, variables, images, labels)
  images = input_pipeline.normalize(images, config.data.name, jnp.dtype(config.compute_dtype))
  return {"logits": model.apply(variables, images, train=False)}


def next_token_outputs(model: flax.linen.Module, variables: dict[str, Any], tokens: jax.Array,
                       labels: jax.Array) -> dict[str, jax.Array]:
  """Per next token `[batch, seq_len]`: top-1 confidence and correctness, NLL and the entropy of
  the predicted distribution, and `where` (not padding).

  Only this batch's logits exist, for the length of this function: a split's worth of
  (tokens, V) logits would not fit in memory at vocabulary scale.
  """
  hidden = model.apply(variables, tokens, where=tokens != tokenizer.PAD_ID, train=False)
  logits = jnp.dot(hidden, model.apply(variables, method="output_kernel"),
                   preferred_element_type=jnp.float32).astype(jnp.float32)
  log_probs = jax.nn.log_softmax(logits)
  return {
      "confidence": jnp.exp(jnp.max(log_probs, -1)),
      "correct": jnp.argmax(logits, -1) == labels,
      "nll": -jnp.take_along_axis(log_probs, labels[..., None], -1)[..., 0],
      "entropy": losses.entropy(logits),
      "where": labels != tokenizer.PAD_ID,
  }


def model_variables(state: TrainState, params) -> dict[str, Any]:
  """Flax variables: params, and BatchNorm statistics for the models that have them."""
  if state.batch_stats is None:
    return {"params": params}
  return {"params": params, "batch_stats": state.batch_stats}


# ------------------------------------------------------------------------------------------------
# Set-up: optimizer, state, parallelism.


def learning_rate_schedule(opt: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  if opt.schedule == "constant":
    decayed = optax.constant_schedule(opt.learning_rate)
  elif opt.schedule == "cosine":
    decayed = optax.cosine_decay_schedule(opt.learning_rate, num_steps - opt.warmup_steps)
  else:  # step: multiply by decay_factor at each boundary (fractions of the run).
    decayed = optax.piecewise_constant_schedule(
        opt.learning_rate,
        {int(b * num_steps) - opt.warmup_steps: opt.decay_factor for b in opt.decay_boundaries})
  if not opt.warmup_steps:
    return decayed
  warmup = optax.linear_schedule(0.0, opt.learning_rate, opt.warmup_steps)
  return optax.join_schedules([warmup, decayed], [opt.warmup_steps])


def make_optimizer(opt: ml_collections.ConfigDict, num_steps: int) -> optax.GradientTransformation:
  schedule = learning_rate_schedule(opt, num_steps)
  # Decay kernels only: decaying biases and BatchNorm scales is known to hurt (Goyal et al. 2017).
  kernels_only = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  chain = []
  if opt.grad_clip_norm:
    chain.append(optax.clip_by_global_norm(opt.grad_clip_norm))
  if opt.name == "sgd":
    # Classic L2 (He et al. 2016; Zhang et al. 2018): decay added to the gradient before momentum.
    if opt.weight_decay:
      chain.append(optax.add_decayed_weights(opt.weight_decay, mask=kernels_only))
    chain.append(optax.sgd(schedule, momentum=opt.momentum, nesterov=opt.nesterov))
  else:  # Adam, with decoupled decay (AdamW, Loshchilov & Hutter 2019) when weight_decay > 0.
    chain.append(optax.adamw(schedule, weight_decay=opt.weight_decay, mask=kernels_only))
  return optax.chain(*chain)


def create_train_state(rng: jax.Array, model: flax.linen.Module, input_shape: tuple[int, ...],
                       tx: optax.GradientTransformation, input_dtype=jnp.float32) -> TrainState:
  variables = model.init(rng, jnp.zeros((1,) + input_shape, input_dtype), train=False)
  return TrainState.create(
      apply_fn=model.apply, params=variables["params"], tx=tx,
      batch_stats=variables.get("batch_stats"),
      num_nonfinite_steps=jnp.zeros((), jnp.int32),
      first_nonfinite_step=jnp.full((), -1, jnp.int32))


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

  def compile_step(self, model, config, *, resident_data: bool, teacher_model=None,
                   state_sharding=None):
    """The jitted (or pmapped) step. With `resident_data`, it takes the device-resident training
    split and the epoch's order (`ResidentFeed`) and gathers its own batch; else a host batch.
    Its last argument is the teacher's variables (None without distillation). `state_sharding`
    is `self.state_sharding(state)` (default: replicated)."""
    kwargs = dict(model=model, config=config, teacher_model=teacher_model)
    if self.strategy == "pmap":
      return jax.pmap(functools.partial(train_step, axis_name="data", **kwargs), axis_name="data",
                      in_axes=(0, 0, 0, None, None), donate_argnums=(0, 1),
                      devices=list(self.mesh.devices.flat))
    if resident_data:
      step = functools.partial(train_step_on_resident_data, batch_sharding=self.data_sharded,
                               **kwargs)
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

  def new_metric_sums(self, names: tuple[str, ...] = METRIC_NAMES) -> dict[str, jax.Array]:
    if self.strategy == "pmap":
      return flax.jax_utils.replicate(zero_metric_sums(names), self.local_devices)
    return jax.jit(functools.partial(zero_metric_sums, names), out_shardings=self.replicated)()

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
  its own batch there (`train_step_on_resident_data`). The host only uploads each epoch's order."""

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


# ------------------------------------------------------------------------------------------------
# Evaluation.


def compile_eval_outputs(model, config, parallelism: Parallelism, state_sharding=None):
  """The jitted forward pass of evaluation (`eval_outputs`), compiled once per run."""
  return jax.jit(functools.partial(eval_outputs, model=model, config=config),
                 in_shardings=(state_sharding or parallelism.replicated, parallelism.data_sharded,
                               parallelism.data_sharded),
                 out_shardings=parallelism.data_sharded)


def evaluate(state: TrainState, split: input_pipeline.Split, *, forward, config,
             parallelism: Parallelism) -> dict[str, np.ndarray]:
  """`forward`'s outputs (`compile_eval_outputs`) and the labels of every example of a split, as
  float32 / int / bool NumPy arrays on every process, under the names `eval_outputs` gives them
  plus "label"."""
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


def split_metrics(outputs: dict[str, np.ndarray]) -> dict[str, float]:
  """A split's metrics from `evaluate`: `calibration.calibration_metrics` of a classifier's
  logits, or a language model's per-token metrics (`token_metrics`)."""
  if "logits" in outputs:
    return calibration.calibration_metrics(outputs["logits"], outputs["label"])
  return token_metrics(next_tokens(outputs))


def next_tokens(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """A language model's `evaluate` outputs `[sequences, seq_len]` as `[tokens]`, padding dropped."""
  where = outputs["where"]
  return {name: x[where] for name, x in outputs.items() if name != "where"}


def token_metrics(tokens: dict[str, np.ndarray], num_bins: int = 15) -> dict[str, float]:
  """Next-token accuracy, NLL, perplexity = exp(NLL), ECE over tokens (equal-width bins, as for
  classifiers), mean top-1 confidence and mean entropy (nats) of the predicted distribution."""
  nll = float(np.mean(tokens["nll"], dtype=np.float64))
  return {
      "accuracy": float(np.mean(tokens["correct"])),
      "nll": nll,
      "perplexity": float(np.exp(nll)),
      "ece": calibration.confidence_calibration_error(tokens["confidence"], tokens["correct"],
                                                      num_bins),
      "mean_confidence": float(np.mean(tokens["confidence"], dtype=np.float64)),
      "entropy": float(np.mean(tokens["entropy"], dtype=np.float64)),
      "tokens": int(len(tokens["nll"])),
  }


def final_evaluation(state, dataset: input_pipeline.Dataset, *, forward, config,
                     parallelism) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """Test metrics, plus temperature scaling fitted on validation (Guo et al. 2017).

  Also returns the predictions (float32 logits and labels of both splits) that analyses of a
  finished run read from `predictions.npz`, without retraining. For a language model, the
  metrics are `token_metrics` and the predictions are per next token (padding dropped):
  `{val,test}_{confidence,correct,nll,entropy,labels}`, not logits (a split's logits are
  tokens x V floats); there is no temperature scaling.
  """
  evaluate_split = functools.partial(evaluate, state, forward=forward, config=config,
                                     parallelism=parallelism)
  val_outputs, test_outputs = evaluate_split(dataset.validation), evaluate_split(dataset.test)
  if "logits" not in test_outputs:
    return next_token_evaluation(next_tokens(val_outputs), next_tokens(test_outputs))
  val_logits, val_labels = val_outputs["logits"], val_outputs["label"]
  test_logits, test_labels = test_outputs["logits"], test_outputs["label"]
  temperature = calibration.fit_temperature(val_logits, val_labels)
  scaled_logits = test_logits / temperature
  results = {
      **calibration.calibration_metrics(test_logits, test_labels),
      "validation": calibration.calibration_metrics(val_logits, val_labels),
      "temperature": float(temperature),
      "temperature_scaled": calibration.calibration_metrics(scaled_logits, test_labels),
      # What a reliability diagram and a confidence histogram draw (scripts/plot_calibration.py).
      "reliability": _reliability_json(test_logits, test_labels),
      "reliability_temperature_scaled": _reliability_json(scaled_logits, test_labels),
  }
  predictions = {"val_logits": val_logits, "val_labels": val_labels,
                 "test_logits": test_logits, "test_labels": test_labels}
  return results, predictions


def next_token_evaluation(
    val_tokens: dict[str, np.ndarray],
    test_tokens: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """`final_evaluation` of a language model, from the per-token outputs of both splits."""
  results = {**token_metrics(test_tokens), "validation": token_metrics(val_tokens),
             "reliability": _bins_json(calibration.confidence_reliability_bins(
                 test_tokens["confidence"], test_tokens["correct"]))}
  predictions = {f"{split}_{'labels' if name == 'label' else name}": x
                 for split, tokens in (("val", val_tokens), ("test", test_tokens))
                 for name, x in tokens.items()}
  return results, predictions


def _reliability_json(logits: np.ndarray, labels: np.ndarray) -> dict[str, list]:
  return _bins_json(calibration.reliability_bins(
      special.softmax(logits.astype(np.float64), axis=1), labels))


def _bins_json(bins: calibration.ReliabilityBins) -> dict[str, list]:
  as_list = lambda x: [None if np.isnan(v) else float(v) for v in np.asarray(x, np.float64)]
  return {"edges": as_list(bins.edges), "mean_confidence": as_list(bins.mean_confidence),
          "accuracy": as_list(bins.accuracy), "count": [int(c) for c in bins.count]}


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
          "cpu_model": host.cpu_model()}


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
  mesh = data_mesh(devices, config.model_axis_size)
  run = checkpointing.RunDirectory(workdir, config, restart=restart)
  is_main = jax.process_index() == 0

  dataset = input_pipeline.load_dataset(config.data, num_classes=config.num_classes,
                                        seed=config.seed)
  if (dataset.vocabulary is not None) != (config.model.name in models.LANGUAGE_MODELS):
    raise UserError(f"config.model.name={config.model.name!r} does not fit dataset "
                    f"{config.data.name!r}: language models ({', '.join(models.LANGUAGE_MODELS)}) "
                    "train on token data, classifiers on labelled examples")
  model = get_model(config)
  if config.parallelism == "pmap" and hasattr(model, "bn_axis_name"):
    model = model.clone(bn_axis_name="data")  # Batch statistics over all devices, as under jit.
  input_shape, input_dtype = _example_shape(dataset.train, config)
  tx = make_optimizer(config.optimizer, config.num_steps)
  parallelism = Parallelism(config.parallelism, mesh)
  # The init draws from an `rbg` key: it compiles 2-3x faster than threefry for the same
  # model. The step's randomness (augmentation, mixing) stays on threefry `fold_in(seed, step)`.
  init_rng = jax.random.key(config.seed, impl="rbg")
  step_rng = jax.random.key(config.seed)
  init = functools.partial(create_train_state, model=model, input_shape=input_shape, tx=tx,
                           input_dtype=input_dtype)
  state_sharding = parallelism.state_sharding(jax.eval_shape(init, init_rng))
  state = jax.jit(init, out_shardings=state_sharding)(init_rng)
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
  feed = make_feed(dataset.train, config, parallelism, start_step)
  teacher_model, teacher_variables = None, None
  if config.distill.teacher_workdir:
    teacher = distillation.load_teacher(config, parallelism.replicate_array)
    teacher_model, teacher_variables = teacher.model, teacher.variables
  step_fn = parallelism.compile_step(model, config, resident_data=isinstance(feed, ResidentFeed),
                                     teacher_model=teacher_model, state_sharding=state_sharding)
  eval_forward = compile_eval_outputs(model, config, parallelism, state_sharding)
  state = parallelism.to_device(state)
  step_metrics = metric_names(config)
  metric_sums = parallelism.new_metric_sums(step_metrics)
  schedule = learning_rate_schedule(config.optimizer, config.num_steps)

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
          outputs = evaluate(parallelism.from_device(state), dataset.validation,
                             forward=eval_forward, config=config, parallelism=parallelism)
          writer.write_scalars(step, _validation_scalars(split_metrics(outputs)))
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
  results, predictions = final_evaluation(state, dataset, forward=eval_forward, config=config,
                                          parallelism=parallelism)
  results.update({
      "steps": int(state.step), "examples_seen": int(state.step) * config.batch_size,
      "train_seconds": train_seconds + run.previous_train_seconds,
      "nonfinite_steps_skipped": int(state.num_nonfinite_steps),
      "label_noise_realized_rate": (dataset.noise_report.realized_noise_rate
                                    if dataset.noise_report is not None else 0.0),
      "environment": environment_info(parallelism.mesh), "config": config.to_dict(),
  })
  writer.write_scalars(int(state.step), {
      **_validation_scalars(results["validation"]),
      **{f"test/{k}": v for k, v in results.items() if isinstance(v, float)}})
  writer.write_predictions(predictions)
  writer.write_results(results)
  writer.close()
  return results


def _validation_scalars(metrics: dict[str, float]) -> dict[str, float]:
  return {f"val/{name}": metrics[name]
          for name in ("accuracy", "nll", "ece", "mean_confidence", "perplexity", "entropy")
          if name in metrics}


class Interrupted(Exception):
  """A clean stop on a signal, with a checkpoint written: the caller exits 0."""


def get_model(config: ml_collections.ConfigDict) -> flax.linen.Module:
  """The model `config` names; a language model gets its size from `config.lm`."""
  kwargs = {}
  if config.model.name in models.LANGUAGE_MODELS:
    lm = config.lm
    kwargs = dict(num_layers=lm.num_layers, num_heads=lm.num_heads, embed_dim=lm.embed_dim,
                  mlp_dim=lm.mlp_dim, max_len=config.data.seq_len, tie_embedding=lm.tie_embedding)
  return models.get_model(config.model.name, num_classes=config.num_classes,
                          dtype=jnp.dtype(config.compute_dtype), **kwargs)


def _example_shape(split: input_pipeline.Split, config) -> tuple[tuple[int, ...], jnp.dtype]:
  """One example's shape and dtype (token ids are integers)."""
  if split.images is not None:
    language_model = config.model.name in models.LANGUAGE_MODELS
    return split.images.shape[1:], jnp.int32 if language_model else jnp.float32
  return (config.data.image_size, config.data.image_size, 3), jnp.float32


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
  method = methods.label(config.to_dict())
  if "perplexity" in results:  # A language model: per-token metrics, no temperature scaling.
    return ("| dataset | model | method | steps | token acc | perplexity | ECE | mean conf "
            "| entropy | train s |\n|---|---|---|---|---|---|---|---|---|---|\n"
            f"| {config.data.name} | {config.model.name} | {method} | {results['steps']} "
            f"| {results['accuracy']:.4f} | {results['perplexity']:.2f} | {results['ece']:.4f} "
            f"| {results['mean_confidence']:.4f} | {results['entropy']:.3f} "
            f"| {results['train_seconds']:.1f} |\n(full results: {workdir}/results.json)")
  scaled = results["temperature_scaled"]
  return ("| dataset | model | method | steps | test acc | NLL | ECE | mean conf | T | ECE after TS "
          "| train s |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
          f"| {config.data.name} | {config.model.name} | {method} | {results['steps']} "
          f"| {results['accuracy']:.4f} | {results['nll']:.4f} | {results['ece']:.4f} "
          f"| {results['mean_confidence']:.4f} | {results['temperature']:.3f} "
          f"| {scaled['ece']:.4f} | {results['train_seconds']:.1f} |\n"
          f"(full results: {workdir}/results.json)")
