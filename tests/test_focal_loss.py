"""Tests for `losses.focal_loss`, each against something independent of the implementation.

References: NumPy float64 from the definition `-(1 - p_y)^gamma log p_y` (Lin et al. 2017, eq. 4
without alpha), the analytic gradient, finite differences (`check_grads`, float64), optax's integer
label cross-entropy (gamma = 0) and optax's binary `sigmoid_focal_loss` (two classes with logits
`[0, x]` have `p_1 = sigmoid(x)`, so the multi-class focal loss must equal the binary one), and two
inequalities that hold for every gamma >= 0.
"""
import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import ml_dtypes
import numpy as np
import optax
import pytest

from ls_jax import losses
from test_losses import np_entropy, np_log_softmax, np_softmax, random_inputs

GAMMAS = [0.0, 0.5, 1.0, 2.0, 3.0]
BATCH_SHAPES = [(), (3,), (2, 5)]
NUM_CLASSES = [2, 3, 10, 1000]
RTOL = 2e-6  # float32 against float64, as in test_losses.py.


# --- NumPy float64 references, from the definitions. ---

def np_label_log_prob(logits, labels):
  log_probs = np_log_softmax(logits)
  return np.take_along_axis(log_probs, np.asarray(labels)[..., None], axis=-1)[..., 0]


def np_one_minus_label_prob(logits, labels):
  """`1 - p_y` as the sum of the other classes' probabilities: no cancellation near p_y = 1."""
  probs = np_softmax(logits)
  others = np.asarray(labels)[..., None] != np.arange(probs.shape[-1])
  return np.where(others, probs, 0.0).sum(axis=-1)


def np_focal(logits, labels, gamma):
  """-(1 - p_y)^gamma * log p_y in float64 (0^0 = 1: gamma = 0 is the cross-entropy)."""
  log_p = np_label_log_prob(logits, labels)
  return -np_one_minus_label_prob(logits, labels) ** gamma * log_p


def np_focal_grad(logits, labels, gamma):
  """dL/dz_k = (1[k = y] - p_k) * (gamma (1 - p)^(gamma - 1) p log p - (1 - p)^gamma), p = p_y.

  From dlog p/dz_k = 1[k = y] - p_k and d(1 - p)/dz_k = -p (1[k = y] - p_k)."""
  num_classes = np.shape(logits)[-1]
  log_p = np_label_log_prob(logits, labels)
  p, one_minus_p = np.exp(log_p), np_one_minus_label_prob(logits, labels)
  factor = gamma * one_minus_p ** (gamma - 1) * p * log_p - one_minus_p ** gamma
  one_hot = (np.asarray(labels)[..., None] == np.arange(num_classes)).astype(np.float64)
  return (one_hot - np_softmax(logits)) * factor[..., None]


def assert_focal_close(actual, expected, logits, gamma):
  # The loss is ~(1 + gamma) * |d log p| sensitive to the error of log p, which is that of a
  # difference of terms of the size of the logits.
  atol = (1 + gamma) * RTOL * max(1.0, float(np.abs(np.asarray(logits, np.float64)).max()))
  np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=(1 + gamma) * RTOL,
                             atol=atol)


# --- Values. ---

@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("num_classes", NUM_CLASSES)
def test_matches_float64_reference(gamma, batch_shape, num_classes):
  logits, labels = random_inputs(num_classes + len(batch_shape), batch_shape, num_classes)
  loss = jax.jit(losses.focal_loss)(logits, labels, gamma)
  assert loss.shape == batch_shape and loss.dtype == jnp.float32
  assert_focal_close(loss, np_focal(logits.astype(np.float64), labels, gamma), logits, gamma)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_float64_logits_match_reference_to_float64_precision(gamma):
  with jax.enable_x64(True):
    logits, labels = random_inputs(11, (64,), 10, scale=5.0, dtype=np.float64)
    loss = losses.focal_loss(jnp.asarray(logits), jnp.asarray(labels), gamma)
    assert loss.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(loss), np_focal(logits, labels, gamma), rtol=1e-12,
                               atol=1e-14)


