"""Binary calibration: metrics of P(y = 1), ranking metrics, and temperature / Platt scaling.

The binary counterpart of `ls_jax.calibration`, in float64 NumPy on the host. `logits` is (n,) the
logit of P(y = 1), so `p = sigmoid(z)`; `probs` is (n,) P(y = 1) in [0, 1]; `labels` is (n,) in
{0, 1} (bool, integer or float 0.0 / 1.0; soft labels are an error). The predicted class is 1 where
`z > 0` (`p > 0.5`; p = 0.5 predicts 0), as scikit-learn's `LogisticRegression.predict`.

Two reliability conventions exist for a binary model, and they differ:

* **P(y = 1) reliability** (`ece`, `adaptive_ece`, `binary_reliability_bins`): bin the predicted
  P(y = 1) over [0, 1] and compare each bin's mean P(y = 1) with its frequency of y = 1. It is what
  a decision at a threshold on p relies on, and it sees errors on both sides of 0.5 separately.
* **Top-label reliability** (`top_label_ece`): the multi-class ECE of Guo et al. 2017 applied to the
  two-class softmax `[1 - p, p]`: confidence `max(p, 1 - p)` against whether the thresholded
  prediction is right. Papers that treat a binary task as K = 2 report this one; its bins cover
  [0.5, 1] only, and a model that is overconfident on one class and underconfident on the other can
  cancel out in it.

References:
  Guo et al. 2017, "On Calibration of Modern Neural Networks" (ECE, temperature scaling).
  Platt 1999, "Probabilistic Outputs for Support Vector Machines and Comparisons to Regularized
    Likelihood Methods" (sigmoid fit `1 / (1 + exp(A f + B))` with smoothed targets).
  Lin, Lin & Weng 2007, "A note on Platt's probabilistic outputs for support vector machines".
  Nixon et al. 2019, "Measuring Calibration in Deep Learning" (static / adaptive, top-label /
    class-wise ECE).
  Mann & Whitney 1947; Hanley & McNeil 1982 (AUROC as the Mann-Whitney statistic).
"""
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from ls_jax import calibration
from ls_jax.calibration import ReliabilityBins, TemperatureFit

# |A| of a Platt fit is bounded by the largest inverse temperature `fit_temperature` can return
# (1 / 0.01 = 100): the slopes temperature scaling could reach, whatever the sign. A fit on the
# bound means the validation labels are (quasi-)separated by the logits, so the maximum-likelihood
# A is infinite: a degenerate fit, not a measurement (`PlattFit.at_bound`).
PLATT_SLOPE_BOUND = 1.0 / calibration.TEMPERATURE_BOUNDS[0]


def _as_binary_labels(labels: ArrayLike, n_shape: tuple[int, ...], name: str) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.shape != n_shape:
    raise ValueError(f"Expected {name} of shape (n,) with n > 0 and labels of the same shape, got "
                     f"{n_shape} and {labels.shape}.")
  if labels.dtype == np.bool_:
    return labels.astype(np.float64)
  if not np.issubdtype(labels.dtype, np.number):
    raise ValueError(f"labels must be numeric or boolean in {{0, 1}}, got dtype {labels.dtype}.")
  bad = ~((labels == 0) | (labels == 1))  # Also catches NaN and soft labels such as 0.9.
  if bad.any():
    i = int(np.argmax(bad))
    raise ValueError(f"labels must be in {{0, 1}}: labels[{i}] = {labels[i]!r}.")
  return labels.astype(np.float64)


