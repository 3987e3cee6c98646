"""ls_jax.experiments.representations: the analyses against independent references (hand-built
cases, quadrature, brute force), the checkpoint readers, and the three reports end to end on tiny
sweeps."""
import csv
import functools
import os
import pathlib
import subprocess
import sys
import itertools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from ls_jax.experiments import representations as analysis
from ls_jax import losses
from ls_jax import models

ROOT = pathlib.Path(__file__).resolve().parents[1]


def np_softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def random_rotation(rng, dim):
  q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
  return q * np.sign(np.diag(r))


# --- Template-plane projection (Müller et al. 2019, §2). ---

# Templates as kernel columns, d = 3, K = 4. Classes (1, 3, 0): w_1 = (1, 1, 0) is the origin,
# w_3 - w_1 = (2, 0, 0) gives e1 = x-axis, w_0 - w_1 = (0, 3, 0) gives e2 = y-axis.
HAND_KERNEL = np.array([[1., 1., 5., 3.],
                        [4., 1., 5., 1.],
                        [0., 0., 5., 0.]])
HAND_CLASSES = (1, 3, 0)


def test_hand_built_projection():
  plane = analysis.template_plane(HAND_KERNEL, HAND_CLASSES)
  np.testing.assert_allclose(plane.origin, [1, 1, 0])
  np.testing.assert_allclose(plane.basis, [[1, 0, 0], [0, 1, 0]])
  np.testing.assert_allclose(plane.template_coordinates, [[0, 0], [2, 0], [0, 3]])
  features = np.array([[2., 3., 7.],     # off the plane: z = 7 is dropped -> (1, 2)
                       [4., -1., 0.],    # in the plane -> (3, -2)
                       [1., 1., -2.]])   # above the origin -> (0, 0)
  np.testing.assert_allclose(
      analysis.project_onto_template_plane(features, HAND_KERNEL, HAND_CLASSES),
      [[1, 2], [3, -2], [0, 0]], atol=1e-12)


def test_hand_built_projection_with_bias():
  """d = 1: templates [w_k; b_k] = (1, 0), (3, 0), (1, 2); activation [2; 1] -> (1, 1)."""
  kernel, bias = np.array([[1., 3., 1.]]), np.array([0., 0., 2.])
  plane = analysis.template_plane(kernel, (0, 1, 2), bias)
  np.testing.assert_allclose(plane.template_coordinates, [[0, 0], [2, 0], [0, 2]])
  np.testing.assert_allclose(
      analysis.project_onto_template_plane(np.array([[2.], [1.]]), kernel, (0, 1, 2), bias),
      [[1, 1], [0, 1]], atol=1e-12)


def test_bias_is_an_appended_template_coordinate():
  rng = np.random.default_rng(0)
  kernel, bias, features = rng.normal(size=(6, 5)), rng.normal(size=5), rng.normal(size=(7, 6))
  np.testing.assert_allclose(
      analysis.project_onto_template_plane(features, kernel, (4, 0, 2), bias),
      analysis.project_onto_template_plane(
          np.hstack([features, np.ones((7, 1))]), np.vstack([kernel, bias]), (4, 0, 2)),
      atol=1e-12)


def test_orthonormal_basis_and_exact_in_plane_coordinates():
  rng = np.random.default_rng(1)
  kernel = rng.normal(size=(8, 10))
  plane = analysis.template_plane(kernel, (7, 2, 5))
  np.testing.assert_allclose(plane.basis @ plane.basis.T, np.eye(2), atol=1e-12)
  # Points origin + alpha e1 + beta e2 + (a component orthogonal to the plane) map to (alpha, beta).
  coefficients = rng.normal(size=(20, 2))
  off_plane = rng.normal(size=(20, 8))
  off_plane -= (off_plane @ plane.basis.T) @ plane.basis
  points = plane.origin + coefficients @ plane.basis
  for extra in (0, off_plane):
    np.testing.assert_allclose(
        analysis.project_onto_template_plane(points + extra, kernel, (7, 2, 5)), coefficients,
        atol=1e-12)
  # The templates lie in the plane: their coordinates keep all their pairwise distances.
  templates = kernel[:, [7, 2, 5]].T
  for i, j in itertools.combinations(range(3), 2):
    np.testing.assert_allclose(
        np.linalg.norm(plane.template_coordinates[i] - plane.template_coordinates[j]),
        np.linalg.norm(templates[i] - templates[j]))
  np.testing.assert_allclose(
      analysis.project_onto_template_plane(templates, kernel, (7, 2, 5)),
      plane.template_coordinates, atol=1e-12)


