#!/usr/bin/env python
"""Reliability diagrams and confidence histograms of finished runs, in a grid.

  python scripts/plot_calibration.py runs/ce runs/ls --out calibration.png

Reads `<workdir>/results.json` (its `reliability` bins, Guo et al. 2017: 15 equal-width bins of
top-1 confidence on the test split) and draws, for each run, the accuracy of each confidence bin
against the diagonal of perfect calibration, with the fraction of examples per bin underneath;
the temperature-scaled bins are drawn as an outline. Label smoothing pulls the bars left
(lower confidence), as in Müller et al. 2019, Fig. 3.

Reading it at a glance:
- each title names the method and the config fields that differ between the runs shown
  (`LS 0.1, seed 1`);
- a bar's opacity is the share of examples in its bin relative to the fullest bin, so a bin of 2
  examples is a faint outline, not a full bar;
- up to 3 runs per row; all panels share their axes, and the histograms share one y-scale;
- one legend, below the grid, where it covers no bar.
"""
import argparse
import json
import math
import pathlib
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from ls_jax.experiments import runs as runs_lib  # pylint: disable=g-import-not-at-top
from ls_jax.trainer import methods  # pylint: disable=g-import-not-at-top

MAX_COLUMNS = 3
# The fields that `methods.label` already spells out (`LS 0.1`, `20% symmetric noise: CE`): the
# method table's, and the label noise.
LABELLED_FIELDS = (*methods.FIELDS, "data.label_noise.rate", "data.label_noise.kind")
BAR_COLOR = np.array([0.298, 0.447, 0.690])  # #4C72B0
MIN_ALPHA = 0.08  # An almost empty bin stays visible as an outline plus a trace of fill.


def differing_fields(configs: list[dict[str, Any]]) -> list[str]:
  """Dotted config fields whose values are not the same in every run, in the first run's order."""
  flat = [runs_lib.resolved(c) for c in configs]  # An older run's missing fields: defaults.
  names = list(dict.fromkeys(name for c in configs for name in runs_lib.flatten(c)))
  return [n for n in names if len({json.dumps(f.get(n), sort_keys=True) for f in flat}) > 1]


def run_label(config: dict[str, Any], fields: list[str]) -> str:
  """The method, then each differing field that the method name does not already show."""
  flat = runs_lib.resolved(config)
  extra = [f"{name} {flat.get(name)}" for name in fields if name not in LABELLED_FIELDS]
  return ", ".join([methods.label(config), *extra])


def _accuracies(bins: dict[str, Any]) -> np.ndarray:
  return np.asarray([np.nan if a is None else a for a in bins["accuracy"]], float)


def draw(axes_top, axes_bottom, results: dict[str, Any], label: str) -> None:
  bins = results["reliability"]
  edges = np.asarray(bins["edges"])
  width = np.diff(edges)
  counts = np.asarray(bins["count"], float)
  # Opacity ∝ examples in the bin, relative to the fullest bin; the edge keeps the height readable.
  alpha = np.maximum(counts / counts.max(), MIN_ALPHA)
  axes_top.bar(edges[:-1], np.nan_to_num(_accuracies(bins)), width, align="edge",
               color=[(*BAR_COLOR, a) for a in alpha], edgecolor=BAR_COLOR, linewidth=0.6,
               label="accuracy per bin (opacity: share of examples)")
  # Empty bins stay NaN: gaps in the outline, not drops to zero.
  axes_top.step(edges[:-1], _accuracies(results["reliability_temperature_scaled"]), where="post",
                color="#DD8452", label="after temperature scaling")
  axes_top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
  axes_top.set_title(f"{label}\nacc {results['accuracy']:.3f}  ECE {results['ece']:.3f}  "
                     f"conf {results['mean_confidence']:.3f}  T {results['temperature']:.2f}",
                     fontsize=9)
  axes_bottom.bar(edges[:-1], counts / counts.sum(), width, align="edge", color="#55A868",
                  edgecolor="white")


def plot(runs: list[dict[str, Any]]) -> plt.Figure:
  """One reliability diagram over one confidence histogram per run, up to 3 runs per row."""
  columns = min(len(runs), MAX_COLUMNS)
  rows = math.ceil(len(runs) / columns)
  figure = plt.figure(figsize=(3.6 * columns, 4.6 * rows + 0.4), layout="constrained")
  outer = figure.add_gridspec(rows, columns)
  fields = differing_fields([r["config"] for r in runs])
  first_reliability = first_histogram = None
  for index, results in enumerate(runs):
    row, column = divmod(index, columns)
    inner = outer[row, column].subgridspec(2, 1, height_ratios=[3, 1])
    reliability = figure.add_subplot(inner[0], sharex=first_reliability, sharey=first_reliability)
    histogram = figure.add_subplot(inner[1], sharex=reliability, sharey=first_histogram)
    first_reliability, first_histogram = first_reliability or reliability, first_histogram or histogram
    draw(reliability, histogram, results, run_label(results["config"], fields))
    reliability.tick_params(labelbottom=False)
    histogram.set_xlabel("top-1 confidence")
    if column == 0:
      reliability.set_ylabel("accuracy")
      histogram.set_ylabel("fraction of\nexamples")
    else:
      reliability.tick_params(labelleft=False)
      histogram.tick_params(labelleft=False)
  first_reliability.set(xlim=(0, 1), ylim=(0, 1))
  handles, labels = first_reliability.get_legend_handles_labels()
  figure.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
  return figure


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdirs", nargs="+", type=pathlib.Path)
  parser.add_argument("--out", default="calibration.png")
  args = parser.parse_args()
  runs = [json.loads((w / "results.json").read_text()) for w in args.workdirs]
  plot(runs).savefig(args.out, dpi=120)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
