"""Calibration metrics and temperature scaling, in float64 NumPy on the host.

Inputs may be NumPy or JAX arrays of any float dtype; everything is converted to float64 first, so
binning is exact and the results do not depend on the accelerator's precision. `probs` is (n, K)
with rows summing to 1, `logits` is (n, K), `labels` is (n,) integer class indices. The prediction
is the top-1 class (`argmax`, first index on ties) and its confidence is the top-1 probability.

References:
  Guo et al. 2017, "On Calibration of Modern Neural Networks" (ECE, reliability diagrams,
    temperature scaling).
  Nguyen & O'Connor 2015, "Posterior Calibration and Exploratory Analysis for Natural Language
    Processing Models"; Mukhoti et al. 2020, "Calibrating Deep Neural Networks using Focal Loss"
    (equal-mass, adaptive ECE).
  Brier 1950, "Verification of Forecasts Expressed in Terms of Probability".
  Müller et al. 2019, "When Does Label Smoothing Help?" (LS versus temperature scaling).
"""
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

# Temperature search interval: wide enough for the T ≈ 0.9 of a label-smoothed model (Mukhoti 2020)
# and the T ≈ 2 of an overconfident one (Guo 2017); a fitted T at either end flags a degenerate fit.
TEMPERATURE_BOUNDS = (0.01, 100.0)


class ReliabilityBins(NamedTuple):
  """Equal-width bins of top-1 confidence: what a reliability diagram draws.

  Attributes:
    edges: (num_bins + 1,) bin edges, `linspace(0, 1, num_bins + 1)`.
    mean_confidence: (num_bins,) mean top-1 confidence in each bin; NaN where the bin is empty.
    accuracy: (num_bins,) fraction of correct top-1 predictions in each bin; NaN where empty.
    count: (num_bins,) number of examples in each bin.
  """
  edges: np.ndarray
  mean_confidence: np.ndarray
  accuracy: np.ndarray
  count: np.ndarray