def test_gamma_zero_is_the_cross_entropy():
  logits, labels = random_inputs(12, (4, 8), 100)
  focal = losses.focal_loss(logits, labels, 0.0)
  np.testing.assert_allclose(focal, losses.smoothed_cross_entropy(logits, labels, 0.0),
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(focal, optax.softmax_cross_entropy_with_integer_labels(logits, labels),
                             rtol=1e-6, atol=1e-6)
  grad = jax.grad(lambda z: losses.focal_loss(z, labels, 0.0).sum())(logits)
  ce_grad = jax.grad(lambda z: losses.smoothed_cross_entropy(z, labels).sum())(logits)
  np.testing.assert_allclose(grad, ce_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_two_classes_match_optax_binary_sigmoid_focal_loss(gamma):
  # softmax([0, x])_1 = sigmoid(x): the multi-class loss on [0, x] is the binary one on x.
  with jax.enable_x64(True):
    rng = np.random.default_rng(13)
    x = 4 * rng.standard_normal(32)
    labels = rng.integers(0, 2, 32)
    logits = np.stack([np.zeros_like(x), x], axis=-1)
    focal = losses.focal_loss(jnp.asarray(logits), jnp.asarray(labels), gamma)
    binary = optax.losses.sigmoid_focal_loss(jnp.asarray(x), jnp.asarray(labels, jnp.float64),
                                             alpha=None, gamma=gamma)
    np.testing.assert_allclose(focal, binary, rtol=1e-10, atol=1e-12)


# --- Gradients. ---

@pytest.mark.parametrize("gamma", GAMMAS)
def test_gradient_matches_analytic_float64(gamma):
  with jax.enable_x64(True):
    logits, labels = random_inputs(14, (16,), 10, dtype=np.float64)
    grad = jax.grad(lambda z: losses.focal_loss(z, jnp.asarray(labels), gamma).sum())(
        jnp.asarray(logits))
    np.testing.assert_allclose(grad, np_focal_grad(logits, labels, gamma), rtol=1e-10,
                               atol=1e-13)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_float32_gradient_matches_analytic(gamma):
  logits, labels = random_inputs(15, (16,), 100)
  grad = jax.jit(jax.grad(lambda z: losses.focal_loss(z, labels, gamma).sum()))(logits)
  assert grad.dtype == jnp.float32
  np.testing.assert_allclose(grad, np_focal_grad(logits.astype(np.float64), labels, gamma),
                             rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_gradients_match_finite_differences_in_float64(gamma):
  with jax.enable_x64(True):
    rng = np.random.default_rng(16)
    logits = jnp.asarray(rng.standard_normal((4, 7)))
    labels = jnp.asarray([0, 6, 3, 2])
    where = jnp.asarray([True, False, True, True])
    for fn in (lambda z: losses.focal_loss(z, labels, gamma),
               lambda z: losses.focal_loss(z, labels, gamma, where=where)):
      check_grads(jax.jit(fn), (logits,), order=2, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)
    if gamma > 0:  # d/dgamma of x^gamma at x in (0, 1) is smooth; at gamma = 0 the rule is a where.
      check_grads(lambda g: losses.focal_loss(logits, labels, g), (jnp.float64(gamma),), order=2,
                  modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


def test_gradient_wrt_traced_gamma_is_analytic():
  with jax.enable_x64(True):
    logits, labels = random_inputs(17, (8,), 10, dtype=np.float64)
    grad = jax.jit(jax.grad(lambda g: losses.focal_loss(logits, labels, g).sum()))(2.0)
    # dL/dgamma = -(1 - p)^gamma * log(1 - p) * log p.
    one_minus_p = np_one_minus_label_prob(logits, labels)
    expected = -(one_minus_p**2 * np.log(one_minus_p) * np_label_log_prob(logits, labels)).sum()
    np.testing.assert_allclose(grad, expected, rtol=1e-10)


# --- Masking, invalid labels, dtypes, extremes, arguments. ---

@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_where_gives_zero_loss_and_zero_gradient_even_for_nonfinite_logits(gamma, bad):
  logits, labels = random_inputs(18, (5,), 10)
  where = np.array([True, False, True, False, True])
  poisoned = logits.copy()
  poisoned[~where] = bad
  loss = losses.focal_loss(poisoned, labels, gamma, where=where)
  np.testing.assert_array_equal(np.asarray(loss)[~where], 0.0)
  np.testing.assert_allclose(np.asarray(loss)[where],
                             losses.focal_loss(logits[where], labels[where], gamma), rtol=1e-6)
  for mode in ("rev", "fwd"):
    fn = lambda z: losses.focal_loss(z, labels, gamma, where=where).sum()
    grad = jax.grad(fn)(poisoned) if mode == "rev" else jax.jacfwd(fn)(poisoned)
    assert np.all(np.isfinite(grad)), mode
    np.testing.assert_array_equal(np.asarray(grad)[~where], 0.0)
    np.testing.assert_allclose(np.asarray(grad)[where],
                               np_focal_grad(logits[where].astype(np.float64), labels[where],
                                             gamma), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_out_of_range_labels_give_nan(gamma):
  logits, _ = random_inputs(19, (4,), 10)
  labels = np.array([-1, 3, 10, 9], np.int32)
  loss = np.asarray(losses.focal_loss(logits, labels, gamma))
  assert np.isnan(loss[[0, 2]]).all()
  np.testing.assert_allclose(loss[[1, 3]], np_focal(logits[[1, 3]].astype(np.float64),
                                                    labels[[1, 3]], gamma), rtol=1e-5)
  # The valid rows' gradients do not see the invalid ones.
  grad = np.asarray(jax.grad(lambda z: losses.focal_loss(z, labels, gamma)[np.array([1, 3])].sum())(logits))
  np.testing.assert_allclose(grad[[1, 3]], np_focal_grad(logits[[1, 3]].astype(np.float64),
                                                          labels[[1, 3]], gamma),
                             rtol=1e-4, atol=1e-6)
  # As for smoothed_cross_entropy, an invalid row's gradient is NaN, not a silent 0.
  poisoned = np.asarray(jax.grad(lambda z: losses.focal_loss(z, labels, gamma).sum())(logits))
  assert np.isnan(poisoned[[0, 2]]).all() and np.isfinite(poisoned[[1, 3]]).all()


@pytest.mark.parametrize("dtype", [ml_dtypes.bfloat16, np.float16])
def test_half_precision_logits_give_float32_loss(dtype):
  logits, labels = random_inputs(20, (8,), 100, dtype=dtype)
  loss = losses.focal_loss(logits, labels, 2.0)
  assert loss.dtype == jnp.float32
  # Upcast first, then computed in float32: the reference sees the rounded logits.
  assert_focal_close(loss, np_focal(logits.astype(np.float64), labels, 2.0), logits, 2.0)
  grad = jax.grad(lambda z: losses.focal_loss(z, labels, 2.0).sum())(jnp.asarray(logits))
  assert grad.dtype == dtype
  np.testing.assert_allclose(np.asarray(grad, np.float64),
                             np_focal_grad(logits.astype(np.float64), labels, 2.0),
                             rtol=2**-7, atol=1e-4)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("x64", [False, True])
def test_very_confident_correct_prediction_is_finite_with_finite_gradient(gamma, x64):
  with jax.enable_x64(x64):
    dtype = jnp.float64 if x64 else jnp.float32
    logits = jnp.zeros((3, 10), dtype).at[jnp.arange(3), jnp.array([0, 4, 9])].set(100.0)
    labels = jnp.array([0, 4, 9])
    loss = jax.jit(lambda z: losses.focal_loss(z, labels, gamma))(logits)
    grad = jax.jit(jax.grad(lambda z: losses.focal_loss(z, labels, gamma).sum()))(logits)
    jvp = jax.jvp(lambda z: losses.focal_loss(z, labels, gamma), (logits,),
                  (jnp.ones_like(logits),))[1]
    # 1 - p_y = 9 / (e^100 + 9) ~ 3.4e-43 and -log p_y ~ the same, so the loss is
    # (9 e^-100)^(gamma + 1): kept to full relative precision in float64 (log1p / expm1), and
    # below float32's range (0 there). The true gradient is (1[k = y] - p_k) * (...) with
    # p_k = e^-100 for k != y: 0 in float32, at most ~4e-43 in float64.
    one_minus_p = 9 * np.exp(-100.0)
    if x64:
      np.testing.assert_allclose(loss, one_minus_p ** (gamma + 1), rtol=1e-12)
    else:
      np.testing.assert_array_equal(loss, 0.0)
    assert np.all(np.isfinite(grad)) and np.all(np.abs(np.asarray(grad)) <= 1e-40)
    if gamma > 0 and not x64:
      np.testing.assert_array_equal(grad, 0.0)
    assert np.all(np.isfinite(jvp))
    # A confidently wrong prediction is finite too, with the cross-entropy's size.
    wrong = losses.focal_loss(logits, (labels + 1) % 10, gamma)
    np.testing.assert_allclose(wrong, 100.0, rtol=1e-6)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_confident_float64_loss_is_relatively_accurate(gamma):
  # p_y = 1 - 9e^-20 ~ 1 - 2e-8: 1 - p_y by subtraction would lose half the digits.
  with jax.enable_x64(True):
    logits = np.zeros((1, 10))
    logits[0, 3] = 20.0
    labels = np.array([3])
    loss = losses.focal_loss(jnp.asarray(logits), jnp.asarray(labels), gamma)
    np.testing.assert_allclose(loss, np_focal(logits, labels, gamma), rtol=1e-6)


@pytest.mark.parametrize("gamma", [-0.1, -1, np.float32(-2.0), np.array(-0.5), float("nan")])
def test_negative_or_nan_gamma_raises(gamma):
  logits, labels = random_inputs(21, (3,), 5)
  with pytest.raises(ValueError, match="focal_loss: gamma must be >= 0"):
    losses.focal_loss(logits, labels, gamma)


def test_non_scalar_gamma_and_bad_inputs_raise():
  logits, labels = random_inputs(22, (3,), 5)
  with pytest.raises(ValueError, match="gamma must be a scalar"):
    losses.focal_loss(logits, labels, np.array([1.0, 2.0]))
  with pytest.raises(ValueError, match="labels must be integers"):
    losses.focal_loss(logits, labels.astype(np.float32), 2.0)
  with pytest.raises(ValueError, match="where must be a boolean"):
    losses.focal_loss(logits, labels, 2.0, where=np.ones(3, np.int32))


def test_traced_gamma_under_jit():
  logits, labels = random_inputs(23, (6,), 10)
  traces = []

  @jax.jit
  def jitted(z, y, gamma):
    traces.append(gamma)
    return losses.focal_loss(z, y, gamma)

  for gamma in GAMMAS:
    np.testing.assert_allclose(jitted(logits, labels, jnp.float32(gamma)),
                               losses.focal_loss(logits, labels, gamma), rtol=1e-6, atol=1e-7)
  assert len(traces) == 1  # One trace serves every gamma.
  # A traced negative gamma cannot be checked: it is the caller's to avoid (no error, no crash).
  jitted(logits, labels, jnp.float32(-1.0))


def test_vmap_matches_batch():
  logits, labels = random_inputs(24, (4, 6), 10)
  batched = losses.focal_loss(logits, labels, 2.0)
  mapped = jax.vmap(lambda z, y: losses.focal_loss(z, y, 2.0))(logits, labels)
  np.testing.assert_allclose(mapped, batched, rtol=1e-6)


# --- Properties. ---

@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0])
@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0, 10.0])
def test_focal_is_between_mukhoti_bound_and_cross_entropy(gamma, scale):
  r"""CE - gamma * H(p) <= FL_gamma <= CE elementwise, for every gamma >= 0.

  Upper: (1 - p_y)^gamma <= 1 and -log p_y >= 0.

  Lower (Mukhoti et al. 2020, "Calibrating Deep Neural Networks using Focal Loss", eq. 3:
  FL >= KL(q || p) - gamma * H[p]; with one-hot q, KL(q || p) = CE). Their proof uses Bernoulli's
  inequality (1 - p)^gamma >= 1 - gamma p, which holds only for gamma >= 1. The bound itself holds
  for every gamma >= 0: with p = p_y, CE - FL = (1 - (1 - p)^gamma) * (-log p), and
  1 - (1 - p)^gamma <= -gamma log(1 - p) (concave in gamma, 0 at gamma = 0), so
    CE - FL <= gamma * log(p) log(1 - p) <= gamma * H2(p) <= gamma * H(softmax),
  the middle step being the lemma log(p) log(1 - p) <= H2(p) = -p log p - (1 - p) log(1 - p)
  (checked in `test_log_product_is_below_binary_entropy`) and the last one that merging the other
  classes into one cannot raise the entropy. Checked here numerically on float64 logits.
  """
  with jax.enable_x64(True):
    logits, labels = random_inputs(int(100 * gamma + scale), (2000,), 7, scale=scale,
                                   dtype=np.float64)
    focal = np.asarray(losses.focal_loss(logits, labels, gamma))
    ce = np.asarray(losses.smoothed_cross_entropy(logits, labels))
    entropy = np.asarray(losses.entropy(logits))
  np.testing.assert_allclose(entropy, np_entropy(logits), rtol=1e-10, atol=1e-12)
  tol = 1e-12 * np.maximum(1, ce)
  assert np.all(focal <= ce + tol)
  assert np.all(focal >= ce - gamma * entropy - tol)


def test_log_product_is_below_binary_entropy():
  """The lemma of the lower bound above: log(p) log(1 - p) <= H2(p) on (0, 1), equality only in
  the limits p -> 0, 1."""
  p = np.linspace(1e-12, 1 - 1e-12, 1_000_001)
  log_product = np.log(p) * np.log1p(-p)
  binary_entropy = -p * np.log(p) - (1 - p) * np.log1p(-p)
  assert np.all(log_product <= binary_entropy)


def test_focal_loss_decreases_with_gamma():
  # 0 < 1 - p_y < 1, so (1 - p_y)^gamma decreases in gamma.
  logits, labels = random_inputs(25, (100,), 10)
  values = np.stack([losses.focal_loss(logits, labels, g) for g in GAMMAS])
  assert np.all(np.diff(values, axis=0) <= 1e-7)
