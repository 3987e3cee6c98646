"""ls_jax.statistics against scipy, hand-computed cases and an exhaustive bootstrap."""
import itertools

import numpy as np
import pytest
from scipy import stats

from ls_jax import statistics


def test_summary_hand_computed():
  # mean 3, s = sqrt(2.5), sem = sqrt(0.5), t_{0.975, 4} = 2.7764451; half-width 1.9632...
  summary = statistics.summarize([1, 2, 3, 4, 5])
  assert summary.mean == 3 and summary.n == 5
  np.testing.assert_allclose(summary.std, np.sqrt(2.5), rtol=1e-12)
  half = 2.7764451051977987 * np.sqrt(0.5)
  np.testing.assert_allclose([summary.ci_low, summary.ci_high], [3 - half, 3 + half], rtol=1e-9)


@pytest.mark.parametrize("n", [2, 3, 10, 30])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_summary_matches_scipy_t_interval(n, confidence):
  values = np.random.default_rng(n).normal(0.9, 0.02, size=n)
  summary = statistics.summarize(values, confidence)
  expected = stats.t.interval(confidence, n - 1, loc=values.mean(), scale=stats.sem(values))
  np.testing.assert_allclose([summary.ci_low, summary.ci_high], expected, rtol=1e-12)
  np.testing.assert_allclose(summary.std, np.std(values, ddof=1), rtol=1e-12)


def test_summary_degenerate_samples_give_nan_not_zero():
  one = statistics.summarize([0.93])
  assert one.mean == 0.93 and one.n == 1
  assert np.isnan(one.std) and np.isnan(one.ci_low) and np.isnan(one.ci_high)
  flat = statistics.summarize([0.5, 0.5, 0.5])
  assert flat.std == 0 and np.isnan(flat.ci_low) and np.isnan(flat.ci_high)


def test_paired_hand_computed():
  # d = [1, 2, 3]: mean 2, s_d = 1, t = 2/(1/sqrt 3) = sqrt 12, df 2. For df = 2 the t CDF is
  # 1/2 + t/(2 sqrt(2 + t²)), so p = 1 - sqrt(12/14); t_{0.975, 2} = 4.3026527.
  result = statistics.paired_comparison([2, 4, 6], [1, 2, 3])
  assert result.mean_difference == 2 and result.n == 3
  np.testing.assert_allclose(result.p_value, 1 - np.sqrt(12 / 14), rtol=1e-9)
  half = 4.302652729749464 / np.sqrt(3)
  np.testing.assert_allclose([result.ci_low, result.ci_high], [2 - half, 2 + half], rtol=1e-9)


@pytest.mark.parametrize("n", [3, 10, 25])
def test_paired_matches_scipy(n):
  rng = np.random.default_rng(100 + n)
  b = rng.normal(0.9, 0.02, size=n)
  a = b + rng.normal(0.005, 0.01, size=n)  # Correlated, as two methods on the same seeds are.
  result = statistics.paired_comparison(a, b)
  np.testing.assert_allclose(result.p_value, stats.ttest_rel(a, b).pvalue, rtol=1e-10)
  np.testing.assert_allclose(result.p_value, stats.ttest_1samp(a - b, 0).pvalue, rtol=1e-10)
  d = a - b
  expected = stats.t.interval(0.95, n - 1, loc=d.mean(), scale=stats.sem(d))
  np.testing.assert_allclose([result.ci_low, result.ci_high], expected, rtol=1e-10)
  # The interval excludes 0 exactly when p < 0.05: the verdicts from both agree.
  assert (result.ci_low > 0 or result.ci_high < 0) == (result.p_value < 0.05)


def test_paired_degenerate_give_nan():
  # Constant non-zero differences: scipy says t = inf, p = 0; we refuse to claim certainty.
  constant = statistics.paired_comparison([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
  assert constant.mean_difference == 1
  assert np.isnan(constant.p_value) and np.isnan(constant.ci_low) and np.isnan(constant.ci_high)
  single = statistics.paired_comparison([1.0], [0.5])
  assert single.mean_difference == 0.5 and single.n == 1 and np.isnan(single.p_value)


def test_bad_inputs_are_one_line_errors():
  with pytest.raises(ValueError, match="same length, got 3 and 2"):
    statistics.paired_comparison([1, 2, 3], [1, 2])
  with pytest.raises(ValueError, match="non-empty"):
    statistics.summarize([])
  with pytest.raises(ValueError, match="finite, got nan"):
    statistics.summarize([1.0, np.nan])
  with pytest.raises(ValueError, match="confidence must be in"):
    statistics.summarize([1.0, 2.0], confidence=95)


def test_bootstrap_matches_exhaustive_bootstrap_distribution():
  # With n = 5 pairs there are 5^5 equally likely resamples: the exact bootstrap distribution of
  # the mean difference. The percentile interval must cut ~2.5% off each tail of it.
  d = np.array([0.013, -0.004, 0.021, 0.002, 0.009])
  b = np.full(5, 0.9)
  low, high = statistics.paired_bootstrap_interval(b + d, b, num_resamples=20_000, seed=1)
  exact = np.array([d[list(i)].mean() for i in itertools.product(range(5), repeat=5)])
  assert abs(np.mean(exact < low) - 0.025) < 0.01
  assert abs(np.mean(exact > high) - 0.025) < 0.01
  assert (low, high) == statistics.paired_bootstrap_interval(b + d, b, num_resamples=20_000, seed=1)


def test_bootstrap_close_to_t_interval_for_normal_differences():
  rng = np.random.default_rng(7)
  b = rng.normal(size=200)
  a = b + rng.normal(0.1, 1.0, size=200)
  low, high = statistics.paired_bootstrap_interval(a, b, seed=0)
  t = statistics.paired_comparison(a, b)
  np.testing.assert_allclose([low, high], [t.ci_low, t.ci_high], atol=0.03)


def test_bootstrap_degenerate_give_nan():
  assert np.isnan(statistics.paired_bootstrap_interval([1.0, 2.0], [0.0, 1.0])).all()
  assert np.isnan(statistics.paired_bootstrap_interval([1.0], [0.0])).all()
