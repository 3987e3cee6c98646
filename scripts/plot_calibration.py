#!/usr/bin/env python
"""Reliability diagrams and confidence histograms of finished runs, side by side.

  python scripts/plot_calibration.py runs/ce runs/ls --out calibration.png

Reads `<workdir>/results.json` (its `reliability` bins, Guo et al. 2017: 15 equal-width bins of
top-1 confidence on the test split) and draws, for each run, the accuracy of each confidence bin
against the diagonal of perfect calibration, with the fraction of examples per bin underneath;
the temperature-scaled bins are drawn as an outline. Label smoothing pulls the bars left
(lower confidence), as in Müller et al. 2019, Fig. 3.
"""
import argparse
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from ls_jax.metrics_writer import method_name  # pylint: disable=g-import-not-at-top


def draw(axes_top, axes_bottom, results: dict) -> None:
  bins = results["reliability"]
  edges = np.asarray(bins["edges"])
  width = np.diff(edges)
  accuracy = np.asarray([np.nan if a is None else a for a in bins["accuracy"]])
  scaled = results["reliability_temperature_scaled"]
  scaled_accuracy = np.asarray([np.nan if a is None else a for a in scaled["accuracy"]])
  axes_top.bar(edges[:-1], np.nan_to_num(accuracy), width, align="edge", color="#4C72B0",
               edgecolor="white", label="accuracy")
  # Empty bins stay NaN: gaps in the outline, not drops to zero.
  axes_top.step(edges[:-1], scaled_accuracy, where="post", color="#DD8452",
                label=f"after TS (T={results['temperature']:.2f})")
  axes_top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
  axes_top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy",
               title=f"{method_name(results['config'])}\nacc {results['accuracy']:.3f}  ECE "
                     f"{results['ece']:.3f}  conf {results['mean_confidence']:.3f}")
  axes_top.legend(loc="upper left", fontsize=8, frameon=False)
  counts = np.asarray(bins["count"], float)
  axes_bottom.bar(edges[:-1], counts / counts.sum(), width, align="edge", color="#55A868",
                  edgecolor="white")
  axes_bottom.set(xlim=(0, 1), xlabel="top-1 confidence", ylabel="fraction of examples")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdirs", nargs="+", type=pathlib.Path)
  parser.add_argument("--out", default="calibration.png")
  args = parser.parse_args()
  runs = [json.loads((w / "results.json").read_text()) for w in args.workdirs]
  figure, axes = plt.subplots(2, len(runs), figsize=(4 * len(runs), 6), squeeze=False,
                              gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
  for column, results in enumerate(runs):
    draw(axes[0, column], axes[1, column], results)
  figure.tight_layout()
  figure.savefig(args.out, dpi=120)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