def test_projection_is_rotation_invariant():
  rng = np.random.default_rng(2)
  kernel, features = rng.normal(size=(5, 4)), rng.normal(size=(9, 5))
  rotation = random_rotation(rng, 5)
  np.testing.assert_allclose(
      analysis.project_onto_template_plane(features @ rotation.T, rotation @ kernel, (0, 1, 3)),
      analysis.project_onto_template_plane(features, kernel, (0, 1, 3)), atol=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda: analysis.template_plane(np.array([[0., 1., 2.], [0., 1., 2.]]), (0, 1, 2)),
     r"classes \(0, 1, 2\) lie on one line"),
    (lambda: analysis.template_plane(HAND_KERNEL, (0, 0, 1)), "three distinct integers in"),
    (lambda: analysis.template_plane(HAND_KERNEL, (0, 1, 4)), r"in \[0, 4\), got \(0, 1, 4\)"),
    (lambda: analysis.template_plane(HAND_KERNEL, (0, 1)), "three distinct integers"),
    (lambda: analysis.template_plane(np.ones(3), (0, 1, 2)), r"kernel must have shape \(d, K\)"),
    (lambda: analysis.template_plane(HAND_KERNEL, (0, 1, 2), np.ones(3)),
     r"bias must have shape \(4,\)"),
    (lambda: analysis.project_onto_template_plane(np.ones((2, 4)), HAND_KERNEL, (0, 1, 2)),
     r"features must have shape \(N, 3\) to match the kernel, got \(2, 4\)"),
])
def test_projection_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()


# --- Cluster tightness. ---

def test_hand_built_tightness():
  points = np.array([[0, 1], [0, -1], [4, 1], [4, -1], [2, 4], [-2, 4]], float)
  labels = np.array([0, 0, 1, 1, 2, 2])
  # Distances to centroids 1, 1, 1, 1, 2, 2; centroids (0,0), (4,0), (0,4): pairs 4, 4, 4 sqrt 2.
  assert analysis.cluster_tightness(points, labels) == pytest.approx(
      (8 / 6) / ((8 + 4 * math.sqrt(2)) / 3))
  assert analysis.cluster_tightness(points, labels, class_ids=[0, 1]) == pytest.approx(1 / 4)


def test_tightness_invariances_and_collapse():
  rng = np.random.default_rng(3)
  points, labels = rng.normal(size=(30, 4)), rng.integers(0, 3, 30)
  base = analysis.cluster_tightness(points, labels)
  moved = 3.5 * points @ random_rotation(rng, 4).T + 7.0
  assert analysis.cluster_tightness(moved, labels) == pytest.approx(base)
  centroids = np.stack([points[labels == k].mean(0) for k in range(3)])
  assert analysis.cluster_tightness(centroids[labels], labels) == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda: analysis.cluster_tightness(np.ones((3, 2)), np.zeros(2, int)), "Expected points"),
    (lambda: analysis.cluster_tightness(np.ones((3, 2)), np.zeros(3, int)), "at least 2 classes"),
    (lambda: analysis.cluster_tightness(np.ones((3, 2)), np.array([0, 1, 1]), [0, 5]),
     r"class_ids \[5\] have no examples"),
    (lambda: analysis.cluster_tightness(np.ones((3, 2)), np.array([0, 1, 1])),
     "centroids coincide"),
])
def test_tightness_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()


# --- Gaussian mutual information (Müller et al. 2019, §4.1). ---

