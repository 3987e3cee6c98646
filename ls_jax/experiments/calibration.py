"""Experiment 4, calibration: every method of the calibration sweep, with and without temperature
scaling fitted on validation.

Sweep: configs/sweeps/calibration.py; its points are the report's columns (CE, LS 0.1, CP 0.1,
Mixup 0.2, Focal 3.0), each labelled by the method table. Each method is paired with CE by seed,
and each "+ TS" with the same runs before scaling.
"""
from typing import Any

import numpy as np

from ls_jax.experiments import runs as runs_lib
from ls_jax.trainer import methods

METRICS = ("ece", "adaptive_ece", "nll", "brier")
SWEEP = "configs/sweeps/calibration.py"
MUELLER_2019_TABLE_3 = (
    "| Müller et al. 2019, Table 3 (ECE, 15 bins) | without | TS | LS |\n"
    "|---|---|---|---|\n"
    "| CIFAR-100 ResNet-56 | 0.150 | 0.021 (T = 1.9) | 0.024 (a = 0.05) |\n"
    "| ImageNet Inception-v4 | 0.071 | 0.022 (T = 1.4) | 0.035 (a = 0.1) |")


def pooled_reliability(bins: list[dict[str, list]]) -> dict[str, np.ndarray]:
  """Reliability bins (results.json's `reliability`) pooled over runs: counts add, and each bin's
  accuracy and mean confidence are the count-weighted means (NaN for a bin empty in every run)."""
  edges = np.asarray(bins[0]["edges"], dtype=np.float64)
  for b in bins:
    if not np.array_equal(np.asarray(b["edges"], dtype=np.float64), edges):
      raise ValueError("reliability bins with different edges cannot be pooled")
  count = np.array([b["count"] for b in bins], dtype=np.float64)
  def weighted(name):
    values = np.array([[np.nan if v is None else v for v in b[name]] for b in bins], np.float64)
    total = np.nansum(np.where(count > 0, values, 0.0) * count, axis=0)
    return np.divide(total, count.sum(0), out=np.full(len(edges) - 1, np.nan),
                     where=count.sum(0) > 0)
  return {"edges": edges, "accuracy": weighted("accuracy"),
          "mean_confidence": weighted("mean_confidence"), "count": count.sum(0)}


def report(runs: list[runs_lib.Run], sweep: str = SWEEP) -> runs_lib.Report:
  """Each point of `sweep` (CE first), also after temperature scaling fitted on validation.

  A point without finished runs is named in the report, not an error, unless it is CE.
  """
  variants, diagrams, names, missing = [], {}, [], []
  for point in runs_lib.sweep_points(sweep):
    members = runs_lib.matching(runs, point)
    if not members:
      missing.append(", ".join(f"{k}={v}" for k, v in point.items()) or methods.BASELINE)
      continue
    name = methods.label(members[0]["config"])
    runs_lib.one_group(members, name)
    names.append(name)
    variants += [runs_lib.Variant(name, members),
                 runs_lib.Variant(f"{name} + TS", members, "temperature_scaled.{}")]
    diagrams[name] = pooled_reliability([r["reliability"] for r in members])
    diagrams[f"{name} + TS"] = pooled_reliability(
        [r["reliability_temperature_scaled"] for r in members])
  if methods.BASELINE not in names:
    raise ValueError(f"no finished CE runs of {sweep} among the runs: nothing to compare with")
  metrics = tuple(runs_lib.BY_NAME[m] for m in ("accuracy",) + METRICS)
  comparisons = [(v.label, methods.BASELINE) for v in variants if v.label != methods.BASELINE]
  comparisons += [(f"{n} + TS", n) for n in names if n != methods.BASELINE]
  rows = runs_lib.variant_rows(variants, metrics, comparisons)
  temperature = runs_lib.variant_rows(variants[::2], (runs_lib.BY_NAME["temperature"],), [])
  sections = [
      "## Test metrics, mean [95% CI] over seeds (TS: T fitted on validation only)\n\n"
      + runs_lib.wide_table(rows + temperature, list(METRICS) + ["temperature"]),
      "## Paired differences with CE (without TS)\n\n" + runs_lib.difference_table(
          [r for r in rows if r["baseline"] == methods.BASELINE], list(METRICS)),
      "## What TS adds to each method (paired, same runs)\n\n" + runs_lib.difference_table(
          [r for r in rows if r["group"].endswith("+ TS") and r["baseline"] != methods.BASELINE],
          list(METRICS)),
      "## Published beside ours\n\n" + MUELLER_2019_TABLE_3,
      "Reliability diagrams pool the test predictions of every seed (bin counts add).",
      runs_lib.every_row_section(rows + temperature)]
  if missing:
    sections.insert(1, f"Points of {sweep} without finished runs (not shown): "
                    + "; ".join(missing) + ".")
  return runs_lib.Report(rows + temperature, sections, {"reliability": diagrams},
                         [r for v in variants[::2] for r in v.runs])


MIN_ALPHA = 0.15  # An almost empty bin stays visible.


def plot(figures: dict[str, Any]) -> dict[str, Any]:
  """Each method's column: its pooled reliability diagram without TS on top, with TS below, each
  over its bins' counts; a bin of fewer than `plots.MIN_COUNT` pooled examples is grey and hatched
  and carries no point (the rule of scripts/plot_calibration.py, from the same helper)."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from ls_jax.experiments import plots  # pylint: disable=g-import-not-at-top
  diagrams = figures["reliability"]
  names = list(diagrams)
  columns = len(names) // 2
  figure = plt.figure(figsize=(3.1 * columns, 8.4), layout="constrained")
  outer = figure.add_gridspec(2, columns)
  first = first_counts = None
  for i, name in enumerate(names):
    row, column = i % 2, i // 2  # Without TS on top, with TS below.
    inner = outer[row, column].subgridspec(2, 1, height_ratios=[3, 1])
    ax = figure.add_subplot(inner[0], sharex=first, sharey=first)
    counts_ax = figure.add_subplot(inner[1], sharex=ax, sharey=first_counts)
    first, first_counts = first or ax, first_counts or counts_ax
    plots.reliability(ax, diagrams[name], counts_ax=counts_ax, points=True, min_alpha=MIN_ALPHA)
    ax.set_title(name, fontsize=10)
    plots.label_grid_cell(ax, counts_ax, first_column=column == 0,
                          xlabel="confidence (15 bins)", ylabel="accuracy")
  first.set(xlim=(0, 1), ylim=(0, 1))
  handles, labels = first.get_legend_handles_labels()
  figure.legend(handles, labels, loc="outside lower center", fontsize=8, frameon=False,
                ncol=min(len(handles), max(2, columns)))
  return {"reliability": figure}
