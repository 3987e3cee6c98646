"""The output layer fused with label-smoothed cross-entropy: the `(tokens, V)` logits are never built.

At vocabulary scale (a language model's next-token loss) the logits of a batch are the largest
array of the step; these losses compute `smoothed_cross_entropy(hidden @ kernel, ...)` chunk by
chunk over the vocabulary, in the forward and the backward pass. Same smoothing convention as
`ls_jax.losses.smoothed_cross_entropy` (Szegedy et al. 2016, §7).
"""

import functools
import numbers

import jax
from jax import lax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from ls_jax.losses._checks import Array, ArrayLike, _checked_scalar
from ls_jax.losses.classification import NEGATIVE_SMOOTHING_MIN

# Vocabulary columns per chunk. A chunk's logits take `tokens x LINEAR_CHUNK_SIZE x 4` bytes (64 MiB
# for 8192 tokens). On CPU, chunks of 1024-4096 timed within noise of each other (2048 tokens,
# d = 256, V = 32768); the compiled temporaries grow with the chunk (docs/benchmarks.md).
LINEAR_CHUNK_SIZE = 2048
# Tokens per block of `linear_smoothed_cross_entropy_and_grads`. A block's logits take
# `LINEAR_BLOCK_SIZE x V x 4` bytes (125 MiB at V = 128000), and each block reads the whole kernel
# three times. At (8192, 1024, 128000) on 2 CPU cores, blocks of 128 tokens took 1.10-1.13x the
# time of `h @ W` + optax CE (159 MiB of temporaries), blocks of 256 1.01-1.02x (286 MiB), and
# blocks of 512 would hold 540 MiB (15x less than the 8000 MiB of `h @ W` + optax, short of 20x).
LINEAR_BLOCK_SIZE = 256