def _as_logits_and_labels(logits: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  """float64 (n,) finite logits and (n,) float64 labels in {0, 1}, checked."""
  logits = np.asarray(logits, dtype=np.float64)
  if logits.ndim != 1 or logits.shape[0] == 0:
    raise ValueError(f"Expected logits of shape (n,) with n > 0 (the logit of P(y=1)), got "
                     f"{logits.shape}.")
  labels = _as_binary_labels(labels, logits.shape, "logits")
  if not np.isfinite(logits).all():
    i = int(np.argmax(~np.isfinite(logits)))
    raise ValueError(f"logits must be finite: logits[{i}] = {logits[i]}.")
  return logits, labels


def _as_probs_and_labels(probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  """float64 (n,) P(y = 1) in [0, 1] and (n,) float64 labels in {0, 1}, checked."""
  probs = np.asarray(probs, dtype=np.float64)
  if probs.ndim != 1 or probs.shape[0] == 0:
    raise ValueError(f"Expected probs of shape (n,) with n > 0 (P(y=1)), got {probs.shape}.")
  labels = _as_binary_labels(labels, probs.shape, "probs")
  bad = ~((probs >= 0.0) & (probs <= 1.0))  # `not` form: NaN is bad too.
  if bad.any():
    i = int(np.argmax(bad))
    raise ValueError(f"probs must be probabilities P(y=1) in [0, 1]: probs[{i}] = {probs[i]} "
                     "(pass sigmoid(logits)).")
  return probs, labels


def binary_reliability_bins(
    probs: ArrayLike, labels: ArrayLike, num_bins: int = 15) -> ReliabilityBins:
  """Equal-width (lower, upper] bins of P(y = 1) over [0, 1] (p = 0 goes to the first bin).

  The same `ReliabilityBins` as `calibration.reliability_bins`, so the same plotting works, with the
  fields read as: `mean_confidence` = mean predicted P(y = 1) in the bin, `accuracy` = observed
  frequency of y = 1 in the bin (NaN where empty), `count` = examples in the bin.
  """
  calibration._check_num_bins(num_bins)  # pylint: disable=protected-access
  probs, labels = _as_probs_and_labels(probs, labels)
  return calibration.confidence_reliability_bins(probs, labels, num_bins)


def _adaptive_error(probs: np.ndarray, outcome: np.ndarray, num_bins: int) -> float:
  """`calibration.adaptive_calibration_error`'s equal-mass bins (stable sort) on a 1-D score."""
  order = np.argsort(probs, kind="stable")
  index = np.empty(len(probs), dtype=np.int64)
  index[order] = np.arange(len(probs)) * num_bins // len(probs)
  return calibration._calibration_error_of_bins(  # pylint: disable=protected-access
      probs, outcome, index, num_bins)


def binary_auroc(scores: ArrayLike, labels: ArrayLike) -> float:
  """AUROC of `scores` (logits or P(y = 1): any increasing map gives the same value) for y = 1.

  The Mann-Whitney form: the probability that a random positive scores above a random negative,
  ties counting 1/2, from average ranks: `(Σ ranks of positives - n₊(n₊+1)/2) / (n₊ n₋)`; equal to
  `sklearn.metrics.roc_auc_score`. NaN when only one class is present (scikit-learn raises).
  Pass logits rather than probabilities: a float64 sigmoid rounds every z > 37 to exactly 1.0 and
  would turn distinct scores into ties.
  """
  scores, labels = _as_logits_and_labels(scores, labels)
  positive = labels == 1
  num_positive, num_negative = int(positive.sum()), int((~positive).sum())
  if num_positive == 0 or num_negative == 0:
    return float("nan")
  from scipy import stats  # pylint: disable=g-import-not-at-top  # 0.3 s: only here.
  rank_sum = stats.rankdata(scores)[positive].sum()
  return float((rank_sum - num_positive * (num_positive + 1) / 2) / (num_positive * num_negative))


def average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
  """Average precision `AP = Σ_n (R_n - R_{n-1}) P_n` (scikit-learn's definition, no interpolation).

  `P_n`, `R_n` are the precision and recall when predicting positive every example scoring at least
  the n-th distinct score, highest first (tied scores enter together), with `R_0 = 0`; equal to
  `sklearn.metrics.average_precision_score`. A random ranking scores about the positive rate, not
  0.5. NaN when there is no positive (recall is undefined). Pass logits, as for `binary_auroc`.
  """
  scores, labels = _as_logits_and_labels(scores, labels)
  if not labels.any():
    return float("nan")
  order = np.argsort(-scores, kind="stable")
  sorted_scores, sorted_labels = scores[order], labels[order]
  # The last index of each block of equal scores: one threshold per distinct score.
  last = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))
  true_positives = np.cumsum(sorted_labels)[last]
  precision = true_positives / (last + 1)
  recall = true_positives / true_positives[-1]
  return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def binary_calibration_metrics(
    logits: ArrayLike, labels: ArrayLike, num_bins: int = 15) -> dict[str, float]:
  """Calibration, accuracy and ranking metrics of `p = sigmoid(logits)` as P(y = 1).

  Args:
    logits: (n,) logits of P(y = 1), finite.
    labels: (n,) labels in {0, 1}.
    num_bins: bins of the two ECEs (15: Guo et al. 2017).

  Returns:
    dict of floats:
      'ece': ECE of P(y = 1) against the frequency of y = 1 over `num_bins` equal-width (lower,
        upper] bins of [0, 1] (the P(y = 1) reliability of `binary_reliability_bins`; not the
        top-label form).
      'top_label_ece': ECE of the top-label confidence `max(p, 1 - p)` against whether the
        prediction `p > 0.5` is right, equal-width bins of [0, 1] (the K = 2 form that papers
        report; `calibration.expected_calibration_error` of `[1 - p, p]`, except where p rounds
        to exactly 0.5 for a z > 0).
      'adaptive_ece': ECE of P(y = 1) over `num_bins` equal-mass bins (ties in input order).
      'brier': `mean (p - y)²`, in [0, 1]; half the multi-class `calibration.brier_score` of
        `[1 - p, p]` (scikit-learn's `brier_score_loss`).
      'nll': mean binary cross-entropy `mean softplus(z) - y z`, exact from the logits for any |z|
        (scikit-learn's `log_loss` clips p instead).
      'accuracy': fraction with `(z > 0) == y`.
      'auroc': `binary_auroc` (NaN with one class).
      'average_precision': `average_precision` (NaN with no positive).
      'mean_probability': mean P(y = 1).
      'positive_rate': frequency of y = 1 in `labels` (the base rate; `mean_probability` minus it
        is the calibration-in-the-large).
  """
  calibration._check_num_bins(num_bins)  # pylint: disable=protected-access
  logits, labels = _as_logits_and_labels(logits, labels)
  probs = special.expit(logits)
  predicted = (logits > 0).astype(np.float64)
  top_label_confidence = np.maximum(probs, 1.0 - probs)
  return {
      "ece": calibration.confidence_calibration_error(probs, labels, num_bins),
      "top_label_ece": calibration.confidence_calibration_error(
          top_label_confidence, predicted == labels, num_bins),
      "adaptive_ece": _adaptive_error(probs, labels, num_bins),
      "brier": float(np.mean((probs - labels) ** 2)),
      "nll": float(np.mean(np.logaddexp(0.0, logits) - labels * logits)),
      "accuracy": float(np.mean(predicted == labels)),
      "auroc": binary_auroc(logits, labels),
      "average_precision": average_precision(logits, labels),
      "mean_probability": float(probs.mean()),
      "positive_rate": float(labels.mean()),
  }


