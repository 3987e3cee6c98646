"""Tests for ls_jax.losses, each against something independent of the implementation.

References are NumPy float64 and written from the definitions with explicit target vectors; other
checks compare with optax, with analytic gradients, with finite differences (float64) and with exact
values derived in Szegedy et al. 2016 and Pereyra et al. 2017.
"""
import functools

from hypothesis import given, settings, strategies as st
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import jax.numpy as jnp
from jax.test_util import check_grads
import ml_dtypes
import numpy as np
import optax
import pytest

from ls_jax import losses, mixing

BATCH_SHAPES = [(), (3,), (2, 5)]
NUM_CLASSES = [2, 3, 10, 1000, 32000]
SMOOTHINGS = [0.0, 0.1, 0.5, 0.99]
# float32 against a float64 reference: 2e-6 (~17 ulps) of the loss, plus 2e-6 of the largest |logit|
# (the loss is a difference of terms of that size).
RTOL = 2e-6


# --- NumPy float64 references, from the definitions. ---

def np_one_hot(labels, num_classes):
  return (np.asarray(labels)[..., None] == np.arange(num_classes)).astype(np.float64)


def np_smoothed_targets(labels, num_classes, label_smoothing):
  """Szegedy et al. 2016: q' = (1 - a) * onehot + a / K."""
  return (1 - label_smoothing) * np_one_hot(labels, num_classes) + label_smoothing / num_classes


def np_log_softmax(logits):
  z = np.asarray(logits, np.float64)
  shifted = z - z.max(axis=-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def np_soft_cross_entropy(logits, targets):
  log_probs = np_log_softmax(logits)
  return -np.where(targets == 0, 0.0, targets * log_probs).sum(axis=-1)


def np_entropy(logits):
  log_probs = np_log_softmax(logits)
  probs = np.exp(log_probs)
  return -np.where(probs == 0, 0.0, probs * log_probs).sum(axis=-1)


def np_softmax(logits):
  return np.exp(np_log_softmax(logits))


def random_inputs(seed, batch_shape, num_classes, scale=3.0, dtype=np.float32):
  """Logits and labels; the logits are rounded to `dtype` and returned as NumPy arrays of it."""
  rng = np.random.default_rng(seed)
  if scale == "extreme":
    logits = rng.uniform(-1e4, 1e4, batch_shape + (num_classes,))
  else:
    logits = scale * rng.standard_normal(batch_shape + (num_classes,))
  labels = rng.integers(0, num_classes, batch_shape).astype(np.int32)
  return logits.astype(dtype), labels


def assert_loss_close(actual, expected, logits):
  atol = RTOL * max(1.0, float(np.abs(np.asarray(logits, np.float64)).max()))
  np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=RTOL, atol=atol)


# --- Agreement with the float64 references. ---

@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("num_classes", NUM_CLASSES)
@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
def test_smoothed_cross_entropy_matches_float64_reference(
    batch_shape, num_classes, label_smoothing):
  for dtype in (np.float32, ml_dtypes.bfloat16):
    for scale in (3.0, "extreme"):
      logits, labels = random_inputs(num_classes, batch_shape, num_classes, scale, dtype)
      loss = losses.smoothed_cross_entropy(logits, labels, label_smoothing)
      assert loss.dtype == jnp.float32 and loss.shape == batch_shape
      expected = np_soft_cross_entropy(
          logits.astype(np.float64), np_smoothed_targets(labels, num_classes, label_smoothing))
      assert_loss_close(loss, expected, logits)


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("num_classes", NUM_CLASSES)
def test_soft_cross_entropy_and_entropy_match_float64_reference(batch_shape, num_classes):
  rng = np.random.default_rng(num_classes)
  for dtype in (np.float32, ml_dtypes.bfloat16):
    for scale in (3.0, "extreme"):
      logits, _ = random_inputs(num_classes + 1, batch_shape, num_classes, scale, dtype)
      targets = rng.dirichlet(np.full(num_classes, 0.5), batch_shape).astype(np.float32)
      logits64 = logits.astype(np.float64)

      loss = losses.soft_cross_entropy(logits, targets)
      assert loss.dtype == jnp.float32 and loss.shape == batch_shape
      assert_loss_close(loss, np_soft_cross_entropy(logits64, targets.astype(np.float64)), logits)

      entropy = losses.entropy(logits)
      assert entropy.dtype == jnp.float32 and entropy.shape == batch_shape
      assert np.all(np.isfinite(entropy))
      # Entropy is at most log K, not of the logits' scale: absolute error a few ulps of log K.
      np.testing.assert_allclose(
          entropy, np_entropy(logits64), rtol=RTOL, atol=RTOL * max(1.0, np.log(num_classes)))


