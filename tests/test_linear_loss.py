"""Tests for the fused output-layer losses: linear_smoothed_cross_entropy and its vocab-parallel form.

The references are a float64 NumPy formula with hand-derived gradients and the materialized path
`smoothed_cross_entropy(hidden @ kernel, ...)`; memory is checked with XLA's compiled memory
analysis, which is deterministic.
"""
import functools

import jax
from jax.sharding import Mesh
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from ls_jax import losses

MODES = [False, True]  # gradient_in_forward


def np_linear_loss_and_grads(hidden, kernel, labels, a, z_loss, cotangent):
  """float64 loss per token and the gradients of sum(cotangent * loss) for [N, d] hidden."""
  hidden, kernel = np.asarray(hidden, np.float64), np.asarray(kernel, np.float64)
  logits = hidden @ kernel
  num_classes = logits.shape[-1]
  shift = logits.max(-1, keepdims=True)
  lse = np.log(np.exp(logits - shift).sum(-1)) + shift[:, 0]
  probs = np.exp(logits - lse[:, None])
  one_hot = (labels[:, None] == np.arange(num_classes)).astype(np.float64)
  targets = (1 - a) * one_hot + a / num_classes
  loss = lse - (targets * logits).sum(-1) + z_loss * lse**2
  d_logits = cotangent[:, None] * ((1 + 2 * z_loss * lse[:, None]) * probs - targets)
  d_smoothing = np.sum(cotangent * (logits[np.arange(len(labels)), labels] - logits.mean(-1)))
  return loss, {"hidden": d_logits @ kernel.T, "kernel": hidden.T @ d_logits,
                "label_smoothing": d_smoothing, "z_loss": np.sum(cotangent * lse**2)}


def random_problem(num_tokens, dim, num_classes, seed=0, scale=1.0, dtype=np.float32):
  rng = np.random.default_rng(seed)
  hidden = (scale * rng.standard_normal((num_tokens, dim)) / np.sqrt(dim)).astype(dtype)
  kernel = (3 * rng.standard_normal((dim, num_classes))).astype(dtype)
  labels = rng.integers(0, num_classes, num_tokens).astype(np.int32)
  return hidden, kernel, labels


def fused_loss_and_grads(hidden, kernel, labels, a, z_loss, cotangent, **kwargs):
  def weighted(hidden, kernel, a, z_loss):
    loss = losses.linear_smoothed_cross_entropy(hidden, kernel, labels, a, z_loss=z_loss, **kwargs)
    return jnp.sum(cotangent * loss), loss
  grads, loss = jax.jit(jax.grad(weighted, argnums=(0, 1, 2, 3), has_aux=True))(
      hidden, kernel, jnp.float32(a), jnp.float32(z_loss))
  return loss, dict(zip(("hidden", "kernel", "label_smoothing", "z_loss"), grads))


def assert_close_to_reference(loss, grads, ref_loss, ref_grads, rtol):
  # Tolerances relative to each quantity's largest magnitude: gradient entries are sums of such terms.
  np.testing.assert_allclose(loss, ref_loss, rtol=0, atol=rtol * np.abs(ref_loss).max())
  for name, ref in ref_grads.items():
    np.testing.assert_allclose(
        np.asarray(grads[name], np.float64), ref, rtol=0, atol=rtol * np.abs(ref).max(),
        err_msg=name)


@pytest.mark.parametrize("gradient_in_forward", MODES)
@pytest.mark.parametrize("num_tokens,dim,num_classes,chunk_size", [
    (16, 8, 2, 4),        # V = 2, one chunk
    (16, 8, 13, 4),       # chunk does not divide V: 3 full chunks and a remainder of 1
    (33, 16, 300, 64),    # odd token count; token blocks with a remainder too
    (32, 16, 256, 64),    # chunk divides V
    (32, 16, 100, 1000),  # chunk wider than V: one narrow chunk
])
@pytest.mark.parametrize("label_smoothing,z_loss", [(0.0, 0.0), (0.1, 0.0), (0.3, 1e-2), (-0.5, 0.0)])
@pytest.mark.parametrize("cotangent_kind", ["uniform", "varying"])
def test_matches_float64_reference(
    gradient_in_forward, num_tokens, dim, num_classes, chunk_size, label_smoothing, z_loss,
    cotangent_kind):
  hidden, kernel, labels = random_problem(num_tokens, dim, num_classes)
  # A varying cotangent (a weighted sum) makes the gradient-in-forward mode recompute d kernel.
  cotangent = (np.full(num_tokens, 1 / num_tokens) if cotangent_kind == "uniform"
               else np.linspace(-1, 2, num_tokens))
  loss, grads = fused_loss_and_grads(
      hidden, kernel, labels, label_smoothing, z_loss, cotangent.astype(np.float32),
      chunk_size=chunk_size, gradient_in_forward=gradient_in_forward)
  assert loss.dtype == jnp.float32
  ref_loss, ref_grads = np_linear_loss_and_grads(
      hidden, kernel, labels, label_smoothing, z_loss, cotangent)
  assert_close_to_reference(loss, grads, ref_loss, ref_grads, rtol=2e-5)


