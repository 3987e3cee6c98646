"""Tests for `smoothed_cross_entropy(..., class_weights=w)` and `losses.weighted_mean`.

The reference is PyTorch's `CrossEntropyLoss(weight=w, label_smoothing=a, ignore_index=...)`,
written in NumPy float64 (torch is not installed) from its documented formulas:

* class-index targets (torch.nn.CrossEntropyLoss docs): `l_n = -w_{y_n} log softmax(x_n)_{y_n}`,
  and for `reduction='mean'` `sum_n l_n / sum_n w_{y_n} * 1{y_n != ignore_index}`;
* probability targets (same page): `l_n = -sum_c w_c y_{n,c} log softmax(x_n)_c`;
* `label_smoothing=a`: "the targets become a mixture of the original ground truth and a uniform
  distribution" (Szegedy et al. 2016), computed in ATen's `cross_entropy_loss_label_smoothing`
  (LossNLL.cpp) as `(1 - a) * nll_loss(log_softmax, y, w, reduction, ignore_index)
  + (a / K) * smooth`, where `smooth_n = -sum_c w_c log softmax(x_n)_c` (0 for ignored n) is
  summed and, for 'mean', divided by the same `sum_n w_{y_n}` over non-ignored examples.

`np_torch_cross_entropy` below follows that ATen composition: two separately reduced terms, not
our per-example form, so that the two are compared. Gradients are checked against the analytic
formula, finite differences (`check_grads`, float64) and, for the masked mean, against the
gradient of the reference's mean written out per example.
"""
import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest

from ls_jax import losses
from ls_jax.losses import classification
from test_losses import np_log_softmax, np_softmax, random_inputs

IGNORE = -100  # PyTorch's default ignore_index: our `where=False`.


def np_torch_cross_entropy(logits, labels, weight, a, reduction):
  """PyTorch CrossEntropyLoss(weight, label_smoothing=a, ignore_index=-100), float64."""
  log_probs = np_log_softmax(logits)
  num_classes = log_probs.shape[-1]
  keep = labels != IGNORE
  safe = np.where(keep, labels, 0)
  label_log_prob = np.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]
  nll = np.where(keep, -weight[safe] * label_log_prob, 0.0)
  smooth = np.where(keep, -(log_probs * weight).sum(axis=-1), 0.0)
  if reduction == "none":
    return (1 - a) * nll + a / num_classes * smooth
  total_weight = np.where(keep, weight[safe], 0.0).sum()
  return (1 - a) * nll.sum() / total_weight + a / num_classes * smooth.sum() / total_weight


def np_weighted_gradient(logits, labels, weight, a):
  """dL/dz_j = p_j [(1 - a) w_y + (a/K) sum_k w_k] - (1 - a) w_y [j = y] - (a/K) w_j."""
  probs = np_softmax(logits)
  num_classes = probs.shape[-1]
  one_hot = (labels[..., None] == np.arange(num_classes)).astype(np.float64)
  w_y = weight[labels][..., None]
  return (probs * ((1 - a) * w_y + a / num_classes * weight.sum())
          - (1 - a) * w_y * one_hot - a / num_classes * weight)


def random_weights(seed, num_classes):
  return np.random.default_rng(seed).uniform(0.1, 5.0, num_classes)


# --- Per-example losses. ---