def _two_class_logits(logits: np.ndarray) -> np.ndarray:
  """`[0, z]`: `softmax([0, z])_1 = sigmoid(z)`, and dividing both by T gives `sigmoid(z / T)`."""
  return np.stack([np.zeros_like(logits), logits], axis=1)


def fit_binary_temperature(logits: ArrayLike, labels: ArrayLike) -> float:
  """The T > 0 minimizing the mean NLL of `sigmoid(logits / T)` on validation data.

  Exactly `calibration.fit_temperature` on the two-class logits `[0, z]` (same convex objective in
  1/T, same float64 bisection on log T over `calibration.TEMPERATURE_BOUNDS`, same bound on a
  degenerate fit, e.g. labels perfectly separated by the sign of z give the lower bound). Apply it
  as `logits / T`, or `apply_platt(logits, 1 / T, 0)`: temperature scaling is Platt scaling with
  B = 0. It keeps the decision `z > 0` and the ranking, so accuracy, AUROC and AP are unchanged.
  Fit on a validation split, never on the test split it is evaluated on.
  """
  logits, labels = _as_logits_and_labels(logits, labels)
  return calibration.fit_temperature(_two_class_logits(logits), labels.astype(np.int64))


def fit_binary_temperature_checked(logits: ArrayLike, labels: ArrayLike) -> TemperatureFit:
  """`fit_binary_temperature`, and whether the result is a bound of `TEMPERATURE_BOUNDS`."""
  logits, labels = _as_logits_and_labels(logits, labels)
  return calibration.fit_temperature_checked(_two_class_logits(logits), labels.astype(np.int64))


class PlattFit(NamedTuple):
  """A Platt fit `p = sigmoid(a z + b)`.

  Attributes:
    a: slope on the logit (Platt's paper writes `1 / (1 + exp(A f + B))`, so A = -a, B = -b).
    b: intercept.
    at_bound: |a| ended on `PLATT_SLOPE_BOUND`: the validation labels are (quasi-)separated by the
      logits and the unsmoothed maximum-likelihood slope is infinite; a degenerate fit.
  """
  a: float
  b: float
  at_bound: bool


def platt_targets(labels: ArrayLike) -> np.ndarray:
  """Platt's (1999) smoothed targets: `(N₊ + 1) / (N₊ + 2)` for y = 1 and `1 / (N₋ + 2)` for y = 0.

  The Bayes estimate of P(y | f) under a uniform prior, out of sample; with it the maximum-
  likelihood fit always exists, even on separated or single-class validation data.
  """
  labels = _as_binary_labels(labels, np.shape(labels), "labels")
  num_positive = labels.sum()
  num_negative = len(labels) - num_positive
  return np.where(labels == 1, (num_positive + 1) / (num_positive + 2), 1 / (num_negative + 2))