@pytest.mark.parametrize("gradient_in_forward", MODES)
def test_one_class_has_zero_loss_and_gradients(gradient_in_forward):
  # V = 1 without smoothing: softmax is 1, so L = lse - z_y = 0 exactly in exact arithmetic.
  hidden, kernel, labels = random_problem(8, 4, 1)
  fn = lambda hidden, kernel: losses.linear_smoothed_cross_entropy(
      hidden, kernel, labels, chunk_size=4, gradient_in_forward=gradient_in_forward)
  np.testing.assert_allclose(fn(hidden, kernel), 0, atol=1e-6)
  for grad in jax.jit(jax.grad(lambda *args: fn(*args).mean(), argnums=(0, 1)))(hidden, kernel):
    np.testing.assert_allclose(grad, 0, atol=1e-6)


@pytest.mark.parametrize("gradient_in_forward", MODES)
def test_matches_materialized_smoothed_cross_entropy(gradient_in_forward):
  hidden, kernel, labels = random_problem(24, 16, 50, seed=1)
  batch_hidden, batch_labels = hidden.reshape(4, 6, 16), labels.reshape(4, 6)
  where = np.arange(24).reshape(4, 6) % 5 != 0

  def materialized(hidden, kernel, a):
    return losses.smoothed_cross_entropy(hidden @ kernel, batch_labels, a, where=where)

  def fused(hidden, kernel, a):
    return losses.linear_smoothed_cross_entropy(
        hidden, kernel, batch_labels, a, where=where, chunk_size=16,
        gradient_in_forward=gradient_in_forward)

  for fn in (materialized, fused):
    assert fn(batch_hidden, kernel, 0.2).shape == (4, 6)
  np.testing.assert_allclose(
      fused(batch_hidden, kernel, 0.2), materialized(batch_hidden, kernel, 0.2), atol=2e-5)
  mean_loss = lambda fn: lambda *args: fn(*args).sum() / where.sum()
  grads = [jax.jit(jax.grad(mean_loss(fn), argnums=(0, 1, 2)))(batch_hidden, kernel, 0.2)
           for fn in (fused, materialized)]
  for fused_grad, materialized_grad in zip(*grads):
    np.testing.assert_allclose(fused_grad, materialized_grad, atol=2e-6)


@pytest.mark.parametrize("gradient_in_forward", MODES)
def test_bfloat16_inputs_accumulate_in_float32(gradient_in_forward):
  hidden, kernel, labels = random_problem(64, 32, 500, seed=2, dtype=ml_dtypes.bfloat16)
  cotangent = np.full(64, 1 / 64)
  loss, grads = fused_loss_and_grads(
      hidden, kernel, labels, 0.1, 1e-3, cotangent.astype(np.float32), chunk_size=128,
      gradient_in_forward=gradient_in_forward)
  assert loss.dtype == jnp.float32
  assert grads["hidden"].dtype == grads["kernel"].dtype == jnp.bfloat16
  # The reference gets the same bf16-rounded inputs in float64. The loss is accumulated in float32;
  # the gradients pass softmax through bf16 (the matrix products' operands), ~3 significant digits.
  ref_loss, ref_grads = np_linear_loss_and_grads(
      hidden.astype(np.float64), kernel.astype(np.float64), labels, 0.1, 1e-3, cotangent)
  np.testing.assert_allclose(loss, ref_loss, rtol=0, atol=1e-5 * np.abs(ref_loss).max())
  assert_close_to_reference(loss, grads, ref_loss, ref_grads, rtol=1e-2)