def mixture_mutual_information_by_quadrature(means):
  """I(X; Y) for X uniform over examples, Y | X ~ N(means[X], 1): H(Y) - H(Y | X) by quadrature."""
  def density(y):
    return np.mean(stats.norm.pdf(y, means))
  def integrand(y):
    p = density(y)
    return -p * np.log(p) if p > 0 else 0.0
  entropy_y, _ = integrate.quad(integrand, means.min() - 12, means.max() + 12, limit=1000)
  return entropy_y - 0.5 * math.log(2 * math.pi * math.e)


def test_gaussian_channel_matches_quadrature_and_capacity_formula():
  rng = np.random.default_rng(4)
  num_examples, num_draws, snr = 300, 200, 3.0
  means = rng.normal(0, math.sqrt(snr), num_examples)
  samples = means[:, None] + rng.standard_normal((num_examples, num_draws))
  estimate = analysis.gaussian_mutual_information(samples)
  exact = mixture_mutual_information_by_quadrature(means)
  # The plug-in estimate's error here is O(1/L + 1/sqrt(N L)), ~0.01; 0.03 leaves room.
  assert estimate == pytest.approx(exact, abs=0.03)
  # As N grows the mixture tends to N(0, 1 + SNR): I -> 0.5 log(1 + SNR) = 0.693.
  assert estimate == pytest.approx(0.5 * math.log(1 + snr), abs=0.06)


def test_two_dimensional_channel_matches_monte_carlo_with_true_parameters():
  rng = np.random.default_rng(5)
  num_examples, num_draws = 200, 100
  means = rng.normal(0, [1.0, 2.0], (num_examples, 2))  # SNR 1 and 16 in the two dimensions.
  noise_std = np.array([1.0, 0.5])
  samples = means[:, None] + noise_std * rng.standard_normal((num_examples, num_draws, 2))
  # Reference: E[log p(y|x) - log p(y)] with the true means and variances, on fresh draws.
  fresh = means[:, None] + noise_std * rng.standard_normal((num_examples, 50, 2))
  scaled = (fresh.reshape(-1, 1, 2) - means) / noise_std
  log_kernel = -0.5 * np.sum(scaled**2, -1)  # (rows, N)
  own = log_kernel[np.arange(len(log_kernel)), np.repeat(np.arange(num_examples), 50)]
  reference = math.log(num_examples) + np.mean(
      own - np.log(np.sum(np.exp(log_kernel), axis=1)))
  estimate = analysis.gaussian_mutual_information(samples)
  assert estimate == pytest.approx(reference, abs=0.05)
  assert 0.5 * (math.log(2) + math.log(1 + 16)) - 0.3 < estimate < math.log(num_examples)


def test_separated_examples_give_log_n():
  rng = np.random.default_rng(6)
  samples = 50.0 * np.arange(40)[:, None] + rng.standard_normal((40, 30))
  assert analysis.gaussian_mutual_information(samples) == pytest.approx(math.log(40), abs=1e-9)


def test_no_information_gives_zero():
  rng = np.random.default_rng(7)
  identical = np.broadcast_to(rng.standard_normal(25), (60, 25))  # Every example: the same draws.
  assert analysis.gaussian_mutual_information(identical) == pytest.approx(0, abs=1e-12)
  # Independent draws from one distribution: only the plug-in bias, about 1 / (2 L) nats.
  independent = rng.standard_normal((100, 50))
  assert 0 <= analysis.gaussian_mutual_information(independent) < 0.03


def test_estimate_is_invariant_to_affine_maps_of_y():
  rng = np.random.default_rng(8)
  samples = rng.normal(size=(50, 1, 1)) + rng.normal(size=(50, 20, 1))
  assert analysis.gaussian_mutual_information(-4.0 * samples + 3.0) == pytest.approx(
      analysis.gaussian_mutual_information(samples), abs=1e-10)
  # (N, L) and (N, L, 1) are the same estimator.
  assert analysis.gaussian_mutual_information(samples[..., 0]) == pytest.approx(
      analysis.gaussian_mutual_information(samples), abs=1e-12)


