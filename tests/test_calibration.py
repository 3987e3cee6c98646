"""Tests for ls_jax.calibration: hand-computed cases, plain loops and optimality conditions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ls_jax import calibration

# Five examples, K = 4, checked by hand below with 5 bins (0, .2], (.2, .4], ..., (.8, 1].
HAND_PROBS = np.array([
    [0.35, 0.25, 0.2, 0.2],  # label 0: conf .35, correct -> (.2, .4]
    [0.1, 0.9, 0.0, 0.0],    # label 0: conf .9, wrong    -> (.8, 1]
    [0.0, 0.0, 0.0, 1.0],    # label 3: conf 1.0, correct -> (.8, 1] (1.0 is in the last bin)
    [0.1, 0.1, 0.6, 0.2],    # label 2: conf .6, correct  -> (.4, .6] (an upper edge is inside)
    [0.8, 0.2, 0.0, 0.0],    # label 1: conf .8, wrong    -> (.6, .8]
])
HAND_LABELS = np.array([0, 0, 3, 2, 1])


def _sample_labels(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
  """One draw y_i ~ Categorical(probs_i) per row, by inverting the CDF."""
  cdf = probs.cumsum(axis=1)
  u = rng.random((len(probs), 1)) * cdf[:, -1:]
  return (u > cdf).sum(axis=1)


def _softmax(z: np.ndarray) -> np.ndarray:
  e = np.exp(z - z.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


def _ece_by_loop(probs: np.ndarray, labels: np.ndarray, num_bins: int) -> float:
  """Guo et al. (2017) ECE written as a loop over (lower, upper] bins, as in their released code."""
  confidence = probs.max(axis=1)
  correct = probs.argmax(axis=1) == labels
  edges = np.linspace(0, 1, num_bins + 1)
  ece = 0.0
  for m, (lower, upper) in enumerate(zip(edges[:-1], edges[1:])):
    in_bin = (confidence > lower) & (confidence <= upper)
    if m == 0:
      in_bin |= confidence == 0
    if in_bin.any():
      ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
  return ece


def test_ece_hand_computed():
  # Per bin |B|/n·|acc - conf|: (.2,.4] 1/5·|1-.35| + (.4,.6] 1/5·|1-.6| + (.6,.8] 1/5·|0-.8|
  # + (.8,1] 2/5·|.5-.95| = .13 + .08 + .16 + .18.
  assert calibration.expected_calibration_error(HAND_PROBS, HAND_LABELS, 5) == pytest.approx(0.55)


def test_reliability_bins_hand_computed():
  bins = calibration.reliability_bins(HAND_PROBS, HAND_LABELS, 5)
  np.testing.assert_allclose(bins.edges, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
  np.testing.assert_array_equal(bins.count, [0, 1, 1, 1, 2])
  np.testing.assert_allclose(bins.mean_confidence, [np.nan, 0.35, 0.6, 0.8, 0.95])
  np.testing.assert_allclose(bins.accuracy, [np.nan, 1.0, 1.0, 0.0, 0.5])


def test_adaptive_ece_hand_computed():
  # Sorted confidences .35 .6 .8 | .9 1.0 in two equal-mass bins (sizes 3 and 2):
  # (|2 - 1.75| + |1 - 1.9|) / 5 = 1.15 / 5.
  assert calibration.adaptive_calibration_error(HAND_PROBS, HAND_LABELS, 2) == pytest.approx(0.23)


def test_brier_hand_computed():
  # Σ_k (p_k - y_k)² per row: .565, 1.62, 0, .22, 1.28.
  assert calibration.brier_score(HAND_PROBS, HAND_LABELS) == pytest.approx(3.685 / 5)


def test_confidence_a_rounding_error_above_one_stays_in_the_last_bin():
  # Accepted: rows sum to 1 within 1e-3. The bin index must not run past the last bin.
  probs = np.array([[1.0004, 0.0], [0.5, 0.5]])
  bins = calibration.reliability_bins(probs, np.array([0, 1]), 5)
  np.testing.assert_array_equal(bins.count, [0, 0, 1, 0, 1])
  assert calibration.expected_calibration_error(probs, np.array([0, 1]), 5) == pytest.approx(
      (0.0004 + 0.5) / 2)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("num_bins", [1, 10, 15])
def test_ece_and_bins_match_a_loop(seed, num_bins):
  rng = np.random.default_rng(seed)
  n = 300
  # Binary predictions, a third of them sitting exactly on a bin edge, where (lower, upper] matters.
  confidence = rng.uniform(0.5, 1.0, n)
  edges = np.linspace(0, 1, num_bins + 1)
  on_edge = rng.random(n) < 1 / 3
  confidence[on_edge] = rng.choice(edges[edges >= 0.5], on_edge.sum())
  probs = np.stack([confidence, 1 - confidence], axis=1)
  labels = rng.integers(0, 2, n)
  expected = _ece_by_loop(probs, labels, num_bins)
  assert calibration.expected_calibration_error(probs, labels, num_bins) == pytest.approx(expected)
  bins = calibration.reliability_bins(probs, labels, num_bins)
  for m, (lower, upper) in enumerate(zip(edges[:-1], edges[1:])):
    in_bin = (confidence > lower) & (confidence <= upper)
    assert bins.count[m] == in_bin.sum()
    if in_bin.any():
      assert bins.mean_confidence[m] == pytest.approx(confidence[in_bin].mean())
      assert bins.accuracy[m] == pytest.approx(np.mean(labels[in_bin] == 0))


def test_adaptive_ece_matches_array_split():
  rng = np.random.default_rng(7)
  probs = rng.dirichlet(np.ones(5) * 0.3, size=1000)
  labels = rng.integers(0, 5, 1000)
  confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
  order = np.argsort(confidence)
  expected = sum(
      len(group) / 1000 * abs(correct[group].mean() - confidence[group].mean())
      for group in np.array_split(order, 15))
  got = calibration.adaptive_calibration_error(probs, labels, 15)
  assert got == pytest.approx(expected)


def test_ece_of_calibrated_predictor_is_near_zero():
  rng = np.random.default_rng(0)
  probs = rng.dirichlet(np.ones(10) * 0.5, size=200_000)
  labels = _sample_labels(rng, probs)
  assert calibration.expected_calibration_error(probs, labels) < 0.01
  assert calibration.adaptive_calibration_error(probs, labels) < 0.01
  # The same labels judged against sharpened probabilities are clearly miscalibrated.
  sharpened = probs**3 / (probs**3).sum(axis=1, keepdims=True)
  assert calibration.expected_calibration_error(sharpened, labels) > 0.05


def test_brier_matches_formula_and_uniform_value():
  rng = np.random.default_rng(1)
  probs = rng.dirichlet(np.ones(6), size=50)
  labels = rng.integers(0, 6, 50)
  expected = np.mean([
      sum((probs[i, k] - (k == labels[i]))**2 for k in range(6)) for i in range(50)])
  assert calibration.brier_score(probs, labels) == pytest.approx(expected)
  # A uniform prediction scores (1 - 1/K)² + (K-1)/K² = (K-1)/K.
  uniform = np.full((3, 6), 1 / 6)
  assert calibration.brier_score(uniform, np.array([0, 2, 5])) == pytest.approx(5 / 6)


def test_nll_matches_formula_and_is_stable():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(40, 7))
  labels = rng.integers(0, 7, 40)
  expected = -np.mean(np.log(_softmax(logits)[np.arange(40), labels]))
  assert calibration.negative_log_likelihood(logits, labels) == pytest.approx(expected)
  # A 1000-nat margin: exp overflows a naive implementation; the exact NLLs are ~0 and 1000.
  huge = np.array([[1000.0, 0.0]])
  assert calibration.negative_log_likelihood(huge, np.array([0])) == pytest.approx(0.0, abs=1e-12)
  assert calibration.negative_log_likelihood(huge, np.array([1])) == pytest.approx(1000.0)


def test_mean_confidence():
  assert calibration.mean_confidence(HAND_PROBS) == pytest.approx((0.35 + 0.9 + 1 + 0.6 + 0.8) / 5)


def _scaled_predictor(scale: float, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Labels drawn from softmax(z), returned with the logits `scale·z` of a miscalibrated model."""
  rng = np.random.default_rng(seed)
  true_logits = rng.normal(scale=2.0, size=(n, 10))
  labels = _sample_labels(rng, _softmax(true_logits))
  return scale * true_logits, labels