def fit_platt(logits: ArrayLike, labels: ArrayLike, *, target_smoothing: bool = False) -> PlattFit:
  """Platt scaling: the (a, b) minimizing the mean cross-entropy of `sigmoid(a z + b)` on validation.

  `(a, b) = argmin -(1/n) Σ_i [t_i log σ(a z_i + b) + (1 - t_i) log(1 - σ(a z_i + b))]`, a convex
  problem: logistic regression with the logit as its one feature and no penalty.

  Targets: by default (`target_smoothing=False`) `t = y`, the plain maximum-likelihood fit that
  minimizes the validation NLL, the objective of temperature scaling (which it contains, as
  b = 0); it is what `LogisticRegression(C=inf)` on the logit fits, and what most deep-learning
  papers call Platt scaling. `target_smoothing=True` uses Platt's original targets
  (`platt_targets`; also scikit-learn's `CalibratedClassifierCV(method="sigmoid")`), which pull
  the fit towards less extreme probabilities by O(1/N) and keep it finite on separated data. In a
  study of label smoothing, note that Platt's targets are themselves a (tiny, count-dependent)
  label smoothing of the validation labels.

  Solved in float64 with L-BFGS-B on the standardized logit, |a| <= `PLATT_SLOPE_BOUND`. Separated
  validation data without target smoothing end on the bound (`at_bound`), with the threshold
  `p = 0.5` about halfway across the gap between the classes. Constant logits give a = 0 and
  b = logit(mean t).

  Args:
    logits: (n,) validation logits of P(y = 1).
    labels: (n,) validation labels in {0, 1}; both classes unless `target_smoothing`.
    target_smoothing: use Platt's smoothed targets instead of the labels.

  Returns:
    `PlattFit(a, b, at_bound)`; apply with `apply_platt(logits, a, b)`.
  """
  logits, labels = _as_logits_and_labels(logits, labels)
  if not target_smoothing and labels.min() == labels.max():
    raise ValueError(f"fit_platt needs both classes in labels (all are {int(labels[0])}): the "
                     "unsmoothed intercept is infinite; pass target_smoothing=True.")
  targets = platt_targets(labels) if target_smoothing else labels
  mean, scale = logits.mean(), logits.std()
  if scale == 0:
    return PlattFit(0.0, float(special.logit(targets.mean())), False)
  x = (logits - mean) / scale

  def loss_and_grad(params):
    s = params[0] * x + params[1]
    residual = special.expit(s) - targets
    loss = np.mean(np.logaddexp(0.0, s) - targets * s)
    return loss, np.array([np.mean(residual * x), np.mean(residual)])

  bound = PLATT_SLOPE_BOUND * scale  # |a| <= PLATT_SLOPE_BOUND  <=>  |a'| <= bound on x.
  slope_bounds = (-bound, bound)
  start = np.array([min(1.0, bound), special.logit(targets.mean())])
  if not target_smoothing:
    # (Quasi-)separation: no maximum-likelihood slope exists, and the loss keeps falling along it
    # until its gradient underflows, wherever that happens. Put the slope on its bound and fit b
    # from the threshold halfway across the gap (where it stays if the gradient underflows).
    positives, negatives = x[labels == 1], x[labels == 0]
    for sign, low, high in ((1.0, negatives, positives), (-1.0, positives, negatives)):
      if low.max() <= high.min():
        slope_bounds = (sign * bound, sign * bound)
        start = np.array([sign * bound, -sign * bound * 0.5 * (low.max() + high.min())])
        break
  from scipy import optimize  # pylint: disable=g-import-not-at-top  # 0.3 s: only here.
  result = optimize.minimize(loss_and_grad, start, jac=True, method="L-BFGS-B",
                             bounds=[slope_bounds, (None, None)],
                             options={"ftol": 0.0, "gtol": 1e-12, "maxiter": 10_000})
  slope, intercept = result.x
  a = slope / scale
  b = intercept - slope * mean / scale
  return PlattFit(float(a), float(b), bool(abs(slope) >= bound * (1 - 1e-9)))


def apply_platt(logits: ArrayLike, a: float, b: float) -> np.ndarray:
  """Calibrated logits `a z + b` (float64); `sigmoid` of them is the calibrated P(y = 1).

  Logits, not probabilities, so they go straight into `binary_calibration_metrics`.
  """
  logits = np.asarray(logits, dtype=np.float64)
  return a * logits + b