@pytest.mark.parametrize("samples, message", [
    (np.ones(5), r"samples must have shape .* got \(5,\)"),
    (np.ones((1, 5)), r"got \(1, 5\)"),
    (np.ones((5, 1)), r"got \(5, 1\)"),
    (np.full((3, 4), np.nan), "samples must be finite"),
    (np.arange(12.).reshape(3, 4, 1) // 4, r"within-example variance is 0 in dimensions \[0\]"),
])
def test_mutual_information_errors(samples, message):
  with pytest.raises(ValueError, match=message):
    analysis.gaussian_mutual_information(samples)


# --- Penultimate features of the package's models. ---

@pytest.mark.parametrize("name, input_shape", [("cnn1d", (4, 40)), ("mlp", (4, 40))])
def test_penultimate_features_reproduce_the_logits(name, input_shape):
  model = models.get_model(name, num_classes=10)
  x = jax.random.normal(jax.random.key(1), input_shape)
  variables = model.init(jax.random.key(0), x)
  features, logits = analysis.penultimate_features(model, variables, x)
  kernel, bias = analysis.head_kernel_and_bias(variables)
  assert features.shape == (4, kernel.shape[0]) and logits.shape == (4, 10)
  np.testing.assert_allclose(features @ kernel + bias, logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(logits, model.apply(variables, x), rtol=1e-6)


class UnsownHead(nn.Module):
  """A classifier whose last layer is a plain Dense: nothing sown."""

  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(3)(x)


def test_penultimate_features_need_the_sown_features():
  model = UnsownHead()
  variables = model.init(jax.random.key(0), jnp.ones((2, 4)))
  with pytest.raises(ValueError, match="UnsownHead sows no intermediates/'features'"):
    analysis.penultimate_features(model, variables, jnp.ones((2, 4)))


# --- Extrapolation probes. ---

def linear_model(seed, num_features=6, num_classes=3, bias=True):
  rng = np.random.default_rng(seed)
  weights = rng.normal(size=(num_features, num_classes)).astype(np.float32)
  offsets = (rng.normal(size=num_classes) if bias else np.zeros(num_classes)).astype(np.float32)
  return weights, offsets, lambda x: x @ weights + offsets


def test_scaled_input_confidence_on_a_linear_model():
  weights, _, logits_fn = linear_model(9, bias=False)
  x = np.random.default_rng(10).normal(size=(16, 6)).astype(np.float32)
  scales = [1.0, 2.0, 4.0, 8.0, 16.0]
  got = analysis.scaled_input_confidence(logits_fn, jnp.asarray(x), scales)
  expected = [np_softmax(s * x.astype(np.float64) @ weights).max(-1).mean() for s in scales]
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # Without a bias the logits scale with s, so every example's confidence rises toward 1.
  assert np.all(np.diff(np.asarray(got)) >= 0) and got[-1] > 0.95


def test_matched_gaussian_noise_matches_per_coordinate_moments():
  rng = np.random.default_rng(11)
  x = jnp.asarray(rng.normal([0.0, 5.0, -2.0], [1.0, 0.1, 3.0], size=(50, 3)), jnp.float32)
  noise = analysis.matched_gaussian_noise(jax.random.key(0), x, num_samples=20000)
  assert noise.shape == (20000, 3) and noise.dtype == jnp.float32
  np.testing.assert_allclose(noise.mean(0), x.mean(0), atol=0.05)
  np.testing.assert_allclose(noise.std(0), x.std(0), rtol=0.03)
  assert analysis.matched_gaussian_noise(jax.random.key(1), x).shape == (50, 3)


# --- FGSM and PGD. ---

def np_input_gradient(weights, offsets, x, labels):
  """d/dx CE(x W + b, y) = (softmax(x W + b) - onehot(y)) W^T, by hand."""
  probs = np_softmax(x.astype(np.float64) @ weights + offsets)
  return (probs - np.eye(weights.shape[1])[labels]) @ weights.T


def np_cross_entropy(logits, labels):
  return -np.log(np_softmax(logits)[np.arange(len(labels)), labels])


def test_fgsm_on_a_linear_model_is_the_hand_computed_sign_step():
  weights, offsets, logits_fn = linear_model(12)
  rng = np.random.default_rng(13)
  x, labels = rng.normal(size=(10, 6)).astype(np.float32), rng.integers(0, 3, 10)
  x_adv = analysis.fgsm(logits_fn, jnp.asarray(x), jnp.asarray(labels), 0.1)
  expected = x + 0.1 * np.sign(np_input_gradient(weights, offsets, x, labels))
  np.testing.assert_allclose(x_adv, expected, atol=1e-6)
  assert np.max(np.abs(np.asarray(x_adv) - x)) <= 0.1 + 1e-6


def test_fgsm_and_pgd_find_the_brute_force_worst_vertex_of_a_binary_linear_model():
  """K = 2: CE is monotone in a margin linear in x, so the worst case in the L-inf ball is a vertex.
  """
  weights, offsets, logits_fn = linear_model(14, num_features=4, num_classes=2)
  rng = np.random.default_rng(15)
  x, labels, epsilon = rng.normal(size=(5, 4)).astype(np.float32), rng.integers(0, 2, 5), 0.3
  vertices = np.array(list(itertools.product([-epsilon, epsilon], repeat=4)))
  worst = np.array([max(np_cross_entropy((x[i] + vertices) @ weights + offsets,
                                         np.full(16, labels[i]))) for i in range(5)])
  for x_adv in (analysis.fgsm(logits_fn, x, labels, epsilon),
                analysis.pgd(logits_fn, x, labels, epsilon, step_size=0.05, num_steps=20,
                             rng=jax.random.key(0))):
    np.testing.assert_allclose(np_cross_entropy(np.asarray(x_adv) @ weights + offsets, labels),
                               worst, rtol=1e-5)


def test_one_step_pgd_without_random_start_is_fgsm():
  _, _, logits_fn = mlp(16)
  x, labels = mlp_data(17)
  np.testing.assert_array_equal(
      analysis.pgd(logits_fn, x, labels, 0.2, step_size=0.2, num_steps=1),
      analysis.fgsm(logits_fn, x, labels, 0.2))


def mlp(seed, width=32, num_classes=4):
  rng = np.random.default_rng(seed)
  w1 = jnp.asarray(rng.normal(size=(8, width)) / math.sqrt(8), jnp.float32)
  w2 = jnp.asarray(rng.normal(size=(width, num_classes)) * 2 / math.sqrt(width), jnp.float32)
  return w1, w2, lambda x: jnp.tanh(x @ w1) @ w2


def mlp_data(seed, n=64):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.uniform(0, 1, size=(n, 8)), jnp.float32),
          jnp.asarray(rng.integers(0, 4, n)))