@pytest.mark.parametrize("scale", [5.0, 0.3])
def test_temperature_recovers_the_miscalibration_scale(scale):
  """Over- (scale 5, T ≈ 5) and underconfident (scale 0.3, T ≈ 0.3, like a smoothed model)."""
  logits, labels = _scaled_predictor(scale, 20_000)
  temperature = calibration.fit_temperature(logits, labels)
  assert temperature == pytest.approx(scale, rel=0.05)
  nll = calibration.negative_log_likelihood
  assert nll(logits / temperature, labels) < nll(logits, labels) - 0.05
  assert (calibration.expected_calibration_error(_softmax(logits / temperature), labels)
          < calibration.expected_calibration_error(_softmax(logits), labels))


@pytest.mark.parametrize("scale", [2.0, 0.7])
def test_temperature_is_the_nll_minimizer(scale):
  logits, labels = _scaled_predictor(scale, 2000, seed=3)
  temperature = calibration.fit_temperature(logits, labels)

  def nll_at(log_t):
    return calibration.negative_log_likelihood(logits * np.exp(-log_t), labels)

  # Dense grid search over log T: a coarse pass over the whole range, then a fine one (step 2e-5).
  coarse = np.linspace(np.log(0.01), np.log(100), 401)
  best = coarse[np.argmin([nll_at(t) for t in coarse])]
  fine = np.linspace(best - 0.025, best + 0.025, 2501)
  grid_temperature = np.exp(fine[np.argmin([nll_at(t) for t in fine])])
  assert temperature == pytest.approx(grid_temperature, rel=1e-3)

  # First-order condition d NLL / d(1/T) = 0: under softmax(z/T), the expected logit equals the
  # logit of the label on average.
  probs = _softmax(logits / temperature)
  expected_logit = (probs * logits).sum(axis=1).mean()
  label_logit = logits[np.arange(len(labels)), labels].mean()
  assert expected_logit == pytest.approx(label_logit, rel=1e-5, abs=1e-6)