def linear_smoothed_cross_entropy(
    hidden: ArrayLike,
    kernel: ArrayLike,
    labels: ArrayLike,
    label_smoothing: ArrayLike = 0.0,
    *,
    where: ArrayLike | None = None,
    z_loss: ArrayLike = 0.0,
    chunk_size: int = LINEAR_CHUNK_SIZE,
    gradient_in_forward: bool = False,
) -> Array:
  r"""`smoothed_cross_entropy(hidden @ kernel, ...)` plus a z-loss, without the `(tokens, V)` logits.

  With `z = hidden @ kernel` (V classes), `y = labels`, `a = label_smoothing`, `b = z_loss`:

    L = logsumexp(z) - (1 - a) * z_y - a * mean_k(z) + b * logsumexp(z)^2,

  the label-smoothed cross-entropy of `smoothed_cross_entropy` (Szegedy et al. 2016, §7; targets
  `(1 - a) * onehot(y) + a / V`) plus the z-loss of PaLM (Chowdhery et al. 2022, §5) and T5X,
  which keeps the softmax normalizer near 1. For a language model's output layer the logits, not
  the loss formula, are the cost: 8192 tokens at V = 128k take 4 GiB in float32, and as much again
  for their gradient. Here:

  - `logsumexp(z)` runs over chunks of `chunk_size` vocabulary columns with an online maximum
    (Milakov & Gimelshein 2018), so at most a `(tokens, chunk_size)` block exists at a time;
  - `z_y = hidden . kernel[:, y]` gathers one column per token, and
    `mean_k(z) = hidden . mean_k(kernel[:, k])`: smoothing costs one matrix-vector product;
  - the backward pass recomputes each chunk's logits and accumulates `d hidden`, and writes that
    chunk's columns of `d kernel`, from `softmax(z) * (1 + 2 b logsumexp(z))`; the `-a / V` and
    `-(1 - a) onehot(y)` parts of the gradient are the transposes of the mean and the gather: a
    rank-1 update and a scatter, never a `(tokens, V)` array.

  The same chunking underlies Cut Cross-Entropy (Wijmans et al., ICLR 2025, without smoothing),
  Liger-Kernel's fused linear cross-entropy (Hsu et al. 2024, in Triton), MaxText's vocabulary
  tiling and Levanter's blockwise loss (without smoothing).

  Memory: the temporaries are a few `(tokens, chunk_size)` float32 blocks. For fwd+grad at
  8192 tokens, d = 1024, V = 128000, XLA's compiled temporary memory is 236 MiB, against 8000 MiB
  for `hidden @ kernel` followed by this loss or optax's (34x less; 164-308 MiB for chunks of
  1024-4096). A larger chunk means fewer, larger matrix products per pass.

  `gradient_in_forward=True` computes the gradients while computing the loss, the way Liger-Kernel
  does: over blocks of tokens with all V columns (about `tokens x chunk_size` logits per block), so
  the logits are computed once instead of twice (three matrix products in all instead of four).
  The backward pass then only scales the saved gradients by the loss's cotangent. That is exact for
  `d hidden`, `d label_smoothing` and `d z_loss` whatever the cotangent, and for `d kernel` when the
  cotangent is the same for every unmasked token, as for `loss.mean()` or
  `loss.sum() / where.sum()`; otherwise the backward pass recomputes `d kernel` as the default mode
  does. The price is memory: a float32 `kernel`-sized gradient is accumulated and kept between
  the passes (643 MiB of temporaries at the size above, 12x less than the materialized path
  instead of 34x), and the gradient's work is done even when only the loss is used under
  `jax.vjp`. Recomputation is the default because it meets the memory goal (README, Benchmarks,
  for the measured times). A training step that wants the gradients at once gets them as outputs,
  with no residual and in three matrix products, from `linear_smoothed_cross_entropy_and_grads`.

  Inputs of any floating dtype are multiplied in their own precision with float32 accumulation
  (`preferred_element_type`), bf16 included; the loss is float32 (float64 for float64 inputs).
  Labels outside `[0, V)` give a NaN loss and NaN gradients, as in `smoothed_cross_entropy`.
  Differentiable in `hidden`, `kernel`, `label_smoothing` and `z_loss`.

  Args:
    hidden: floating `[..., d]` inputs of the output layer (final hidden states).
    kernel: floating `[d, V]` output-layer weights (for a tied embedding `E [V, d]`, `E.T`).
    labels: integer `[...]` class indices, shape `hidden.shape[:-1]`.
    label_smoothing: scalar `a` in `[-1, 1)`, Python number or (traced) array; negative values
      are negative label smoothing, as in `smoothed_cross_entropy`.
    where: optional boolean `[...]`; where False the loss and its gradients are 0, even if those
      hidden states are NaN or infinite (padding tokens).
    z_loss: scalar weight `b >= 0` of `logsumexp(z)^2` (T5X uses 1e-4).
    chunk_size: vocabulary columns per chunk; need not divide V (the last chunk is narrower).
    gradient_in_forward: compute the gradients in the forward pass (see above).

  Returns:
    float32 `[...]` per-token losses (float64 for float64 inputs).

  Raises:
    ValueError: on bad shapes or dtypes, a concrete `label_smoothing` outside `[-1, 1)`, a concrete
      `z_loss < 0`, or a `chunk_size` that is not a positive integer.
  """
  name = "linear_smoothed_cross_entropy"
  hidden, kernel, labels, where, label_smoothing, z_loss = _checked_linear_inputs(
      name, hidden, kernel, labels, label_smoothing, where, z_loss, chunk_size)
  batch_shape = labels.shape
  hidden, labels, where = _flat_tokens(hidden, labels, where)
  safe_hidden = _poisoned_and_masked(hidden, labels, kernel.shape[1], where)
  if gradient_in_forward:
    loss = _linear_loss_gradient_in_forward(
        safe_hidden, kernel, labels, label_smoothing, z_loss, where, chunk_size)
  else:
    loss = _linear_loss(safe_hidden, kernel, labels, label_smoothing, z_loss, chunk_size)
  if where is not None:
    loss = jnp.where(where, loss, 0)
  return loss.reshape(batch_shape)


