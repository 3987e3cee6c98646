"""Tests for linear_smoothed_cross_entropy_and_grads: a fused mean loss and its gradients in one pass.

The reference is independent of the fused code: `jax.value_and_grad` of `hidden @ kernel` followed
by `losses.smoothed_cross_entropy` plus the z-loss, in float64. The entry point is also compared
with differentiating `linear_smoothed_cross_entropy` in both of its modes.
"""
import functools

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from ls_jax import losses

GRADS = losses.linear_smoothed_cross_entropy_and_grads


def random_problem(num_tokens, dim, num_classes, seed=0, dtype=np.float32):
  rng = np.random.default_rng(seed)
  hidden = (rng.standard_normal((num_tokens, dim)) / np.sqrt(dim)).astype(dtype)
  kernel = (3 * rng.standard_normal((dim, num_classes))).astype(dtype)
  labels = rng.integers(0, num_classes, num_tokens).astype(np.int32)
  return hidden, kernel, labels


def reference(hidden, kernel, labels, a, where, z_loss):
  """float64 `jax.value_and_grad` of the mean over unmasked tokens of the materialized loss."""
  hidden, kernel = np.asarray(hidden, np.float64), np.asarray(kernel, np.float64)

  def mean_loss(hidden, kernel):
    logits = hidden @ kernel
    per_token = losses.smoothed_cross_entropy(logits, labels, a, where=where)
    per_token += z_loss * jax.nn.logsumexp(logits, -1) ** 2
    if where is not None:
      per_token = jnp.where(where, per_token, 0)
    count = labels.size if where is None else np.sum(where)
    return per_token.sum() / max(count, 1)

  with jax.enable_x64(True):
    loss, grads = jax.value_and_grad(mean_loss, argnums=(0, 1))(hidden, kernel)
    return np.float64(loss), tuple(np.asarray(g) for g in grads)


def assert_close(loss, grads, ref_loss, ref_grads, rtol):
  """Tolerances relative to each quantity's largest magnitude (gradients are sums of terms)."""
  np.testing.assert_allclose(loss, ref_loss, rtol=rtol)
  for name, grad, ref in zip(("d_hidden", "d_kernel"), grads, ref_grads):
    np.testing.assert_allclose(np.asarray(grad, np.float64), ref, rtol=0,
                               atol=rtol * np.abs(ref).max(), err_msg=name)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("num_tokens,dim,num_classes,block_size,chunk_size", [
    (16, 8, 2, 4, 4),         # V = 2; blocks divide the tokens
    (33, 16, 300, 8, 64),     # a narrower last token block and a narrower last column chunk
    (32, 16, 256, 32, 64),    # one token block; chunks divide V
    (20, 8, 13, 64, 1000),    # block larger than the tokens, chunk wider than V
])
@pytest.mark.parametrize("label_smoothing,z_loss,masked", [
    (0.0, 0.0, False), (0.1, 0.0, True), (0.3, 1e-2, True), (-0.5, 1e-3, False)])
def test_matches_value_and_grad_of_the_materialized_loss(
    dtype, rtol, num_tokens, dim, num_classes, block_size, chunk_size, label_smoothing, z_loss,
    masked):
  hidden, kernel, labels = random_problem(num_tokens, dim, num_classes, dtype=dtype)
  where = np.arange(num_tokens) % 4 != 1 if masked else None
  with jax.enable_x64(dtype == np.float64):
    loss, grads = jax.jit(functools.partial(
        GRADS, label_smoothing=label_smoothing, where=where, z_loss=z_loss,
        block_size=block_size, chunk_size=chunk_size))(hidden, kernel, labels)
  assert loss.shape == () and loss.dtype == dtype
  assert [(g.shape, g.dtype) for g in grads] == [(hidden.shape, dtype), (kernel.shape, dtype)]
  assert_close(loss, grads, *reference(hidden, kernel, labels, label_smoothing, where, z_loss),
               rtol=rtol)


@pytest.mark.parametrize("gradient_in_forward", [False, True])
def test_equals_value_and_grad_of_linear_smoothed_cross_entropy(gradient_in_forward):
  hidden, kernel, labels = random_problem(24, 16, 50, seed=1)
  batch_hidden, batch_labels = hidden.reshape(4, 6, 16), labels.reshape(4, 6)
  where = np.arange(24).reshape(4, 6) % 5 != 0

  def mean_loss(hidden, kernel):
    per_token = losses.linear_smoothed_cross_entropy(
        hidden, kernel, batch_labels, 0.2, where=where, z_loss=1e-2, chunk_size=16,
        gradient_in_forward=gradient_in_forward)
    return per_token.sum() / where.sum()

  expected_loss, expected_grads = jax.jit(jax.value_and_grad(mean_loss, argnums=(0, 1)))(
      batch_hidden, kernel)
  loss, grads = jax.jit(functools.partial(
      GRADS, label_smoothing=0.2, where=where, z_loss=1e-2, block_size=5, chunk_size=16))(
          batch_hidden, kernel, batch_labels)
  assert grads[0].shape == (4, 6, 16)
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-6)
  for grad, expected in zip(grads, expected_grads):
    np.testing.assert_allclose(grad, expected, rtol=0, atol=1e-6 * np.abs(expected).max())


