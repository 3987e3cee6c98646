"""Experiment 2, strength: where does label smoothing start to hurt accuracy?

Sweep: configs/sweeps/strength.py. Accuracy, NLL, ECE and mean confidence against the smoothing
strength a, each a paired with CE by seed, and the first a above the accuracy peak whose accuracy
is significantly below the peak's.
"""
from typing import Any, NamedTuple

import numpy as np

from ls_jax import statistics
from ls_jax.experiments import runs as runs_lib
from ls_jax.trainer import methods

METRICS = ("accuracy", "nll", "ece", "mean_confidence")
STRENGTH = methods.LABEL_SMOOTHING


class AccuracyDrop(NamedTuple):
  """peak: the strength with the highest mean accuracy; comparisons: (a, a - peak) for every other
  a; first_drop: the smallest a above the peak whose CI of the difference lies below 0, or None."""
  peak: float
  comparisons: list[tuple[float, statistics.PairedComparison]]
  first_drop: float | None


def accuracy_drop(accuracy: dict[float, dict[int, float]]) -> AccuracyDrop:
  """Where accuracy falls significantly below its peak as the smoothing strength grows.

  Args:
    accuracy: `{a: {seed: accuracy}}`.

  Each a is compared with the peak pairwise on their common seeds; the first drop is the smallest
  a above the peak with the whole 95% CI of `acc(a) - acc(peak)` below 0.
  """
  if not accuracy:
    raise ValueError("accuracy_drop needs at least one strength")
  peak = max(accuracy, key=lambda a: (np.mean(list(accuracy[a].values())), -a))
  comparisons = []
  for a in sorted(accuracy):
    if a == peak:
      continue
    common = sorted(set(accuracy[a]) & set(accuracy[peak]))
    if common:
      comparisons.append((a, statistics.paired_comparison([accuracy[a][s] for s in common],
                                                          [accuracy[peak][s] for s in common])))
  first_drop = next((a for a, c in comparisons if a > peak and c.ci_high < 0), None)
  return AccuracyDrop(peak, comparisons, first_drop)


def by_strength(runs: list[runs_lib.Run]) -> dict[float, list[runs_lib.Run]]:
  """The runs of plain label smoothing (CE at a = 0) by a; runs with any other method of the table
  are left out."""
  by_a = {}
  for run in runs:
    if all(m is STRENGTH for m in methods.active(run["config"])):
      by_a.setdefault(float(runs_lib.value(run, STRENGTH.field)), []).append(run)
  return by_a


def report(runs: list[runs_lib.Run]) -> runs_lib.Report:
  """Accuracy, NLL, ECE and mean confidence against a; where accuracy drops below its peak."""
  by_a = by_strength(runs)
  if not by_a:
    raise ValueError("no runs of plain label smoothing or CE among the runs")
  strengths = sorted(by_a)
  variants = [runs_lib.Variant(methods.label(by_a[a][0]["config"]),
                               runs_lib.one_group(by_a[a], f"a={a:g}")) for a in strengths]
  label = {a: v.label for a, v in zip(strengths, variants)}
  metrics = tuple(runs_lib.BY_NAME[m] for m in METRICS + ("adaptive_ece", "brier"))
  baseline = label.get(0.0)
  rows = runs_lib.variant_rows(variants, metrics, [(v.label, baseline) for v in variants
                                                   if baseline and v.label != baseline])
  accuracy = {a: runs_lib.values_by_seed(by_a[a], runs_lib.BY_NAME["accuracy"]) for a in strengths}
  drop = accuracy_drop(accuracy)
  peak = label[drop.peak]
  for a, _ in drop.comparisons:
    rows.append(runs_lib.row(label[a], runs_lib.BY_NAME["accuracy"], accuracy[a], f"peak {peak}",
                             accuracy[drop.peak]))
  num_classes = int(runs_lib.value(runs[0], "num_classes"))
  if drop.first_drop is None:
    verdict = (f"No significant drop below the peak ({peak}) was detected at any larger a "
               f"(n={min(len(v) for v in accuracy.values())} seeds per strength).")
  else:
    verdict = (f"Accuracy peaks at {peak}; the first larger a whose accuracy is significantly "
               f"below the peak (95% CI of the paired difference below 0) is a = "
               f"{drop.first_drop:g}.")
  drop_rows = [r for r in rows if r["baseline"] == f"peak {peak}"]
  sections = [
      "## Mean [95% CI] over seeds\n\n" + runs_lib.wide_table(rows, list(METRICS)),
      f"## Where does accuracy drop?\n\n{verdict}\n\n"
      + runs_lib.difference_table(drop_rows, ["accuracy"]),
      f"Training-confidence ceiling: 1 - a + a/K with K = {num_classes}: the most confident "
      f"prediction that minimizes the smoothed loss.",
      "## Paired differences with CE\n\n" + (runs_lib.difference_table(
          [r for r in rows if r["baseline"] == baseline], list(METRICS)) if baseline else
                                            "No CE run (a = 0) among the runs: nothing to pair."),
      runs_lib.every_row_section(rows)]
  labels = [v.label for v in variants]
  figures = {"strength": {"a": np.array(strengths), "num_classes": num_classes,
                          "first_drop": drop.first_drop, "peak": drop.peak,
                          **{m: runs_lib.series(rows, m, labels) for m in METRICS}}}
  return runs_lib.Report(rows, sections, figures, [r for v in variants for r in v.runs])


def plot(figures: dict[str, Any]) -> dict[str, Any]:
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from ls_jax.experiments.plots import errorbar  # pylint: disable=g-import-not-at-top
  data = figures["strength"]
  figure, axes = plt.subplots(1, 4, figsize=(15, 3.6), layout="constrained")
  a = data["a"]
  for ax, metric in zip(axes, METRICS):
    errorbar(ax, a, data[metric], color="C0", label="ours, mean and 95% CI")
    ax.set_xlabel("label smoothing a")
    ax.set_ylabel(f"test {metric.replace('_', ' ')}")
    ax.grid(alpha=0.3)
  grid = np.linspace(0, a.max(), 100)
  axes[3].plot(grid, 1 - grid + grid / data["num_classes"], color="C3", ls="--",
               label=f"training ceiling 1 - a + a/K (K={data['num_classes']})")
  if data["first_drop"] is not None:
    axes[0].axvline(data["first_drop"], color="C3", lw=1, ls=":",
                    label=f"first significant drop below peak (a={data['first_drop']:g})")
  axes[0].axvline(data["peak"], color="C2", lw=1, ls=":", label=f"peak (a={data['peak']:g})")
  for ax in (axes[0], axes[3]):  # Below the panel, where it hides no point.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2))
  return {"strength": figure}
