"""Seed statistics a reader can check: means with t confidence intervals, paired comparisons.

Runs that differ only in their seed are independent draws of one experiment; a group of them gets
its mean, sample standard deviation (ddof=1), n and a Student-t confidence interval of the mean.
Two methods run on the same seeds share init and data order, so they are compared pairwise by seed
(a paired t-test: Student 1908; `scipy.stats.ttest_rel` semantics), which removes the seed-to-seed
variance both share. A seeded percentile bootstrap of the mean paired difference (Efron &
Tibshirani 1993, ch. 13) is offered for metrics far from normal (e.g. ECE, bounded below by 0).

Degenerate samples are reported, not papered over: with n = 1 the spread is unknown, and with zero
spread (every value, or every paired difference, identical) the t interval has no scale. Both give
NaN for the std (n = 1 only), the interval and the p-value, never a zero-width interval or p = 0.
"""
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats


class GroupSummary(NamedTuple):
  """Mean, sample std (ddof=1), count and t confidence interval of the mean of one group."""
  mean: float
  std: float
  n: int
  ci_low: float
  ci_high: float


class PairedComparison(NamedTuple):
  """`a - b` paired by position: mean difference, its t interval, the paired t-test p-value."""
  mean_difference: float
  ci_low: float
  ci_high: float
  p_value: float
  n: int


def _sample(name: str, values: ArrayLike) -> np.ndarray:
  values = np.asarray(values, dtype=np.float64)
  if values.ndim != 1 or values.size == 0:
    raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers, got shape "
                     f"{values.shape}.")
  if not np.isfinite(values).all():
    raise ValueError(f"{name} must be finite, got {values[~np.isfinite(values)][0]}.")
  return values


def _check_confidence(confidence: float) -> None:
  if not 0 < confidence < 1:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}.")


def _t_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
  """`mean ± t_{(1+c)/2, n-1} · std/√n`; NaN when n < 2 or the values have no spread."""
  n = len(values)
  if n < 2 or np.ptp(values) == 0:
    return np.nan, np.nan
  low, high = stats.t.interval(confidence, n - 1, loc=values.mean(), scale=stats.sem(values))
  return float(low), float(high)


def summarize(values: ArrayLike, confidence: float = 0.95) -> GroupSummary:
  """Mean, std (ddof=1), n and the Student-t confidence interval of the mean.

  The interval is `mean ± t_{(1+c)/2, n-1} · s/√n` (as `scipy.stats.t.interval(c, n-1, mean,
  sem)`). n = 1 gives NaN std and interval; identical values give std 0 and a NaN interval.

  Raises:
    ValueError: on an empty, non-1-D or non-finite sample, or confidence outside (0, 1).
  """
  _check_confidence(confidence)
  values = _sample("values", values)
  std = float(values.std(ddof=1)) if len(values) > 1 else np.nan
  return GroupSummary(float(values.mean()), std, len(values), *_t_interval(values, confidence))


def paired_comparison(a: ArrayLike, b: ArrayLike, confidence: float = 0.95) -> PairedComparison:
  """Paired comparison of `a - b` (same seed at the same position in both).

  The mean difference `d̄`, its t interval `d̄ ± t_{(1+c)/2, n-1} · s_d/√n`, and the two-sided
  p-value of the paired t-test `t = d̄ / (s_d/√n)` with n - 1 degrees of freedom, as
  `scipy.stats.ttest_rel(a, b)` (equivalently `ttest_1samp(a - b, 0)`). With n = 1, or with all
  differences equal (s_d = 0, where scipy would give t = ±inf, p = 0 or 0/0), the interval and
  p-value are NaN: the data say nothing about the spread.

  Raises:
    ValueError: if `a` and `b` differ in length, or on a bad sample or confidence.
  """
  _check_confidence(confidence)
  a, b = _sample("a", a), _sample("b", b)
  if a.shape != b.shape:
    raise ValueError(f"paired samples must have the same length, got {len(a)} and {len(b)}.")
  differences = a - b
  ci_low, ci_high = _t_interval(differences, confidence)
  p_value = np.nan if np.isnan(ci_low) else float(stats.ttest_rel(a, b).pvalue)
  return PairedComparison(float(differences.mean()), ci_low, ci_high, p_value, len(a))


def paired_bootstrap_interval(
    a: ArrayLike, b: ArrayLike, confidence: float = 0.95, num_resamples: int = 10_000,
    seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap interval of the mean paired difference `mean(a - b)`.

  Resamples whole pairs (seeds) with replacement `num_resamples` times with
  `np.random.default_rng(seed)` and takes the `(1-c)/2` and `(1+c)/2` quantiles of the resampled
  means (`scipy.stats.bootstrap(..., paired=True, method='percentile')`). Needs no normality, but
  with few seeds it is too narrow: prefer the t interval below ~10 pairs. NaN with n = 1 or with
  all differences equal, as for the t interval.

  Raises:
    ValueError: as `paired_comparison`, or on `num_resamples < 1`.
  """
  _check_confidence(confidence)
  a, b = _sample("a", a), _sample("b", b)
  if a.shape != b.shape:
    raise ValueError(f"paired samples must have the same length, got {len(a)} and {len(b)}.")
  if num_resamples < 1:
    raise ValueError(f"num_resamples must be >= 1, got {num_resamples}.")
  if len(a) < 2 or np.ptp(a - b) == 0:
    return np.nan, np.nan
  result = stats.bootstrap(
      (a, b), lambda x, y, axis: np.mean(x - y, axis=axis), paired=True, vectorized=True,
      n_resamples=num_resamples, confidence_level=confidence, method="percentile",
      rng=np.random.default_rng(seed))
  return float(result.confidence_interval.low), float(result.confidence_interval.high)
