"""Tests for ls_jax.noise: flip rates, flip targets and determinism, against binomial/chi-square."""
import numpy as np
import pytest
from scipy import stats

from ls_jax import noise

K = 10
N = 50_000
CLEAN = np.random.default_rng(0).integers(0, K, size=N).astype(np.int32)


def _assert_binomial(count: int, trials: int, p: float) -> None:
  """Two-sided check that `count` is a plausible Binomial(trials, p) draw (false alarm ~2e-6)."""
  low, high = stats.binom.ppf([1e-6, 1 - 1e-6], trials, p)
  assert low <= count <= high, (count, trials, p, low, high)


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_symmetric_realized_rate_is_binomial(rate):
  result = noise.symmetric_label_noise(CLEAN, K, rate, seed=1)
  changed = result.labels != CLEAN
  np.testing.assert_array_equal(result.flipped, changed)
  assert result.realized_noise_rate == changed.mean()
  _assert_binomial(changed.sum(), N, rate)
  # Each class is flipped at the same rate, not only the whole set.
  for c in range(K):
    _assert_binomial(changed[CLEAN == c].sum(), (CLEAN == c).sum(), rate)


def test_symmetric_flips_uniformly_to_the_other_classes():
  result = noise.symmetric_label_noise(CLEAN, K, 0.6, seed=2)
  for c in range(K):
    flipped_to = result.labels[(CLEAN == c) & result.flipped]
    assert not np.any(flipped_to == c)
    counts = np.bincount(flipped_to, minlength=K)
    others = np.delete(counts, c)
    assert stats.chisquare(others).pvalue > 1e-4


def test_symmetric_rate_one_flips_everything():
  result = noise.symmetric_label_noise(CLEAN, K, 1.0, seed=3)
  assert np.all(result.labels != CLEAN)
  assert result.realized_noise_rate == 1.0


def test_binary_symmetric_noise_swaps_the_class():
  clean = np.array([0, 1] * 500)
  result = noise.symmetric_label_noise(clean, 2, 0.3, seed=4)
  np.testing.assert_array_equal(result.labels[result.flipped], 1 - clean[result.flipped])


@pytest.mark.parametrize("inject", [noise.symmetric_label_noise, noise.asymmetric_label_noise])
def test_rate_zero_is_identity(inject):
  result = inject(CLEAN, K, 0.0, seed=5)
  np.testing.assert_array_equal(result.labels, CLEAN)
  assert result.labels.dtype == CLEAN.dtype
  assert not result.flipped.any()
  assert result.realized_noise_rate == 0.0


@pytest.mark.parametrize("inject", [noise.symmetric_label_noise, noise.asymmetric_label_noise])
def test_deterministic_given_seed(inject):
  first = inject(CLEAN, K, 0.4, seed=6)
  again = inject(CLEAN, K, 0.4, seed=6)
  other = inject(CLEAN, K, 0.4, seed=7)
  np.testing.assert_array_equal(first.labels, again.labels)
  np.testing.assert_array_equal(first.flipped, again.flipped)
  assert np.mean(first.labels != other.labels) > 0.1


def test_asymmetric_default_maps_to_next_class():
  result = noise.asymmetric_label_noise(CLEAN, K, 0.4, seed=8)
  np.testing.assert_array_equal(result.flipped, result.labels != CLEAN)
  np.testing.assert_array_equal(result.labels[result.flipped], (CLEAN[result.flipped] + 1) % K)
  _assert_binomial(result.flipped.sum(), N, 0.4)


def test_asymmetric_cifar10_mapping_of_patrini():
  names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
  expected = {
      "truck": "automobile", "bird": "airplane", "deer": "horse", "cat": "dog", "dog": "cat"}
  mapping = {names[c]: names[m] for c, m in noise.CIFAR10_ASYMMETRIC_MAPPING.items()}
  assert mapping == expected

  rate = 0.4
  result = noise.asymmetric_label_noise(
      CLEAN, K, rate, seed=9, mapping=noise.CIFAR10_ASYMMETRIC_MAPPING)
  for c in range(K):
    of_class = CLEAN == c
    if names[c] in expected:
      flipped = of_class & result.flipped
      assert np.all(result.labels[flipped] == names.index(expected[names[c]]))
      _assert_binomial(flipped.sum(), of_class.sum(), rate)
    else:
      assert not result.flipped[of_class].any()
  in_mapped_classes = np.isin(CLEAN, list(noise.CIFAR10_ASYMMETRIC_MAPPING)).mean()
  assert abs(result.realized_noise_rate - rate * in_mapped_classes) < 0.02


@pytest.mark.parametrize("bad_rate", [-0.1, 1.5, float("nan")])
@pytest.mark.parametrize("inject", [noise.symmetric_label_noise, noise.asymmetric_label_noise])
def test_rejects_rate_outside_unit_interval(inject, bad_rate):
  with pytest.raises(ValueError, match="noise_rate"):
    inject(CLEAN, K, bad_rate, seed=0)


@pytest.mark.parametrize("inject", [noise.symmetric_label_noise, noise.asymmetric_label_noise])
def test_rejects_bad_classes_and_labels(inject):
  with pytest.raises(ValueError, match="num_classes"):
    inject(np.zeros(4, np.int32), 1, 0.1, seed=0)
  with pytest.raises(ValueError, match="lie in"):
    inject(np.array([0, 3]), 3, 0.1, seed=0)
  with pytest.raises(ValueError, match="integers"):
    inject(np.array([0.0, 1.0]), 3, 0.1, seed=0)


def test_asymmetric_rejects_mapping_to_itself_or_out_of_range():
  with pytest.raises(ValueError, match="different"):
    noise.asymmetric_label_noise(CLEAN, K, 0.1, seed=0, mapping={3: 3})
  with pytest.raises(ValueError, match="different"):
    noise.asymmetric_label_noise(CLEAN, K, 0.1, seed=0, mapping={3: K})