def test_temperature_ignores_masked_classes():
  """A class with logit -inf has probability 0 at every T, so it cannot move the fitted T."""
  logits, labels = _scaled_predictor(2.0, 500, seed=5)
  masked = np.concatenate([logits, np.full((500, 1), -np.inf)], axis=1)
  assert calibration.fit_temperature(masked, labels) == pytest.approx(
      calibration.fit_temperature(logits, labels), rel=1e-9)


def test_temperature_degenerate_inputs_hit_a_bound():
  labels = np.arange(50) % 5
  margin = 50.0 * np.eye(5)[labels]
  low, high = calibration.TEMPERATURE_BOUNDS
  # All correct with huge margins: the NLL keeps falling as T -> 0 (and is flat at 0 in float64).
  assert calibration.fit_temperature(margin, labels) == pytest.approx(low, rel=1e-6)
  # All wrong with huge margins: the NLL keeps falling as T -> infinity (towards uniform).
  assert calibration.fit_temperature(margin, (labels + 1) % 5) == pytest.approx(high, rel=1e-6)
  # Constant logits: the NLL does not depend on T; any T in range is fine, but it must be finite.
  flat = calibration.fit_temperature(np.zeros((5, 3)), np.arange(5) % 3)
  assert low <= flat <= high


def test_a_fit_on_its_bound_says_so():
  labels = np.arange(50) % 5
  margin = 50.0 * np.eye(5)[labels]
  low, high = calibration.TEMPERATURE_BOUNDS
  assert calibration.fit_temperature_checked(margin, (labels + 1) % 5) == (high, True)
  assert calibration.fit_temperature_checked(margin, labels) == (low, True)
  logits, labels = _scaled_predictor(2.0, 2000, seed=3)
  fit = calibration.fit_temperature_checked(logits, labels)
  assert not fit.at_bound and fit.temperature == calibration.fit_temperature(logits, labels)


