"""Tests for ls_jax.losses.distillation_loss against a float64 NumPy formula and analytic gradients.

The reference is written from Hinton et al. 2015, §2, with explicit probability vectors:
(1 - w) * H(q', softmax(s)) + w * T^2 * sum_k p_t,k (log p_t,k - log p_s,k).
"""
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest

from ls_jax import losses


def np_softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def np_distillation(student, teacher, labels, temperature, weight, label_smoothing):
  num_classes = student.shape[-1]
  targets = ((1 - label_smoothing) * (labels[..., None] == np.arange(num_classes))
             + label_smoothing / num_classes)
  hard = -np.sum(targets * np.log(np_softmax(student)), -1)
  p_t = np_softmax(teacher / temperature)
  p_s = np_softmax(student / temperature)
  kl = np.sum(p_t * (np.log(p_t) - np.log(p_s)), -1)
  return (1 - weight) * hard + weight * temperature**2 * kl


def random_inputs(seed, batch=6, num_classes=10, scale=3.0):
  rng = np.random.default_rng(seed)
  student = scale * rng.standard_normal((batch, num_classes)).astype(np.float32)
  teacher = scale * rng.standard_normal((batch, num_classes)).astype(np.float32)
  labels = rng.integers(0, num_classes, batch).astype(np.int32)
  return student, teacher, labels


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 4.0, 8.0])
@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_matches_float64_formula(temperature, weight, label_smoothing):
  student, teacher, labels = random_inputs(0)
  got = losses.distillation_loss(student, teacher, labels, temperature=temperature, weight=weight,
                                 label_smoothing=label_smoothing)
  expected = np_distillation(student.astype(np.float64), teacher.astype(np.float64), labels,
                             temperature, weight, label_smoothing)
  assert got.shape == (6,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_temperature_squared_factor():
  """At w = 1 the loss is T^2 * KL: doubling T with logits scaled by 2 (same KL) quadruples it."""
  student, teacher, labels = random_inputs(1)
  at_1 = losses.distillation_loss(student, teacher, labels, temperature=1.0, weight=1.0)
  at_2 = losses.distillation_loss(2 * student, 2 * teacher, labels, temperature=2.0, weight=1.0)
  np.testing.assert_allclose(at_2, 4 * at_1, rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(at_1) > 0)


def test_temperature_one_is_plain_kl_and_continuous():
  student, teacher, labels = random_inputs(2)
  p_t, p_s = np_softmax(teacher), np_softmax(student)
  kl = np.sum(p_t * (np.log(p_t) - np.log(p_s)), -1)
  hard = -np.log(p_s[np.arange(6), labels])
  got = losses.distillation_loss(student, teacher, labels, temperature=1.0, weight=0.25)
  np.testing.assert_allclose(got, 0.75 * hard + 0.25 * kl, rtol=1e-5, atol=1e-6)
  near = losses.distillation_loss(student, teacher, labels, temperature=1.0 + 1e-3, weight=0.25)
  np.testing.assert_allclose(near, got, atol=1e-2)


def test_matching_the_teacher_gives_zero_kl():
  student, _, labels = random_inputs(3)
  got = losses.distillation_loss(student, student, labels, temperature=4.0, weight=1.0)
  np.testing.assert_allclose(got, 0, atol=1e-5)


def test_weight_zero_is_the_students_own_loss():
  student, teacher, labels = random_inputs(4)
  np.testing.assert_array_equal(
      losses.distillation_loss(student, teacher, labels, temperature=3.0, weight=0.0,
                               label_smoothing=0.1),
      losses.smoothed_cross_entropy(student, labels, 0.1))


@pytest.mark.parametrize("temperature", [1.0, 2.0, 8.0])
def test_gradient_of_soft_term_is_analytic(temperature):
  """Hinton §2: dL_soft/ds = w * T * (p_s^T - p_t^T); the teacher gets no gradient."""
  student, teacher, labels = random_inputs(5)
  weight = 0.7

  def soft_only(s, t):
    return jnp.sum(losses.distillation_loss(s, t, labels, temperature=temperature, weight=weight)
                   - (1 - weight) * losses.smoothed_cross_entropy(s, labels))

  grad_s, grad_t = jax.grad(soft_only, argnums=(0, 1))(student, teacher)
  expected = weight * temperature * (np_softmax(student / temperature)
                                     - np_softmax(teacher / temperature))
  np.testing.assert_allclose(grad_s, expected, rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(grad_t, 0)


def test_high_temperature_gradient_is_logit_matching():
  """Hinton §2.1: as T -> inf, the soft gradient tends to w/K * (centered s - centered t)."""
  with jax.enable_x64(True):
    student, teacher, labels = (np.asarray(a, np.float64) if a.dtype == np.float32 else a
                                for a in random_inputs(6, scale=1.0))
    grad = jax.grad(lambda s: jnp.sum(losses.distillation_loss(
        s, teacher, labels, temperature=1e4, weight=1.0)))(student)
    centered = (student - student.mean(-1, keepdims=True)
                - (teacher - teacher.mean(-1, keepdims=True)))
    np.testing.assert_allclose(grad, centered / student.shape[-1], rtol=1e-3, atol=1e-6)


def test_gradients_match_finite_differences_in_float64():
  with jax.enable_x64(True):
    student, teacher, labels = (np.asarray(a, np.float64) if a.dtype == np.float32 else a
                                for a in random_inputs(7))
    where = jnp.asarray([True, False, True, True, False, True])
    fn = jax.jit(lambda s: losses.distillation_loss(
        s, teacher, labels, temperature=2.5, weight=0.6, label_smoothing=0.1, where=where))
    assert fn(student).dtype == jnp.float64
    check_grads(fn, (student,), order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)
    # A traced temperature (e.g. a sweep under vmap) is differentiable too.
    check_grads(lambda temp: losses.distillation_loss(
        student, teacher, labels, temperature=temp, weight=0.6), (jnp.float64(2.5),), order=1,
        modes=("rev",), atol=1e-6, rtol=1e-6)


def test_masked_rows_are_zero_even_with_nan_logits():
  student, teacher, labels = random_inputs(8)
  teacher[1] = np.nan
  student[4] = np.inf
  where = np.ones(6, bool)
  where[[1, 4]] = False
  fn = lambda s: losses.distillation_loss(s, teacher, labels, temperature=2.0, weight=0.5,
                                          where=where)
  loss = np.asarray(fn(student))
  grad = np.asarray(jax.grad(lambda s: jnp.sum(fn(s)))(student))
  assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
  np.testing.assert_array_equal(loss[[1, 4]], 0)
  np.testing.assert_array_equal(grad[[1, 4]], 0)
  kept = [0, 2, 3, 5]
  np.testing.assert_allclose(
      loss[kept],
      losses.distillation_loss(student[kept], teacher[kept], labels[kept], temperature=2.0,
                               weight=0.5), rtol=1e-6)


def test_bfloat16_teacher_is_upcast():
  student, teacher, labels = random_inputs(9)
  got = losses.distillation_loss(student, jnp.asarray(teacher, jnp.bfloat16), labels,
                                 temperature=2.0, weight=0.5)
  rounded = np.asarray(jnp.asarray(teacher, jnp.bfloat16), np.float64)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, np_distillation(student.astype(np.float64), rounded, labels, 2.0,
                                                  0.5, 0.0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=0.0, weight=0.5), r"temperature must be > 0, got 0.0"),
    (dict(temperature=-1.0, weight=0.5), r"temperature must be > 0, got -1.0"),
    (dict(temperature=float("nan"), weight=0.5), r"temperature must be > 0, got nan"),
    (dict(temperature=[1.0, 2.0], weight=0.5), r"temperature must be a scalar, got shape \(2,\)"),
    (dict(temperature=2.0, weight=1.5), r"weight must be in \[0, 1\], got 1.5"),
    (dict(temperature=2.0, weight=-0.1), r"weight must be in \[0, 1\], got -0.1"),
    (dict(temperature=2.0, weight=0.5, label_smoothing=1.0),
     r"label_smoothing must be in \[-1, 1\), got 1.0"),
])
def test_bad_scalars_raise_value_error(kwargs, message):
  student, teacher, labels = random_inputs(10)
  with pytest.raises(ValueError, match=message):
    losses.distillation_loss(student, teacher, labels, **kwargs)


