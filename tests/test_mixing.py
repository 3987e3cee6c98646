"""Tests for ls_jax.mixing: Mixup and CutMix against independent reconstructions."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from ls_jax import mixing

# One batch shape for most tests, so that JAX compiles each operation once for the whole file.
N, K = 8, 4
IMAGES = jax.random.normal(jax.random.PRNGKey(0), (N, 6, 6, 3))
LABELS = jnp.arange(N) % K


def _recover_mixup(mixed: np.ndarray) -> tuple[float, np.ndarray]:
  """From mixup of the identity matrix, read off lam and the partner of every row.

  Row i of the mix of `eye(N)` is `lam·e_i + (1-lam)·e_π(i)`, so the diagonal is `lam` wherever
  π(i) != i (and 1 where π(i) = i), and the partner is where the rest of the row's mass sits.
  """
  n = mixed.shape[0]
  off_diagonal = mixed - np.diag(np.diag(mixed))
  paired = off_diagonal.sum(axis=1) > 0
  assert paired.any(), "every example was paired with itself; pick another seed"
  lam = float(np.diag(mixed)[paired][0])
  partner = np.where(paired, off_diagonal.argmax(axis=1), np.arange(n))
  return lam, partner


def test_soft_targets_formula():
  labels = np.array([0, 2, 1])
  got = mixing.soft_targets(jnp.asarray(labels), 3, 0.3)
  expected = 0.7 * np.eye(3)[labels] + 0.1
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  assert got.dtype == jnp.float32


def test_soft_targets_negative_smoothing():
  # Wei et al. 2022: a = -0.3 over K = 3 gives 1.3 - 0.1 = 1.2 on the label and -0.1 elsewhere.
  got = mixing.soft_targets(jnp.array([1]), 3, -0.3)
  np.testing.assert_allclose(got, [[-0.1, 1.2, -0.1]], rtol=1e-6)


@pytest.mark.parametrize("bad", [1.5, -1.5])
def test_soft_targets_rejects_bad_smoothing(bad):
  with pytest.raises(ValueError, match=rf"label_smoothing must be in \[-1, 1\], got {bad}"):
    mixing.soft_targets(jnp.array([0]), 3, bad)


def test_mixup_inputs_and_targets_share_lam_and_partner():
  mixed, targets, lam = mixing.mixup(jax.random.PRNGKey(3), jnp.eye(N), LABELS, K, alpha=1.0)
  lam_from_inputs, partner = _recover_mixup(np.asarray(mixed))
  assert 0.0 < float(lam) < 1.0
  np.testing.assert_allclose(lam_from_inputs, float(lam), rtol=1e-6)
  one_hot = np.eye(K)[np.asarray(LABELS)]
  expected = lam_from_inputs * one_hot + (1 - lam_from_inputs) * one_hot[partner]
  np.testing.assert_allclose(targets, expected, atol=1e-6)
  # The partner map is a permutation of the batch.
  assert sorted(partner) == list(range(N))


@pytest.mark.parametrize("mix", [mixing.mixup, mixing.cutmix])
def test_targets_are_distributions(mix):
  _, targets, _ = mix(jax.random.PRNGKey(1), IMAGES, LABELS, K, 1.0, label_smoothing=0.2)
  assert targets.dtype == jnp.float32
  assert targets.shape == (N, K)
  assert np.all(np.asarray(targets) >= 0)
  np.testing.assert_allclose(np.asarray(targets).sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("mix", [mixing.mixup, mixing.cutmix])
def test_label_smoothing_is_applied_once_to_the_mix(mix):
  a, rng = 0.1, jax.random.PRNGKey(5)
  _, plain, lam = mix(rng, IMAGES, LABELS, K, 1.0)
  _, smoothed, lam_smoothed = mix(rng, IMAGES, LABELS, K, 1.0, label_smoothing=a)
  assert float(lam) == float(lam_smoothed)
  np.testing.assert_allclose(smoothed, (1 - a) * np.asarray(plain) + a / K, atol=1e-6)


@pytest.mark.parametrize("mix", [mixing.mixup, mixing.cutmix])
def test_alpha_zero_is_identity(mix):
  mixed, targets, lam = mix(jax.random.PRNGKey(1), IMAGES, LABELS, K, 0.0, label_smoothing=0.4)
  np.testing.assert_array_equal(mixed, IMAGES)
  np.testing.assert_allclose(targets, 0.6 * np.eye(K)[np.asarray(LABELS)] + 0.1, rtol=1e-6)
  assert float(lam) == 1.0


@pytest.mark.parametrize("mix", [mixing.mixup, mixing.cutmix])
def test_negative_alpha_raises(mix):
  with pytest.raises(ValueError, match="alpha"):
    mix(jax.random.PRNGKey(0), jnp.zeros((2, 4, 4, 1)), jnp.array([0, 1]), 2, -0.5)


def test_mixup_rejects_integer_inputs():
  with pytest.raises(ValueError, match="floating"):
    mixing.mixup(jax.random.PRNGKey(0), jnp.zeros((2, 3), jnp.uint8), jnp.array([0, 1]), 2, 1.0)


def test_tiny_alpha_approaches_identity():
  """Beta(α, α) piles up at 0 and 1 as α -> 0: P(0.01 < lam < 0.99) ≈ α·log(99) ≈ 0.5% here."""
  lams = np.array([
      float(mixing.mixup(jax.random.PRNGKey(seed), IMAGES, LABELS, K, 1e-3)[2])
      for seed in range(100)])
  assert np.mean(np.minimum(lams, 1 - lams) < 0.01) > 0.95


def test_mixup_lam_follows_beta():
  # Eager calls reuse one compiled sampler; a vmap or jit would compile the Beta sampler again,
  # which costs more than these 500 calls.
  alpha = 0.4
  lams = np.array([
      float(mixing.mixup(jax.random.PRNGKey(seed), IMAGES, LABELS, K, alpha)[2])
      for seed in range(500)])
  assert stats.kstest(lams, stats.beta(alpha, alpha).cdf).pvalue > 1e-3
  # The test has power: the same sample is far from Beta(1, 1).
  assert stats.kstest(lams, stats.beta(1, 1).cdf).pvalue < 1e-6


def test_mixup_keeps_bf16():
  rng = jax.random.PRNGKey(1)
  images_bf16 = IMAGES.astype(jnp.bfloat16)
  mixed_bf16, targets, _ = mixing.mixup(rng, images_bf16, LABELS, K, 1.0)
  mixed_f32, _, _ = mixing.mixup(rng, images_bf16.astype(jnp.float32), LABELS, K, 1.0)
  assert mixed_bf16.dtype == jnp.bfloat16
  assert targets.dtype == jnp.float32
  # bf16 has an 8-bit mantissa: the only error is the final rounding, a relative 2^-8.
  np.testing.assert_allclose(mixed_bf16.astype(jnp.float32), mixed_f32, rtol=2**-8, atol=1e-6)


def test_cutmix_target_weight_is_pasted_pixel_fraction():
  """Image i is the constant i, and its label is i, so every pixel and target names its source."""
  images = jnp.broadcast_to(jnp.arange(N, dtype=jnp.float32)[:, None, None, None], (N, 13, 11, 3))
  seen_a_paste = False
  for seed in range(10):
    mixed, targets, lam_eff = mixing.cutmix(
        jax.random.PRNGKey(seed), images, jnp.arange(N), N, alpha=1.0)
    mixed, targets = np.asarray(mixed), np.asarray(targets)
    for i in range(N):
      pasted = mixed[i, :, :, 0] != i
      fraction = pasted.mean()
      if fraction == 0:
        continue
      seen_a_paste = True
      partner = int(mixed[i][pasted][0, 0])
      assert np.all(mixed[i][pasted] == partner)
      np.testing.assert_allclose(targets[i, partner], fraction, atol=1e-6)
      np.testing.assert_allclose(targets[i, i], 1 - fraction, atol=1e-6)
      np.testing.assert_allclose(float(lam_eff), 1 - fraction, atol=1e-6)
      # The pasted region is an axis-aligned box: it fills its own bounding box.
      rows, cols = np.nonzero(pasted)
      box_area = (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
      assert box_area == pasted.sum()
  assert seen_a_paste


def test_cutmix_box_area_before_clipping():
  """A box centered far from the edges is never clipped: side round(S·sqrt(1-lam)), area ≈ 1-lam."""
  for lam in [0.1, 0.5, 0.75, 0.9]:
    mask = np.asarray(mixing.cutmix_mask(jax.random.PRNGKey(0), (1001, 1001), jnp.float32(lam)))
    side = round(1001 * np.sqrt(1 - lam))
    rows, cols = np.nonzero(mask)
    if rows.min() > 0 and cols.min() > 0 and rows.max() < 1000 and cols.max() < 1000:
      assert mask.sum() == side * side
    else:
      assert mask.sum() < side * side


def test_cutmix_on_1d_signals_pastes_an_interval():
  length = 50
  signals = jnp.broadcast_to(jnp.arange(N, dtype=jnp.int32)[:, None, None], (N, length, 2))
  mixed, targets, _ = mixing.cutmix(jax.random.PRNGKey(7), signals, jnp.arange(N), N, alpha=1.0)
  assert mixed.dtype == jnp.int32
  for i in range(N):
    pasted = np.nonzero(np.asarray(mixed)[i, :, 0] != i)[0]
    if pasted.size:
      assert pasted.max() - pasted.min() + 1 == pasted.size
      np.testing.assert_allclose(targets[i, i], 1 - pasted.size / length, atol=1e-6)


@pytest.mark.parametrize("mix", [mixing.mixup, mixing.cutmix])
def test_jit_with_batch_sharded_over_mesh_matches_eager(mix):
  """Inside jit with the batch split over 8 devices, the result equals the unsharded eager one."""
  devices = jax.devices()
  assert len(devices) == 8, "conftest.py should give 8 host CPU devices"
  mesh = jax.sharding.Mesh(np.array(devices), ("data",))
  batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  rng = jax.random.PRNGKey(11)
  step = jax.jit(functools.partial(mix, num_classes=K, alpha=0.4, label_smoothing=0.1))
  sharded = step(rng, jax.device_put(IMAGES, batch), jax.device_put(LABELS, batch))
  assert sharded[0].sharding.is_equivalent_to(batch, ndim=IMAGES.ndim)
  eager = mix(rng, IMAGES, LABELS, K, 0.4, label_smoothing=0.1)
  for got, expected in zip(sharded, eager):
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def _beta_draws(mix, alpha: float, count: int, monkeypatch) -> np.ndarray:
  """The Beta draws `mix` makes over `count` keys, read at `jax.random.beta` itself (CutMix's
  returned weight is the clipped box's, not the draw)."""
  draws, beta = [], jax.random.beta

  def recording_beta(key, a, b, *args, **kwargs):
    value = beta(key, a, b, *args, **kwargs)
    draws.append(float(value))
    return value

  monkeypatch.setattr(jax.random, "beta", recording_beta)
  for seed in range(count):
    mix(jax.random.PRNGKey(seed), IMAGES, LABELS, K, alpha)
  monkeypatch.undo()
  assert len(draws) == count
  return np.array(draws)


@pytest.mark.parametrize("alpha", [0.2, 0.5, 2.0])
@pytest.mark.parametrize("mix", [mixing.mixup, mixing.cutmix])
def test_mixing_weight_is_a_symmetric_beta_draw_at_several_alphas(mix, alpha, monkeypatch):
  """lam ~ Beta(alpha, alpha): a KS test with the power to reject Beta(alpha, 1/alpha) (at
  alpha = 1, where those agree, a swapped parameter would pass), and the first two moments."""
  lams = _beta_draws(mix, alpha, 300, monkeypatch)
  assert stats.kstest(lams, stats.beta(alpha, alpha).cdf).pvalue > 1e-3
  assert stats.kstest(lams, stats.beta(alpha, 1 / alpha).cdf).pvalue < 1e-4
  # Moments: mean 1/2, variance 1 / (4 (2 alpha + 1)); 5 standard errors of the sample variance.
  variance = 1 / (4 * (2 * alpha + 1))
  assert abs(lams.mean() - 0.5) < 5 * np.sqrt(variance / len(lams))
  fourth = stats.beta(alpha, alpha).moment(4) - 4 * 0.5 * stats.beta(alpha, alpha).moment(3) + (
      6 * 0.25 * stats.beta(alpha, alpha).moment(2) - 3 * 0.5**4)
  assert abs(lams.var() - variance) < 5 * np.sqrt((fourth - variance**2) / len(lams))
  if mix is mixing.mixup:  # Mixup returns its draw.
    returned = [float(mix(jax.random.PRNGKey(seed), IMAGES, LABELS, K, alpha)[2])
                for seed in range(5)]
    np.testing.assert_array_equal(returned, lams[:5])
