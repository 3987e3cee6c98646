#!/usr/bin/env python
"""Reliability diagrams and confidence histograms of finished runs, in a grid.

  python scripts/plot_calibration.py runs/ce runs/ls --out calibration.png
  python scripts/plot_calibration.py runs/ce_seed0 runs/ce_seed1 --min-count 50

Reads `<workdir>/results.json` (its `reliability` bins, Guo et al. 2017: 15 equal-width bins of
top-1 confidence on the test split) and draws, for each run, the accuracy of each confidence bin
against the diagonal of perfect calibration, with the fraction of examples per bin underneath;
the temperature-scaled bins are drawn as a step line. Label smoothing pulls the bars left
(lower confidence), as in Müller et al. 2019, Fig. 3.

Reading it at a glance:
- each title names the run: its workdir's name, then the method (`methods.label`), its seed and
  the config fields that differ between the runs shown (`LS 0.1, seed 1`), then its metrics;
- the number above each bar of the histogram is the bin's count of test examples;
- a bin of fewer than --min-count examples (default 30: the binomial standard error of its
  accuracy can reach 0.5 / sqrt(30) = 0.09) is too small to judge: it is grey and hatched, and
  the temperature-scaled line is broken at each of its own bins that is that small, instead of
  jumping to the 0 or 1 of a bin of one or two examples;
- a bar's opacity is the share of examples in its bin relative to the fullest bin, so a bin of 2
  examples is a faint outline, not a full bar;
- up to 3 runs per row; all panels share their axes, and the histograms share one y-scale;
- one legend, below the grid, where it covers no bar.

Flags: --out FILE (default calibration.png); --min-count N (default 30; 0 judges every bin).
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
from ls_jax.experiments import plots  # pylint: disable=g-import-not-at-top
from ls_jax.trainer import default_config, methods  # pylint: disable=g-import-not-at-top

MAX_COLUMNS = 3
# The fields that `methods.label` already spells out (`LS 0.1`, `20% symmetric noise: CE`): the
# method table's, and the label noise.
LABELLED_FIELDS = (*methods.FIELDS, "data.label_noise.rate", "data.label_noise.kind")
BAR_COLOR = np.array([0.298, 0.447, 0.690])  # #4C72B0
MIN_ALPHA = 0.08  # An almost empty bin stays visible as an outline plus a trace of fill.


def differing_fields(configs: list[dict[str, Any]]) -> list[str]:
  """Dotted config fields whose values are not the same in every run, in the first run's order."""
  flat = [default_config.resolved(c) for c in configs]  # An older run's missing fields: defaults.
  names = list(dict.fromkeys(name for c in configs for name in default_config.flatten(c)))
  return [n for n in names if len({json.dumps(f.get(n), sort_keys=True) for f in flat}) > 1]


def run_label(config: dict[str, Any], fields: list[str]) -> str:
  """The method and the seed, then each differing field that these do not already show."""
  flat = default_config.resolved(config)
  extra = [f"{name} {flat.get(name)}" for name in fields
           if name not in LABELLED_FIELDS and name != "seed"]
  return ", ".join([methods.label(config), f"seed {flat.get('seed')}", *extra])


def _binary(results: dict[str, Any]) -> bool:
  return methods.value(results["config"], "num_classes") == 1


def draw(axes_top, axes_bottom, results: dict[str, Any], label: str,
         min_count: int = plots.MIN_COUNT) -> dict[str, Any]:
  """One run's reliability diagram and count histogram; returns what `plots.reliability` drew."""
  drawn = plots.reliability(axes_top, results["reliability"], counts_ax=axes_bottom,
                            scaled=results["reliability_temperature_scaled"], min_count=min_count,
                            color=BAR_COLOR, min_alpha=MIN_ALPHA)
  # A binary run's bins are of P(y = 1) against the frequency of y = 1 (`binary_calibration`).
  mean = (f"P(y=1) {results['mean_probability']:.3f}" if _binary(results)
          else f"conf {results['mean_confidence']:.3f}")
  axes_top.set_title(f"{label}\nacc {results['accuracy']:.3f}  ECE {results['ece']:.3f}  "
                     f"{mean}  T {results['temperature']:.2f}", fontsize=9)
  return drawn


def plot(runs: list[dict[str, Any]], names: list[str] | None = None,
         min_count: int = plots.MIN_COUNT) -> plt.Figure:
  """One reliability diagram over one count histogram per run, up to 3 runs per row.

  `names` (the runs' workdir names) open the titles; `min_count` is the smallest bin judged.
  """
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
    first_reliability = first_reliability or reliability
    first_histogram = first_histogram or histogram
    label = run_label(results["config"], fields)
    draw(reliability, histogram, results, f"{names[index]}\n{label}" if names else label, min_count)
    binary = _binary(results)
    plots.label_grid_cell(reliability, histogram, first_column=column == 0,
                          xlabel="predicted P(y = 1)" if binary else "top-1 confidence",
                          ylabel="frequency of y = 1" if binary else "accuracy")
  first_reliability.set(xlim=(0, 1), ylim=(0, 1))
  handles, labels = first_reliability.get_legend_handles_labels()
  figure.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
  return figure


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdirs", nargs="+", type=pathlib.Path)
  parser.add_argument("--out", default="calibration.png")
  parser.add_argument("--min-count", type=int, default=plots.MIN_COUNT,
                      help="bins of fewer test examples are greyed and break the lines "
                      f"(default {plots.MIN_COUNT})")
  args = parser.parse_args()
  runs = [json.loads((w / "results.json").read_text()) for w in args.workdirs]
  names = [w.resolve().name for w in args.workdirs]
  plot(runs, names, args.min_count).savefig(args.out, dpi=120)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