def linear_smoothed_cross_entropy_and_grads(
    hidden: ArrayLike,
    kernel: ArrayLike,
    labels: ArrayLike,
    label_smoothing: ArrayLike = 0.0,
    *,
    where: ArrayLike | None = None,
    z_loss: ArrayLike = 0.0,
    block_size: int = LINEAR_BLOCK_SIZE,
    chunk_size: int = LINEAR_CHUNK_SIZE,
) -> tuple[Array, tuple[Array, Array]]:
  r"""The mean of `linear_smoothed_cross_entropy` over unmasked tokens, and its gradients.

  Returns what `jax.value_and_grad(f, argnums=(0, 1))(hidden, kernel)` returns for

    f = lambda hidden, kernel: linear_smoothed_cross_entropy(
        hidden, kernel, labels, label_smoothing, where=where, z_loss=z_loss).sum() / n,

  `n = max(where.sum(), 1)` (the number of tokens without `where`): the loss of a language
  model's step (`ls_jax.trainer.language_model`), with the same per-token formula
  `L = logsumexp(z) - (1 - a) z_y - a mean_k(z) + b logsumexp(z)^2` (`z = hidden @ kernel`;
  Szegedy et al. 2016, §7; z-loss of PaLM, Chowdhery et al. 2022, §5), at the cost of three
  matrix products instead of four and without keeping anything between two passes:

  - one pass over blocks of `block_size` tokens, each with all V logits (the order of Liger-Kernel's
    fused linear cross-entropy, Hsu et al. 2024): a block's logits `z_B = hidden_B @ kernel`, its
    exact `logsumexp`, then `d z_B = ((1 + 2 b lse) softmax(z_B) - a / V - (1 - a) onehot(y)) / n`
    (`n` the number of unmasked tokens), `d hidden_B = d z_B @ kernel.T`, and
    `d kernel += hidden_B.T @ d z_B`;
  - `d kernel` is accumulated in the function's output, so under `jit` it is the gradient's own
    buffer: no kernel-sized residual, which is what `gradient_in_forward=True` of
    `linear_smoothed_cross_entropy` keeps between its passes, because a `custom_vjp` cannot return
    a gradient from its forward pass. It is updated `chunk_size` columns at a time, in place
    (a whole block's `hidden_B.T @ d z_B` would be a kernel-sized temporary: XLA does not
    accumulate into a matrix product's output).

  Use it where the gradients are wanted right away, as in a training step: `jax.vjp` the model to
  `(hidden, kernel)`, call this, and pull `(d hidden, d kernel)` back through the vjp
  (`language_model.next_token_loss_and_grads`; a tied embedding's two gradients add up there). It
  is not itself differentiable (use `linear_smoothed_cross_entropy` under `jax.grad`).

  Memory: the temporaries are two `(block_size, V)` float32 blocks (the logits and `d z`) and a
  `(d, chunk_size)` one. At 8192 tokens, d = 1024, V = 128000 with the default blocks of 256
  tokens, XLA's compiled temporary memory is 286 MiB, against 8000 MiB for `jax.value_and_grad`
  of `hidden @ kernel` followed by optax's integer-label cross-entropy (28x less; 159 MiB for
  blocks of 128 tokens); the outputs are the loss and the two gradients. A larger block means
  fewer passes over `kernel` and larger matrix products, and proportionally larger temporaries
  (`LINEAR_BLOCK_SIZE` for measured times).

  Same conventions as `linear_smoothed_cross_entropy`: masked tokens (`where` False) contribute
  nothing, even if their hidden states are NaN or infinite; a label outside `[0, V)` of an
  unmasked token makes the loss and the gradients NaN; inputs of any floating dtype are multiplied
  in their own precision with float32 accumulation (`d z` is cast to that precision before its two
  products, as in the backward pass of `linear_smoothed_cross_entropy`).

  Args:
    hidden, kernel, labels, label_smoothing, where, z_loss: as in `linear_smoothed_cross_entropy`.
    block_size: tokens per block; need not divide the number of tokens (the last block is
      smaller).
    chunk_size: columns of `d kernel` per in-place update; need not divide V.

  Returns:
    `(loss, (d_hidden, d_kernel))`: the float32 scalar mean loss (float64 for float64 inputs), and
    its gradients with the shapes and dtypes of `hidden` and `kernel`.

  Raises:
    ValueError: as `linear_smoothed_cross_entropy`, or if `block_size` or `chunk_size` is not a
      positive integer.
  """
  name = "linear_smoothed_cross_entropy_and_grads"
  hidden, kernel, labels, where, label_smoothing, z_loss = _checked_linear_inputs(
      name, hidden, kernel, labels, label_smoothing, where, z_loss, chunk_size)
  if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral) or block_size < 1:
    raise ValueError(f"{name}: block_size must be a positive integer, got {block_size!r}.")
  hidden_shape, hidden_dtype = hidden.shape, hidden.dtype
  hidden, labels, where = _flat_tokens(hidden, labels, where)
  safe_hidden = _poisoned_and_masked(hidden, labels, kernel.shape[1], where)
  dtype = _linear_compute_dtype(hidden, kernel)
  num_tokens = labels.shape[0]
  count = jnp.maximum(num_tokens if where is None else jnp.sum(where), 1).astype(dtype)
  # Each token's cotangent in the mean: 1 / count, 0 where masked.
  weights = jnp.full((num_tokens,), 1 / count, dtype)
  if where is not None:
    weights = jnp.where(where, weights, 0)
  per_token, d_hidden, d_kernel, _, _ = _linear_loss_and_grads_by_token_blocks(
      safe_hidden, kernel, labels, label_smoothing, z_loss, min(block_size, max(num_tokens, 1)),
      weights, chunk_size)
  if where is not None:
    per_token = jnp.where(where, per_token, 0)
  loss = per_token.sum() / count
  return loss, (d_hidden.astype(hidden_dtype).reshape(hidden_shape), d_kernel.astype(kernel.dtype))