def test_pgd_stays_in_the_ball_and_range_and_beats_fgsm_on_a_nonlinear_model():
  _, _, logits_fn = mlp(18)
  x, labels = mlp_data(19)
  epsilon, clip_range = 0.25, (0.0, 1.0)
  loss = lambda inputs: float(jnp.mean(losses.smoothed_cross_entropy(logits_fn(inputs),
                                                                             labels)))
  x_fgsm = analysis.fgsm(logits_fn, x, labels, epsilon, clip_range=clip_range)
  x_pgd = jax.jit(functools.partial(
      analysis.pgd, logits_fn, epsilon=epsilon, step_size=epsilon / 4, num_steps=20,
      rng=jax.random.key(1), clip_range=clip_range))(x, labels)
  for x_adv in (x_fgsm, x_pgd):
    assert float(jnp.max(jnp.abs(x_adv - x))) <= epsilon + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
  assert loss(x_pgd) >= loss(x_fgsm) > loss(x)


def test_clip_range_is_applied():
  _, _, logits_fn = mlp(20)
  x, labels = mlp_data(21)
  unclipped = analysis.fgsm(logits_fn, x, labels, 0.3)
  clipped = analysis.fgsm(logits_fn, x, labels, 0.3, clip_range=(0.0, 1.0))
  assert float(unclipped.min()) < 0 and float(unclipped.max()) > 1  # The clip has work to do.
  np.testing.assert_array_equal(clipped, jnp.clip(unclipped, 0.0, 1.0))


