"""Tests for ls_jax.binary_calibration: hand-computed cases, scikit-learn and SciPy references,
calibrated synthetic data, recovery of known temperatures and Platt parameters, and bad input."""
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, special
from sklearn import linear_model, metrics

from ls_jax import binary_calibration as bc
from ls_jax import calibration

# P(y=1) = .1 .3 .5 .7 .9, one per bin of 5, worked by hand below.
HAND_PROBS = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
HAND_LOGITS = special.logit(HAND_PROBS)
HAND_LABELS = np.array([0, 1, 0, 1, 1])


def _sample(rng, n, positive_rate=0.5, scale=2.0, ties=False):
  """Logits ~ N(logit(rate), scale²) and labels ~ Bernoulli(sigmoid(z)); ties from rounding."""
  z = rng.normal(special.logit(positive_rate), scale, n)
  if ties:
    z = np.round(z, 1)
  return z, (rng.random(n) < special.expit(z)).astype(np.int64)


def _nll(logits, labels):
  return np.mean(np.logaddexp(0.0, logits) - labels * logits)


def test_metrics_hand_computed():
  m = bc.binary_calibration_metrics(HAND_LOGITS, HAND_LABELS, num_bins=5)
  assert set(m) == {"ece", "top_label_ece", "adaptive_ece", "brier", "nll", "accuracy", "auroc",
                    "average_precision", "mean_probability", "positive_rate"}
  assert all(type(v) is float for v in m.values())
  # One example per bin: (|0-.1| + |1-.3| + |0-.5| + |1-.7| + |1-.9|) / 5.
  assert m["ece"] == pytest.approx(1.7 / 5)
  # Predictions 0 0 0 1 1 (p = .5 predicts 0): correct 1 0 1 1 1, confidences .9 .7 .5 .7 .9.
  # (.4,.6]: |1 - .5|; (.6,.8]: |1 - 1.4|; (.8,1]: |2 - 1.8|.
  assert m["top_label_ece"] == pytest.approx(1.1 / 5)
  assert m["accuracy"] == pytest.approx(0.8)
  assert m["brier"] == pytest.approx((0.01 + 0.49 + 0.25 + 0.09 + 0.01) / 5)
  assert m["nll"] == pytest.approx(-np.log([0.9, 0.3, 0.5, 0.7, 0.9]).mean())
  # Positives .3 .7 .9 against negatives .1 .5: 5 of 6 pairs ranked right.
  assert m["auroc"] == pytest.approx(5 / 6)
  # Ranked .9+ .7+ .5- .3+ .1-: precisions at the positives 1, 1, 3/4.
  assert m["average_precision"] == pytest.approx((1 + 1 + 0.75) / 3)
  assert m["mean_probability"] == pytest.approx(0.5)
  assert m["positive_rate"] == pytest.approx(0.6)
  # Two equal-mass bins .1 .3 .5 | .7 .9: (|1 - .9| + |2 - 1.6|) / 5.
  m2 = bc.binary_calibration_metrics(HAND_LOGITS, HAND_LABELS, num_bins=2)
  assert m2["adaptive_ece"] == pytest.approx(0.1)