@pytest.mark.parametrize("num_classes", [3, 1000])
@pytest.mark.parametrize("beta", [0.0, 0.1, 2.0])
def test_confidence_penalty_matches_float64_reference(num_classes, beta):
  logits, labels = random_inputs(7, (4,), num_classes)
  loss = losses.confidence_penalty(logits, labels, beta, label_smoothing=0.1)
  expected = (np_soft_cross_entropy(logits, np_smoothed_targets(labels, num_classes, 0.1))
              - beta * np_entropy(logits))
  assert_loss_close(loss, expected, logits)


def test_k_minus_one_variant_via_rescaled_smoothing():
  # The module docstring's claim: fairseq's targets (1 - a on the label, a / (K - 1) elsewhere)
  # are this convention with a' = a * K / (K - 1).
  num_classes, fairseq_smoothing = 10, 0.1
  logits, labels = random_inputs(0, (6,), num_classes)
  one_hot = np_one_hot(labels, num_classes)
  fairseq_targets = (1 - fairseq_smoothing) * one_hot + fairseq_smoothing / (num_classes - 1) * (
      1 - one_hot)
  loss = losses.smoothed_cross_entropy(
      logits, labels, fairseq_smoothing * num_classes / (num_classes - 1))
  assert_loss_close(loss, np_soft_cross_entropy(logits, fairseq_targets), logits)


# --- Parity with optax. ---

@pytest.mark.parametrize("num_classes", [2, 10, 1000])
@pytest.mark.parametrize("label_smoothing", [0.1, 0.5, 0.99])
def test_matches_optax_smooth_labels_path(num_classes, label_smoothing):
  logits, labels = random_inputs(1, (16,), num_classes)
  expected = optax.softmax_cross_entropy(
      logits, optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing))
  actual = losses.smoothed_cross_entropy(logits, labels, label_smoothing)
  np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=1e-6)


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("num_classes", [2, 10, 1000])
def test_no_smoothing_is_optax_integer_cross_entropy_bit_for_bit(batch_shape, num_classes):
  logits, labels = random_inputs(2, batch_shape, num_classes)
  expected = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  np.testing.assert_array_equal(losses.smoothed_cross_entropy(logits, labels), expected)
  np.testing.assert_array_equal(losses.smoothed_cross_entropy(logits, labels, 0), expected)
  np.testing.assert_array_equal(jax.jit(losses.smoothed_cross_entropy)(logits, labels), expected)

  # Under value_and_grad our JVP rule computes the value; it must agree as well.
  def mean_loss(loss_fn, logits):
    return loss_fn(logits, labels).mean()
  ours = jax.jit(jax.value_and_grad(functools.partial(mean_loss, losses.smoothed_cross_entropy)))
  theirs = jax.jit(jax.value_and_grad(
      functools.partial(mean_loss, optax.softmax_cross_entropy_with_integer_labels)))
  (value, grad), (expected_value, expected_grad) = ours(logits), theirs(logits)
  np.testing.assert_allclose(value, expected_value, rtol=1e-7, atol=1e-7)
  # p - 1 near p = 1 cancels: allow two float32 ulps of 1, times the mean's 1/B.
  np.testing.assert_allclose(
      grad, expected_grad, rtol=1e-6, atol=2 * np.finfo(np.float32).eps / labels.size)


# --- Gradients. ---