def test_calibration_metrics_keys_and_values_from_jax_bf16():
  logits, labels = _scaled_predictor(2.0, 500, seed=4)
  logits_bf16 = jnp.asarray(logits, jnp.bfloat16)
  metrics = calibration.calibration_metrics(logits_bf16, jnp.asarray(labels))
  assert set(metrics) == {"accuracy", "nll", "ece", "adaptive_ece", "brier", "mean_confidence"}
  assert all(isinstance(v, float) for v in metrics.values())
  rounded = np.asarray(logits_bf16, np.float64)
  probs = _softmax(rounded)
  assert metrics["accuracy"] == pytest.approx(np.mean(probs.argmax(axis=1) == labels))
  assert metrics["nll"] == pytest.approx(
      -np.mean(np.log(probs[np.arange(500), labels])), rel=1e-9)
  assert metrics["ece"] == pytest.approx(_ece_by_loop(probs, labels, 15), rel=1e-9)
  assert metrics["mean_confidence"] == pytest.approx(probs.max(axis=1).mean())
  assert metrics["brier"] == pytest.approx(calibration.brier_score(probs, labels))


def test_rejects_mismatched_shapes_and_bins():
  with pytest.raises(ValueError, match="shape"):
    calibration.expected_calibration_error(np.ones((3, 2)) / 2, np.zeros(4, int))
  with pytest.raises(ValueError, match="num_bins"):
    calibration.expected_calibration_error(np.ones((3, 2)) / 2, np.zeros(3, int), num_bins=0)


# Every public function that takes probabilities, called with (probs, labels).
PROBABILITY_FUNCTIONS = {
    "expected_calibration_error": calibration.expected_calibration_error,
    "adaptive_calibration_error": calibration.adaptive_calibration_error,
    "reliability_bins": calibration.reliability_bins,
    "brier_score": calibration.brier_score,
    "mean_confidence": lambda probs, labels: calibration.mean_confidence(probs),
}


@pytest.mark.parametrize("name", PROBABILITY_FUNCTIONS)
@pytest.mark.parametrize("case", ["logits", "negative", "sums_to_0.99", "nan", "zeros"])
def test_probability_functions_reject_rows_that_are_not_distributions(name, case):
  rng = np.random.default_rng(0)
  logits = rng.normal(scale=3.0, size=(20, 5))
  probs = _softmax(logits)
  bad_row = 7
  if case == "logits":
    probs = logits  # The mistake of the issue: an "ECE" of 4.68 from logits.
  elif case == "negative":  # Still sums to 1.
    probs[bad_row] = [1.2, -0.2, 0.0, 0.0, 0.0]
  elif case == "sums_to_0.99":
    probs[bad_row] *= 0.99
  elif case == "nan":
    probs[bad_row, 0] = np.nan
  else:
    probs[bad_row] = 0.0
  with pytest.raises(ValueError, match=r"probs row \d+ is not a probability distribution.*"
                     r"pass softmax\(logits\), or call calibration_metrics\(logits, labels\)"):
    PROBABILITY_FUNCTIONS[name](probs, rng.integers(0, 5, 20))
  if case != "logits":
    with pytest.raises(ValueError, match=f"probs row {bad_row} "):
      PROBABILITY_FUNCTIONS[name](probs, rng.integers(0, 5, 20))


@pytest.mark.parametrize("name", PROBABILITY_FUNCTIONS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_probability_functions_accept_a_softmax_in_low_precision(name, dtype):
  # K = 1000 in float32 and K = 10 in 16 bits: rounding moves row sums off 1 by up to ~K·eps/2.
  num_classes = 1000 if dtype == jnp.float32 else 10
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(scale=3.0, size=(64, num_classes)), dtype)
  probs = jax.nn.softmax(logits, axis=-1)
  assert np.abs(np.asarray(probs, np.float64).sum(axis=1) - 1).max() > 0  # Really off by rounding.
  PROBABILITY_FUNCTIONS[name](probs, rng.integers(0, num_classes, 64))


def test_callers_that_pass_logits_through_softmax_still_work():
  rng = np.random.default_rng(2)
  logits = rng.normal(scale=10.0, size=(200, 7)).astype(np.float32)
  labels = rng.integers(0, 7, 200)
  metrics = calibration.calibration_metrics(logits, labels)  # softmax in float64 inside.
  probs = _softmax(logits.astype(np.float64))
  assert metrics["ece"] == pytest.approx(_ece_by_loop(probs, labels, 15), rel=1e-9)
  bins = calibration.reliability_bins(probs, labels)  # What train.py's reliability JSON does.
  assert bins.count.sum() == 200