def _as_scores_and_labels(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  """float64 (n, K) probabilities or logits and (n,) labels, checked."""
  scores = np.asarray(scores, dtype=np.float64)
  labels = np.asarray(labels)
  if scores.ndim != 2 or labels.shape != scores.shape[:1] or scores.shape[0] == 0:
    raise ValueError(
        f"Expected scores of shape (n, K) with n > 0 and labels of shape (n,), got {scores.shape} "
        f"and {labels.shape}.")
  return scores, labels


def _as_probabilities(probs: ArrayLike) -> np.ndarray:
  """float64 (n, K) probabilities; rows that are not distributions are an error.

  Logits passed by mistake would otherwise give plausible-looking numbers (an "ECE" of 4.68). Rows
  must be nonnegative and sum to 1 within 1e-3, which a float32 softmax meets, or within 1e-2 for
  16-bit floats (bfloat16 keeps 8 significant bits, so its rows are off by up to ~4e-3). The check
  is one pass over the array, on the host.
  """
  probs = np.asarray(probs)
  tolerance = 1e-2 if probs.dtype.itemsize <= 2 else 1e-3
  probs = probs.astype(np.float64, copy=False)
  if probs.ndim != 2 or probs.shape[0] == 0:
    raise ValueError(f"Expected probs of shape (n, K) with n > 0, got {probs.shape}.")
  row_sums = probs.sum(axis=1)
  # `not <=` also catches NaN rows.
  bad = ~((np.abs(row_sums - 1.0) <= tolerance) & (probs.min(axis=1) >= 0.0))
  if bad.any():
    row = int(np.argmax(bad))
    raise ValueError(
        f"probs row {row} is not a probability distribution (sum {row_sums[row]:.4g}, smallest "
        f"entry {probs[row].min():.4g}): pass softmax(logits), or call "
        "calibration_metrics(logits, labels).")
  return probs


def _as_probabilities_and_labels(
    probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  """`_as_probabilities`, and (n,) labels matching them."""
  return _as_scores_and_labels(_as_probabilities(probs), labels)


def _confidence_and_correct(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Top-1 confidence and whether the top-1 class is the label, per example."""
  return probs.max(axis=1), probs.argmax(axis=1) == labels


def _check_num_bins(num_bins: int) -> None:
  if num_bins < 1:
    raise ValueError(f"num_bins must be >= 1, got {num_bins}.")


def _equal_width_bin_index(confidence: np.ndarray, edges: np.ndarray) -> np.ndarray:
  """Index m with `edges[m] < c <= edges[m+1]`: bins are (lower, upper], as in Guo et al. 2017.

  `searchsorted(side='left')` compares against the stored edges exactly, so a confidence equal to an
  edge goes to the bin below it and 1.0 goes to the last bin. The clip keeps a confidence a
  rounding error above 1 (rows sum to 1 only within a tolerance) in the last bin.
  """
  return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, len(edges) - 2)


def reliability_bins(probs: ArrayLike, labels: ArrayLike, num_bins: int = 15) -> ReliabilityBins:
  """Per-bin mean confidence, accuracy and count over equal-width (lower, upper] confidence bins."""
  probs, labels = _as_probabilities_and_labels(probs, labels)
  return confidence_reliability_bins(*_confidence_and_correct(probs, labels), num_bins)


def confidence_reliability_bins(
    confidence: ArrayLike, correct: ArrayLike, num_bins: int = 15) -> ReliabilityBins:
  """`reliability_bins` from each prediction's top-1 confidence and correctness (for predictions
  whose probability vectors are too large to keep, such as a language model's next tokens)."""
  _check_num_bins(num_bins)
  confidence, correct = _checked_confidence_and_correct(confidence, correct)
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  index = _equal_width_bin_index(confidence, edges)
  count = np.bincount(index, minlength=num_bins)
  with np.errstate(invalid="ignore", divide="ignore"):  # Empty bins give 0/0 = NaN, on purpose.
    mean_confidence = np.bincount(index, weights=confidence, minlength=num_bins) / count
    accuracy = np.bincount(index, weights=correct, minlength=num_bins) / count
  return ReliabilityBins(edges, mean_confidence, accuracy, count)


def _calibration_error_of_bins(
    confidence: np.ndarray, correct: np.ndarray, index: np.ndarray, num_bins: int) -> float:
  """`Σ_m |B_m|/n · |acc(B_m) - conf(B_m)| = Σ_m |Σ_{i∈B_m} (correct_i - conf_i)| / n`.

  The per-bin sums avoid dividing by empty bins.
  """
  gap = np.bincount(index, weights=correct - confidence, minlength=num_bins)
  return float(np.abs(gap).sum() / len(confidence))


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, num_bins: int = 15) -> float:
  """Expected calibration error over equal-width confidence bins (Guo et al. 2017, §2).

  `ECE = Σ_m |B_m|/n · |acc(B_m) - conf(B_m)|`, with bins `B_m` = examples whose top-1 confidence is
  in `(m/M, (m+1)/M]`. 15 bins is the usual setting (Guo 2017,
  Müller 2019).
  """
  probs, labels = _as_probabilities_and_labels(probs, labels)
  return confidence_calibration_error(*_confidence_and_correct(probs, labels), num_bins)


def confidence_calibration_error(
    confidence: ArrayLike, correct: ArrayLike, num_bins: int = 15) -> float:
  """`expected_calibration_error` from each prediction's top-1 confidence and correctness."""
  _check_num_bins(num_bins)
  confidence, correct = _checked_confidence_and_correct(confidence, correct)
  index = _equal_width_bin_index(confidence, np.linspace(0.0, 1.0, num_bins + 1))
  return _calibration_error_of_bins(confidence, correct, index, num_bins)


def _checked_confidence_and_correct(
    confidence: ArrayLike, correct: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  confidence, correct = np.asarray(confidence, np.float64), np.asarray(correct)
  if confidence.ndim != 1 or correct.shape != confidence.shape or not len(confidence):
    raise ValueError(f"Expected confidence and correct of the same shape (n,) with n > 0, got "
                     f"{confidence.shape} and {correct.shape}.")
  return confidence, correct.astype(np.float64)


def adaptive_calibration_error(probs: ArrayLike, labels: ArrayLike, num_bins: int = 15) -> float:
  """ECE over equal-mass bins (Nguyen & O'Connor 2015; "AdaECE" in Mukhoti et al. 2020).

  Same formula as `expected_calibration_error`, but the examples sorted by confidence are split into
  `num_bins` contiguous groups whose sizes differ by at most one, so every bin has ≈ n/M examples
  and the crowded high-confidence region of a modern network gets resolved. Ties in confidence are
  kept in input order (stable sort), so the result is deterministic.
  """
  _check_num_bins(num_bins)
  probs, labels = _as_probabilities_and_labels(probs, labels)
  confidence, correct = _confidence_and_correct(probs, labels)
  order = np.argsort(confidence, kind="stable")
  index = np.empty(len(confidence), dtype=np.int64)
  # Rank r of n goes to bin floor(r·M/n): the same split as np.array_split up to which bins get the
  # extra example.
  index[order] = np.arange(len(confidence)) * num_bins // len(confidence)
  return _calibration_error_of_bins(confidence, correct, index, num_bins)


def mean_confidence(probs: ArrayLike) -> float:
  """Mean top-1 probability; its gap to the accuracy is the overall over/under-confidence."""
  probs = _as_probabilities(probs)
  return float(probs.max(axis=1).mean())


def negative_log_likelihood(logits: ArrayLike, labels: ArrayLike) -> float:
  """Mean negative log-likelihood `-(1/n) Σ_i log softmax(z_i)_{y_i}`, in float64."""
  logits, labels = _as_scores_and_labels(logits, labels)
  log_probs = special.log_softmax(logits, axis=1)
  return float(-np.take_along_axis(log_probs, labels[:, None], axis=1).mean())


def brier_score(probs: ArrayLike, labels: ArrayLike) -> float:
  """Multi-class Brier score `(1/n) Σ_i Σ_k (p_ik - y_ik)²` with one-hot y (Brier 1950).

  It ranges over [0, 2]; a uniform prediction scores (K-1)/K.
  """
  probs, labels = _as_probabilities_and_labels(probs, labels)
  one_hot = np.eye(probs.shape[1])[labels]
  return float(((probs - one_hot) ** 2).sum(axis=1).mean())


def _nll_slope_in_inverse_temperature(
    logits: np.ndarray, labels: np.ndarray, inverse_temperature: float) -> float:
  """`d NLL/dβ = (1/n) Σ_i Σ_k p_ik (z_ik - z_iy_i)` with `p_i = softmax(β z_i)`.

  Written with logit gaps to the label, so a confidently correct example contributes tiny terms
  instead of the difference of two large numbers. It is nondecreasing in β, because the NLL is
  convex in β: its second derivative is the mean variance of z_i under p_i.
  """
  gaps = logits - np.take_along_axis(logits, labels[:, None], axis=1)
  probs = special.softmax(inverse_temperature * logits, axis=1)
  # A masked class (logit -inf) has p = 0 at every T; skip it rather than form 0·(-inf) = NaN.
  terms = np.multiply(probs, gaps, out=np.zeros_like(gaps), where=probs > 0)
  return float(terms.sum(axis=1).mean())


class TemperatureFit(NamedTuple):
  """A fitted temperature, and whether the fit ended on a bound of `TEMPERATURE_BOUNDS` (the data
  do not bound the optimum: a degenerate fit, not a measurement)."""
  temperature: float
  at_bound: bool


def fit_temperature_checked(logits: ArrayLike, labels: ArrayLike) -> TemperatureFit:
  """`fit_temperature`, and whether the result is a bound of `TEMPERATURE_BOUNDS`."""
  temperature = fit_temperature(logits, labels)
  return TemperatureFit(temperature, temperature in TEMPERATURE_BOUNDS)


def fit_temperature(logits: ArrayLike, labels: ArrayLike) -> float:
  """The temperature T > 0 minimizing the mean NLL of `softmax(logits / T)` (Guo et al. 2017, §4.2).

  `T* = argmin_T -(1/n) Σ_i log softmax(z_i / T)_{y_i}`. T > 1 softens an overconfident model;
  a model trained with label smoothing is often underconfident and gets T < 1 (Mukhoti et al. 2020).
  Dividing logits by T does not change the argmax, so accuracy is unchanged.

  The NLL is convex in β = 1/T, so its minimizer is where the exact slope `d NLL/dβ` changes sign.
  We bisect on log β over `TEMPERATURE_BOUNDS` in float64: the log keeps T positive and gives equal
  resolution to T < 1 and T > 1, and bisection cannot diverge. When the data do not bound the
  optimum, the result is a bound: every example correct with a large margin (the NLL keeps falling
  as T -> 0, or is flat at 0 in float64) gives the lower bound, every example wrong with a large
  margin gives the upper one; a T at a bound flags a degenerate fit (`fit_temperature_checked`
  says which). An interior optimum is never returned as exactly a bound.

  Fit T on a held-out validation split, never on the test split it is evaluated on. T minimizes NLL,
  not ECE: the NLL-optimal T can raise the ECE, so report both.

  Args:
    logits: (n, K) logits of the validation split.
    labels: (n,) integer labels of the validation split.

  Returns:
    The fitted temperature, a Python float in `TEMPERATURE_BOUNDS`.
  """
  logits, labels = _as_scores_and_labels(logits, labels)
  # Bracket of log β = -log T; the invariant is slope(lo) <= 0 < slope(hi), unless at a bound.
  lo, hi = -np.log(TEMPERATURE_BOUNDS[1]), -np.log(TEMPERATURE_BOUNDS[0])
  if _nll_slope_in_inverse_temperature(logits, labels, np.exp(lo)) > 0:
    return TEMPERATURE_BOUNDS[1]
  if _nll_slope_in_inverse_temperature(logits, labels, np.exp(hi)) <= 0:
    return TEMPERATURE_BOUNDS[0]
  while hi - lo > 1e-12:
    mid = 0.5 * (lo + hi)
    # A slope of exactly 0 from underflow counts as still descending, towards the smaller T.
    if _nll_slope_in_inverse_temperature(logits, labels, np.exp(mid)) <= 0:
      lo = mid
    else:
      hi = mid
  return float(np.exp(-0.5 * (lo + hi)))


def calibration_metrics(
    logits: ArrayLike, labels: ArrayLike, num_bins: int = 15) -> dict[str, float]:
  """Accuracy, NLL, ECE, adaptive ECE, Brier score and mean confidence of `softmax(logits)`.

  Returns:
    dict with keys 'accuracy', 'nll', 'ece', 'adaptive_ece', 'brier', 'mean_confidence'.
  """
  logits, labels = _as_scores_and_labels(logits, labels)
  probs = special.softmax(logits, axis=1)
  return {
      "accuracy": float(np.mean(probs.argmax(axis=1) == labels)),
      "nll": negative_log_likelihood(logits, labels),
      "ece": expected_calibration_error(probs, labels, num_bins),
      "adaptive_ece": adaptive_calibration_error(probs, labels, num_bins),
      "brier": brier_score(probs, labels),
      "mean_confidence": mean_confidence(probs),
  }


# Selective classification: rank predictions by a confidence score and abstain on the least
# confident. References:
#   Geifman & El-Yaniv 2017, "Selective Classification for Deep Neural Networks" (risk-coverage).
#   Geifman, Uziel & El-Yaniv 2019, "Bias-Reduced Uncertainty Estimation for Deep Neural
#     Classifiers", ICLR (AURC as the mean selective risk over coverages k/n, k = 1..n).
#   Hendrycks & Gimpel 2017, "A Baseline for Detecting Misclassified and Out-of-Distribution
#     Examples" (AUROC of max-softmax for correct versus wrong).
#   Cattelan & Silva 2024, "How to Fix a Broken Confidence Estimator: Evaluating Post-hoc Methods
#     for Selective Classification with Deep Neural Networks", UAI (MaxLogit-pNorm), the
#     normalisation Xia et al. 2025, "Towards Understanding Why Label Smoothing Degrades Selective
#     Classification and How to Fix It", ICLR, §5, apply to label-smoothed models.


class RiskCoverage(NamedTuple):
  """The risk-coverage curve at coverages k/n, k = 1..n.

  Attributes:
    coverage: (n,) `k/n`: the fraction of examples accepted, most confident first.
    risk: (n,) selective risk at that coverage: the (expected, see `risk_coverage_curve`) fraction
      of errors among the k accepted examples.
  """
  coverage: np.ndarray
  risk: np.ndarray


def _confidence_and_errors(
    confidence: ArrayLike, correct: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  confidence = np.asarray(confidence, dtype=np.float64)
  correct = np.asarray(correct)
  if confidence.ndim != 1 or confidence.size == 0 or correct.shape != confidence.shape:
    raise ValueError(
        f"Expected confidence and correct of the same shape (n,) with n > 0, got "
        f"{confidence.shape} and {correct.shape}.")
  if correct.dtype != np.bool_:
    raise ValueError(f"correct must be a boolean array, got dtype {correct.dtype}.")
  if np.isnan(confidence).any():
    raise ValueError(f"confidence has NaN at index {int(np.argmax(np.isnan(confidence)))}.")
  return confidence, ~correct


def risk_coverage_curve(confidence: ArrayLike, correct: ArrayLike) -> RiskCoverage:
  """Selective risk at every coverage k/n, accepting the k most confident predictions.

  Sort by confidence, descending; the risk at coverage k/n is (errors among the first k) / k
  (Geifman & El-Yaniv 2017). Ties: examples with equal confidence form one block that a threshold
  can only accept or reject whole, so no order inside it is better founded than another. Inside a
  block the curve takes the expectation over all orders of the block: with j examples accepted
  before a block of m holding e errors, the k-th point (j < k <= j + m) counts
  `errors_before + (k - j) * e / m` errors. At the end of every block the point is exact, and the
  result does not depend on the input order.

  Args:
    confidence: (n,) any score where higher means "more likely correct" (max-softmax,
      `max_logit_pnorm`, ...).
    correct: (n,) boolean, whether each prediction is right.

  Returns:
    `RiskCoverage` with coverage `k/n` and risk for k = 1..n.
  """
  confidence, errors = _confidence_and_errors(confidence, correct)
  n = len(confidence)
  order = np.argsort(-confidence, kind="stable")
  sorted_confidence, sorted_errors = confidence[order], errors[order].astype(np.float64)
  # Tie blocks: start index of the block of each position, and the block sizes and error counts.
  new_block = np.concatenate([[True], sorted_confidence[1:] != sorted_confidence[:-1]])
  block_of = np.cumsum(new_block) - 1
  starts = np.flatnonzero(new_block)
  sizes = np.diff(np.append(starts, n))
  block_errors = np.add.reduceat(sorted_errors, starts)
  errors_before = np.concatenate([[0.0], np.cumsum(block_errors)[:-1]])
  k = np.arange(1, n + 1)
  inside = k - starts[block_of]  # 1..m within each block.
  expected_errors = errors_before[block_of] + inside * block_errors[block_of] / sizes[block_of]
  return RiskCoverage(k / n, expected_errors / k)


def area_under_risk_coverage(confidence: ArrayLike, correct: ArrayLike) -> float:
  """AURC: the mean selective risk over coverages k/n, k = 1..n (Geifman et al. 2019, §2).

  `AURC = (1/n) Σ_k risk(k/n)` with `risk_coverage_curve`'s tie convention: a right-endpoint
  Riemann sum over coverage, not trapezoidal integration from coverage 0. (Xia et al. 2025's
  notebooks use `trapz` with a risk-0 point prepended at coverage 0 and no tie handling, which
  is lower by exactly `risk(1) / (2n)`, the error rate over 2n, when there are no ties.)
  Lower is better; even a perfect ranking of error rate r scores about
  `r + (1 - r) ln(1 - r)` (large n), not 0.
  """
  return float(risk_coverage_curve(confidence, correct).risk.mean())


def misclassification_auroc(confidence: ArrayLike, correct: ArrayLike) -> float:
  """AUROC of `confidence` separating correct (positive) from wrong predictions.

  The Mann-Whitney form: the probability that a random correct prediction is more confident than a
  random wrong one, ties counted 1/2 (Hendrycks & Gimpel 2017). From average ranks:
  `(Σ ranks of correct - n₊(n₊+1)/2) / (n₊ n₋)`. NaN when every prediction is right, or every one
  is wrong: there is nothing to separate.
  """
  confidence, errors = _confidence_and_errors(confidence, correct)
  num_correct, num_wrong = int((~errors).sum()), int(errors.sum())
  if num_correct == 0 or num_wrong == 0:
    return float("nan")
  from scipy import stats  # pylint: disable=g-import-not-at-top  # 0.3 s: only here.
  ranks = stats.rankdata(confidence)  # Average ranks: ties count 1/2.
  rank_sum = ranks[~errors].sum()
  return float((rank_sum - num_correct * (num_correct + 1) / 2) / (num_correct * num_wrong))


def normalized_logits(logits: ArrayLike, p: float) -> np.ndarray:
  """Centred logits divided by their p-norm: `(z - mean(z)) / ||z - mean(z)||_p`, per row.

  The logit normalisation of Cattelan & Silva 2024 (the argument of their MaxLogit-pNorm), which
  Xia et al. 2025 (§5) apply post hoc to recover the selective classification that label smoothing
  degrades; the same form as their released code (`norm_logits(logits, p, add_unit="mean")` in
  ENSTA-U2IS-AI/Label-smoothing-Selective-classification-Code, `torch_uncertainty_ls/utils.py`),
  whose confidence is the max of the normalised logits (`max_logit_pnorm`). Centring makes it
  invariant to adding a constant to all logits, the norm to scaling them, so only the shape of
  the logit vector is left. Argmax (the prediction) is unchanged. A row
  of equal logits has norm 0 and is returned as zeros.

  Args:
    logits: (n, K) logits.
    p: the norm's order, `p >= 1` (`np.inf` allowed).
  """
  if not p >= 1:
    raise ValueError(f"p must be >= 1, got {p}.")
  logits = np.asarray(logits, dtype=np.float64)
  if logits.ndim != 2 or logits.shape[0] == 0:
    raise ValueError(f"Expected logits of shape (n, K) with n > 0, got {logits.shape}.")
  centred = logits - logits.mean(axis=1, keepdims=True)
  norm = np.linalg.norm(centred, ord=p, axis=1, keepdims=True)
  return np.divide(centred, norm, out=np.zeros_like(centred), where=norm > 0)


def max_logit_pnorm(logits: ArrayLike, p: float) -> np.ndarray:
  """Confidence `max_k (z_k - mean(z)) / ||z - mean(z)||_p`: MaxLogit-pNorm (Cattelan & Silva)."""
  return normalized_logits(logits, p).max(axis=1)


def fit_logit_norm_p(
    logits: ArrayLike, labels: ArrayLike, p_grid: tuple[float, ...] = tuple(range(1, 10))) -> float:
  """The p of `max_logit_pnorm` with the lowest AURC on held-out (validation) data.

  A grid search, as Cattelan & Silva's reference code (they search p = 0..9 and fall back to
  max-softmax when no p beats it; here p = 0, a count and not a norm, is left out, and so is the
  fallback: compare with max-softmax yourself). Fit on validation, never on test. Ties go to the
  smaller p.
  """
  logits = np.asarray(logits, dtype=np.float64)
  correct = logits.argmax(axis=1) == np.asarray(labels)
  scores = [area_under_risk_coverage(max_logit_pnorm(logits, p), correct) for p in p_grid]
  return float(p_grid[int(np.argmin(scores))])


def selective_metrics(confidence: ArrayLike, correct: ArrayLike) -> dict[str, float]:
  """`aurc` and `auroc` (misclassification AUROC) of one confidence score."""
  return {"aurc": area_under_risk_coverage(confidence, correct),
          "auroc": misclassification_auroc(confidence, correct)}