@pytest.mark.parametrize("num_classes", [3, 10, 1000])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.99])
def test_gradient_is_softmax_minus_targets(num_classes, label_smoothing):
  logits, labels = random_inputs(3, (2, 4), num_classes)
  cotangent = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
  _, vjp = jax.vjp(lambda z: losses.smoothed_cross_entropy(z, labels, label_smoothing), logits)
  (grad,) = vjp(cotangent)
  expected = cotangent[..., None] * (
      np_softmax(logits) - np_smoothed_targets(labels, num_classes, label_smoothing))
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_bfloat16_gradient_has_logits_dtype():
  logits, labels = random_inputs(4, (8,), 100, dtype=ml_dtypes.bfloat16)
  grad = jax.grad(lambda z: losses.smoothed_cross_entropy(z, labels, 0.1).sum())(logits)
  assert grad.dtype == jnp.bfloat16
  expected = np_softmax(logits.astype(np.float64)) - np_smoothed_targets(labels, 100, 0.1)
  # Computed in float32, rounded once to bfloat16 (8 bits of mantissa).
  np.testing.assert_allclose(np.asarray(grad, np.float64), expected, rtol=2**-8, atol=1e-6)


def test_gradients_match_finite_differences_in_float64():
  with jax.enable_x64(True):
    rng = np.random.default_rng(5)
    logits = jnp.asarray(rng.standard_normal((3, 7)))
    labels = jnp.asarray([0, 6, 3])
    targets = jnp.asarray(rng.dirichlet(np.ones(7), 3))
    where = jnp.asarray([True, False, True])
    for fn, order in (
        (lambda z: losses.smoothed_cross_entropy(z, labels), 1),
        # Second order for the custom JVP rule: it must itself be differentiable.
        (lambda z: losses.smoothed_cross_entropy(z, labels, 0.2, where=where), 2),
        (lambda z: losses.soft_cross_entropy(z, targets, where=where), 1),
        (losses.entropy, 1),
        (lambda z: losses.confidence_penalty(z, labels, 0.3, label_smoothing=0.1, where=where), 1),
    ):
      fn = jax.jit(fn)
      assert fn(logits).dtype == jnp.float64
      check_grads(fn, (logits,), order=order, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)
    check_grads(
        lambda a: losses.smoothed_cross_entropy(logits, labels, a), (jnp.float64(0.3),), order=1,
        modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


def test_gradient_wrt_traced_label_smoothing():
  logits, labels = random_inputs(6, (5,), 10)
  grad = jax.grad(lambda a: losses.smoothed_cross_entropy(logits, labels, a).sum())(0.3)
  # dL/da = z_y - mean(z), from the closed form.
  expected = (np.take_along_axis(logits, labels[:, None], -1)[:, 0] - logits.mean(-1)).sum()
  np.testing.assert_allclose(grad, expected, rtol=1e-5)


def test_entropy_gradient_is_analytic():
  logits, _ = random_inputs(7, (4,), 12)
  grad = jax.grad(lambda z: losses.entropy(z).sum())(logits)
  probs, entropy = np_softmax(logits), np_entropy(logits)
  # Pereyra et al. 2017: dH/dz_i = p_i (-log p_i - H).
  np.testing.assert_allclose(
      grad, probs * (-np.log(probs) - entropy[:, None]), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_confidence_penalty_gradient_is_analytic(beta):
  logits, labels = random_inputs(8, (4,), 12)
  grad = jax.grad(
      lambda z: losses.confidence_penalty(z, labels, beta, label_smoothing=0.1).sum())(logits)
  probs, entropy = np_softmax(logits), np_entropy(logits)
  expected = (probs - np_smoothed_targets(labels, 12, 0.1)
              - beta * probs * (-np.log(probs) - entropy[:, None]))
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


def test_soft_cross_entropy_gradient_is_analytic():
  logits, _ = random_inputs(9, (4,), 12)
  targets = np.random.default_rng(9).dirichlet(np.ones(12), 4).astype(np.float32)
  grad = jax.grad(lambda z: losses.soft_cross_entropy(z, targets).sum())(logits)
  np.testing.assert_allclose(grad, np_softmax(logits) - targets, rtol=1e-5, atol=1e-7)


# --- Properties and exact values. ---

def test_optimum_is_the_smoothed_targets():
  num_classes, label_smoothing = 10, 0.1
  labels = np.array([3])
  targets = np_smoothed_targets(labels, num_classes, label_smoothing)
  optimal_logits = jnp.asarray(np.log(targets), jnp.float32)
  loss, grad = jax.value_and_grad(
      lambda z: losses.smoothed_cross_entropy(z, labels, label_smoothing).sum())(optimal_logits)
  # At the optimum the loss is H(q') = -(0.91 log 0.91 + 9 * 0.01 log 0.01) = 0.500 nats.
  assert round(float(loss), 3) == 0.500
  np.testing.assert_allclose(loss, -(targets * np.log(targets)).sum(), rtol=1e-6)
  # Not exactly 0: log(q') is rounded to float32.
  np.testing.assert_allclose(grad, 0.0, atol=1e-6)


@pytest.mark.parametrize("num_classes, expected_gap", [(10, 4.51), (1000, 9.11)])
def test_gradient_descent_reaches_published_logit_gap(num_classes, expected_gap):
  # Szegedy et al. 2016: the optimal gap z_y - z_k is log((1 - a + a/K) / (a/K)) and the
  # confidence is capped at 1 - a + a/K (0.91 for K = 10, a = 0.1).
  labels = jnp.array([0])
  grad_fn = jax.grad(lambda z: losses.smoothed_cross_entropy(z, labels, 0.1).sum())
  # Step 2 < 2 / (largest Hessian eigenvalue, at most max_k p_k < 1) keeps descent stable.
  logits = jax.lax.fori_loop(
      0, 2000, lambda _, z: z - 2.0 * grad_fn(z), jnp.zeros((1, num_classes)))
  assert round(float(logits[0, 0] - logits[0, 1]), 2) == expected_gap
  np.testing.assert_allclose(jax.nn.softmax(logits)[0, 0], 0.9 + 0.1 / num_classes, rtol=1e-4)


@settings(max_examples=30, deadline=None)
@given(
    num_classes=st.sampled_from([2, 3, 10, 50]),
    label_smoothing=st.floats(0.0, 0.99),
    scale=st.floats(0.0, 30.0),
    seed=st.integers(0, 2**16),
)
def test_loss_is_at_least_target_entropy(num_classes, label_smoothing, scale, seed):
  # Gibbs' inequality: H(q', p) = H(q') + KL(q' || p) >= H(q').
  logits, labels = random_inputs(seed, (4,), num_classes, scale)
  targets = np_smoothed_targets(labels, num_classes, label_smoothing)
  target_entropy = -np.where(targets == 0, 0.0, targets * np.log(np.maximum(targets, 1e-300)))
  loss = losses.smoothed_cross_entropy(logits, labels, label_smoothing)
  assert np.all(np.asarray(loss, np.float64) >= target_entropy.sum(-1) - 1e-5)


# A few fixed masks rather than hypothesis: every kept count is a new shape to compile.
@pytest.mark.parametrize("mask", [[True] * 6, [False] * 6, [True, False, True, True, False, True]])
def test_masking_equals_dropping(mask):
  mask = np.array(mask)
  logits, labels = random_inputs(18, (6,), 10)
  targets = np_smoothed_targets(labels, 10, 0.1).astype(np.float32)
  for fn, second in (
      (lambda z, y, **kw: losses.smoothed_cross_entropy(z, y, 0.1, **kw), labels),
      (lambda z, t, **kw: losses.soft_cross_entropy(z, t, **kw), targets),
      (lambda z, y, **kw: losses.confidence_penalty(z, y, 0.2, label_smoothing=0.1, **kw), labels),
  ):
    masked_loss, masked_grad = jax.value_and_grad(
        lambda z: fn(z, second, where=mask).sum())(logits)
    kept_loss, kept_grad = jax.value_and_grad(
        lambda z: fn(z, second[mask]).sum())(logits[mask])
    np.testing.assert_allclose(masked_loss, kept_loss, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(masked_grad[~mask], 0.0)
    np.testing.assert_allclose(masked_grad[mask], kept_grad, rtol=1e-6, atol=1e-7)


def test_masked_nan_and_inf_logits_give_zero_loss_and_gradient():
  logits, labels = random_inputs(10, (4,), 10)
  logits[1] = np.nan
  logits[2, :5] = np.inf
  labels[1] = -7  # Padding rows often carry garbage labels too.
  where = np.array([True, False, False, True])
  targets = np_smoothed_targets(labels % 10, 10, 0.1).astype(np.float32)
  targets[1] = np.nan
  for fn in (
      lambda z: losses.smoothed_cross_entropy(z, labels, where=where),
      lambda z: losses.smoothed_cross_entropy(z, labels, 0.1, where=where),
      lambda z: losses.smoothed_cross_entropy(z, labels, jnp.float32(0.1), where=where),
      lambda z: losses.soft_cross_entropy(z, targets, where=where),
      lambda z: losses.confidence_penalty(z, labels, 0.5, label_smoothing=0.1, where=where),
  ):
    loss, vjp = jax.vjp(fn, logits)
    (grad,) = vjp(jnp.ones(4))
    np.testing.assert_array_equal(loss[~where], 0.0)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[~where], 0.0)
    # Forward mode too: a NaN tangent on a masked row must not reach the output tangent.
    nan_on_masked_rows = np.where(where[:, None], np.ones_like(logits), np.nan)
    _, loss_dot = jax.jvp(fn, (logits,), (nan_on_masked_rows,))
    np.testing.assert_array_equal(loss_dot[~where], 0.0)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_out_of_range_labels_give_nan(label_smoothing):
  logits, _ = random_inputs(11, (5,), 10)
  labels = np.array([0, 10, -1, 2**30, 9], np.int32)
  loss = losses.smoothed_cross_entropy(logits, labels, label_smoothing)
  np.testing.assert_array_equal(np.isnan(loss), [False, True, True, True, False])
  # The NaN shows in the gradient too, so a bad batch cannot train silently.
  grad = np.asarray(
      jax.grad(lambda z: losses.smoothed_cross_entropy(z, labels, label_smoothing).sum())(logits))
  np.testing.assert_array_equal(np.isnan(grad).all(-1), [False, True, True, True, False])
  assert np.isfinite(grad[[0, 4]]).all()
  # Masked rows stay 0, whatever their label.
  masked = losses.smoothed_cross_entropy(
      logits, labels, label_smoothing, where=np.array([True, False, False, False, True]))
  assert np.isfinite(masked).all()


def test_small_integer_label_dtypes_with_many_classes():
  # int8/uint8 cannot hold the class index 299; the loss must still mark the right class.
  logits, labels = random_inputs(12, (6,), 300)
  expected = losses.smoothed_cross_entropy(logits, labels, 0.1)
  uint8_labels = np.array([0, 1, 2, 200, 255, 100], np.uint8)
  np.testing.assert_allclose(
      losses.smoothed_cross_entropy(logits, uint8_labels, 0.1),
      np_soft_cross_entropy(logits, np_smoothed_targets(uint8_labels, 300, 0.1)), rtol=RTOL)
  grad = jax.grad(lambda z: losses.smoothed_cross_entropy(z, uint8_labels, 0.1).sum())(logits)
  np.testing.assert_allclose(
      grad, np_softmax(logits) - np_smoothed_targets(uint8_labels, 300, 0.1), atol=1e-6)
  np.testing.assert_array_equal(
      losses.smoothed_cross_entropy(logits, labels.astype(np.int16), 0.1), expected)


def test_confidence_penalty_with_zero_beta_is_cross_entropy():
  logits, labels = random_inputs(13, (2, 3), 50)
  for label_smoothing in (0.0, 0.2):
    np.testing.assert_array_equal(
        losses.confidence_penalty(logits, labels, 0.0, label_smoothing=label_smoothing),
        losses.smoothed_cross_entropy(logits, labels, label_smoothing))


def test_traced_label_smoothing_and_vmap_over_it():
  logits, labels = random_inputs(14, (8,), 10)
  smoothings = jnp.array([0.0, 0.1, 0.5])
  per_smoothing = jax.jit(jax.vmap(
      lambda a: losses.smoothed_cross_entropy(logits, labels, a)))(smoothings)
  for row, label_smoothing in zip(per_smoothing, [0.0, 0.1, 0.5]):
    expected = np_soft_cross_entropy(logits, np_smoothed_targets(labels, 10, label_smoothing))
    assert_loss_close(row, expected, logits)


def test_jit_and_vmap_equal_direct_call():
  logits, labels = random_inputs(15, (4, 6), 20)
  where = np.random.default_rng(15).random((4, 6)) < 0.7
  direct = losses.smoothed_cross_entropy(logits, labels, 0.1, where=where)
  jitted = jax.jit(lambda z, y, w: losses.smoothed_cross_entropy(z, y, 0.1, where=w))
  mapped = jax.vmap(lambda z, y, w: losses.smoothed_cross_entropy(z, y, 0.1, where=w))
  np.testing.assert_allclose(jitted(logits, labels, where), direct, rtol=1e-6)
  np.testing.assert_allclose(mapped(logits, labels, where), direct, rtol=1e-6)

  def grad_fn(z, y, w):
    return jax.grad(lambda z: losses.smoothed_cross_entropy(z, y, 0.1, where=w).sum())(z)
  direct_grad = grad_fn(logits, labels, where)
  np.testing.assert_allclose(jax.jit(grad_fn)(logits, labels, where), direct_grad, atol=1e-7)
  np.testing.assert_allclose(jax.vmap(grad_fn)(logits, labels, where), direct_grad, atol=1e-7)

  targets = np_smoothed_targets(labels, 20, 0.2).astype(np.float32)
  for fn, second in ((losses.soft_cross_entropy, targets),
                     (functools.partial(losses.confidence_penalty, beta=0.3), labels)):
    direct = fn(logits, second)
    np.testing.assert_allclose(jax.jit(fn)(logits, second), direct, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(fn)(logits, second), direct, rtol=1e-6)
  np.testing.assert_allclose(jax.vmap(losses.entropy)(logits), losses.entropy(logits), rtol=1e-6)


def test_sharded_batch_equals_unsharded():
  assert jax.device_count() == 8, "tests/conftest.py asks for 8 host CPU devices"
  mesh = Mesh(np.array(jax.devices()), ("batch",))
  logits, labels = random_inputs(16, (16,), 100)
  where = np.arange(16) % 5 != 0

  def loss_and_grad(z, y, w, a):
    return jax.value_and_grad(
        lambda z: losses.smoothed_cross_entropy(z, y, a, where=w).mean())(z)
  expected_loss, expected_grad = jax.jit(loss_and_grad)(logits, labels, where, 0.1)
  row_sharding = NamedSharding(mesh, PartitionSpec("batch"))
  sharded = [jax.device_put(x, row_sharding) for x in (logits, labels, where)]
  loss, grad = jax.jit(loss_and_grad)(*sharded, jnp.float32(0.1))
  assert grad.sharding.is_equivalent_to(row_sharding, grad.ndim)
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-6)
  # p - 1 near p = 1 cancels: allow two float32 ulps of 1, times the mean's 1/B.
  np.testing.assert_allclose(
      grad, expected_grad, rtol=1e-6, atol=2 * np.finfo(np.float32).eps / labels.size)


def test_neg_inf_masked_classes():
  logits, labels = random_inputs(17, (3,), 6)
  logits[:, 4:] = -np.inf  # classes 4 and 5 are invalid for every example
  labels %= 4
  # The documented pitfall: smoothing spreads a/K onto the -inf classes, so the loss is inf.
  assert np.all(np.isposinf(losses.smoothed_cross_entropy(logits, labels, 0.1)))
  # Without smoothing, and with soft targets over the valid classes, it is finite and correct.
  np.testing.assert_allclose(
      losses.smoothed_cross_entropy(logits, labels),
      np_soft_cross_entropy(logits[:, :4], np_one_hot(labels, 4)), rtol=RTOL)
  targets = np.zeros((3, 6), np.float32)
  targets[:, :4] = np_smoothed_targets(labels, 4, 0.1)
  loss, grad = jax.value_and_grad(lambda z: losses.soft_cross_entropy(z, targets).sum())(logits)
  np.testing.assert_allclose(
      loss, np_soft_cross_entropy(logits[:, :4], targets[:, :4]).sum(), rtol=RTOL)
  np.testing.assert_allclose(grad[:, :4], np_softmax(logits[:, :4]) - targets[:, :4], atol=1e-6)
  np.testing.assert_array_equal(grad[:, 4:], 0.0)
  entropy, entropy_grad = jax.value_and_grad(lambda z: losses.entropy(z).sum())(logits)
  np.testing.assert_allclose(entropy, np_entropy(logits[:, :4]).sum(), rtol=RTOL)
  np.testing.assert_array_equal(entropy_grad[:, 4:], 0.0)


def test_entropy_limits():
  np.testing.assert_allclose(losses.entropy(np.zeros((2, 7), np.float32)), np.log(7), rtol=1e-6)
  np.testing.assert_array_equal(losses.entropy(np.array([[1e4, -1e4, 0.0]], np.float32)), 0.0)


def test_integer_label_path_materializes_no_one_hot():
  batch, num_classes = 512, 1000
  logits = jnp.zeros((batch, num_classes))
  labels = jnp.zeros((batch,), jnp.int32)

  def temp_bytes(loss_fn, with_grad):
    fn = jax.grad(lambda z, y: loss_fn(z, y).mean()) if with_grad else loss_fn
    return jax.jit(fn).lower(logits, labels).compile().memory_analysis().temp_size_in_bytes

  def one_hot_path(z, y):
    return optax.softmax_cross_entropy(z, optax.smooth_labels(jax.nn.one_hot(y, num_classes), 0.1))

  ours = functools.partial(losses.smoothed_cross_entropy, label_smoothing=0.1)
  for with_grad in (False, True):
    # Less than even a (B, K) boolean array; the optax one-hot path holds (B, K) float32 ones.
    assert temp_bytes(ours, with_grad) < batch * num_classes
    assert temp_bytes(one_hot_path, with_grad) >= 4 * batch * num_classes


# --- Input checking. ---

@pytest.mark.parametrize("call, message", [
    (lambda: losses.smoothed_cross_entropy(np.zeros((4, 3)), np.zeros(5, np.int32)),
     r"labels must have shape logits.shape\[:-1\] = \(4,\), got \(5,\)"),
    (lambda: losses.smoothed_cross_entropy(np.zeros((4, 3)), np.zeros(4)),
     "labels must be integers, got dtype float"),
    (lambda: losses.smoothed_cross_entropy(np.zeros((4, 3), np.int32), np.zeros(4, np.int32)),
     "logits must be floating point, got dtype int32"),
    (lambda: losses.smoothed_cross_entropy(np.zeros((4, 0)), np.zeros(4, np.int32)),
     r"non-empty class axis \(last\), got shape \(4, 0\)"),
    (lambda: losses.smoothed_cross_entropy(np.zeros(()), np.zeros((), np.int32)),
     r"got shape \(\)"),
    (lambda: losses.smoothed_cross_entropy(np.zeros((4, 3)), np.zeros(4, np.int32), 1.0),
     r"label_smoothing must be in \[-1, 1\), got 1.0"),
    (lambda: losses.smoothed_cross_entropy(np.zeros((4, 3)), np.zeros(4, np.int32), -1.5),
     r"label_smoothing must be in \[-1, 1\), got -1.5"),
    (lambda: losses.smoothed_cross_entropy(np.zeros((4, 3)), np.zeros(4, np.int32), float("nan")),
     r"label_smoothing must be in \[-1, 1\), got nan"),
    (lambda: losses.smoothed_cross_entropy(np.zeros((4, 3)), np.zeros(4, np.int32), [0.1, 0.2]),
     r"label_smoothing must be a scalar, got shape \(2,\)"),
    (lambda: losses.smoothed_cross_entropy(
        np.zeros((4, 3)), np.zeros(4, np.int32), where=np.ones(4)),
     "where must be a boolean array, got dtype float"),
    (lambda: losses.smoothed_cross_entropy(
        np.zeros((4, 3)), np.zeros(4, np.int32), where=np.ones((4, 3), bool)),
     r"where must have shape logits.shape\[:-1\] = \(4,\), got \(4, 3\)"),
    (lambda: losses.confidence_penalty(np.zeros((4, 3)), np.zeros(4, np.int32), -0.5),
     "confidence_penalty: beta must be >= 0, got -0.5"),
    (lambda: losses.soft_cross_entropy(np.zeros((4, 3)), np.zeros((4, 2))),
     r"targets must have the shape of logits \(4, 3\), got \(4, 2\)"),
    (lambda: losses.soft_cross_entropy(np.zeros((4, 3)), np.zeros((4, 3), np.int32)),
     "targets must be floating point, got dtype int32"),
    (lambda: losses.entropy(np.zeros(3, np.int32)), "entropy: logits must be floating point"),
])
def test_bad_inputs_raise_value_error(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_traced_label_smoothing_must_be_floating():
  with pytest.raises(ValueError, match="label_smoothing must be floating point, got dtype int32"):
    jax.jit(lambda a: losses.smoothed_cross_entropy(np.zeros((4, 3)), np.zeros(4, np.int32), a))(
        jnp.int32(0))


def test_check_labels():
  losses.check_labels(np.array([[0, 9], [3, 4]]), 10)
  with pytest.raises(ValueError, match=r"labels at index \(1, 0\) is 10, outside the valid range "
                                       r"\[0, 10\)"):
    losses.check_labels(np.array([[0, 9], [10, -1]]), 10)
  with pytest.raises(ValueError, match=r"labels at index \(2,\) is -1"):
    losses.check_labels([0, 1, -1, 12], 10)
  with pytest.raises(ValueError, match="labels must be integers, got dtype float64"):
    losses.check_labels(np.array([0.0, 1.0]), 10)
  with pytest.raises(ValueError, match="num_classes must be positive, got 0"):
    losses.check_labels(np.array([0]), 0)


# --- Negative label smoothing (Wei et al. 2022). ---

NEGATIVE_SMOOTHINGS = [-0.05, -0.2, -0.5, -1.0]


@pytest.mark.parametrize("num_classes", [2, 10, 1000])
@pytest.mark.parametrize("label_smoothing", NEGATIVE_SMOOTHINGS)
def test_negative_smoothing_matches_float64_reference(num_classes, label_smoothing):
  logits, labels = random_inputs(11, (2, 5), num_classes)
  targets = np_smoothed_targets(labels, num_classes, label_smoothing)
  # The targets of a < 0: a label weight above 1, negative off-class weights, still summing to 1.
  assert (targets.max(-1) == 1 - label_smoothing + label_smoothing / num_classes).all()
  assert (targets.min(-1) == label_smoothing / num_classes).all() and (targets.min(-1) < 0).all()
  np.testing.assert_allclose(targets.sum(-1), 1)
  loss = losses.smoothed_cross_entropy(logits, labels, label_smoothing)
  assert_loss_close(loss, np_soft_cross_entropy(logits.astype(np.float64), targets), logits)
  # Gradient softmax(z) - q', from reverse mode and from forward mode (the custom JVP).
  cotangent = np.random.default_rng(1).standard_normal((2, 5)).astype(np.float32)
  _, vjp = jax.vjp(lambda z: losses.smoothed_cross_entropy(z, labels, label_smoothing), logits)
  expected = np_softmax(logits) - targets
  np.testing.assert_allclose(vjp(cotangent)[0], cotangent[..., None] * expected,
                             rtol=1e-5, atol=1e-6)
  tangent = np.random.default_rng(2).standard_normal(logits.shape).astype(np.float32)
  _, loss_dot = jax.jvp(
      lambda z: losses.smoothed_cross_entropy(z, labels, label_smoothing), (logits,), (tangent,))
  np.testing.assert_allclose(loss_dot, (expected * tangent).sum(-1), rtol=1e-4, atol=1e-5)


def test_negative_smoothing_equals_soft_cross_entropy_on_its_targets():
  logits, labels = random_inputs(12, (16,), 10)
  targets = mixing.soft_targets(labels, 10, -0.4)
  np.testing.assert_allclose(losses.smoothed_cross_entropy(logits, labels, -0.4),
                             losses.soft_cross_entropy(logits, targets), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_classes", [2, 10])
def test_negative_smoothing_is_unbounded_below_with_the_documented_slopes(num_classes):
  # Along z = t * onehot(y) the loss falls like -|a| (K-1)/K t; along z = t * onehot(k != y) it
  # rises like (1 + |a|/K) t: at a >= -1 the confident mistake always costs more.
  with jax.enable_x64(True):
    a = -0.5
    ts = np.array([100.0, 200.0])
    right = losses.smoothed_cross_entropy(ts[:, None] * np.eye(num_classes)[0], np.zeros(2, int), a)
    wrong = losses.smoothed_cross_entropy(ts[:, None] * np.eye(num_classes)[1], np.zeros(2, int), a)
    np.testing.assert_allclose(np.diff(right) / 100, a * (num_classes - 1) / num_classes, rtol=1e-9)
    np.testing.assert_allclose(np.diff(wrong) / 100, 1 - a / num_classes, rtol=1e-9)
    # While for a >= 0 the loss is bounded below by the entropy of the targets (tested above).
    assert losses.smoothed_cross_entropy(1e4 * np.eye(num_classes)[:1], np.zeros(1, int), a) < -1e3
