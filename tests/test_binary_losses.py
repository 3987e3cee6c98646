"""Tests for `losses.smoothed_binary_cross_entropy` and `losses.binary_focal_loss`.

References, each independent of the implementation: NumPy float64 written from the definitions
(`-[p t log sigma(z) + (1 - t) log(1 - sigma(z))]`, the formula of PyTorch's
`BCEWithLogitsLoss(pos_weight=p)` documentation, and Lin et al. 2017 eq. 5 for the focal loss),
the analytic gradient `sigma(z) - t`, finite differences (`check_grads`, float64), optax
(`sigmoid_binary_cross_entropy`, `losses.sigmoid_focal_loss`), and the K = 2 softmax losses of
`classification` on the logits `[0, z]` and `[-z/2, z/2]`.
"""
import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import optax
import pytest

from ls_jax import losses

SHAPES = [(), (7,), (4, 5)]
SMOOTHINGS = [0.0, 0.1, 0.2, 1.0]
GAMMAS = [0.0, 0.5, 2.0]
RTOL = 2e-6  # float32 against float64, as in test_losses.py.


# --- NumPy float64 references, from the definitions. ---

def np_sigmoid(z):
  return np.exp(-np.logaddexp(0, -np.asarray(z, np.float64)))  # 1 / (1 + e^-z), no overflow


def np_targets(labels, a):
  """Keras BinaryCrossentropy(label_smoothing=a): y (1 - a) + a / 2."""
  return np.asarray(labels, np.float64) * (1 - a) + a / 2


def np_bce(z, t, pos_weight=1.0):
  """-[p t log sigma(z) + (1 - t) log(1 - sigma(z))], log sigma(z) = -log(1 + e^-z) (stable)."""
  z = np.asarray(z, np.float64)
  log_p, log_not_p = -np.logaddexp(0, -z), -np.logaddexp(0, z)
  return -(pos_weight * t * log_p + (1 - t) * log_not_p)


def np_bce_naive(z, t, pos_weight=1.0):
  """PyTorch's documented formula for BCEWithLogitsLoss, literally: moderate logits only."""
  p = np_sigmoid(z)
  return -(pos_weight * t * np.log(p) + (1 - t) * np.log(1 - p))


def np_focal(z, t, gamma, alpha=None):
  """Lin et al. 2017 eq. 5, -alpha_t (1 - p_t)^gamma log p_t, in the form linear in soft t."""
  p = np_sigmoid(z)
  one_minus_p_t = t * (1 - p) + (1 - t) * p
  loss = one_minus_p_t ** gamma * np_bce(z, t)
  return loss if alpha is None else (alpha * t + (1 - alpha) * (1 - t)) * loss


def random_binary(seed, shape, kind="int", scale=3.0):
  rng = np.random.default_rng(seed)
  logits = (scale * rng.standard_normal(shape)).astype(np.float32)
  if kind == "soft":
    labels = rng.uniform(0, 1, shape).astype(np.float32)
  else:
    labels = rng.integers(0, 2, shape).astype(np.int32)
    if kind == "bool":
      labels = labels.astype(bool)
  return logits, labels


def assert_close(actual, expected, logits, rtol=RTOL):
  atol = rtol * max(1.0, float(np.abs(np.asarray(logits, np.float64)).max()))
  np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=atol)


# --- smoothed_binary_cross_entropy: values. ---

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("a", SMOOTHINGS)
@pytest.mark.parametrize("kind", ["int", "bool", "soft"])
def test_matches_float64_reference(shape, a, kind):
  logits, labels = random_binary(1, shape, kind)
  loss = jax.jit(losses.smoothed_binary_cross_entropy)(logits, labels, a)
  assert loss.shape == shape and loss.dtype == jnp.float32
  assert_close(loss, np_bce(logits, np_targets(labels, a)), logits)