def test_bad_teacher_shape_raises_value_error():
  student, teacher, labels = random_inputs(11)
  with pytest.raises(ValueError, match=r"teacher_logits must have the shape of student_logits "
                                       r"\(6, 10\), got \(6, 9\)"):
    losses.distillation_loss(student, teacher[:, :9], labels, temperature=2.0, weight=0.5)


def test_sharded_batch_equals_unsharded():
  """The loss and gradient on a batch sharded over 8 devices equal the single-device ones."""
  assert jax.device_count() == 8, "tests/conftest.py asks for 8 host CPU devices"
  mesh = Mesh(np.array(jax.devices()), ("batch",))
  student, teacher, labels = random_inputs(12, batch=16)

  def loss_and_grad(s, t, y, temperature):
    return jax.value_and_grad(lambda s: losses.distillation_loss(
        s, t, y, temperature=temperature, weight=0.5, label_smoothing=0.1).mean())(s)

  expected_loss, expected_grad = jax.jit(loss_and_grad)(student, teacher, labels, 4.0)
  row_sharding = NamedSharding(mesh, PartitionSpec("batch"))
  sharded = [jax.device_put(x, row_sharding) for x in (student, teacher, labels)]
  loss, grad = jax.jit(loss_and_grad)(*sharded, jnp.float32(4.0))
  assert grad.sharding.is_equivalent_to(row_sharding, grad.ndim)
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-6)
  np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-8)