def test_accuracy_under_attack_in_batches():
  weights, offsets, logits_fn = linear_model(22, num_features=4, num_classes=2)
  rng = np.random.default_rng(23)
  x, labels = rng.normal(size=(25, 4)).astype(np.float32), rng.integers(0, 2, 25)
  clean = np.mean(np.argmax(x @ weights + offsets, -1) == labels)
  identity = lambda inputs, _: inputs
  assert analysis.accuracy_under_attack(logits_fn, identity, x, labels, batch_size=7) == clean
  # Binary linear model: FGSM flips an example iff its margin is at most epsilon * |w_y - w_o|_1.
  epsilon = 0.2
  direction = np.where(labels[:, None] == 0, 1, -1) * (weights[:, 0] - weights[:, 1])
  margin = np.sum(x * direction, -1) + np.where(labels == 0, 1, -1) * (offsets[0] - offsets[1])
  expected = np.mean(margin - epsilon * np.abs(weights[:, 0] - weights[:, 1]).sum() > 0)
  attack = functools.partial(analysis.fgsm, logits_fn, epsilon=epsilon)
  attacked = analysis.accuracy_under_attack(logits_fn, attack, x, labels, batch_size=7)
  assert attacked == pytest.approx(expected)
  assert expected < clean


@pytest.mark.parametrize("call, message", [
    (lambda f, x, y: analysis.fgsm(f, x, y, -0.1), r"epsilon must be >= 0, got -0.1"),
    (lambda f, x, y: analysis.fgsm(f, x, y[:3], 0.1), r"labels of shape \(n,\), got \(64, 8\)"),
    (lambda f, x, y: analysis.fgsm(f, x, y, 0.1, clip_range=(1.0, 0.0)),
     r"clip_range must be \(low, high\) with low < high"),
    (lambda f, x, y: analysis.pgd(f, x, y, 0.1, step_size=0.0, num_steps=3),
     "step_size must be > 0, got 0.0"),
    (lambda f, x, y: analysis.pgd(f, x, y, 0.1, step_size=0.1, num_steps=0),
     "num_steps must be an integer >= 1, got 0"),
    (lambda f, x, y: analysis.accuracy_under_attack(f, lambda a, b: a, x, y, batch_size=0),
     "batch_size must be >= 1, got 0"),
    (lambda f, x, y: analysis.scaled_input_confidence(f, x, []), "scales must be a non-empty"),
    (lambda f, x, y: analysis.matched_gaussian_noise(jax.random.key(0), x[:1]),
     r"at least 2 examples along axis 0, got shape \(1, 8\)"),
])
def test_attack_and_probe_errors(call, message):
  _, _, logits_fn = mlp(24)
  x, labels = mlp_data(25)
  with pytest.raises(ValueError, match=message):
    call(logits_fn, x, labels)


# ------------------------------------------------------------------------------------------------
# The MI perturbation and samples.


def test_perturb_is_a_bounded_circular_shift_plus_noise():
  x = np.arange(2 * 7, dtype=np.float32).reshape(2, 7)
  np.testing.assert_array_equal(analysis.perturb(np.random.default_rng(0), x, 0, 0.0), x)
  for seed in range(20):
    shifted = analysis.perturb(np.random.default_rng(seed), x, 2, 0.0)
    for row, original in zip(shifted, x):
      assert any(np.array_equal(row, np.roll(original, s)) for s in range(-2, 3))
  shifts_seen = {next(s for s in range(-2, 3) if np.array_equal(
      analysis.perturb(np.random.default_rng(seed), x, 2, 0.0)[0], np.roll(x[0], s)))
                 for seed in range(40)}
  assert shifts_seen == {-2, -1, 0, 1, 2}
  noise = analysis.perturb(np.random.default_rng(1), np.zeros((400, 50, 1)), 0, 0.3)
  assert noise.shape == (400, 50, 1) and noise.std() == pytest.approx(0.3, rel=0.02)
  with pytest.raises(ValueError, match="max_shift and noise_std must be >= 0"):
    analysis.perturb(np.random.default_rng(0), x, -1, 0.0)