def test_float64_logits_give_float64_precision():
  with jax.enable_x64(True):
    logits, labels = random_binary(2, (64,), "soft")
    logits = logits.astype(np.float64) * 3
    loss = losses.smoothed_binary_cross_entropy(jnp.asarray(logits), labels, 0.2)
    assert loss.dtype == jnp.float64
    np.testing.assert_allclose(loss, np_bce(logits, np_targets(labels, 0.2)), rtol=1e-13)


def test_zero_smoothing_is_optax_sigmoid_binary_cross_entropy():
  logits, labels = random_binary(3, (8, 6))
  ours = losses.smoothed_binary_cross_entropy(logits, labels)
  theirs = optax.sigmoid_binary_cross_entropy(logits, labels.astype(np.float32))
  np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("a", [0.1, 0.2, 0.7])
def test_smoothing_is_optax_on_keras_targets(a):
  logits, labels = random_binary(4, (32,), "soft")
  ours = losses.smoothed_binary_cross_entropy(logits, labels, a)
  theirs = optax.sigmoid_binary_cross_entropy(logits, jnp.asarray(labels) * (1 - a) + a / 2)
  np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


def test_a_point_two_gives_the_point_nine_point_one_targets():
  # At the minimum sigma(z) = t: the loss is stationary at z = logit(0.9) for y = 1, logit(0.1)
  # for y = 0, and the gradient at z = 0 is sigma(0) - t = -0.4 / 0.4.
  with jax.enable_x64(True):
    labels = np.array([1, 0])
    grad = jax.grad(lambda z: losses.smoothed_binary_cross_entropy(z, labels, 0.2).sum())
    np.testing.assert_allclose(grad(jnp.zeros(2)), [-0.4, 0.4], atol=1e-15)
    np.testing.assert_allclose(grad(jnp.log(jnp.array([9.0, 1 / 9]))), [0, 0], atol=1e-15)


def test_full_smoothing_targets_one_half():
  logits, labels = random_binary(5, (16,))
  loss = losses.smoothed_binary_cross_entropy(logits, labels, 1.0)
  assert_close(loss, np_bce(logits, np.full(16, 0.5)), logits)


def test_multi_label_is_elementwise():
  logits, labels = random_binary(6, (3, 4))
  loss = losses.smoothed_binary_cross_entropy(logits, labels, 0.1)
  rows = [losses.smoothed_binary_cross_entropy(logits[:, c], labels[:, c], 0.1) for c in range(4)]
  np.testing.assert_array_equal(loss, np.stack(rows, axis=-1))


# --- The K = 2 softmax relation. ---

@pytest.mark.parametrize("a", [0.0, 0.1, 0.2, 0.5, 0.99])
def test_equals_two_class_softmax_smoothing(a):
  # sigmoid(z) = softmax([0, z])_1 = softmax([-z/2, z/2])_1, and [1 - t, t] with t = y(1-a) + a/2
  # is the two-class (1 - a) onehot(y) + a/2: the losses and their z-gradients agree.
  with jax.enable_x64(True):
    logits, labels = random_binary(7, (40,))
    z = jnp.asarray(logits, jnp.float64)
    binary = lambda z: losses.smoothed_binary_cross_entropy(z, labels, a)
    for pair in (lambda z: jnp.stack([jnp.zeros_like(z), z], -1),
                 lambda z: jnp.stack([-z / 2, z / 2], -1)):
      softmax = lambda z: losses.smoothed_cross_entropy(pair(z), labels, a)
      np.testing.assert_allclose(binary(z), softmax(z), rtol=1e-13, atol=1e-13)
      np.testing.assert_allclose(jax.grad(lambda z: binary(z).sum())(z),
                                 jax.grad(lambda z: softmax(z).sum())(z), rtol=1e-12, atol=1e-13)


def test_soft_labels_equal_two_class_soft_cross_entropy():
  with jax.enable_x64(True):
    logits, labels = random_binary(8, (40,), "soft")
    z = jnp.asarray(logits, jnp.float64)
    t = np_targets(labels, 0.3)
    softmax = losses.soft_cross_entropy(jnp.stack([jnp.zeros_like(z), z], -1),
                                        jnp.asarray(np.stack([1 - t, t], -1)))
    np.testing.assert_allclose(losses.smoothed_binary_cross_entropy(z, labels, 0.3), softmax,
                               rtol=1e-12, atol=1e-13)