def vocab_parallel_linear_smoothed_cross_entropy(
    hidden: ArrayLike,
    kernel: ArrayLike,
    labels: ArrayLike,
    label_smoothing: ArrayLike = 0.0,
    *,
    mesh: jax.sharding.Mesh,
    model_axis: str = "model",
    data_axis: str | None = "data",
    where: ArrayLike | None = None,
    z_loss: ArrayLike = 0.0,
    chunk_size: int = LINEAR_CHUNK_SIZE,
) -> Array:
  r"""`linear_smoothed_cross_entropy` with `kernel`'s V columns split over the mesh axis `model_axis`.

  The tensor-parallel output layer of Megatron-LM (Shoeybi et al. 2019), with smoothing and z-loss.
  Inside `jax.shard_map`, each device reduces its own columns `V_s` to per-token numbers:
  `logsumexp` over `V_s` (chunked, as in `linear_smoothed_cross_entropy`), the label logit if the
  label falls in its slice (else 0), and `hidden . sum_{k in V_s} kernel[:, k]`. A `pmax` and
  three `psum`s over `model_axis` combine them into the exact loss; no logits cross devices, only
  `O(tokens)` numbers. Tokens are split over `data_axis` (None: replicated).

  Gradients are exact, neither scaled by a device count nor left partial: `hidden` and `kernel`
  enter the shards through `lax.pcast(..., to="varying")`, whose transpose sums the shards'
  `d hidden` over `model_axis` and `d kernel` over `data_axis` (the tests compare with the
  unsharded loss on 2-D meshes).

  Args:
    hidden, kernel, labels, label_smoothing, where, z_loss, chunk_size: as in
      `linear_smoothed_cross_entropy`; `chunk_size` applies within each device's slice.
    mesh: the device mesh, with axes `model_axis` and (unless None) `data_axis`.
    model_axis: mesh axis over which V is split; it must divide V.
    data_axis: mesh axis over which tokens are split; it must divide the number of tokens.

  Returns:
    float32 `[...]` per-token losses, sharded over `data_axis`.

  Raises:
    ValueError: as `linear_smoothed_cross_entropy`, or if the mesh axes do not divide V and the
      number of tokens.
  """
  name = "vocab_parallel_linear_smoothed_cross_entropy"
  hidden, kernel, labels, where, label_smoothing, z_loss = _checked_linear_inputs(
      name, hidden, kernel, labels, label_smoothing, where, z_loss, chunk_size)
  batch_shape = labels.shape
  hidden, labels, where = _flat_tokens(hidden, labels, where)
  for axis, size, what in ((model_axis, kernel.shape[1], "V"),
                           (data_axis, labels.shape[0], "the number of tokens")):
    if axis is None:
      continue
    if axis not in mesh.shape:
      raise ValueError(f"{name}: mesh has no axis {axis!r}; its axes are {tuple(mesh.shape)}.")
    if size % mesh.shape[axis]:
      raise ValueError(
          f"{name}: mesh axis {axis!r} of size {mesh.shape[axis]} must divide {what}, {size}.")
  safe_hidden = _poisoned_and_masked(hidden, labels, kernel.shape[1], where)

  def local_loss(hidden, kernel, labels, scalars):
    # Replicated -> varying, so that the gradients of the shards are summed (the transpose of the
    # cast is a psum): d hidden over model_axis, d kernel over data_axis.
    hidden = lax.pcast(hidden, model_axis, to="varying")
    if data_axis is not None:
      kernel = lax.pcast(kernel, data_axis, to="varying")
    return _linear_loss(hidden, kernel, labels, *scalars, chunk_size, axis_name=model_axis)

  tokens = PartitionSpec(data_axis)
  loss = jax.shard_map(
      local_loss, mesh=mesh, out_specs=tokens,
      in_specs=(PartitionSpec(data_axis, None), PartitionSpec(None, model_axis), tokens,
                PartitionSpec()),
  )(safe_hidden, kernel, labels, (label_smoothing, z_loss))
  if where is not None:
    loss = jnp.where(where, loss, 0)
  return loss.reshape(batch_shape)