@pytest.mark.parametrize("gradient_in_forward", MODES)
def test_extreme_logits_stay_finite_and_exact(gradient_in_forward):
  # Logits of order 1e4: exp overflows without the running maximum.
  hidden, kernel, labels = random_problem(16, 8, 37, seed=3, scale=3e3)
  cotangent = np.full(16, 1 / 16)
  loss, grads = fused_loss_and_grads(
      hidden, kernel, labels, 0.1, 1e-4, cotangent.astype(np.float32), chunk_size=8,
      gradient_in_forward=gradient_in_forward)
  ref_loss, ref_grads = np_linear_loss_and_grads(hidden, kernel, labels, 0.1, 1e-4, cotangent)
  assert np.abs(hidden @ kernel).max() > 1e4
  assert np.isfinite(loss).all()
  assert_close_to_reference(loss, grads, ref_loss, ref_grads, rtol=2e-5)


@pytest.mark.parametrize("gradient_in_forward", MODES)
def test_where_zeroes_masked_tokens_even_if_nan(gradient_in_forward):
  hidden, kernel, labels = random_problem(12, 8, 20, seed=4)
  where = np.arange(12) % 3 != 0
  hidden[0] = np.nan
  hidden[3] = np.inf
  labels[6] = 20  # an invalid label, masked: no NaN either

  def mean_loss(hidden, kernel):
    loss = losses.linear_smoothed_cross_entropy(
        hidden, kernel, labels, 0.1, where=where, z_loss=1e-3, chunk_size=6,
        gradient_in_forward=gradient_in_forward)
    return loss.sum() / where.sum(), loss
  (d_hidden, d_kernel), loss = jax.jit(jax.grad(mean_loss, argnums=(0, 1), has_aux=True))(
      hidden, kernel)
  assert (loss[~where] == 0).all() and (d_hidden[~where] == 0).all()
  ref_loss, ref_grads = np_linear_loss_and_grads(
      hidden[where], kernel, labels[where], 0.1, 1e-3, np.full(where.sum(), 1 / where.sum()))
  assert_close_to_reference(
      loss[where], {"hidden": d_hidden[where], "kernel": d_kernel}, ref_loss,
      {"hidden": ref_grads["hidden"], "kernel": ref_grads["kernel"]}, rtol=2e-5)


@pytest.mark.parametrize("gradient_in_forward", MODES)
@pytest.mark.parametrize("bad_label", [-1, 20])
def test_invalid_label_gives_nan_like_smoothed_cross_entropy(gradient_in_forward, bad_label):
  hidden, kernel, labels = random_problem(6, 4, 20, seed=5)
  labels[2] = bad_label
  fused = lambda hidden, kernel: losses.linear_smoothed_cross_entropy(
      hidden, kernel, labels, 0.1, chunk_size=8, gradient_in_forward=gradient_in_forward)
  materialized = lambda hidden, kernel: losses.smoothed_cross_entropy(hidden @ kernel, labels, 0.1)
  for fn in (fused, materialized):
    loss = fn(hidden, kernel)
    assert np.isnan(loss[2]) and np.isfinite(np.delete(loss, 2)).all()
    d_hidden, d_kernel = jax.jit(jax.grad(lambda *args: fn(*args).mean(), argnums=(0, 1)))(
        hidden, kernel)
    assert np.isnan(d_hidden[2]).all() and np.isfinite(np.delete(d_hidden, 2, axis=0)).all()
    assert np.isnan(d_kernel).all()


@pytest.mark.parametrize("kwargs,message", [
    (dict(hidden=np.ones((4, 8), np.int32)), "hidden must be floating point"),
    (dict(kernel=np.ones((7, 10), np.float32)), r"kernel must have shape \(d, V\) = \(8, V >= 1\)"),
    (dict(kernel=np.ones((8, 0), np.float32)), r"kernel must have shape"),
    (dict(labels=np.zeros(5, np.int32)), r"labels must have shape hidden.shape\[:-1\] = \(4,\)"),
    (dict(labels=np.zeros(4, np.float32)), "labels must be integers"),
    (dict(where=np.ones(4, np.int32)), "where must be a boolean array"),
    (dict(label_smoothing=1.0), r"label_smoothing must be in \[-1, 1\), got 1.0"),
    (dict(z_loss=-1e-4), "z_loss must be >= 0"),
    (dict(chunk_size=0), "chunk_size must be a positive integer, got 0"),
])
def test_bad_inputs_raise_one_line_errors(kwargs, message):
  args = dict(hidden=np.ones((4, 8), np.float32), kernel=np.ones((8, 10), np.float32),
              labels=np.zeros(4, np.int32))
  args.update(kwargs)
  with pytest.raises(ValueError, match="linear_smoothed_cross_entropy: " + message):
    losses.linear_smoothed_cross_entropy(**args)