# --- pos_weight: PyTorch BCEWithLogitsLoss(pos_weight=p). ---

@pytest.mark.parametrize("a", [0.0, 0.2])
def test_pos_weight_matches_pytorch_formula(a):
  logits, labels = random_binary(9, (6, 3))
  pos_weight = np.array([3.0, 0.5, 0.0], np.float32)
  expected = np_bce_naive(logits, np_targets(labels, a), pos_weight)
  loss = losses.smoothed_binary_cross_entropy(logits, labels, a, pos_weight=pos_weight)
  assert_close(loss, expected, logits)
  scalar = losses.smoothed_binary_cross_entropy(logits, labels, a, pos_weight=2.5)
  assert_close(scalar, np_bce_naive(logits, np_targets(labels, a), 2.5), logits)
  ones = losses.smoothed_binary_cross_entropy(logits, labels, a, pos_weight=1.0)
  np.testing.assert_array_equal(ones, losses.smoothed_binary_cross_entropy(logits, labels, a))


def test_pos_weight_gradient_is_analytic():
  with jax.enable_x64(True):
    logits, labels = random_binary(10, (5, 3), "soft")
    z, p, t = jnp.asarray(logits, jnp.float64), np.array([4.0, 1.0, 0.25]), np.asarray(labels)
    grad = jax.grad(lambda z: losses.smoothed_binary_cross_entropy(
        z, labels, pos_weight=p).sum())(z)
    np.testing.assert_allclose(grad, (p * t + 1 - t) * np_sigmoid(z) - p * t, rtol=1e-12,
                               atol=1e-14)


# --- Gradients. ---

@pytest.mark.parametrize("a", [0.0, 0.2])
@pytest.mark.parametrize("kind", ["int", "soft"])
def test_gradient_is_sigmoid_minus_target(a, kind):
  with jax.enable_x64(True):
    logits, labels = random_binary(11, (4, 6), kind)
    z = jnp.asarray(logits, jnp.float64)
    grad = jax.grad(lambda z: losses.smoothed_binary_cross_entropy(z, labels, a).sum())(z)
    np.testing.assert_allclose(grad, np_sigmoid(z) - np_targets(labels, a), rtol=1e-12,
                               atol=1e-15)


def test_float32_gradient_matches_analytic():
  logits, labels = random_binary(12, (64,))
  grad = jax.grad(lambda z: losses.smoothed_binary_cross_entropy(z, labels, 0.2).sum())(logits)
  assert grad.dtype == jnp.float32
  np.testing.assert_allclose(grad, np_sigmoid(logits) - np_targets(labels, 0.2), atol=1e-6)


def test_check_grads_order_two():
  with jax.enable_x64(True):
    logits, labels = random_binary(13, (3, 4), "soft")
    where = np.arange(12).reshape(3, 4) % 5 != 0
    p = np.array([2.0, 1.0, 0.5, 3.0])
    for a in (0.0, 0.2):
      f = lambda z: losses.smoothed_binary_cross_entropy(z, labels, a, pos_weight=p, where=where)
      check_grads(f, (jnp.asarray(logits, jnp.float64),), order=2, modes=("fwd", "rev"))
    # Differentiable in a traced a: dL/da = (1/2 - y) * (softplus(-z) - softplus(z)) = -(1/2 - y) z.
    z = jnp.asarray(logits, jnp.float64)
    da = jax.grad(lambda a: losses.smoothed_binary_cross_entropy(z, labels, a).sum())(0.3)
    np.testing.assert_allclose(da, np.sum(-(0.5 - labels.astype(np.float64)) * logits),
                               rtol=1e-12)
    check_grads(lambda a: losses.smoothed_binary_cross_entropy(z, labels, a), (0.3,), order=2,
                modes=("fwd", "rev"))