def test_balanced_examples():
  labels = np.array([1, 0, 2, 1, 0, 1, 0])
  np.testing.assert_array_equal(analysis.balanced_examples(labels, (0, 1), 4), [1, 4, 0, 3])
  with pytest.raises(ValueError, match="class 2 has 1 examples"):
    analysis.balanced_examples(labels, (0, 2), 4)
  with pytest.raises(ValueError, match="even and >= 4"):
    analysis.balanced_examples(labels, (0, 1), 5)


def saved_linear_model(kernel: np.ndarray) -> analysis.SavedModel:
  """logits = x @ kernel, as a SavedModel (no network needed)."""
  return analysis.SavedModel(None, {"kernel": jnp.asarray(kernel)}, lambda v, x: x @ v["kernel"])


def test_logit_difference_draws_are_the_perturbed_logit_gaps():
  rng = np.random.default_rng(0)
  kernel, x = rng.normal(size=(6, 3)), rng.normal(size=(5, 6)).astype(np.float32)
  draws = analysis.logit_difference_draws(saved_linear_model(kernel), x, (2, 0), num_draws=4,
                                          max_shift=1, noise_std=0.1, seed=7)
  replay = np.random.default_rng(7)
  expected = np.stack([analysis.perturb(replay, x, 1, 0.1) @ (kernel[:, 2] - kernel[:, 0])
                       for _ in range(4)], axis=1)
  assert draws.shape == (5, 4)
  np.testing.assert_allclose(draws, expected, rtol=1e-4, atol=1e-5)
  # Same seed, same perturbations: a model whose gap ignores the input carries no information.
  constant = saved_linear_model(np.zeros((6, 3)))
  assert np.ptp(analysis.logit_difference_draws(constant, x, (2, 0), num_draws=4, max_shift=1,
                                                noise_std=0.1, seed=7)) == 0


# ------------------------------------------------------------------------------------------------
# Projection of a real model's features.