@pytest.mark.parametrize("gradient_in_forward,chunks_of_temp", [(False, 2), (True, 4)])
def test_compiled_temporary_memory_is_far_below_the_logits(gradient_in_forward, chunks_of_temp):
  """At N=2048, d=256, V=32768: fwd+grad temp within a few 16 MiB (N, chunk) float32 blocks.

  Measured: 24 MiB (recompute) and 48 MiB (gradient in forward); the logits alone are 256 MiB.
  """
  num_tokens, dim, num_classes, chunk_size = 2048, 256, 32768, 2048
  hidden = jax.ShapeDtypeStruct((num_tokens, dim), jnp.float32)
  kernel = jax.ShapeDtypeStruct((dim, num_classes), jnp.float32)
  labels = jax.ShapeDtypeStruct((num_tokens,), jnp.int32)

  def temp_bytes(loss_fn):
    step = jax.jit(jax.value_and_grad(lambda h, w, y: loss_fn(h, w, y).mean(), argnums=(0, 1)))
    return step.lower(hidden, kernel, labels).compile().memory_analysis().temp_size_in_bytes

  logits_bytes = num_tokens * num_classes * 4
  fused = temp_bytes(functools.partial(
      losses.linear_smoothed_cross_entropy, label_smoothing=0.1, chunk_size=chunk_size,
      gradient_in_forward=gradient_in_forward))
  materialized = temp_bytes(lambda h, w, y: losses.smoothed_cross_entropy(h @ w, y, 0.1))
  # The gradient-in-forward mode also keeps a float32 kernel-sized gradient (32 MiB here).
  assert fused <= chunks_of_temp * num_tokens * chunk_size * 4 <= logits_bytes / 4
  assert materialized >= logits_bytes


@pytest.mark.parametrize("mesh_shape", [(2, 4), (4, 2)])
@pytest.mark.parametrize("label_smoothing,z_loss,chunk_size", [(0.0, 0.0, 64), (0.2, 1e-2, 7)])
def test_vocab_parallel_equals_unsharded(mesh_shape, label_smoothing, z_loss, chunk_size):
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(mesh_shape), ("data", "model"))
  hidden, kernel, labels = random_problem(16, 8, 48, seed=6)
  where = np.arange(16) % 7 != 3
  hidden[3] = np.nan  # masked
  cotangent = np.linspace(0.5, 1.5, 16).astype(np.float32)

  def weighted_loss(loss_fn, hidden, kernel, a, z_loss):
    loss = loss_fn(hidden, kernel, labels, a, where=where, z_loss=z_loss, chunk_size=chunk_size)
    return jnp.sum(cotangent * loss), loss

  results = []
  for loss_fn in (losses.linear_smoothed_cross_entropy,
                  functools.partial(losses.vocab_parallel_linear_smoothed_cross_entropy, mesh=mesh)):
    grad_fn = jax.jit(jax.grad(
        functools.partial(weighted_loss, loss_fn), argnums=(0, 1, 2, 3), has_aux=True))
    results.append(grad_fn(hidden, kernel, jnp.float32(label_smoothing), jnp.float32(z_loss)))
  (unsharded_grads, unsharded_loss), (sharded_grads, sharded_loss) = results
  np.testing.assert_allclose(sharded_loss, unsharded_loss, rtol=1e-5, atol=1e-5)
  # Not scaled by the device count: equal to the unsharded gradients and to the float64 reference.
  for sharded, unsharded in zip(sharded_grads, unsharded_grads):
    np.testing.assert_allclose(sharded, unsharded, rtol=1e-5, atol=1e-5)
  ref_loss, ref_grads = np_linear_loss_and_grads(
      hidden[where], kernel, labels[where], label_smoothing, z_loss, cotangent[where])
  np.testing.assert_allclose(sharded_loss[where], ref_loss, rtol=1e-5)
  np.testing.assert_allclose(sharded_grads[1], ref_grads["kernel"], atol=1e-5)


def test_vocab_parallel_rejects_axes_that_do_not_divide():
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
  hidden, kernel, labels = random_problem(16, 8, 50)
  with pytest.raises(ValueError, match="mesh axis 'model' of size 4 must divide V, 50"):
    losses.vocab_parallel_linear_smoothed_cross_entropy(hidden, kernel, labels, mesh=mesh)
  with pytest.raises(ValueError, match="mesh has no axis 'vocab'"):
    losses.vocab_parallel_linear_smoothed_cross_entropy(
        hidden, kernel[:, :48], labels, mesh=mesh, model_axis="vocab")