# --- Large logits, low precision, masking. ---

def test_large_logits_are_finite_and_exact():
  z = np.array([1e4, -1e4, 1e4, -1e4], np.float32)
  y = np.array([1, 1, 0, 0])
  np.testing.assert_array_equal(losses.smoothed_binary_cross_entropy(z, y), [0, 1e4, 1e4, 0])
  # a = 0.2: the target is 0.9 / 0.1, and every loss is 1e4 times a target: 1000 or 9000.
  np.testing.assert_allclose(losses.smoothed_binary_cross_entropy(z, y, 0.2),
                             [1e3, 9e3, 9e3, 1e3], rtol=1e-7)
  grad = jax.grad(lambda z: losses.smoothed_binary_cross_entropy(z, y, 0.2).sum())(z)
  np.testing.assert_allclose(grad, np_sigmoid(z) - np_targets(y, 0.2), atol=1e-7)
  for gamma in GAMMAS:
    focal = losses.binary_focal_loss(z, y, gamma, alpha=0.25)
    np.testing.assert_allclose(focal, np.array([0, 0.25e4, 0.75e4, 0]) * [1, 1, 1, 1], rtol=1e-7)
    g = jax.grad(lambda z: losses.binary_focal_loss(z, y, gamma, label_smoothing=0.1).sum())(z)
    assert np.isfinite(g).all()


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_computes_in_float32(dtype):
  logits, labels = random_binary(14, (8, 3))
  low = jnp.asarray(logits, dtype)
  for f in (lambda z: losses.smoothed_binary_cross_entropy(z, labels, 0.2, pos_weight=2.0),
            lambda z: losses.binary_focal_loss(z, labels, 2.0, alpha=0.25)):
    loss, grad = jax.jit(jax.value_and_grad(lambda z: f(z).sum()))(low)
    assert loss.dtype == jnp.float32 and grad.dtype == dtype
    np.testing.assert_allclose(f(low), f(low.astype(jnp.float32)), rtol=1e-6)
  upcast = np.asarray(low.astype(jnp.float32), np.float64)
  assert_close(losses.smoothed_binary_cross_entropy(low, labels, 0.2),
               np_bce(upcast, np_targets(labels, 0.2)), upcast)


@pytest.mark.parametrize("loss_fn", ["bce", "focal"])
def test_where_masks_nan_values_and_gradients(loss_fn):
  logits, labels = random_binary(15, (4, 5), "soft")
  where = np.random.default_rng(16).uniform(size=(4, 5)) < 0.6
  dirty_logits = np.where(where, logits, np.nan).astype(np.float32)
  dirty_labels = jnp.asarray(np.where(where, labels, np.nan))  # device labels: not host-checked
  if loss_fn == "bce":
    f = lambda z, y, w: losses.smoothed_binary_cross_entropy(z, y, 0.1, pos_weight=2.0, where=w)
  else:
    f = lambda z, y, w: losses.binary_focal_loss(z, y, 0.5, alpha=0.3, where=w)
  loss = f(dirty_logits, dirty_labels, where)
  assert np.isfinite(loss).all()
  np.testing.assert_array_equal(np.asarray(loss)[~where], 0)
  np.testing.assert_array_equal(np.asarray(loss)[where], np.asarray(f(logits, labels, None))[where])
  grad = jax.grad(lambda z: f(z, dirty_labels, where).sum())(jnp.asarray(dirty_logits))
  np.testing.assert_array_equal(np.asarray(grad)[~where], 0)
  assert np.isfinite(grad).all()