def _linear_loss(
    hidden: Array, kernel: Array, labels: Array, label_smoothing: Array | None,
    z_loss: Array | None, chunk_size: int, axis_name: str | None = None,
) -> Array:
  """The per-token loss from a chunked logsumexp and two linear terms; autodiff does the rest.

  With `axis_name`, `kernel` holds this device's consecutive slice of the V columns, and the
  per-token partial results are combined over `axis_name`.
  """
  dtype = _linear_compute_dtype(hidden, kernel)
  local_classes = kernel.shape[1]
  log_normalizer = _linear_logsumexp(hidden, kernel, chunk_size)
  local_labels = labels
  combine = lambda partial: partial
  num_classes = local_classes
  if axis_name is not None:
    combine = functools.partial(lax.psum, axis_name=axis_name)
    num_classes = local_classes * lax.axis_size(axis_name)
    local_labels = labels - lax.axis_index(axis_name) * local_classes
    # The shift only guards exp against overflow; it cancels in the value and the gradient.
    shift = lax.pmax(lax.stop_gradient(log_normalizer), axis_name)
    log_normalizer = shift + jnp.log(combine(jnp.exp(log_normalizer - shift)))

  in_slice = (local_labels >= 0) & (local_labels < local_classes)
  label_columns = jnp.take(kernel, local_labels, axis=1, mode="clip")  # [d, tokens]
  label_logit = combine(jnp.where(
      in_slice, jnp.einsum("nd,dn->n", hidden, label_columns, preferred_element_type=dtype), 0))
  loss = log_normalizer - label_logit
  if label_smoothing is not None:
    column_sum = jnp.sum(kernel, axis=1, dtype=dtype)
    mean_logit = combine(jnp.dot(hidden.astype(dtype), column_sum)) / num_classes
    loss += label_smoothing * (label_logit - mean_logit)
  if z_loss is not None:
    loss += z_loss * log_normalizer**2
  return loss


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _linear_logsumexp(hidden: Array, kernel: Array, chunk_size: int) -> Array:
  """`logsumexp(hidden @ kernel, axis=-1)` for `hidden [N, d]`, over chunks of kernel columns."""
  return _linear_logsumexp_fwd(hidden, kernel, chunk_size)[0]


def _linear_logsumexp_fwd(
    hidden: Array, kernel: Array, chunk_size: int) -> tuple[Array, tuple[Array, Array, Array]]:
  dtype = _linear_compute_dtype(hidden, kernel)

  def add_chunk(carry, start, width):
    # Online logsumexp (Milakov & Gimelshein 2018): rescale the running sum to the new maximum.
    running_max, running_sum = carry
    logits = _chunk_logits(hidden, kernel, start, width, dtype)
    new_max = jnp.maximum(running_max, jnp.max(logits, axis=-1))
    running_sum = running_sum * jnp.exp(running_max - new_max) + jnp.sum(
        jnp.exp(logits - new_max[:, None]), axis=-1)
    return new_max, running_sum

  num_tokens = hidden.shape[0]
  start = (jnp.full((num_tokens,), -jnp.inf, dtype), jnp.zeros((num_tokens,), dtype))
  running_max, running_sum = _fold_chunks(kernel.shape[1], chunk_size, add_chunk, start)
  log_normalizer = running_max + jnp.log(running_sum)
  return log_normalizer, (hidden, kernel, log_normalizer)