@pytest.mark.parametrize("num_classes", [2, 3, 10])
@pytest.mark.parametrize("a", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("batch_shape", [(), (6,), (2, 3)])
def test_per_example_matches_pytorch_formula(num_classes, a, batch_shape):
  logits, labels = random_inputs(num_classes, batch_shape, num_classes)
  weight = random_weights(1, num_classes)
  loss = losses.smoothed_cross_entropy(logits, labels, a, class_weights=weight.astype(np.float32))
  assert loss.shape == batch_shape and loss.dtype == jnp.float32
  expected = np_torch_cross_entropy(logits, labels, weight, a, "none")
  np.testing.assert_allclose(loss, expected, rtol=3e-6, atol=3e-6 * np.abs(logits).max())


@pytest.mark.parametrize("a", [0.0, 0.1, -0.3])
def test_unit_weights_are_the_unweighted_loss(a):
  logits, labels = random_inputs(2, (16,), 7)
  weighted = losses.smoothed_cross_entropy(logits, labels, a, class_weights=np.ones(7))
  np.testing.assert_allclose(weighted, losses.smoothed_cross_entropy(logits, labels, a),
                             rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("a", [0.0, 0.1])
def test_no_class_weights_is_the_unchanged_path_bit_for_bit(a):
  logits, labels = random_inputs(3, (5, 4), 11)
  smoothing = None if a == 0 else jnp.asarray(a, jnp.float32)
  direct = lambda z: classification._integer_label_cross_entropy(z, jnp.asarray(labels),
                                                                  smoothing, None)
  public = lambda z: losses.smoothed_cross_entropy(z, labels, a, class_weights=None)
  np.testing.assert_array_equal(public(logits), direct(logits))
  np.testing.assert_array_equal(jax.grad(lambda z: public(z).sum())(logits),
                                jax.grad(lambda z: direct(z).sum())(logits))


def test_weighted_two_classes_equal_pos_weighted_binary_cross_entropy():
  # With K = 2, logits [0, z] and weights [1, p], unsmoothed: w_y scales the label term only, the
  # binary loss with pos_weight p (PyTorch BCEWithLogitsLoss) for hard labels.
  with jax.enable_x64(True):
    rng = np.random.default_rng(4)
    z, y = 3 * rng.standard_normal(20), rng.integers(0, 2, 20)
    weighted = losses.smoothed_cross_entropy(np.stack([np.zeros(20), z], -1), y,
                                             class_weights=np.array([1.0, 3.0]))
    np.testing.assert_allclose(
        weighted, losses.smoothed_binary_cross_entropy(z, y, pos_weight=3.0), rtol=1e-12)


# --- Gradients. ---

@pytest.mark.parametrize("a", [0.0, 0.2])
def test_gradient_matches_analytic(a):
  with jax.enable_x64(True):
    logits, labels = random_inputs(5, (8,), 6, dtype=np.float64)
    weight = random_weights(6, 6)
    grad = jax.grad(lambda z: losses.smoothed_cross_entropy(
        z, labels, a, class_weights=weight).sum())(jnp.asarray(logits))
    np.testing.assert_allclose(grad, np_weighted_gradient(logits, labels, weight, a), rtol=1e-12,
                               atol=1e-14)


def test_check_grads_with_weights_and_mask():
  with jax.enable_x64(True):
    logits, labels = random_inputs(7, (6,), 4, dtype=np.float64)
    weight = random_weights(8, 4)
    where = np.array([True, False, True, True, False, True])

    def mean(z):
      per_example = losses.smoothed_cross_entropy(z, labels, 0.1, where=where,
                                                  class_weights=weight)
      return losses.weighted_mean(per_example, labels, weight, where=where)

    check_grads(mean, (jnp.asarray(logits),), order=2, modes=("fwd", "rev"))
    check_grads(lambda w: losses.smoothed_cross_entropy(logits, labels, 0.1, class_weights=w),
                (jnp.asarray(weight),), order=1, modes=("fwd", "rev"))


# --- The weighted mean, with masked examples. ---

@pytest.mark.parametrize("a", [0.0, 0.1, 0.4])
def test_masked_weighted_mean_matches_pytorch(a):
  # Masked examples get NaN logits and labels that are padding (-100) or point to the heaviest
  # class: they must count in neither sum (PyTorch: ignore_index), the classic weighting bug.
  logits, labels = random_inputs(9, (12,), 5)
  weight = np.array([0.5, 1.0, 2.0, 4.0, 10.0])
  where = np.random.default_rng(10).uniform(size=12) < 0.6
  torch_labels = np.where(where, labels, IGNORE)
  our_labels = np.where(where, labels, np.where(np.arange(12) % 2 == 0, IGNORE, 4))
  dirty = np.where(where[:, None], logits, np.nan).astype(np.float32)

  def mean(z):
    per_example = losses.smoothed_cross_entropy(z, our_labels, a, where=where,
                                                class_weights=weight)
    return losses.weighted_mean(per_example, our_labels, weight, where=where)

  expected = np_torch_cross_entropy(logits, torch_labels, weight, a, "mean")
  value, grad = jax.value_and_grad(mean)(jnp.asarray(dirty))
  np.testing.assert_allclose(value, expected, rtol=3e-6)
  # d mean / dz_i = (per-example gradient_i) / sum_{unmasked} w_{y_i}; 0 for masked rows.
  safe = np.where(where, labels, 0)
  expected_grad = np_weighted_gradient(logits, safe, weight, a) / weight[labels[where]].sum()
  expected_grad[~where] = 0
  np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-7)


def test_weighted_mean_is_not_the_plain_mean():
  per_example = np.array([1.0, 1.0, 4.0], np.float32)
  labels = np.array([0, 0, 1])
  weight = np.array([1.0, 3.0])
  # PyTorch divides by sum w_{y_n} = 1 + 1 + 3 = 5, not by 3.
  assert float(losses.weighted_mean(per_example, labels, weight)) == pytest.approx(6 / 5)


def test_all_masked_mean_is_zero_with_zero_gradient():
  per_example = jnp.array([np.nan, 2.0])
  where = np.array([False, False])
  f = lambda x: losses.weighted_mean(x, np.array([0, 1]), np.array([1.0, 2.0]), where=where)
  assert float(f(per_example)) == 0
  np.testing.assert_array_equal(jax.grad(f)(per_example), [0, 0])


def test_unmasked_invalid_label_gives_nan():
  logits = jnp.zeros((3, 4))
  labels = jnp.array([0, 4, -1])
  loss = losses.smoothed_cross_entropy(logits, labels, 0.1, class_weights=np.ones(4))
  np.testing.assert_array_equal(np.isnan(loss), [False, True, True])
  grad = jax.grad(lambda z: losses.smoothed_cross_entropy(
      z, labels, 0.1, class_weights=np.ones(4)).sum())(logits)
  np.testing.assert_array_equal(np.isnan(grad).any(axis=-1), [False, True, True])
  assert np.isnan(losses.weighted_mean(jnp.zeros(3), labels, np.ones(4)))


def test_zero_weight_class_may_have_minus_inf_logit():
  logits = np.array([[1.0, -np.inf, 0.5]], np.float32)
  weight = np.array([1.0, 0.0, 2.0])
  loss = losses.smoothed_cross_entropy(logits, np.array([0]), 0.1, class_weights=weight)
  finite = np.array([[1.0, -50.0, 0.5]])
  expected = np_torch_cross_entropy(finite, np.array([0]), weight, 0.1, "none")
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_bfloat16_logits_compute_in_float32():
  logits, labels = random_inputs(11, (8,), 5)
  low = jnp.asarray(logits, jnp.bfloat16)
  weight = random_weights(12, 5)
  f = lambda z: losses.smoothed_cross_entropy(z, labels, 0.1, class_weights=weight)
  loss, grad = jax.jit(jax.value_and_grad(lambda z: f(z).sum()))(low)
  assert loss.dtype == jnp.float32 and grad.dtype == jnp.bfloat16
  upcast = np.asarray(low.astype(jnp.float32), np.float64)
  np.testing.assert_allclose(f(low), np_torch_cross_entropy(upcast, labels, weight, 0.1, "none"),
                             rtol=3e-6, atol=3e-6 * np.abs(upcast).max())


def test_traced_class_weights_under_jit():
  logits, labels = random_inputs(13, (8,), 5)
  weight = random_weights(14, 5)
  f = jax.jit(lambda z, w: losses.weighted_mean(
      losses.smoothed_cross_entropy(z, labels, 0.2, class_weights=w), labels, w))
  np.testing.assert_allclose(f(logits, jnp.asarray(weight, jnp.float32)),
                             np_torch_cross_entropy(logits, labels, weight, 0.2, "mean"),
                             rtol=3e-6)


# --- Errors. ---

@pytest.mark.parametrize("call, message", [
    (lambda: losses.smoothed_cross_entropy(np.zeros((2, 3)), np.zeros(2, int),
                                           class_weights=np.ones(4)),
     r"smoothed_cross_entropy: class_weights must have shape \(K,\) = \(3,\), got \(4,\)"),
    (lambda: losses.smoothed_cross_entropy(np.zeros((2, 3)), np.zeros(2, int),
                                           class_weights=np.array([1.0, -1.0, 1.0])),
     r"class_weights must be finite and >= 0, got -1.0 for class 1"),
    (lambda: losses.smoothed_cross_entropy(np.zeros((2, 3)), np.zeros(2, int),
                                           class_weights=np.array([1.0, 1.0, np.nan])),
     r"class_weights must be finite and >= 0, got nan for class 2"),
    (lambda: losses.smoothed_cross_entropy(np.zeros((2, 3)), np.zeros(2, int),
                                           class_weights=np.ones(3, bool)),
     r"class_weights must be real numbers"),
    (lambda: losses.weighted_mean(np.zeros(3), np.zeros(2, int), np.ones(2)),
     r"weighted_mean: labels must have the shape of per_example \(3,\), got \(2,\)"),
    (lambda: losses.weighted_mean(np.zeros(3), np.zeros(3), np.ones(2)),
     r"weighted_mean: labels must be integers"),
    (lambda: losses.weighted_mean(np.zeros(3), np.zeros(3, int), np.ones((2, 2))),
     r"weighted_mean: class_weights must be a \[K\] vector"),
    (lambda: losses.weighted_mean(np.zeros(3), np.zeros(3, int), np.ones(2),
                                  where=np.ones(2, bool)),
     r"weighted_mean: where must have shape"),
])
def test_bad_input_raises_one_line(call, message):
  with pytest.raises(ValueError, match=message) as error:
    call()
  assert "\n" not in str(error.value)