def test_out_of_range_device_labels_give_nan():
  logits = jnp.zeros(4)
  for labels in (jnp.array([0, 1, 2, -1]), jnp.array([0.0, 1.0, 1.5, -0.1])):
    for f in (lambda z: losses.smoothed_binary_cross_entropy(z, labels, 0.1),
              lambda z: losses.binary_focal_loss(z, labels, 2.0)):
      np.testing.assert_array_equal(np.isnan(f(logits)), [False, False, True, True])
      grad = jax.grad(lambda z: f(z).sum())(logits)
      np.testing.assert_array_equal(np.isnan(grad), [False, False, True, True])
    # Masked, they are harmless.
    masked = losses.smoothed_binary_cross_entropy(logits, labels, where=jnp.array([1, 1, 0, 0],
                                                                                  bool))
    assert np.isfinite(masked).all()


def test_jit_with_traced_labels_and_smoothing():
  logits, labels = random_binary(17, (6,))
  f = jax.jit(lambda z, y, a: losses.smoothed_binary_cross_entropy(z, y, a))
  assert_close(f(logits, labels, 0.2), np_bce(logits, np_targets(labels, 0.2)), logits)
  batched = jax.vmap(losses.binary_focal_loss, in_axes=(0, 0, None))(logits[:, None],
                                                                      labels[:, None], 2.0)
  assert_close(batched[:, 0], np_focal(logits, labels.astype(np.float64), 2.0), logits)


# --- binary_focal_loss. ---

@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("a", [0.0, 0.2])
def test_focal_matches_float64_reference_and_optax(gamma, alpha, a):
  logits, labels = random_binary(18, (5, 4), "int")
  loss = losses.binary_focal_loss(logits, labels, gamma, label_smoothing=a, alpha=alpha)
  t = np_targets(labels, a)
  assert loss.dtype == jnp.float32
  assert_close(loss, np_focal(logits, t, gamma, alpha), logits, rtol=(1 + gamma) * RTOL)
  # optax.losses.sigmoid_focal_loss: alpha=None is no balancing; alpha_t = alpha t + (1-alpha)(1-t).
  theirs = optax.losses.sigmoid_focal_loss(logits, jnp.asarray(t, jnp.float32), alpha=alpha,
                                           gamma=gamma)
  np.testing.assert_allclose(loss, theirs, rtol=1e-5, atol=1e-6)


def test_focal_soft_labels_match_reference():
  logits, labels = random_binary(19, (32,), "soft")
  loss = losses.binary_focal_loss(logits, labels, 1.5, alpha=0.6)
  assert_close(loss, np_focal(logits, labels.astype(np.float64), 1.5, 0.6), logits, rtol=4e-6)


def test_focal_gamma_zero_is_binary_cross_entropy():
  logits, labels = random_binary(20, (4, 7), "soft")
  for a in (0.0, 0.2):
    np.testing.assert_array_equal(
        losses.binary_focal_loss(logits, labels, 0.0, label_smoothing=a),
        losses.smoothed_binary_cross_entropy(logits, labels, a))


def test_focal_alpha_weights_positives_and_negatives():
  logits = np.array([0.3, 0.3], np.float32)
  labels = np.array([1, 0])
  plain = losses.binary_focal_loss(logits, labels, 2.0)
  np.testing.assert_allclose(losses.binary_focal_loss(logits, labels, 2.0, alpha=0.25),
                             plain * np.array([0.25, 0.75]), rtol=1e-7)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_focal_is_two_class_focal_loss(gamma):
  with jax.enable_x64(True):
    logits, labels = random_binary(21, (24,))
    z = jnp.asarray(logits, jnp.float64)
    two_class = losses.focal_loss(jnp.stack([jnp.zeros_like(z), z], -1), labels, gamma)
    np.testing.assert_allclose(losses.binary_focal_loss(z, labels, gamma), two_class, rtol=1e-12,
                               atol=1e-14)


