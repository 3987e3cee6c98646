"""The training state and the optimizer: what a checkpoint holds and how it is updated."""
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
  batch_stats: Any
  # Updates whose loss or gradient was not finite are not applied (see `train_step`).
  num_nonfinite_steps: jax.Array
  first_nonfinite_step: jax.Array  # -1 while every step was finite.


def model_variables(state: TrainState, params) -> dict[str, Any]:
  """Flax variables: params, and BatchNorm statistics for the models that have them."""
  if state.batch_stats is None:
    return {"params": params}
  return {"params": params, "batch_stats": state.batch_stats}


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