def _linear_logsumexp_bwd(
    chunk_size: int, residuals: tuple[Array, Array, Array], cotangent: Array,
) -> tuple[Array, Array]:
  """Recomputes each chunk's logits; `d z = cotangent * softmax(z)`, then both matrix products."""
  hidden, kernel, log_normalizer = residuals
  dtype = log_normalizer.dtype
  operand_dtype = jnp.result_type(hidden, kernel)

  def add_chunk(carry, start, width):
    d_hidden, d_kernel = carry
    kernel_chunk = lax.dynamic_slice_in_dim(kernel, start, width, axis=1)
    logits = jnp.dot(hidden, kernel_chunk, preferred_element_type=dtype)
    d_logits = (cotangent[:, None] * jnp.exp(logits - log_normalizer[:, None])).astype(
        operand_dtype)
    d_hidden += jnp.dot(d_logits, kernel_chunk.T, preferred_element_type=dtype)
    d_kernel_chunk = jnp.dot(hidden.T, d_logits, preferred_element_type=dtype)
    d_kernel = lax.dynamic_update_slice_in_dim(
        d_kernel, d_kernel_chunk.astype(kernel.dtype), start, axis=1)
    return d_hidden, d_kernel

  start = (jnp.zeros(hidden.shape, dtype), jnp.zeros_like(kernel))
  d_hidden, d_kernel = _fold_chunks(kernel.shape[1], chunk_size, add_chunk, start)
  return d_hidden.astype(hidden.dtype), d_kernel


