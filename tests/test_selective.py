"""Selective classification in ls_jax.calibration: hand-computed cases, brute force, sklearn."""
import itertools

import numpy as np
import pytest
from scipy import special
from sklearn import metrics

from ls_jax import calibration


def brute_force_curve(confidence, correct):
  """Risk at each k, averaged over every order sorting `confidence` descending (ties permuted)."""
  n = len(confidence)
  orders = [o for o in itertools.permutations(range(n))
            if all(confidence[o[i]] >= confidence[o[i + 1]] for i in range(n - 1))]
  risks = [[np.mean(~correct[list(o[:k])]) for k in range(1, n + 1)] for o in orders]
  return np.mean(risks, axis=0)


def test_hand_computed_without_ties():
  confidence = np.array([0.6, 0.9, 0.7, 0.8])  # Sorted: 0.9 ok, 0.8 wrong, 0.7 ok, 0.6 wrong.
  correct = np.array([False, True, True, False])
  curve = calibration.risk_coverage_curve(confidence, correct)
  np.testing.assert_allclose(curve.coverage, [0.25, 0.5, 0.75, 1.0])
  np.testing.assert_allclose(curve.risk, [0, 1 / 2, 1 / 3, 2 / 4])
  np.testing.assert_allclose(calibration.area_under_risk_coverage(confidence, correct),
                             (0 + 1 / 2 + 1 / 3 + 1 / 2) / 4)
  # Correct over wrong pairs: (0.9 > 0.8, 0.9 > 0.6, 0.7 < 0.8, 0.7 > 0.6) -> 3 of 4.
  assert calibration.misclassification_auroc(confidence, correct) == 0.75


def test_hand_computed_with_ties():
  # 0.9 ok, then a tie block {0.7 ok, 0.7 wrong}, then 0.5 wrong. Inside the block the second point
  # expects half an error: risk (0 + 1/2) / 2.
  confidence = np.array([0.7, 0.9, 0.5, 0.7])
  correct = np.array([True, True, False, False])
  curve = calibration.risk_coverage_curve(confidence, correct)
  np.testing.assert_allclose(curve.risk, [0, 0.25, 1 / 3, 0.5])
  np.testing.assert_allclose(calibration.area_under_risk_coverage(confidence, correct),
                             (0 + 0.25 + 1 / 3 + 0.5) / 4)
  # Pairs (correct, wrong): (0.7, 0.5) 1, (0.7, 0.7) 1/2, (0.9, 0.5) 1, (0.9, 0.7) 1 -> 3.5 / 4.
  assert calibration.misclassification_auroc(confidence, correct) == 3.5 / 4


@pytest.mark.parametrize("seed", range(6))
def test_curve_matches_brute_force_over_tie_orders(seed):
  rng = np.random.default_rng(seed)
  n = 7
  confidence = rng.choice([0.2, 0.5, 0.5001, 0.9, 1.0], size=n)  # Many ties.
  correct = rng.random(n) < 0.6
  expected = brute_force_curve(confidence, correct)
  curve = calibration.risk_coverage_curve(confidence, correct)
  np.testing.assert_allclose(curve.risk, expected, rtol=1e-12)
  np.testing.assert_allclose(calibration.area_under_risk_coverage(confidence, correct),
                             expected.mean(), rtol=1e-12)
  # The input order does not matter.
  perm = rng.permutation(n)
  np.testing.assert_allclose(
      calibration.risk_coverage_curve(confidence[perm], correct[perm]).risk, curve.risk)


def test_aurc_against_the_trapezoid_convention():
  # Xia et al.'s notebooks: trapz over (0, 0), (k/n, risk_k); that is AURC - risk(1) / (2n).
  rng = np.random.default_rng(3)
  confidence, correct = rng.random(50), rng.random(50) < 0.7
  curve = calibration.risk_coverage_curve(confidence, correct)
  trapezoid = np.trapezoid(np.r_[0, curve.risk], np.r_[0, curve.coverage])
  np.testing.assert_allclose(calibration.area_under_risk_coverage(confidence, correct),
                             trapezoid + np.mean(~correct) / (2 * 50), rtol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_sklearn(seed):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(300, 10)) * 3
  labels = rng.integers(0, 10, size=300)
  logits[np.arange(300), labels] += rng.normal(1.5, 1.0, size=300)
  probs = special.softmax(logits, axis=1)
  confidence = np.round(probs.max(axis=1), 2)  # Rounded: ties across correct and wrong.
  correct = probs.argmax(axis=1) == labels
  np.testing.assert_allclose(calibration.misclassification_auroc(confidence, correct),
                             metrics.roc_auc_score(correct, confidence), rtol=1e-12)


def test_perfect_and_worst_rankings():
  correct = np.array([True] * 6 + [False] * 4)
  good = np.linspace(1, 0.1, 10)  # Every correct one above every wrong one.
  assert calibration.misclassification_auroc(good, correct) == 1
  assert calibration.misclassification_auroc(-good, correct) == 0
  curve = calibration.risk_coverage_curve(good, correct)
  np.testing.assert_allclose(curve.risk[:6], 0)
  assert calibration.area_under_risk_coverage(good, correct) < calibration.area_under_risk_coverage(
      -good, correct)
  assert np.isnan(calibration.misclassification_auroc(good, np.ones(10, bool)))


def test_bad_inputs():
  with pytest.raises(ValueError, match="boolean"):
    calibration.risk_coverage_curve([0.5, 0.6], [1, 0])
  with pytest.raises(ValueError, match="same shape"):
    calibration.area_under_risk_coverage([0.5, 0.6], [True])
  with pytest.raises(ValueError, match="p must be >= 1, got 0.5"):
    calibration.normalized_logits(np.zeros((2, 3)), 0.5)


def test_normalized_logits_formula_and_invariances():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(20, 5))
  for p in (1, 2, 3.5, np.inf):
    centred = logits - logits.mean(axis=1, keepdims=True)
    norm = (np.abs(centred) ** p).sum(axis=1, keepdims=True) ** (1 / p) if np.isfinite(p) else (
        np.abs(centred).max(axis=1, keepdims=True))
    np.testing.assert_allclose(calibration.normalized_logits(logits, p), centred / norm)
    # Invariant to shifting and to positive scaling of each row; argmax unchanged.
    np.testing.assert_allclose(calibration.max_logit_pnorm(3 * logits + 7, p),
                               calibration.max_logit_pnorm(logits, p))
  np.testing.assert_array_equal(calibration.normalized_logits(logits, 2).argmax(1),
                                logits.argmax(1))
  np.testing.assert_array_equal(calibration.normalized_logits(np.ones((1, 4)), 2), 0)


def test_fit_logit_norm_p_picks_the_lowest_validation_aurc():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(200, 10)) * rng.uniform(0.5, 5, size=(200, 1))
  labels = rng.integers(0, 10, size=200)
  correct = logits.argmax(1) == labels
  grid = (1, 2, 4, 8)
  p = calibration.fit_logit_norm_p(logits, labels, grid)
  aurcs = {q: calibration.area_under_risk_coverage(calibration.max_logit_pnorm(logits, q), correct)
           for q in grid}
  assert aurcs[p] == min(aurcs.values())