def test_bfloat16_inputs_accumulate_in_float32():
  hidden, kernel, labels = random_problem(64, 32, 500, seed=2, dtype=ml_dtypes.bfloat16)
  loss, grads = jax.jit(functools.partial(GRADS, label_smoothing=0.1, z_loss=1e-3, block_size=16,
                                          chunk_size=128))(hidden, kernel, labels)
  assert loss.dtype == jnp.float32
  assert grads[0].dtype == grads[1].dtype == jnp.bfloat16
  # The reference gets the same bf16-rounded inputs in float64; the gradients pass softmax through
  # bf16 (the matrix products' operands), ~3 significant digits.
  ref_loss, ref_grads = reference(hidden, kernel, labels, 0.1, None, 1e-3)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  assert_close(loss, grads, ref_loss, ref_grads, rtol=1e-2)


def test_masked_tokens_are_ignored_even_if_nan():
  hidden, kernel, labels = random_problem(12, 8, 20, seed=4)
  where = np.arange(12) % 3 != 0
  hidden[0] = np.nan
  hidden[3] = np.inf
  labels[6] = 20  # an invalid label, masked: no NaN either
  loss, (d_hidden, d_kernel) = jax.jit(functools.partial(
      GRADS, label_smoothing=0.1, where=where, z_loss=1e-3, block_size=5, chunk_size=6))(
          hidden, kernel, labels)
  assert (d_hidden[~where] == 0).all()
  ref_loss, (ref_d_hidden, ref_d_kernel) = reference(
      hidden[where], kernel, labels[where], 0.1, None, 1e-3)
  assert_close(loss, (d_hidden[where], d_kernel), ref_loss, (ref_d_hidden, ref_d_kernel),
               rtol=2e-5)
  # Every token masked: a zero loss and zero gradients (the count is clamped to 1).
  loss, grads = GRADS(hidden, kernel, labels, 0.1, where=np.zeros(12, bool))
  assert loss == 0 and all((g == 0).all() for g in grads)


@pytest.mark.parametrize("bad_label", [-1, 20])
def test_invalid_label_gives_nan_like_smoothed_cross_entropy(bad_label):
  hidden, kernel, labels = random_problem(6, 4, 20, seed=5)
  labels[2] = bad_label
  loss, (d_hidden, d_kernel) = jax.jit(functools.partial(
      GRADS, label_smoothing=0.1, block_size=4, chunk_size=8))(hidden, kernel, labels)
  assert np.isnan(loss)
  assert np.isnan(d_hidden[2]).all() and np.isfinite(np.delete(d_hidden, 2, axis=0)).all()
  assert np.isnan(d_kernel).all()


@pytest.mark.parametrize("kwargs,message", [
    (dict(block_size=0), "block_size must be a positive integer, got 0"),
    (dict(block_size=2.0), "block_size must be a positive integer, got 2.0"),
    (dict(chunk_size=0), "chunk_size must be a positive integer, got 0"),
    (dict(labels=np.zeros(5, np.int32)), r"labels must have shape hidden.shape\[:-1\] = \(4,\)"),
    (dict(label_smoothing=1.0), r"label_smoothing must be in \[-1, 1\), got 1.0"),
])
def test_bad_inputs_raise_one_line_errors(kwargs, message):
  args = dict(hidden=np.ones((4, 8), np.float32), kernel=np.ones((8, 10), np.float32),
              labels=np.zeros(4, np.int32))
  args.update(kwargs)
  with pytest.raises(ValueError, match="linear_smoothed_cross_entropy_and_grads: " + message):
    GRADS(**args)


def test_compiled_temporary_memory_holds_no_kernel_sized_array():
  """At N=2048, d=256, V=32768 and blocks of 64 tokens (8 MiB of logits): the temporaries are a
  few blocks, less than the kernel (32 MiB); `d kernel` is accumulated in the output.

  Measured: 18.6 MiB; the logits alone are 256 MiB.
  """
  num_tokens, dim, num_classes, block_size = 2048, 256, 32768, 64
  hidden = jax.ShapeDtypeStruct((num_tokens, dim), jnp.float32)
  kernel = jax.ShapeDtypeStruct((dim, num_classes), jnp.float32)
  labels = jax.ShapeDtypeStruct((num_tokens,), jnp.int32)
  step = jax.jit(functools.partial(GRADS, label_smoothing=0.1, block_size=block_size))
  temp = step.lower(hidden, kernel, labels).compile().memory_analysis().temp_size_in_bytes
  block_bytes = block_size * num_classes * 4
  assert temp <= 3 * block_bytes < dim * num_classes * 4