def test_reliability_bins_hand_computed():
  # p = 0 goes to the first bin, an upper edge to the bin below it, 1 to the last bin.
  probs = np.array([0.0, 0.2, 0.25, 0.5, 1.0, 0.9])
  labels = np.array([0, 1, 0, 1, 1, 0])
  bins = bc.binary_reliability_bins(probs, labels, num_bins=5)
  assert isinstance(bins, calibration.ReliabilityBins)
  np.testing.assert_allclose(bins.edges, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
  np.testing.assert_array_equal(bins.count, [2, 1, 1, 0, 2])
  np.testing.assert_allclose(bins.mean_confidence, [0.1, 0.25, 0.5, np.nan, 0.95])
  np.testing.assert_allclose(bins.accuracy, [0.5, 0.0, 1.0, np.nan, 0.5])


@pytest.mark.parametrize("seed,positive_rate", [(0, 0.5), (1, 0.05), (2, 0.9)])
def test_metrics_match_sklearn(seed, positive_rate):
  z, y = _sample(np.random.default_rng(seed), 3000, positive_rate, ties=True)
  p = special.expit(z)
  m = bc.binary_calibration_metrics(z, y)
  assert m["auroc"] == pytest.approx(metrics.roc_auc_score(y, z), abs=1e-12)
  assert m["average_precision"] == pytest.approx(metrics.average_precision_score(y, z), abs=1e-12)
  assert m["brier"] == pytest.approx(metrics.brier_score_loss(y, p), abs=1e-12)
  assert m["nll"] == pytest.approx(metrics.log_loss(y, p), abs=1e-10)
  assert m["accuracy"] == pytest.approx(metrics.accuracy_score(y, p > 0.5), abs=1e-12)
  # Scores are compared by rank only.
  assert bc.binary_auroc(p, y) == pytest.approx(m["auroc"], abs=1e-12)
  assert bc.average_precision(p, y) == pytest.approx(m["average_precision"], abs=1e-12)


def test_ranking_metrics_with_ties_and_degenerate_classes():
  z = np.array([1.0, 1.0, 0.0, 0.0, 2.0, 1.0])
  y = np.array([1, 0, 1, 0, 1, 0])
  assert bc.binary_auroc(z, y) == pytest.approx(metrics.roc_auc_score(y, z))
  assert bc.average_precision(z, y) == pytest.approx(metrics.average_precision_score(y, z))
  assert np.isnan(bc.binary_auroc(z, np.ones(6)))
  assert np.isnan(bc.average_precision(z, np.zeros(6)))
  assert bc.average_precision(z, np.ones(6)) == 1.0


def test_ece_forms_agree_with_the_multiclass_functions_and_the_bins():
  z, y = _sample(np.random.default_rng(3), 2000)
  p = special.expit(z)
  m = bc.binary_calibration_metrics(z, y, num_bins=10)
  two_class = np.stack([1 - p, p], axis=1)
  assert m["top_label_ece"] == pytest.approx(
      calibration.expected_calibration_error(two_class, y, 10), abs=1e-12)
  bins = bc.binary_reliability_bins(p, y, 10)
  filled = bins.count > 0
  assert m["ece"] == pytest.approx(np.sum(
      bins.count[filled] / len(z) * np.abs(bins.accuracy[filled] - bins.mean_confidence[filled])))
  # Brier is half the multi-class Brier of [1 - p, p]; NLL the softmax NLL of [0, z].
  assert m["brier"] == pytest.approx(calibration.brier_score(two_class, y) / 2)
  assert m["nll"] == pytest.approx(
      calibration.negative_log_likelihood(np.stack([0 * z, z], axis=1), y))


def test_nll_is_exact_for_large_logits():
  m = bc.binary_calibration_metrics(np.array([1000.0, -1000.0, 1000.0, 40.0]), [1, 0, 0, 1])
  assert m["nll"] == pytest.approx((0 + 0 + 1000 + np.log1p(np.exp(-40.0))) / 4, rel=1e-12)
  assert np.isfinite(list(m.values())).all()


def _null_ece_scale(p, index, num_bins):
  """E[ECE] of a calibrated predictor, to first order: Σ_m E|N(0, V_m)| / n."""
  variance = np.bincount(index, weights=p * (1 - p), minlength=num_bins)
  return np.sum(np.sqrt(2 / np.pi * variance)) / len(p)


def test_ece_of_calibrated_predictor_is_within_binomial_noise():
  rng = np.random.default_rng(4)
  n, num_bins = 20000, 15
  p = rng.random(n)
  y = (rng.random(n) < p).astype(np.int64)
  z = special.logit(p)
  m = bc.binary_calibration_metrics(z, y, num_bins)
  edges = np.linspace(0, 1, num_bins + 1)
  width_index = np.clip(np.searchsorted(edges, p) - 1, 0, num_bins - 1)
  mass_index = np.empty(n, np.int64)
  mass_index[np.argsort(p, kind="stable")] = np.arange(n) * num_bins // n
  assert m["ece"] < 3 * _null_ece_scale(p, width_index, num_bins)  # 3 × 0.0086; ECE 0.0058 here.
  assert m["adaptive_ece"] < 3 * _null_ece_scale(p, mass_index, num_bins)
  assert m["top_label_ece"] < 0.03
  assert abs(m["mean_probability"] - m["positive_rate"]) < 4 * np.sqrt(0.25 / n)
  # Overconfident by a factor 2: far outside that noise.
  assert bc.binary_calibration_metrics(2 * z, y, num_bins)["ece"] > 0.05


@pytest.mark.parametrize("true_temperature", [0.5, 2.0])
def test_temperature_recovers_a_known_temperature(true_temperature):
  rng = np.random.default_rng(5)
  z = rng.normal(0.5, 3.0, 20000)
  y = (rng.random(len(z)) < special.expit(z / true_temperature)).astype(np.int64)
  fit = bc.fit_binary_temperature_checked(z, y)
  assert not fit.at_bound
  assert fit.temperature == pytest.approx(true_temperature, rel=0.05)
  # The NLL minimizer, by an independent 1-D search.
  reference = optimize.minimize_scalar(lambda t: _nll(z / t, y), bounds=(0.05, 20),
                                       method="bounded", options={"xatol": 1e-10})
  assert fit.temperature == pytest.approx(reference.x, rel=1e-6)
  assert bc.fit_binary_temperature(z, y) == fit.temperature


def test_temperature_degenerate_fits_are_flagged():
  z = np.array([-3.0, -1.0, 2.0, 4.0])
  low = bc.fit_binary_temperature_checked(z, [0, 0, 1, 1])  # Separated by the sign of z.
  high = bc.fit_binary_temperature_checked(50 * z, [1, 1, 0, 0])  # All wrong by a large margin.
  assert low == calibration.TemperatureFit(calibration.TEMPERATURE_BOUNDS[0], True)
  assert high == calibration.TemperatureFit(calibration.TEMPERATURE_BOUNDS[1], True)


def test_platt_recovers_known_parameters_and_matches_logistic_regression():
  rng = np.random.default_rng(6)
  a_true, b_true = 0.6, -0.8
  z = rng.normal(1.0, 3.0, 20000)
  y = (rng.random(len(z)) < special.expit(a_true * z + b_true)).astype(np.int64)
  fit = bc.fit_platt(z, y)
  assert not fit.at_bound
  assert fit.a == pytest.approx(a_true, abs=0.03) and fit.b == pytest.approx(b_true, abs=0.05)
  model = linear_model.LogisticRegression(C=1e12, tol=1e-12, max_iter=10_000).fit(z[:, None], y)
  assert fit.a == pytest.approx(model.coef_[0, 0], rel=1e-6)
  assert fit.b == pytest.approx(model.intercept_[0], rel=1e-6, abs=1e-8)
  # Platt contains temperature scaling (b = 0), so it never fits the validation NLL worse.
  temperature = bc.fit_binary_temperature(z, y)
  assert _nll(bc.apply_platt(z, fit.a, fit.b), y) <= _nll(z / temperature, y) + 1e-12
  np.testing.assert_allclose(bc.apply_platt(z, 1 / temperature, 0.0), z / temperature)


def test_platt_target_smoothing_matches_scipy_on_platts_targets():
  assert bc.platt_targets([1, 1, 0]).tolist() == [0.75, 0.75, 1 / 3]
  rng = np.random.default_rng(7)
  z, y = _sample(rng, 40, scale=3.0)
  t = bc.platt_targets(y)
  reference = optimize.minimize(
      lambda ab: np.mean(np.logaddexp(0, ab[0] * z + ab[1]) - t * (ab[0] * z + ab[1])),
      x0=[1.0, 0.0], method="BFGS", options={"gtol": 1e-12})
  smoothed = bc.fit_platt(z, y, target_smoothing=True)
  np.testing.assert_allclose([smoothed.a, smoothed.b], reference.x, rtol=1e-5, atol=1e-7)
  plain = bc.fit_platt(z, y)
  assert abs(smoothed.a) < abs(plain.a)  # The smoothed targets pull towards 1/2.


def test_platt_is_equivariant_to_affine_logits():
  z, y = _sample(np.random.default_rng(8), 500)
  fit = bc.fit_platt(z, y)
  moved = bc.fit_platt(4.0 * z - 7.0, y)
  assert moved.a == pytest.approx(fit.a / 4, rel=1e-6)
  assert moved.b == pytest.approx(fit.b + 7 * fit.a / 4, rel=1e-6, abs=1e-8)


def test_platt_on_separated_data_is_flagged_or_smoothed():
  z = np.array([-2.0, -1.0, 1.0, 3.0])
  fit = bc.fit_platt(z, [0, 0, 1, 1])
  assert fit.at_bound and fit.a == pytest.approx(bc.PLATT_SLOPE_BOUND)
  assert -fit.b / fit.a == pytest.approx(0.0, abs=1e-6)  # p = 1/2 halfway across the gap.
  reversed_fit = bc.fit_platt(z, [1, 1, 0, 0])
  assert reversed_fit.at_bound and reversed_fit.a == pytest.approx(-bc.PLATT_SLOPE_BOUND)
  smoothed = bc.fit_platt(z, [0, 0, 1, 1], target_smoothing=True)
  assert not smoothed.at_bound and 0 < smoothed.a < 10
  # One class: no unsmoothed fit, a finite smoothed one (a = 0 for constant logits).
  with pytest.raises(ValueError, match="both classes"):
    bc.fit_platt(z, [1, 1, 1, 1])
  assert bc.fit_platt(z, [1, 1, 1, 1], target_smoothing=True).at_bound is False
  assert bc.fit_platt(np.ones(4), [0, 1, 1, 1]) == bc.PlattFit(0.0, special.logit(0.75), False)


def test_accepts_jax_low_precision_and_boolean_labels():
  z, y = _sample(np.random.default_rng(9), 200)
  m_bf16 = bc.binary_calibration_metrics(jnp.asarray(z, jnp.bfloat16), jnp.asarray(y, bool))
  m_ref = bc.binary_calibration_metrics(np.asarray(jnp.asarray(z, jnp.bfloat16), np.float64), y)
  assert m_bf16 == m_ref
  assert bc.binary_calibration_metrics(z, y.astype(np.float32)) == bc.binary_calibration_metrics(
      z, y)


_Z, _Y = np.array([0.5, -1.0, 2.0]), np.array([1, 0, 1])


@pytest.mark.parametrize("call", [
    lambda z, y: bc.binary_calibration_metrics(z, y),
    lambda z, y: bc.binary_auroc(z, y),
    lambda z, y: bc.average_precision(z, y),
    lambda z, y: bc.fit_binary_temperature(z, y),
    lambda z, y: bc.fit_platt(z, y),
    lambda z, y: bc.binary_reliability_bins(np.where(np.isfinite(z), special.expit(z), z), y),
], ids=["metrics", "auroc", "ap", "temperature", "platt", "bins"])
@pytest.mark.parametrize("logits,labels,match", [
    (_Z, [1, 0, 2], r"labels must be in \{0, 1\}: labels\[2\] = "),
    (_Z, [1, 0, 0.9], r"labels must be in \{0, 1\}"),
    (_Z, [1, 0, np.nan], r"labels must be in \{0, 1\}"),
    (_Z, ["1", "0", "1"], "labels must be numeric"),
    (_Z, [1, 0], "shape"),
    (_Z[:, None], _Y, "shape"),
    (_Z[:0], _Y[:0], "shape"),
    (np.array([0.5, np.nan, 2.0]), _Y, r"\[1\] = nan"),
    (np.array([0.5, -np.inf, 2.0]), _Y, "must be"),
])
def test_bad_input_gets_one_line(call, logits, labels, match):
  with pytest.raises(ValueError, match=match) as error:
    call(logits, labels)
  assert "\n" not in str(error.value)


def test_bad_num_bins_and_probabilities():
  with pytest.raises(ValueError, match="num_bins must be >= 1, got 0"):
    bc.binary_calibration_metrics(_Z, _Y, num_bins=0)
  with pytest.raises(ValueError, match="num_bins"):
    bc.binary_reliability_bins(special.expit(_Z), _Y, num_bins=0)
  with pytest.raises(ValueError, match=r"probs must be probabilities P\(y=1\) in \[0, 1\]"):
    bc.binary_reliability_bins(_Z, _Y)  # Logits passed as probabilities.