_linear_logsumexp.defvjp(_linear_logsumexp_fwd, _linear_logsumexp_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _linear_loss_gradient_in_forward(
    hidden: Array, kernel: Array, labels: Array, label_smoothing: Array | None,
    z_loss: Array | None, where: Array | None, chunk_size: int) -> Array:
  """`_linear_loss`, differentiated Liger-style (see `linear_smoothed_cross_entropy`)."""
  del where  # Only the backward pass needs it.
  return _linear_loss(hidden, kernel, labels, label_smoothing, z_loss, chunk_size)


def _linear_loss_gradient_in_forward_fwd(
    hidden, kernel, labels, label_smoothing, z_loss, where, chunk_size):
  """Loss and per-token gradients over blocks of tokens, each with all V logits."""
  num_tokens, num_classes = hidden.shape[0], kernel.shape[1]
  # About as many logits per block as a vocabulary chunk of the default mode holds.
  block_tokens = max(1, min(num_tokens, num_tokens * chunk_size // num_classes))
  loss, *gradients = _linear_loss_and_grads_by_token_blocks(
      hidden, kernel, labels, label_smoothing, z_loss, block_tokens, column_chunk=chunk_size)
  residuals = (hidden, kernel, labels, label_smoothing, z_loss, where, *gradients)
  return loss, residuals


def _linear_loss_gradient_in_forward_bwd(chunk_size, residuals, cotangent):
  (hidden, kernel, labels, label_smoothing, z_loss, where,
   d_hidden, d_kernel, d_smoothing, d_z_loss) = residuals
  # The saved d kernel sums the tokens' gradients with weight 1; it is exact when the cotangent is
  # one common value c over the tokens that reach the kernel (masked ones have zero hidden states).
  active = jnp.ones(cotangent.shape, bool) if where is None else where
  largest = jnp.max(jnp.where(active, cotangent, -jnp.inf), initial=-jnp.inf)
  smallest = jnp.min(jnp.where(active, cotangent, jnp.inf), initial=jnp.inf)
  common = jnp.where(jnp.isfinite(largest), largest, 0)

  def recomputed_d_kernel():
    _, pullback = jax.vjp(
        lambda kernel: _linear_loss(hidden, kernel, labels, label_smoothing, z_loss, chunk_size),
        kernel)
    return pullback(cotangent)[0]

  d_kernel = lax.cond(
      largest <= smallest, lambda: (common * d_kernel).astype(kernel.dtype), recomputed_d_kernel)
  d_hidden = (cotangent[:, None] * d_hidden).astype(hidden.dtype)
  scalar_gradient = lambda scalar, per_token: (
      None if scalar is None else jnp.sum(cotangent * per_token).astype(scalar.dtype))
  return (d_hidden, d_kernel, None, scalar_gradient(label_smoothing, d_smoothing),
          scalar_gradient(z_loss, d_z_loss), None)


_linear_loss_gradient_in_forward.defvjp(
    _linear_loss_gradient_in_forward_fwd, _linear_loss_gradient_in_forward_bwd)


def _linear_loss_and_grads_by_token_blocks(
    hidden: Array, kernel: Array, labels: Array, label_smoothing: Array | None,
    z_loss: Array | None, block_tokens: int, weights: Array | None = None,
    column_chunk: int = LINEAR_CHUNK_SIZE,
) -> tuple[Array, Array, Array, Array, Array]:
  """The per-token loss and its gradients in one pass over blocks of tokens, each with all V logits.

  Three matrix products per block: the logits, `d hidden = d z @ kernel.T` and
  `d kernel += hidden.T @ d z`. `weights [N]` (None: 1) scales each token's gradients (the
  cotangent of its loss); `d hidden` and `d kernel` are sums of the weighted tokens' gradients,
  in the compute dtype. Also returns the per-token slopes `d loss / d label_smoothing` and
  `d loss / d z_loss`, unweighted (zeros for a None scalar).
  """
  dtype = _linear_compute_dtype(hidden, kernel)
  operand_dtype = jnp.result_type(hidden, kernel)
  num_tokens, num_classes = hidden.shape[0], kernel.shape[1]

  def add_block(carry, start, width):
    loss, d_hidden, d_kernel, d_smoothing, d_z_loss = carry
    hidden_block = lax.dynamic_slice_in_dim(hidden, start, width)
    label_block = lax.dynamic_slice_in_dim(labels, start, width)
    logits = jnp.dot(hidden_block, kernel, preferred_element_type=dtype)
    log_normalizer = jax.nn.logsumexp(logits, axis=-1)
    probs = jnp.exp(logits - log_normalizer[:, None])
    is_label = lax.broadcasted_iota(label_block.dtype, logits.shape, 1) == label_block[:, None]
    label_logit = jnp.sum(jnp.where(is_label, logits, 0), axis=-1)
    block_loss = log_normalizer - label_logit
    # d loss / d logits = (1 + 2 b lse) softmax - a / V - (1 - a) onehot.
    if z_loss is not None:
      block_loss += z_loss * log_normalizer**2
      probs *= 1 + 2 * z_loss * log_normalizer[:, None]
      d_z_loss = lax.dynamic_update_slice_in_dim(d_z_loss, log_normalizer**2, start, 0)
    if label_smoothing is None:
      d_logits = jnp.where(is_label, probs - 1, probs)
    else:
      smoothing_slope = label_logit - jnp.mean(logits, axis=-1)
      block_loss += label_smoothing * smoothing_slope
      d_logits = probs - label_smoothing / num_classes - jnp.where(
          is_label, 1 - label_smoothing, 0)
      d_smoothing = lax.dynamic_update_slice_in_dim(d_smoothing, smoothing_slope, start, 0)
    if weights is not None:
      d_logits *= lax.dynamic_slice_in_dim(weights, start, width)[:, None]
    d_logits = d_logits.astype(operand_dtype)
    loss = lax.dynamic_update_slice_in_dim(loss, block_loss, start, 0)
    # Both products contract without an explicit transpose of kernel or hidden_block.
    d_hidden = lax.dynamic_update_slice_in_dim(d_hidden, lax.dot_general(
        d_logits, kernel, (((1,), (1,)), ((), ())), preferred_element_type=dtype), start, 0)
    # d kernel's columns in chunks: `d_kernel += hidden_block.T @ d_logits` at once would put a
    # kernel-sized product in a temporary before adding it (XLA does not accumulate into a dot's
    # output); chunk by chunk, the sum is updated in place.
    def add_columns(d_kernel, column, columns):
      update = lax.dot_general(
          hidden_block, lax.dynamic_slice_in_dim(d_logits, column, columns, axis=1),
          (((0,), (0,)), ((), ())), preferred_element_type=dtype)
      return lax.dynamic_update_slice_in_dim(
          d_kernel, lax.dynamic_slice_in_dim(d_kernel, column, columns, axis=1) + update,
          column, axis=1)
    d_kernel = _fold_chunks(num_classes, column_chunk, add_columns, d_kernel)
    return loss, d_hidden, d_kernel, d_smoothing, d_z_loss

  per_token = jnp.zeros((num_tokens,), dtype)
  start = (per_token, jnp.zeros(hidden.shape, dtype), jnp.zeros(kernel.shape, dtype),
           per_token, per_token)
  return _fold_chunks(num_tokens, block_tokens, add_block, start)


def _fold_chunks(size: int, chunk_size: int, add_chunk, carry):
  """`carry = add_chunk(carry, start, width)` over `[0, size)` in chunks of `chunk_size`.

  The full chunks after the first run in one `fori_loop` (a traced `start`); a narrower last chunk,
  if any, runs after it with its own static width, so V need not be padded (a padded copy of the
  kernel would cost as much memory as the kernel). The first chunk runs before the loop because
  under `shard_map` its results vary over more mesh axes than the initial carry does, and a loop
  carry must keep one type.
  """
  num_full, remainder = divmod(size, chunk_size)
  if num_full:
    carry = add_chunk(carry, 0, chunk_size)
    carry = lax.fori_loop(
        1, num_full, lambda i, carry: add_chunk(carry, i * chunk_size, chunk_size), carry)
  if remainder:
    carry = add_chunk(carry, num_full * chunk_size, remainder)
  return carry


def _chunk_logits(hidden: Array, kernel: Array, start, width: int, dtype) -> Array:
  return jnp.dot(hidden, lax.dynamic_slice_in_dim(kernel, start, width, axis=1),
                 preferred_element_type=dtype)


def _linear_compute_dtype(hidden: Array, kernel: Array) -> jnp.dtype:
  return jnp.promote_types(jnp.result_type(hidden, kernel), jnp.float32)


def _flat_tokens(
    hidden: Array, labels: Array, where: Array | None) -> tuple[Array, Array, Array | None]:
  """`[..., d]`, `[...]` -> `[N, d]`, `[N]`."""
  return (hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1),
          None if where is None else where.reshape(-1))


def _poisoned_and_masked(
    hidden: Array, labels: Array, num_classes: int, where: Array | None) -> Array:
  """Hidden rows as the loss must see them: NaN for an invalid label, then 0 where masked.

  Multiplying by NaN (rather than selecting it) makes the gradients NaN too, as in
  `smoothed_cross_entropy`; selecting 0 keeps NaN or inf hidden states of masked tokens out of
  the value and the gradients.
  """
  invalid = (labels < 0) | (labels >= num_classes)
  if where is not None:
    invalid &= where
  hidden = hidden * jnp.where(invalid, jnp.nan, 1).astype(hidden.dtype)[:, None]
  return hidden if where is None else jnp.where(where[:, None], hidden, 0)


def _checked_linear_inputs(
    function: str, hidden: ArrayLike, kernel: ArrayLike, labels: ArrayLike,
    label_smoothing: ArrayLike, where: ArrayLike | None, z_loss: ArrayLike, chunk_size: int,
) -> tuple[Array, Array, Array, Array | None, Array | None, Array | None]:
  """Checks shapes and dtypes; Python zeros of `label_smoothing`/`z_loss` become None (skipped)."""
  hidden, kernel = jnp.asarray(hidden), jnp.asarray(kernel)
  for array_name, array in (("hidden", hidden), ("kernel", kernel)):
    if not jnp.issubdtype(array.dtype, jnp.floating):
      raise ValueError(f"{function}: {array_name} must be floating point, got dtype {array.dtype}.")
  if hidden.ndim < 1:
    raise ValueError(f"{function}: hidden must have a feature axis (last), got shape ().")
  if kernel.ndim != 2 or kernel.shape[0] != hidden.shape[-1] or kernel.shape[1] < 1:
    raise ValueError(
        f"{function}: kernel must have shape (d, V) = ({hidden.shape[-1]}, V >= 1) for hidden of "
        f"shape {hidden.shape}, got {kernel.shape}.")
  if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
    raise ValueError(f"{function}: chunk_size must be a positive integer, got {chunk_size!r}.")
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"{function}: labels must be integers, got dtype {labels.dtype}.")
  batch_shape = hidden.shape[:-1]
  if labels.shape != batch_shape:
    raise ValueError(
        f"{function}: labels must have shape hidden.shape[:-1] = {batch_shape}, got "
        f"{labels.shape}.")
  if jnp.iinfo(labels.dtype).bits < 32:
    labels = labels.astype(jnp.int32)  # As in smoothed_cross_entropy: offsets count to V.
  if where is not None:
    where = jnp.asarray(where)
    if where.dtype != jnp.bool_ or where.shape != batch_shape:
      raise ValueError(
          f"{function}: where must be a boolean array of shape hidden.shape[:-1] = {batch_shape}, "
          f"got {where.dtype} {where.shape}.")
  label_smoothing = _checked_scalar(function, "label_smoothing", label_smoothing,
                                    low=NEGATIVE_SMOOTHING_MIN, high=1.0)
  z_loss = _checked_scalar(function, "z_loss", z_loss, low=0.0)
  dtype = _linear_compute_dtype(hidden, kernel)
  scalars = [None if isinstance(value, numbers.Real) and value == 0 else jnp.asarray(value, dtype)
             for value in (label_smoothing, z_loss)]
  return hidden, kernel, labels, where, *scalars