def test_project_matches_the_features_computed_by_hand():
  model = models.get_model("mlp", num_classes=4, hidden_sizes=(8, 5))
  x = np.random.default_rng(0).normal(size=(30, 6)).astype(np.float32)
  labels = np.arange(30) % 4
  variables = model.init(jax.random.key(0), x)
  saved = analysis.SavedModel(model, variables, jax.jit(lambda v, x: model.apply(v, x)))
  found = analysis.project(saved, x, labels, (0, 1, 3))
  p = variables["params"]
  hidden = np.maximum(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], 0)
  features = np.maximum(hidden @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"], 0)
  keep = labels != 2
  kernel, bias = p["head"]["kernel"], p["head"]["bias"]
  np.testing.assert_allclose(found.points, analysis.project_onto_template_plane(
      features[keep], kernel, (0, 1, 3), bias), rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(found.labels, labels[keep])
  assert found.feature_tightness == pytest.approx(analysis.cluster_tightness(features, labels),
                                                  rel=1e-4)
  assert found.plane_tightness == pytest.approx(
      analysis.cluster_tightness(found.points, labels[keep]), rel=1e-9)


# ------------------------------------------------------------------------------------------------
# End to end: the sweeps, tiny, and every study on them.


def run_script(*args):
  # Without conftest's 8 fake devices: the runs train as a user's would, on one CPU device.
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  done = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                        check=False, env=env)
  assert done.returncode == 0, done.stdout + done.stderr
  return done


TINY_TRAINING = ["--override", "num_steps=20", "--override", "checkpoint_every_steps=10",
                 "--override", "log_every_steps=10", "--override", "eval_every_steps=0",
                 "--seeds", "0,1"]
TINY_REPORTS = {"information": ["--examples", "20", "--draws", "4"],
                "extrapolation": ["--attack-examples", "50", "--epsilons", "0.1", "--pgd-steps",
                                  "2", "--scales", "1,4"]}


def report_all(root: pathlib.Path, digits: bool) -> None:
  """The four reports on the tiny runs, as scripts/reproduce.sh makes them (TINY=1)."""
  runs = {"distillation": [root / "teachers", root / "students"],
          "projection": [root / "teachers", *([root / "digits"] if digits else [])],
          "information": [root / "teachers"], "extrapolation": [root / "teachers"]}
  for name, paths in runs.items():
    run_script("scripts/report.py", name, "--runs", *paths, "--out", root / "results" / name,
               *TINY_REPORTS.get(name, []))


def train_tiny(out: pathlib.Path, teacher_match: str, student_match: str, digits: bool) -> None:
  run_script("scripts/sweep.py", "configs/sweeps/distillation_teachers.py", "--out", out / "teachers",
             "--match", teacher_match, *TINY_TRAINING)
  run_script("scripts/sweep.py", f"configs/sweeps/distillation_students.py:teachers={out / 'teachers'}",
             "--out", out / "students", "--match", student_match, *TINY_TRAINING)
  if digits:
    run_script("scripts/sweep.py", "configs/sweeps/representations_digits.py", "--out", out / "digits",
               *TINY_TRAINING)


def test_the_studies_run_end_to_end_on_tiny_sweeps(tmp_path):
  train_tiny(tmp_path, "smoothing=(0|0.3)_", "mlp_seed|teacher=ls0.3_T=4_", digits=False)
  assert len(list(tmp_path.glob("*/*/results.json"))) == 8
  assert sorted(p.name for p in (tmp_path / "teachers/mnist1d_loss.label_smoothing=0_seed0/"
                                 "checkpoints").iterdir()) == ["10", "20"]
  report_all(tmp_path, digits=False)
  for study in ("projection", "distillation", "information", "extrapolation"):
    for name in ("summary.md", "summary.csv", f"{study}.png"):
      assert (tmp_path / "results" / study / name).stat().st_size > 0
  distillation = (tmp_path / "results/distillation/summary.md").read_text()
  assert "| student | LS 0.3 | 4.000 | student of LS 0.3 teacher, T=4 | accuracy | 2 |" in (
      distillation)
  assert "Müller et al. 2019, §4" in distillation and "w = 0.5" in distillation
  information = (tmp_path / "results/information/summary.md").read_text()
  assert "| 10 | mnist1d cnn1d LS 0.3 | 2 |" in information
  assert "| 20 | mnist1d cnn1d CE | 2 |" in information
  extrapolation = (tmp_path / "results/extrapolation/summary.md").read_text()
  assert "| mnist1d cnn1d LS 0.3 | pgd eps=0.1 | 2 |" in extrapolation
  assert "| mnist1d cnn1d CE | noise | 2 |" in extrapolation
  # The MI rows are the estimator applied to the checkpoints, paired by seed with CE.
  with open(tmp_path / "results/information/summary.csv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0])[:3] == ["step", "group", "metric"]
  ls = [r for r in rows if r["group"] == "mnist1d cnn1d LS 0.3" and r["step"] == "20"]
  assert len(ls) == 1 and ls[0]["baseline"] == "mnist1d cnn1d CE" and ls[0]["n_paired"] == "2"


@pytest.mark.slow
def test_every_point_of_the_three_sweeps_runs_tiny(tmp_path):
  """Every point of the three sweeps, tiny (TINY=1 of scripts/reproduce.sh): 6 + 26 + 4 runs,
  then every report."""
  train_tiny(tmp_path, ".", ".", digits=True)
  assert len(list(tmp_path.glob("*/*/results.json"))) == 36
  report_all(tmp_path, digits=True)
  projection = (tmp_path / "results/projection/summary.md").read_text()
  assert "| sklearn_digits cnn2d LS 0.1 | tightness, plane, test | 2 |" in projection
  claims = (tmp_path / "results/distillation/summary.md").read_text()
  assert "Chandrasegaran" in claims