def test_focal_gradients():
  with jax.enable_x64(True):
    logits, labels = random_binary(22, (3, 4), "soft")
    z = jnp.asarray(logits, jnp.float64)
    where = np.arange(12).reshape(3, 4) % 4 != 1
    f = lambda z: losses.binary_focal_loss(z, labels, 0.5, label_smoothing=0.1, alpha=0.25,
                                           where=where)
    check_grads(f, (z,), order=2, modes=("fwd", "rev"))
    gamma = 2.0
    # Analytic, for hard labels: with q = 1 - p_t and s = +1 for y = 1, -1 for y = 0,
    # dq/dz = -s p (1 - p) and dL/dz = -gamma q^(gamma-1) dq/dz log p_t - q^gamma s q.
    y = (labels > 0.5).astype(np.float64)
    p = np_sigmoid(logits)
    p_t, s = np.where(y == 1, p, 1 - p), 2 * y - 1
    q = 1 - p_t
    expected = gamma * q ** (gamma - 1) * s * p * (1 - p) * np.log(p_t) - q ** gamma * s * q
    grad = jax.grad(lambda z: losses.binary_focal_loss(z, y, gamma).sum())(z)
    np.testing.assert_allclose(grad, expected, rtol=1e-10, atol=1e-14)


# --- Errors: one clear line each. ---

@pytest.mark.parametrize("call, message", [
    (lambda: losses.smoothed_binary_cross_entropy(np.zeros(3), np.array([0, 2, 1])),
     r"labels at index \(1,\) is 2, outside \{0, 1\}"),
    (lambda: losses.smoothed_binary_cross_entropy(np.zeros(3), [0.5, 1.0, 1.5]),
     r"labels at index \(2,\) is 1.5, outside \[0, 1\]"),
    (lambda: losses.smoothed_binary_cross_entropy(np.zeros(2), np.array([np.nan, 0.0])),
     r"labels at index \(0,\) is nan"),
    (lambda: losses.smoothed_binary_cross_entropy(np.zeros((2, 3)), np.zeros(2, int)),
     r"labels must have the shape of logits \(2, 3\), got \(2,\)"),
    (lambda: losses.smoothed_binary_cross_entropy(np.zeros(3, int), np.zeros(3, int)),
     r"logits must be floating point"),
    (lambda: losses.smoothed_binary_cross_entropy(np.zeros(3), np.zeros(3, int), -0.1),
     r"label_smoothing must be in \[0, 1\]"),
    (lambda: losses.smoothed_binary_cross_entropy(np.zeros(3), np.zeros(3, int), 1.5),
     r"label_smoothing must be in \[0, 1\]"),
    (lambda: losses.smoothed_binary_cross_entropy(np.zeros(3), np.zeros(3, int), pos_weight=-1.0),
     r"pos_weight must be finite and >= 0"),
    (lambda: losses.smoothed_binary_cross_entropy(np.zeros((2, 3)), np.zeros((2, 3), int),
                                                  pos_weight=np.ones(2)),
     r"pos_weight must be a scalar or have shape \(C,\) = \(3,\)"),
    # Binary [B] logits have no class axis: a (B,) pos_weight would weight examples.
    (lambda: losses.smoothed_binary_cross_entropy(np.zeros(3), np.zeros(3, int),
                                                  pos_weight=np.ones(3)),
     r"pos_weight must be a scalar, got shape \(3,\)"),
    (lambda: losses.smoothed_binary_cross_entropy(np.zeros(3), np.zeros(3, int),
                                                  where=np.ones(3)),
     r"where must be a boolean array"),
    (lambda: losses.smoothed_binary_cross_entropy(np.zeros(3), np.zeros(3, int),
                                                  where=np.ones(2, bool)),
     r"where must have the shape of logits"),
    (lambda: losses.binary_focal_loss(np.zeros(3), np.zeros(3, int), -1.0),
     r"binary_focal_loss: gamma must be >= 0"),
    (lambda: losses.binary_focal_loss(np.zeros(3), np.zeros(3, int), 2.0, alpha=1.5),
     r"alpha must be in \[0, 1\]"),
    (lambda: losses.binary_focal_loss(np.zeros(3), np.array([0, 3, 1]), 2.0),
     r"binary_focal_loss: labels at index \(1,\) is 3"),
])
def test_bad_input_raises_one_line(call, message):
  with pytest.raises(ValueError, match=message) as error:
    call()
  assert "\n" not in str(error.value)
